"""Fixtures of the newcomer tests (issue 17): a server with auth off, the binaries, and an
environment for the `pico` CLI that points at the server and at a private HOME."""
import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pico_server import BIN_DIR, REPO, Server  # noqa: E402,F401


@pytest.fixture(scope="module")
def server():
    started = Server("--create-rate", "0")
    yield started
    started.stop()


@pytest.fixture
def cli_env(server, tmp_path):
    """What a user's shell would hold: PICO_URL at the server, a HOME of the test's own."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICO_")}
    env.update(HOME=str(home), PICO_URL=f"http://{server.addr}", NO_COLOR="1",
               PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("XDG_CONFIG_HOME", None)
    return env
