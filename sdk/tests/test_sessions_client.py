"""SessionsClient against a real server: every method and the error mappings of the REST API."""

from __future__ import annotations

import os
import stat
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from sdk.sandbox_sessions_sdk import (
    KeyStore,
    RateLimitError,
    SandboxAPIError,
    SandboxConnectionError,
    SandboxOperationError,
    Session,
    SessionList,
    SessionNotFoundError,
    SessionsClient,
    SessionSSHClient,
    SessionStatus,
    UnauthorizedError,
    generate_ed25519_keypair,
    parse_timestamp,
)


def test_create_session_defaults_generates_key_locally(client, new_session, key_dir, server):
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    s = new_session()
    assert isinstance(s, Session)
    uuid.UUID(s.session_id, version=4)
    assert s.status == "running" and s.status is SessionStatus.RUNNING
    assert before <= s.created_at <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert abs((s.expires_at - s.created_at).total_seconds() - 3600) < 2
    assert s.last_activity_at is not None
    assert s.ttl == 3600 and s.idle_timeout == 0 and s.metadata == {}
    assert s.ssh.username == "sandbox" and s.ssh_username == "sandbox"
    assert s.host_keys and all(k.startswith("ssh-ed25519 AAAA") for k in s.host_keys)
    assert s.tunnel_path == f"/v1/sessions/{s.session_id}/tunnel"
    # the key pair was made here: the server got only the public key and returned none
    assert "sshPrivateKey" not in s.to_dict()
    assert s.ssh_private_key and s.ssh_private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    key_file = key_dir / f"{s.session_id}.key"
    assert key_file.read_text().strip() == s.ssh_private_key.strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    # the server accepts the matching key (and only needs the public half)
    with SessionSSHClient(server.url, None, s.session_id, pkey=s.ssh_private_key, key_store=False) as ssh:
        assert ssh.run_command("true")["exit_code"] == 0


def test_create_session_with_options(new_session):
    # No image: the local runtime would pull it (crates/pico-apiserver/tests/image_sessions.rs).
    s = new_session(ttl=120, metadata={"user": "alice", "n": [1, 2]}, idle_timeout=600)
    assert s.ttl == 120
    assert s.image is None
    assert s.metadata == {"user": "alice", "n": [1, 2]}
    assert s.idle_timeout == 600
    assert abs((s.expires_at - s.created_at).total_seconds() - 120) < 2


def test_create_session_with_own_public_key_stores_nothing(new_session, key_dir):
    _, public = generate_ed25519_keypair()
    s = new_session(ssh_public_key=public)
    assert s.ssh_private_key is None
    assert "sshPrivateKey" not in s.to_dict()
    assert not (key_dir / f"{s.session_id}.key").exists()


def test_server_generated_key_is_stored(server, tmp_path):
    store = KeyStore(tmp_path / "ks")
    with SessionsClient(server.url, None, key_store=store, generate_keys=False) as c:
        s = c.create_session(ttl=300)
        try:
            assert s.to_dict()["sshPrivateKey"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
            assert store.load(s.session_id).strip() == s.ssh_private_key.strip()
            assert stat.S_IMODE(store.path_for(s.session_id).stat().st_mode) == 0o600
        finally:
            c.delete_session(s.session_id)
        assert store.load(s.session_id) is None


def test_no_key_store_lets_server_make_the_key(server):
    with SessionsClient(server.url, None, key_store=False) as c:
        s = c.create_session(ttl=300)
        try:
            assert s.ssh_private_key and "sshPrivateKey" in s.to_dict()
        finally:
            c.delete_session(s)


def test_get_session(client, new_session):
    s = new_session(metadata={"k": "v"})
    got = client.get_session(s.session_id)
    assert got.session_id == s.session_id
    assert got.status == SessionStatus.RUNNING
    assert got.metadata == {"k": "v"}
    assert got.host_keys == s.host_keys
    assert got.created_at == s.created_at and got.expires_at == s.expires_at
    assert got.ssh_private_key is None  # the key is returned once, at creation only
    assert client.get_session(s).session_id == s.session_id  # a Session works as id


def test_list_sessions_and_pagination(client, new_session):
    mine = [new_session(metadata={"i": i}).session_id for i in range(3)]
    page = client.list_sessions()
    assert isinstance(page, SessionList)
    assert page["limit"] == page.limit == 50 and page.offset == 0
    ids = [s.session_id for s in page.sessions]
    assert all(isinstance(s, Session) for s in page["sessions"])
    assert page.total >= 3 and set(mine) <= set(ids)
    assert [i for i in ids if i in mine] == mine  # oldest first

    first = client.list_sessions(limit=1, offset=0)
    second = client.list_sessions(limit=1, offset=1)
    assert len(first) == 1 and len(second) == 1
    assert first.total == second.total == page.total
    assert first.sessions[0].session_id == ids[0] and second.sessions[0].session_id == ids[1]
    past_end = client.list_sessions(limit=10, offset=page.total)
    assert past_end.sessions == [] and past_end.offset == page.total

    assert [s.session_id for s in client.iter_sessions(page_size=2)] == ids


def test_extend_session(client, new_session):
    s = new_session(ttl=120)
    extended = client.extend_session(s.session_id, 7200)
    assert extended.session_id == s.session_id
    now = datetime.now(timezone.utc)
    assert abs((extended.expires_at - now).total_seconds() - 7200) < 10
    assert client.get_session(s.session_id).expires_at == extended.expires_at


def test_extend_session_invalid_ttl(client, new_session):
    s = new_session()
    with pytest.raises(SandboxOperationError) as err:
        client.extend_session(s.session_id, 10)
    # caught before the request, with the code the server would have answered
    assert isinstance(err.value, ValueError)
    assert err.value.status_code is None and err.value.error_code == "INVALID_TTL"


def test_delete_session_removes_key_and_session(client, key_dir):
    s = client.create_session(ttl=300)
    key_file = key_dir / f"{s.session_id}.key"
    assert key_file.exists()
    assert client.delete_session(s.session_id) is None
    assert not key_file.exists()
    with pytest.raises(SessionNotFoundError):
        client.get_session(s.session_id)
    assert s.session_id not in [x.session_id for x in client.iter_sessions()]


def test_not_found_mapping_404(client):
    missing = str(uuid.uuid4())
    for call in (
        lambda: client.get_session(missing),
        lambda: client.delete_session(missing),
        lambda: client.extend_session(missing, 3600),
    ):
        with pytest.raises(SessionNotFoundError) as err:
            call()
        e = err.value
        assert isinstance(e, SandboxAPIError)
        assert e.status_code == 404 and e.error_code == "SESSION_NOT_FOUND"
        assert e.message and e.request_id


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"ttl": 5}, "INVALID_TTL"),
        ({"ttl": 10**6}, "INVALID_TTL"),
        ({"ssh_public_key": "ssh-ed25519 not-base64!"}, "INVALID_SSH_KEY"),
        ({"metadata": [1, 2]}, "INVALID_REQUEST"),
        ({"idle_timeout": -1}, "INVALID_REQUEST"),
    ],
)
def test_bad_request_mapping_400(client, kwargs, code):
    with pytest.raises(SandboxOperationError) as err:
        client.create_session(**kwargs)
    e = err.value
    assert not isinstance(e, (SessionNotFoundError, UnauthorizedError, RateLimitError))
    assert e.error_code == code and e.message
    # what the SDK can check raises ValueError before any request; the rest is the server's 400
    assert e.status_code == (400 if code == "INVALID_SSH_KEY" else None)
    assert isinstance(e, ValueError) == (code != "INVALID_SSH_KEY")


@pytest.mark.parametrize("limit", [0, 101])
def test_invalid_limit_400(client, limit):
    with pytest.raises(SandboxOperationError) as err:
        client.list_sessions(limit=limit)
    assert isinstance(err.value, ValueError) and err.value.error_code == "INVALID_LIMIT"


def test_quota_mapping_429(quota_server):
    with SessionsClient(quota_server.url, None) as c:
        s = c.create_session(ttl=300)
        try:
            with pytest.raises(RateLimitError) as err:
                c.create_session(ttl=300)
            assert err.value.status_code == 429 and err.value.error_code == "QUOTA_EXCEEDED"
            assert err.value.message
            assert err.value.limit == 1 and err.value.remaining == 0
        finally:
            c.delete_session(s.session_id)
        # the slot is free again once the session is gone
        c.delete_session(c.create_session(ttl=300))


def test_rate_limit_mapping_429(rate_server):
    with SessionsClient(rate_server.url, None) as c:
        made = [c.create_session(ttl=300) for _ in range(2)]
        try:
            with pytest.raises(RateLimitError) as err:
                c.create_session(ttl=300)
            e = err.value
            assert e.status_code == 429 and e.error_code == "RATE_LIMITED" and e.message
            assert e.limit == 2 and e.remaining == 0
            assert e.reset is not None and 0 < e.reset <= 60
            assert e.retry_after is not None and 0 < e.retry_after <= 60
            c.list_sessions()  # only creates are limited
        finally:
            for s in made:
                c.delete_session(s)


def test_connection_error_when_server_is_down():
    import socket

    with socket.socket() as sock:  # a port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with SessionsClient(f"http://127.0.0.1:{port}", "t", timeout=5) as c:
        with pytest.raises(SandboxConnectionError) as err:
            c.list_sessions()
        assert err.value.status_code is None


def test_api_url_forms_and_context_manager(server):
    # the original SDK's form (with /v1) and the bare server URL both work
    for url in (server.url, server.url + "/", server.url + "/v1", server.url + "/v1/"):
        with SessionsClient(url, None) as c:
            assert c.base_url == server.url + "/v1"
            assert isinstance(c.list_sessions(limit=1), SessionList)
            assert c.health() == {"status": "healthy"}
    c = SessionsClient(server.url, None)
    with c as entered:
        assert entered is c
    c.close()  # closing twice is fine


def test_env_defaults(server, monkeypatch):
    monkeypatch.setenv("PICO_URL", server.url)
    with SessionsClient() as c:
        assert c.api_url == server.url
        c.list_sessions(limit=1)


def test_non_json_error_body_is_mapped(server):
    # an unknown route under /v1 answers an error; whatever its body, the SDK maps it
    with SessionsClient(server.url, None) as c:
        with pytest.raises(SandboxAPIError) as err:
            c._request("GET", "/no-such-route")
        assert err.value.status_code in (404, 405)


def test_session_object_parsing():
    s = Session(
        {
            "sessionId": "x",
            "status": "paused-by-admin",
            "createdAt": "2026-01-02T03:04:05.123Z",
            "expiresAt": "2026-01-02T04:04:05Z",
            "lastActivityAt": None,
            "metadata": None,
        }
    )
    assert s.status == "paused-by-admin"  # unknown statuses stay strings
    assert s.created_at == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=timezone.utc)
    assert s.last_activity_at is None and s.metadata == {} and s.host_keys == []
    assert parse_timestamp("2026-01-02T03:04:05.1234567+02:00") == datetime(
        2026, 1, 2, 1, 4, 5, 123456, tzinfo=timezone.utc
    )
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_key_store_rejects_path_tricks(tmp_path):
    store = KeyStore(tmp_path)
    with pytest.raises(ValueError):
        store.save("../evil", "x")
    assert store.load("../evil") is None
    assert store.delete("nope") is False


def test_raw_requests_unaffected(server):
    # sanity: the REST API the SDK wraps is the one of docs/API.md
    r = requests.get(server.url + "/v1/sessions", params={"limit": 1}, timeout=10)
    assert r.status_code == 200 and set(r.json()) >= {"sessions", "total", "limit", "offset"}
    assert os.environ.get("PICO_KEY_DIR")
