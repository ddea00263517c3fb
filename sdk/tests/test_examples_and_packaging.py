"""The README's Python snippet and the examples run as written; the package imports both
from the repository root and as an installed package."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from sdk.tests.helpers import REPO

SDK = REPO / "sdk"


def _env(server, key_dir):
    env = dict(os.environ)
    env["PICO_URL"] = server.url
    env["PICO_TOKEN"] = ""
    env["PICO_KEY_DIR"] = str(key_dir)
    return env


def test_readme_snippet_runs_as_written(server, key_dir, tmp_path):
    readme = (SDK / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "no python snippet in sdk/README.md"
    env = _env(server, key_dir)
    env["PYTHONPATH"] = str(SDK)  # where `pip install ./sdk` puts the package: top level
    proc = subprocess.run(
        [sys.executable, "-c", blocks[0]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "running" in proc.stdout and "total" in proc.stdout


def test_quickstart_example_runs(server, key_dir):
    proc = subprocess.run(
        [sys.executable, str(SDK / "examples" / "quickstart.py")],
        cwd="/",
        env=_env(server, key_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hello from the quick start" in proc.stdout
    assert "exit code: 0" in proc.stdout and "deleted" in proc.stdout


def test_package_imports_both_ways(tmp_path):
    code = (
        "import sandbox_sessions_sdk as m; "
        "from sandbox_sessions_sdk import SessionsClient, SessionSSHClient, HTTPConnectTunnel; "
        "print(m.__file__)"
    )
    # as a top-level package (what `pip install ./sdk` provides), from the sdk directory
    proc = subprocess.run([sys.executable, "-c", code], cwd=SDK, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # from the repository root
    code_root = "from sdk.sandbox_sessions_sdk import SessionsClient, SessionSSHClient; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code_root], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert (SDK / "sandbox_sessions_sdk" / "py.typed").exists()
