"""Issue 17: the README's tour is run as written — every ```sh block (except those marked
"not run by tests") in order in one shell, and the ```python block — so a README that drifts
from the code fails. Also issue 17.2: `make build` leaves the binaries in ./bin.

What the harness changes, and only that: the ports (8080, 9090, 8443 → free ones, so tests
never collide with a real server), `./target/release/` → the binaries under test, each
server's state directory (a temporary one), and OpenSSH's `-F` (ssh reads the passwd home's
config, not $HOME's)."""
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from pico_server import BIN_DIR, REPO, Server

README = REPO / "README.md"
SKIP_MARK = "not run by tests/newcomer/test_readme.py"


def blocks(lang, path=README):
    """The ``` blocks of `lang` in `path`, without those right after the skip marker."""
    text = path.read_text()
    found = []
    for m in re.finditer(r"(<!--[^>]*-->\n)?```" + lang + r"\n(.*?)```", text, re.S):
        if m.group(1) and SKIP_MARK in m.group(1):
            continue
        found.append(m.group(2))
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def adapt(script, ports):
    for readme_port, port in ports.items():
        script = re.sub(rf"\b{readme_port}\b", str(port), script)
    script = script.replace("./target/release/", f"{BIN_DIR}/").replace("$PWD/target/release", str(BIN_DIR))
    script = script.replace("./target/debug/", f"{BIN_DIR}/")
    script = script.replace("pico-apiserver --port", 'pico-apiserver --state-dir "$(mktemp -d)/state" --port')
    script = script.replace("tests/tools/", f"{REPO}/tests/tools/")
    script = script.replace("ssh sandbox@", 'ssh -F "$HOME/.ssh/config" -o BatchMode=yes sandbox@')
    # a server started in the background: wait for its port (bounded) instead of a fixed sleep
    return re.sub(r"--port (\d+)(.*?)& sleep 1", r"--port \1\2& wait_up \1", script, flags=re.S)


PRELUDE = """set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
wait_up() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
"""


@pytest.fixture
def tour(tmp_path, cli_env):
    for tool in ("jq", "socat", "curl", "ssh"):
        assert shutil.which(tool), f"{tool} is missing (scripts/test-deps.sh installs it)"
    server = Server("--create-rate", "0")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(README, work / "README.md")
    env = dict(cli_env, PICO_URL="", PICO_BIND="127.0.0.1")
    env.pop("PICO_URL")
    yield server, work, env
    server.stop()


def test_readme_shell_blocks_run_as_written(tour):
    server, work, env = tour
    ports = {8080: server.port, 9090: free_port(), 8443: free_port()}
    script = PRELUDE + "\n".join(adapt(b, ports) for b in blocks("sh"))
    result = subprocess.run(["bash", "-c", script], cwd=work, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n--- script ---\n{script}"
    out = result.stdout
    assert "uid=" in out and "via socat" in out and "alice was here" in out, out
    assert "hi\nexit 4" in out, out
    assert '{"status":"healthy"}' in out, out


def test_readme_python_block_runs_as_written(tour):
    server, work, env = tour
    (python,) = blocks("python")
    code = python.replace("http://127.0.0.1:8080", f"http://{server.addr}")
    env = dict(env, PYTHONPATH=str(REPO / "sdk"), PICO_KEY_DIR=str(work / "keys"))
    result = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "'exit_code': 0" in result.stdout


def test_make_build_leaves_binaries_in_bin(tmp_path):
    make = subprocess.run(["make", "-n", "build"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert make.returncode == 0 and "bin/" in make.stdout, make.stdout
    # `make build` itself (cargo is incremental; the binaries exist already for these tests)
    built = subprocess.run(["make", "build"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-2000:]
    for name in ("pico-apiserver", "pico-agent", "pico"):
        assert os.access(REPO / "bin" / name, os.X_OK), name
    help_text = subprocess.run([str(REPO / "bin" / "pico-apiserver"), "--help"], capture_output=True, text=True)
    assert "--port" in help_text.stdout
    assert "/bin/" in (REPO / ".gitignore").read_text()


def test_k8s_readme_emulator_recipe_runs_as_written(tmp_path, cli_env):
    assert shutil.which("kubectl"), "kubectl is missing (scripts/test-deps.sh installs it)"
    ports = {8080: free_port(), 6443: free_port()}
    script = PRELUDE + "\n".join(adapt(b, ports) for b in blocks("sh", REPO / "k8s" / "README.md"))
    env = dict(cli_env, PICO_BIND="127.0.0.1")
    env.pop("PICO_URL")
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n--- script ---\n{script}"
    assert "hello from the pod" in result.stdout and "sandbox" in result.stdout.lower(), result.stdout
