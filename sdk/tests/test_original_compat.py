"""Code written for the original project's SDK runs unchanged on pico's, and the SDK's
hygiene: arguments checked before any request, error classes for codes the server sends,
one version, one place for the environment fallbacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from sdk.sandbox_sessions_sdk import (
    ForbiddenError,
    InvalidArgumentError,
    SandboxOperationError,
    SessionNotFoundError,
    SessionsClient,
    UnauthorizedError,
    __version__,
    error_from_response,
)
from sdk.sandbox_sessions_sdk.exceptions import _BY_CODE
from sdk.tests.helpers import REPO, make_token

SDK = REPO / "sdk"
PACKAGE = SDK / "sandbox_sessions_sdk"


def test_original_style_integration_suite_passes(jwt_server, tmp_path):
    """The original's unittest style, configured the original's way (`/v1` URL, token in
    SANDBOX_API_TOKEN), with the installed-style import `from sandbox_sessions_sdk import`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICO_", "SANDBOX_"))}
    env.update(
        SANDBOX_API_URL=f"{jwt_server.url}/v1",
        SANDBOX_API_TOKEN=make_token("original-style"),
        PICO_KEY_DIR=str(tmp_path / "keys"),
        PYTHONPATH=str(SDK),
    )
    proc = subprocess.run(
        [sys.executable, str(SDK / "tests" / "original" / "sessions_integration.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"Ran 12 tests", proc.stderr), proc.stderr


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create_session(ttl=30),
        lambda c: c.create_session(ttl=50000),
        lambda c: c.create_session(ttl="600"),
        lambda c: c.create_session(idle_timeout=-1),
        lambda c: c.create_session(metadata=["not", "a", "dict"]),
        lambda c: c.create_session(image=""),
        lambda c: c.list_sessions(limit=150),
        lambda c: c.list_sessions(limit=0),
        lambda c: c.list_sessions(offset=-1),
        lambda c: c.extend_session("00000000-0000-4000-8000-000000000000", 10),
        lambda c: c.get_session(""),
    ],
)
def test_bad_arguments_raise_value_error_before_any_request(call):
    # Nothing listens on port 1: a request would raise SandboxConnectionError instead.
    with SessionsClient("http://127.0.0.1:1", None, key_store=False) as client:
        with pytest.raises(ValueError) as err:
            call(client)
    assert isinstance(err.value, InvalidArgumentError)
    assert isinstance(err.value, SandboxOperationError)  # pico's own class too
    assert err.value.error_code


def test_value_error_names_the_argument_and_range():
    with SessionsClient("http://127.0.0.1:1", None, key_store=False) as client:
        with pytest.raises(ValueError, match=r"ttl must be 60\.\.=28800, got 30") as err:
            client.create_session(ttl=30)
    assert err.value.error_code == "INVALID_TTL"


def test_403_is_forbidden_not_unauthorized():
    err = error_from_response(403, {"error": "FORBIDDEN", "message": "no"})
    assert isinstance(err, ForbiddenError) and not isinstance(err, UnauthorizedError)
    assert isinstance(error_from_response(403, "<html>proxy says no</html>"), ForbiddenError)
    assert isinstance(error_from_response(401, {"error": "UNAUTHORIZED", "message": "x"}), UnauthorizedError)


def test_a_route_that_does_not_exist_is_not_a_missing_session():
    err = error_from_response(404, {"error": "NOT_FOUND", "message": "no route for GET /v2/x"})
    assert not isinstance(err, SessionNotFoundError)
    assert isinstance(error_from_response(404, {"error": "SESSION_NOT_FOUND", "message": "x"}), SessionNotFoundError)


def test_sdk_maps_only_codes_the_server_sends():
    wire = (REPO / "crates" / "pico-wire" / "src" / "lib.rs").read_text()
    server_codes = set(re.findall(r'=> "([A-Z_]+)"', wire))
    assert "SESSION_NOT_FOUND" in server_codes
    assert set(_BY_CODE) <= server_codes, set(_BY_CODE) - server_codes


def test_tunnel_to_anything_but_a_session_is_forbidden(jwt_server):
    import requests

    answer = requests.request("CONNECT", f"{jwt_server.url}/", timeout=10)
    err = error_from_response(answer.status_code, answer.content, answer.headers)
    assert answer.status_code in (403, 401), answer.text
    if answer.status_code == 403:
        assert isinstance(err, ForbiddenError)


def test_one_version_source():
    pyproject = (SDK / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert not re.search(r"^version\s*=\s*\"", pyproject, re.M)
    assert 'requires-python = ">=3.9"' in pyproject
    literal = re.compile(r"""['"]\d+\.\d+\.\d+['"]""")
    holders = [p.name for p in PACKAGE.glob("*.py") if literal.search(p.read_text())]
    assert holders == ["_version.py"], holders
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_environment_is_read_in_one_place():
    readers = sorted(p.name for p in PACKAGE.glob("*.py") if "os.environ" in p.read_text())
    # settings.py: api_url and token; keystore.py: the key store's directory.
    assert readers == ["keystore.py", "settings.py"], readers
    for name in ("client.py", "ssh.py"):
        text = (PACKAGE / name).read_text()
        assert "KeyStore(" not in text, f"{name} builds a key store itself; use resolve_key_store"


def test_env_fallbacks_are_the_same_for_both_clients(monkeypatch, tmp_path):
    from sdk.sandbox_sessions_sdk import SessionSSHClient

    monkeypatch.delenv("PICO_URL", raising=False)
    monkeypatch.delenv("PICO_TOKEN", raising=False)
    monkeypatch.setenv("SANDBOX_API_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SANDBOX_API_TOKEN", "tok")
    c = SessionsClient(key_store=str(tmp_path))
    s = SessionSSHClient(session_id="x", key_store=str(tmp_path))
    assert (c.api_url, c.bearer_token) == ("http://127.0.0.1:9", "tok")
    assert (s.api_url, s.token) == ("http://127.0.0.1:9/v1", "tok")
    assert c.key_store is not None and s.key_store is not None
    assert c.key_store.path == s.key_store.path == tmp_path
    monkeypatch.delenv("SANDBOX_API_URL")
    with pytest.raises(ValueError, match="PICO_URL"):
        SessionsClient()
    with pytest.raises(ValueError, match="PICO_URL"):
        SessionSSHClient(session_id="x")
