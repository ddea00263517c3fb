"""SessionSSHClient and HTTPConnectTunnel against real sandboxes."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

import paramiko
import pytest

from sdk.sandbox_sessions_sdk import (
    CommandTimeoutError,
    HostKeyVerificationError,
    HTTPConnectTunnel,
    KeyStore,
    SandboxConnectionError,
    SandboxOperationError,
    SessionNotFoundError,
    SessionsClient,
    SessionSSHClient,
    SSHAuthenticationError,
    generate_ed25519_keypair,
    load_private_key,
)


@pytest.fixture(scope="module")
def ssh(server, shared_session):
    with SessionSSHClient(server.url, None, shared_session.session_id) as c:
        yield c


def test_readme_flow_no_key_anywhere(server, key_dir):
    """The seed README's flow: create with no key, connect with no key, run `ls -la`."""
    client = SessionsClient(api_url=server.url, bearer_token="unused-without-auth")
    session = client.create_session(ttl=3600)
    try:
        ssh = SessionSSHClient(
            api_url=server.url,
            bearer_token="unused-without-auth",
            session_id=session.session_id,
            username="sandbox",
        )
        result = ssh.run_command("ls -la")  # connects on first use
        assert result["exit_code"] == 0 and result["stderr"] == ""
        assert "total" in result["stdout"] and " ." in result["stdout"]
        ssh.close()
    finally:
        client.delete_session(session.session_id)
        client.close()
    assert not (key_dir / f"{session.session_id}.key").exists()


def test_run_command_stdout_stderr_exit_code(ssh):
    r = ssh.run_command("echo out; echo err >&2; exit 7")
    assert r == {"stdout": "out\n", "stderr": "err\n", "exit_code": 7}


def test_run_command_failing_command(ssh):
    r = ssh.run_command("ls /definitely/not/here")
    assert r["exit_code"] != 0
    assert "/definitely/not/here" in r["stderr"] and r["stdout"] == ""
    r = ssh.run_command("no-such-command-xyz")
    assert r["exit_code"] == 127 and "no-such-command-xyz" in r["stderr"]


def test_run_command_large_interleaved_output(ssh):
    # 4 MiB on each stream at once: both are read concurrently, nothing deadlocks
    r = ssh.run_command(
        "head -c 4194304 /dev/zero | tr '\\0' a & head -c 4194304 /dev/zero | tr '\\0' b >&2; wait",
        timeout=120,
    )
    assert r["exit_code"] == 0
    assert len(r["stdout"]) == 4 << 20 and set(r["stdout"]) == {"a"}
    assert len(r["stderr"]) == 4 << 20 and set(r["stderr"]) == {"b"}


def test_run_command_input_env_and_unicode(ssh):
    r = ssh.run_command("cat; printf 'é\\n'", input="piped ✓\n")
    assert r["stdout"] == "piped ✓\né\n" and r["exit_code"] == 0
    r = ssh.run_command("wc -c", input=b"\x00" * 1000)
    assert r["stdout"].strip() == "1000"
    r = ssh.run_command('printf "%s" "$LC_PICO_SDK_TEST"', environment={"LC_PICO_SDK_TEST": "from env"})
    assert r["stdout"] == "from env"


def test_command_timeout(ssh):
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError) as err:
        ssh.run_command("echo started; sleep 60", timeout=1.5)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 15
    e = err.value
    assert isinstance(e, SandboxOperationError) and e.error_code == "COMMAND_TIMEOUT"
    assert e.stdout == "started\n"
    # the connection survives a timed-out command
    assert ssh.run_command("echo still-alive")["stdout"] == "still-alive\n"


def test_upload_download_32mib_round_trip(ssh, tmp_path):
    src = tmp_path / "big.bin"
    data = os.urandom(32 * 1024 * 1024)
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    attrs = ssh.upload_file(src, "big.bin")
    assert attrs.st_size == len(data)
    remote = ssh.run_command("sha256sum big.bin", timeout=120)
    assert remote["stdout"].split()[0] == digest

    dst = tmp_path / "back.bin"
    ssh.download_file("big.bin", dst)
    assert dst.stat().st_size == len(data)
    h = hashlib.sha256()
    with open(dst, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    assert h.hexdigest() == digest
    ssh.run_command("rm -f big.bin")


def test_open_sftp_operations(ssh, tmp_path):
    sftp = ssh.open_sftp()
    assert ssh.open_sftp() is sftp  # one SFTP session per connection
    sftp.mkdir("dir")
    with sftp.open("dir/hello.txt", "w") as f:
        f.write("hello sftp\n")
    assert sftp.listdir("dir") == ["hello.txt"]
    assert sftp.stat("dir/hello.txt").st_size == len("hello sftp\n")
    sftp.rename("dir/hello.txt", "dir/renamed.txt")
    assert ssh.run_command("cat dir/renamed.txt")["stdout"] == "hello sftp\n"
    sftp.remove("dir/renamed.txt")
    sftp.rmdir("dir")
    assert "dir" not in sftp.listdir(".")


def test_file_errors_are_sdk_errors(ssh, tmp_path):
    with pytest.raises(SandboxOperationError):
        ssh.download_file("no/such/file", tmp_path / "x")
    src = tmp_path / "small"
    src.write_text("x")
    with pytest.raises(SandboxOperationError):
        ssh.upload_file(src, "no/such/dir/file")


def test_host_key_mismatch_refused(server, shared_session, key_dir):
    _, wrong = generate_ed25519_keypair("not-the-host")
    c = SessionSSHClient(server.url, None, shared_session.session_id, host_keys=[wrong])
    with pytest.raises(HostKeyVerificationError) as err:
        c.connect()
    assert err.value.error_code == "HOST_KEY_MISMATCH"
    assert isinstance(err.value, SandboxConnectionError)
    assert not c.connected
    # garbage and unknown key types are ignored, not trusted
    c = SessionSSHClient(server.url, None, shared_session.session_id, host_keys=["garbage", "ssh-foo AAAA"])
    with pytest.raises(HostKeyVerificationError):
        c.connect()
    # ... while the real key next to them is accepted
    for keys in (
        ["ssh-foo AAAA", wrong] + shared_session.host_keys,
        shared_session.host_keys + [wrong],  # two keys of one type (rotation): both count
    ):
        with SessionSSHClient(server.url, None, shared_session.session_id, host_keys=keys) as ok:
            assert ok.run_command("true")["exit_code"] == 0
    # no announced keys at all: refused too, not trusted on first use
    c = SessionSSHClient(server.url, None, shared_session.session_id, host_keys=[])
    with pytest.raises(HostKeyVerificationError):
        c.connect()
    # a caller's own policy applies only when the session announces no key ...
    lenient = paramiko.AutoAddPolicy()
    with SessionSSHClient(
        server.url, None, shared_session.session_id, host_keys=[], host_key_policy=lenient
    ) as ok:
        assert ok.run_command("true")["exit_code"] == 0
    # ... never to override a mismatch
    c = SessionSSHClient(
        server.url, None, shared_session.session_id, host_keys=[wrong], host_key_policy=lenient
    )
    with pytest.raises(HostKeyVerificationError):
        c.connect()


def test_host_keys_are_fetched_from_the_session(server, shared_session):
    c = SessionSSHClient(server.url, None, shared_session.session_id)
    assert c.host_keys is None
    with c:
        assert c.connected
        assert c.host_keys == shared_session.host_keys
        offered = c._ssh.get_transport().get_remote_server_key()
        assert f"{offered.get_name()} {offered.get_base64()}" in [" ".join(k.split()[:2]) for k in c.host_keys]
    assert not c.connected


def test_from_session_and_ssh_client_helper(server, client, new_session, tmp_path):
    s = new_session(ttl=300)
    with SessionSSHClient.from_session(s, server.url, None, key_store=False) as c:
        assert c.run_command("echo via-from-session")["stdout"] == "via-from-session\n"
    with client.ssh_client(s) as c:
        assert c.run_command("echo via-helper")["exit_code"] == 0
    with client.ssh_client(s.session_id, timeout=10) as c:
        assert c.run_command("whoami; echo $HOME")["exit_code"] == 0


def test_own_key_given_as_pkey_path_or_text(server, client, new_session, tmp_path):
    private, public = generate_ed25519_keypair()
    s = new_session(ssh_public_key=public)
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(private)
    os.chmod(key_file, 0o600)
    for pkey in (load_private_key(private), str(key_file), private):
        with SessionSSHClient(server.url, None, s.session_id, pkey=pkey) as c:
            assert c.run_command("true")["exit_code"] == 0
    # without the key (nothing stored for this session) authentication fails cleanly
    c = SessionSSHClient(server.url, None, s.session_id, look_for_keys=False, allow_agent=False)
    with pytest.raises(SSHAuthenticationError):
        c.connect()
    # a wrong key fails cleanly as well
    other, _ = generate_ed25519_keypair()
    with pytest.raises(SSHAuthenticationError):
        SessionSSHClient(server.url, None, s.session_id, pkey=other).connect()


def test_session_made_with_server_key_and_separate_store(server, tmp_path):
    store = KeyStore(tmp_path / "store")
    with SessionsClient(server.url, None, key_store=store, generate_keys=False) as api:
        s = api.create_session(ttl=300)
        try:
            with SessionSSHClient(server.url, None, s.session_id, key_store=store) as c:
                assert c.run_command("echo server-key")["stdout"] == "server-key\n"
        finally:
            api.delete_session(s.session_id)


def test_tunnel_raw_stream_starts_with_ssh_banner(server, shared_session):
    for template in (None, "/v1/sessions/{sessionId}", "/sessions/{sessionId}"):
        tunnel = HTTPConnectTunnel(server.url, None, shared_session.session_id, connect_path_template=template)
        sock = tunnel.open()
        try:
            sock.settimeout(10)
            banner = b""
            while not banner.endswith(b"\n"):
                chunk = sock.recv(1)
                assert chunk, "tunnel closed before the SSH banner"
                banner += chunk
            assert banner.startswith(b"SSH-2.0-"), banner
        finally:
            tunnel.close()


def test_tunnel_context_manager(server, shared_session):
    tunnel = HTTPConnectTunnel(server.url + "/v1", None, shared_session.session_id)
    with tunnel as sock:
        sock.settimeout(10)
        assert sock.recv(4) == b"SSH-"
    assert tunnel._socket is None  # closed on exit


def test_tunnel_errors(server):
    missing = str(uuid.uuid4())
    with pytest.raises(SessionNotFoundError) as err:
        HTTPConnectTunnel(server.url, None, missing).open()
    assert err.value.status_code == 404 and err.value.error_code == "SESSION_NOT_FOUND"
    with pytest.raises(SessionNotFoundError):
        SessionSSHClient(server.url, None, missing).connect()
    with pytest.raises(SessionNotFoundError):
        SessionSSHClient(server.url, None, missing, host_keys=[]).connect()


def test_closed_client_reconnects_and_close_is_idempotent(server, shared_session):
    c = SessionSSHClient(server.url, None, shared_session.session_id)
    c.close()
    assert c.run_command("echo one")["stdout"] == "one\n"
    c.close()
    c.close()
    assert c.run_command("echo two")["stdout"] == "two\n"
    c.close()


def test_deleted_session_ends_the_connection(server, client):
    s = client.create_session(ttl=300)
    c = SessionSSHClient(server.url, None, s.session_id)
    c.connect()
    assert c.run_command("echo up")["exit_code"] == 0
    client.delete_session(s.session_id)
    with pytest.raises((SandboxConnectionError, SandboxOperationError, paramiko.SSHException, EOFError)):
        for _ in range(3):
            c.run_command("echo still", timeout=10)
    c.close()
