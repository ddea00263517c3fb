"""pico-agent driven by paramiko: exec, shell, env, sftp, forwarding and bad input."""
import socket
import stat
import time

import paramiko
import pytest


def run(client, command, timeout=20):
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read(), stderr.read()
    return stdout.channel.recv_exit_status(), out, err


def test_exec_exit_status_and_stderr(agent):
    with agent.connect() as c:
        assert run(c, "echo out; echo err >&2; exit 4") == (4, b"out\n", b"err\n")
        assert run(c, "echo $SESSION_NAME $USER")[1] == b"paramiko sandbox\n"


@pytest.mark.parametrize("key", ["client", "client_rsa", "client_ecdsa"])
def test_key_types(agent, key):
    with agent.connect(key=key) as c:
        assert run(c, "echo ok")[1] == b"ok\n"


def test_stdin_and_eof(agent):
    with agent.connect() as c:
        stdin, stdout, _ = c.exec_command("tr a-z A-Z")
        stdin.write(b"hello paramiko\n")
        stdin.channel.shutdown_write()
        assert stdout.read() == b"HELLO PARAMIKO\n"
        assert stdout.channel.recv_exit_status() == 0


def test_killed_command_has_no_exit_code(agent):
    with agent.connect() as c:
        chan = c.get_transport().open_session()
        chan.exec_command("kill -KILL $$")
        # paramiko reports -1 when the server sent exit-signal instead of exit-status.
        assert chan.recv_exit_status() == -1


def test_env_requests_allow_list(agent):
    with agent.connect() as c:
        chan = c.get_transport().open_session()
        chan.update_environment({"LANG": "C.UTF-8", "LC_ALL": "C"})
        chan.exec_command("echo $LANG $LC_ALL")
        assert chan.makefile().read() == b"C.UTF-8 C\n"
        chan = c.get_transport().open_session()
        chan.set_environment_variable("LD_PRELOAD", "/evil.so")  # refused (paramiko wants no reply)
        chan.exec_command("echo ${LD_PRELOAD-unset}")
        assert chan.makefile().read() == b"unset\n"


def test_invoke_shell_with_pty_resize_and_input(agent):
    with agent.connect() as c:
        chan = c.invoke_shell(term="xterm", width=100, height=30)
        chan.send(b"stty size; echo TERM=$TERM\n")
        buf = b""
        deadline = time.time() + 10
        while b"30 100" not in buf and time.time() < deadline:
            buf += chan.recv(4096)
        assert b"30 100" in buf
        chan.resize_pty(width=120, height=40)
        chan.send(b"stty size\nexit 3\n")
        while not chan.exit_status_ready() or chan.recv_ready():
            data = chan.recv(4096)
            if not data:
                break
            buf += data
        assert b"40 120" in buf
        assert b"TERM=xterm" in buf
        assert chan.recv_exit_status() == 3


def test_sftp_operations(agent):
    with agent.connect() as c:
        sftp = c.open_sftp()
        assert sftp.normalize(".") == str(agent.home.resolve())
        sftp.mkdir("d", mode=0o750)
        assert stat.S_IMODE(sftp.stat("d").st_mode) == 0o750
        with sftp.open("d/f.bin", "wb") as f:
            f.write(b"x" * 300_000)
        assert sftp.stat("d/f.bin").st_size == 300_000
        sftp.chmod("d/f.bin", 0o600)
        sftp.utime("d/f.bin", (1_000_000, 2_000_000))
        st = sftp.stat("d/f.bin")
        assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o600, 2_000_000)
        sftp.truncate("d/f.bin", 10)
        with sftp.open("d/f.bin", "a") as f:
            f.write(b"yz")
        with sftp.open("d/f.bin", "rb") as f:
            assert f.read() == b"x" * 10 + b"yz"
            assert f.stat().st_size == 12
        sftp.symlink("f.bin", "d/link")
        assert sftp.readlink("d/link") == "f.bin"
        assert stat.S_ISLNK(sftp.lstat("d/link").st_mode)
        assert sorted(sftp.listdir("d")) == ["f.bin", "link"]
        sftp.rename("d/f.bin", "d/g.bin")
        sftp.posix_rename("d/g.bin", "d/h.bin")
        sftp.remove("d/link")
        sftp.remove("d/h.bin")
        sftp.rmdir("d")
        assert sftp.listdir(".") == []


def test_sftp_large_file_streams(agent):
    payload = bytes(range(256)) * 4096 * 8  # 8 MiB
    (agent.dir / "src.bin").write_bytes(payload)
    with agent.connect() as c:
        sftp = c.open_sftp()
        sftp.put(str(agent.dir / "src.bin"), "big.bin")
        sftp.get("big.bin", str(agent.dir / "back.bin"))
    assert (agent.dir / "back.bin").read_bytes() == payload


def test_sftp_bad_paths_keep_serving(agent):
    with agent.connect() as c:
        sftp = c.open_sftp()
        with pytest.raises(FileNotFoundError):
            sftp.stat("../../../../no/such/path")
        with pytest.raises(IOError):
            sftp.open("nul\x00byte", "w")
        with pytest.raises(IOError):
            sftp.stat(b"\xff\xfe-not-utf8")
        with pytest.raises(IOError):
            sftp.rmdir("missing-dir")
        with pytest.raises(IOError):
            sftp.rename("missing", "other")
        sftp.mkdir("still-ok")
        assert "still-ok" in sftp.listdir(".")


def test_direct_tcpip_to_sandbox_loopback_only(agent):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    with agent.connect() as c:
        chan = c.get_transport().open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 1))
        conn, _ = server.accept()
        chan.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.sendall(b"pong")
        assert chan.recv(4) == b"pong"
        conn.close()
        chan.close()
        with pytest.raises(paramiko.ChannelException):
            c.get_transport().open_channel("direct-tcpip", ("192.0.2.1", 80), ("127.0.0.1", 1))
        assert run(c, "echo alive")[1] == b"alive\n"
    server.close()


def test_wrong_key_and_unknown_user(agent):
    with pytest.raises(paramiko.AuthenticationException):
        agent.connect(key="stranger")
    with pytest.raises(paramiko.AuthenticationException):
        agent.connect(user="root")
    with agent.connect() as c:
        assert run(c, "echo fine")[1] == b"fine\n"


def test_unsupported_requests_are_refused_not_hung(agent):
    with agent.connect() as c:
        chan = c.get_transport().open_session()
        with pytest.raises(paramiko.SSHException):
            chan.invoke_subsystem("no-such-subsystem")
        chan = c.get_transport().open_session()
        with pytest.raises(paramiko.SSHException):
            chan.request_x11()
        assert run(c, "echo ok")[1] == b"ok\n"


def test_signal_request_reaches_the_command(agent):
    with agent.connect() as c:
        chan = c.get_transport().open_session()
        chan.exec_command("echo started; sleep 30")
        assert chan.recv(8) == b"started\n"
        send_signal(chan, "TERM")
        # The command died from the signal: exit-signal, which paramiko reports as -1.
        assert chan.recv_exit_status() == -1


def send_signal(chan, name):
    """paramiko has no API for the "signal" channel request: send it by hand (RFC 4254 6.9)."""
    m = paramiko.Message()
    m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("signal")
    m.add_boolean(False)
    m.add_string(name)
    chan.transport._send_user_message(m)


def read_until(chan, needle, timeout=10):
    buf = b""
    deadline = time.time() + timeout
    while needle not in buf and time.time() < deadline:
        if chan.recv_ready():
            buf += chan.recv(4096)
        else:
            time.sleep(0.02)
    return buf


def test_signal_in_a_pty_goes_to_the_foreground_job(agent):
    with agent.connect() as c:
        chan = c.invoke_shell()
        chan.send(b"echo go; sleep 30\n")
        assert b"go\r\n" in read_until(chan, b"go\r\n")
        time.sleep(0.3)  # let the shell start sleep as its foreground job
        started = time.time()
        send_signal(chan, "INT")
        # The interactive shell ignores SIGINT; its foreground job (sleep) does not.
        chan.send(b"echo alive-$((40 + 2))\n")
        assert b"alive-42" in read_until(chan, b"alive-42", timeout=20)
        assert time.time() - started < 10, "sleep was interrupted, not waited for"
        chan.send(b"exit 0\n")
        assert chan.recv_exit_status() == 0
