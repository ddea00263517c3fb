"""Fixtures of the MCP tests: a real server with auth off and the `pico` binary beside it."""
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pico_server import BIN_DIR, Server  # noqa: E402,F401


@pytest.fixture(scope="module")
def server():
    started = Server("--create-rate", "0")
    yield started
    started.stop()
