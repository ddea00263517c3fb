"""Schemathesis (every check) against the served OpenAPI document: no server errors, no
response that breaks the schema, no invalid input accepted, no valid input refused."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pico_server import Server  # noqa: E402

SECRET = "schemathesis-secret-0123456789-0123456789-0123456789"


@pytest.fixture
def server():
    # Images named by the fuzzer are "pulled" from a mirror on loopback where nothing listens:
    # no request leaves the machine, and the create answers 422 IMAGE_PULL_FAILED.
    started = Server("--jwt-secret", SECRET, "--create-rate", "0",
                     "--registry-mirror", "http://127.0.0.1:9", "--insecure-registry", "127.0.0.1:9")
    yield started
    started.stop()


# A schema-valid image that cannot be pulled is refused with 422 (documented), which the
# positive-data check must accept besides its defaults.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


def test_schemathesis_finds_nothing(server, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cli = shutil.which("schemathesis", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("schemathesis")
    assert cli, "schemathesis is not installed (scripts/test-requirements.txt)"
    binary = pathlib.Path(os.environ.get("PICO_BIN_DIR", HERE.parents[1] / "target" / "debug")) / "pico-apiserver"
    token = subprocess.run([str(binary), "token", "--jwt-secret", SECRET, "--sub", "schemathesis"],
                           capture_output=True, text=True, check=True).stdout.strip()
    env = dict(os.environ, SCHEMATHESIS_HOOKS="st_hooks",
               PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run(
        [cli, "--config-file", str(config), "run", f"http://{server.addr}/openapi.json", "--checks", "all",
         "--max-examples", os.environ.get("PICO_SCHEMATHESIS_EXAMPLES", "25"), "--workers", "1",
         "--seed", "1", "-H", f"Authorization: Bearer {token}"],
        capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Internal Server Error" not in server.logs()
