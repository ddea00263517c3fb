"""Fixtures: real `pico-apiserver` processes (local runtime) in temporary state dirs.

Binaries come from `$PICO_BIN_DIR` (default `<repo>/target/debug`). `$PICO_AGENT_BINARY`,
when set, is passed to the server as `--agent-binary`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `from sdk.sandbox_sessions_sdk import ...` from the repo root
    sys.path.insert(0, str(REPO))

from sdk.sandbox_sessions_sdk import SessionsClient  # noqa: E402
from sdk.tests.helpers import JWT_SECRET, PicoServer  # noqa: E402


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, extra: List[str]) -> Iterator[PicoServer]:
    server = PicoServer(tmp_path_factory.mktemp(name) / "state", extra)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private key store for the whole run (never the user's ~/.config/pico/keys)."""
    path = tmp_path_factory.mktemp("keys") / "store"
    old = os.environ.get("PICO_KEY_DIR")
    os.environ["PICO_KEY_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PICO_KEY_DIR", None)
    else:
        os.environ["PICO_KEY_DIR"] = old


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PicoServer]:
    """A server with auth disabled."""
    # Shared by the whole run: not held to the machine-sized default per-user quota.
    yield from _start(tmp_path_factory, "open", ["--create-rate", "0", "--max-sessions-per-user", "0"])


@pytest.fixture(scope="session")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PicoServer]:
    """A server that requires HS256 tokens signed with JWT_SECRET."""
    args = ["--jwt-secret", JWT_SECRET, "--bind", "127.0.0.1", "--create-rate", "0", "--max-sessions-per-user", "0"]
    yield from _start(tmp_path_factory, "jwt", args)


@pytest.fixture(scope="session")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PicoServer]:
    """A server allowing one live session per user."""
    yield from _start(tmp_path_factory, "quota", ["--max-sessions-per-user", "1", "--create-rate", "0"])


@pytest.fixture(scope="session")
def rate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PicoServer]:
    """A server allowing two session creates per user and minute."""
    yield from _start(tmp_path_factory, "rate", ["--create-rate", "2"])


@pytest.fixture
def client(server: PicoServer) -> Iterator[SessionsClient]:
    with SessionsClient(server.url, None) as c:
        yield c


@pytest.fixture
def new_session(client: SessionsClient):
    """Creates sessions on the open server and deletes whatever is left at teardown."""
    made = []

    def make(**kwargs):
        s = client.create_session(**kwargs)
        made.append(s.session_id)
        return s

    yield make
    for sid in made:
        try:
            client.delete_session(sid)
        except Exception:  # noqa: BLE001 - already gone
            pass


@pytest.fixture(scope="module")
def shared_session(server: PicoServer):
    """One session for a test module's SSH tests."""
    with SessionsClient(server.url, None) as c:
        s = c.create_session(ttl=3600, metadata={"suite": "sdk"})
        yield s
        try:
            c.delete_session(s.session_id)
        except Exception:  # noqa: BLE001
            pass

