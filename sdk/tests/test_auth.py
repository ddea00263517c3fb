"""Authentication (a server started with --jwt-secret, tokens minted by pyjwt), user
isolation, and a client written for the original pico-apiserver working unchanged."""

from __future__ import annotations

import socket
import uuid
from urllib.parse import urlparse

import paramiko
import pytest
import requests

from sdk.sandbox_sessions_sdk import (
    SandboxAPIError,
    SessionNotFoundError,
    SessionsClient,
    SessionSSHClient,
    UnauthorizedError,
    generate_ed25519_keypair,
    load_private_key,
)
from sdk.tests.helpers import make_token


@pytest.fixture(scope="module")
def alice_session(jwt_server):
    with SessionsClient(jwt_server.url, make_token("alice")) as c:
        s = c.create_session(ttl=600, metadata={"owner": "alice"})
        yield s
        try:
            c.delete_session(s.session_id)
        except SandboxAPIError:
            pass


@pytest.mark.parametrize(
    "token",
    [
        None,
        "not-a-jwt",
        make_token("alice", secret="some-other-secret-that-is-long-enough-for-hs256"),
        make_token("alice", exp_in=-3600),
    ],
    ids=["missing", "garbage", "wrong-secret", "expired"],
)
def test_unauthorized_mapping_401(jwt_server, token):
    with SessionsClient(jwt_server.url, token) as c:
        for call in (
            lambda: c.list_sessions(),
            lambda: c.create_session(ttl=300),
            lambda: c.get_session(str(uuid.uuid4())),
        ):
            with pytest.raises(UnauthorizedError) as err:
                call()
            assert err.value.status_code == 401 and err.value.error_code == "UNAUTHORIZED"
            assert err.value.message


def test_valid_token_and_user_isolation(jwt_server, alice_session):
    with SessionsClient(jwt_server.url, make_token("alice")) as alice:
        got = alice.get_session(alice_session.session_id)
        assert got.metadata == {"owner": "alice"}
        assert alice_session.session_id in [s.session_id for s in alice.iter_sessions()]
    with SessionsClient(jwt_server.url, make_token("bob")) as bob:
        # another user's session is exactly like a missing one
        with pytest.raises(SessionNotFoundError):
            bob.get_session(alice_session.session_id)
        with pytest.raises(SessionNotFoundError):
            bob.extend_session(alice_session.session_id, 3600)
        with pytest.raises(SessionNotFoundError):
            bob.delete_session(alice_session.session_id)
        assert alice_session.session_id not in [s.session_id for s in bob.iter_sessions()]


def test_ssh_with_token(jwt_server, alice_session):
    token = make_token("alice")
    with SessionSSHClient(jwt_server.url, token, alice_session.session_id) as ssh:
        r = ssh.run_command("echo hello")
    assert r == {"stdout": "hello\n", "stderr": "", "exit_code": 0}


def test_tunnel_refused_without_valid_token(jwt_server, alice_session):
    for token in (None, make_token("alice", secret="wrong-secret-that-is-long-enough-for-hs256!")):
        ssh = SessionSSHClient(
            jwt_server.url, token, alice_session.session_id, host_keys=alice_session.host_keys
        )
        with pytest.raises(UnauthorizedError) as err:
            ssh.connect()
        assert err.value.status_code == 401
    # another user reaches no session through the tunnel either
    ssh = SessionSSHClient(
        jwt_server.url, make_token("bob"), alice_session.session_id, host_keys=alice_session.host_keys
    )
    with pytest.raises(SessionNotFoundError):
        ssh.connect()
    # and cannot even fetch the host keys
    with pytest.raises(SessionNotFoundError):
        SessionSSHClient(jwt_server.url, make_token("bob"), alice_session.session_id).connect()


# ------------------------------------------------------------------------------------
# A client in the style of the original SDK: api_url ends in /v1, the tunnel is
# `CONNECT /sessions/{id}` with `Proxy-Authorization: Bearer`, status compared to
# "running", its own key pair sent as sshPublicKey. Nothing of the new SDK is used.
# ------------------------------------------------------------------------------------


class LegacyTunnel:
    def __init__(self, api_url, token, session_id):
        self.api_url, self.token, self.session_id = api_url.rstrip("/"), token, session_id

    def open(self):
        parsed = urlparse(self.api_url)
        sock = socket.create_connection((parsed.hostname, parsed.port or 80), timeout=10)
        req = (
            f"CONNECT /sessions/{self.session_id} HTTP/1.1\r\n"
            f"Host: {parsed.hostname}\r\n"
            f"Proxy-Authorization: Bearer {self.token}\r\n"
            "Proxy-Connection: keep-alive\r\n\r\n"
        )
        sock.sendall(req.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            # exactly as the original: one large recv; the server holds the sandbox's banner
            # back until the client speaks, so nothing after the blank line is lost
            chunk = sock.recv(1024)
            if not chunk:
                break
            response += chunk
        status_line = response.decode(errors="ignore").split("\r\n", 1)[0]
        if not status_line.startswith("HTTP/1.1 200"):
            sock.close()
            raise RuntimeError(f"HTTP CONNECT failed: {status_line}")
        return sock


def test_original_style_client_works_unchanged(jwt_server):
    api_url = jwt_server.url + "/v1"
    token = make_token("legacy-user")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    private, public = generate_ed25519_keypair()

    r = requests.post(f"{api_url}/sessions", json={"ttl": 600, "sshPublicKey": public}, headers=headers, timeout=60)
    assert r.status_code in (200, 201), r.text
    data = r.json()
    session_id = data["sessionId"]
    try:
        assert data["status"] == "running"
        r = requests.get(f"{api_url}/sessions/{session_id}", headers=headers, timeout=10)
        assert r.json()["status"] == "running"
        r = requests.get(f"{api_url}/sessions", params={"limit": 50, "offset": 0}, headers=headers, timeout=10)
        assert session_id in [s["sessionId"] for s in r.json()["sessions"]]

        sock = LegacyTunnel(api_url, token, session_id).open()
        ssh = paramiko.SSHClient()
        ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # what the original did
        ssh.connect(
            hostname=f"session-{session_id}",
            username="sandbox",
            pkey=load_private_key(private),
            sock=sock,
            timeout=20,
            allow_agent=False,
            look_for_keys=False,
        )
        try:
            _, stdout, stderr = ssh.exec_command("echo legacy; echo oops >&2; exit 4", timeout=30)
            assert stdout.read() == b"legacy\n"
            assert stderr.read() == b"oops\n"
            assert stdout.channel.recv_exit_status() == 4
            sftp = ssh.open_sftp()
            with sftp.open("legacy.txt", "w") as f:
                f.write("from the original client")
            with sftp.open("legacy.txt") as f:
                assert f.read() == b"from the original client"
            sftp.close()
            # the key the original client trusted blindly is the one the server announces
            offered = ssh.get_transport().get_remote_server_key()
            assert f"{offered.get_name()} {offered.get_base64()}" in [
                " ".join(k.split()[:2]) for k in data["ssh"]["hostKeys"]
            ]
        finally:
            ssh.close()
    finally:
        r = requests.delete(f"{api_url}/sessions/{session_id}", headers=headers, timeout=30)
        assert r.status_code in (200, 204)


def test_original_sdk_chunked_connect_read_keeps_the_banner(jwt_server, alice_session):
    """The original SDK read the CONNECT answer with recv(1024) until the blank line and then
    handed the socket to paramiko; whatever came after the blank line in that chunk was lost.
    Reading a moment after the answer was sent (any real network, a loaded machine) shows
    whether the server lets SSH bytes follow the answer before the client has spoken."""
    import time

    parsed = urlparse(jwt_server.url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=10)
    try:
        sock.sendall(
            (
                f"CONNECT /sessions/{alice_session.session_id} HTTP/1.1\r\nHost: {parsed.hostname}\r\n"
                f"Proxy-Authorization: Bearer {make_token('alice')}\r\nProxy-Connection: keep-alive\r\n\r\n"
            ).encode()
        )
        time.sleep(0.3)
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(1024)
            if not chunk:
                break
            response += chunk
        assert response.startswith(b"HTTP/1.1 200")
        extra = response.split(b"\r\n\r\n", 1)[1]
        assert extra == b"", f"bytes after the CONNECT answer: {extra!r}"
    finally:
        sock.close()
