"""Fixtures for the auth and TLS tests."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from pico_server import Server  # noqa: E402


@pytest.fixture
def start_server():
    started = []

    def start(*args):
        server = Server(*args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
