"""Issue 17, the `pico` CLI as a newcomer meets it (points 4, 7, 9, 10, 11): each test drives
the real binary against a real server."""
import os
import stat
import subprocess

from pico_server import BIN_DIR, Server


def pico(env, *args, stdin=None, timeout=120):
    return subprocess.run([str(BIN_DIR / "pico"), *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def create(env):
    made = pico(env, "create", "--ttl", "600")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_empty_list_says_no_sessions(cli_env):
    # a server of its own: the module's server may hold other tests' sessions
    server = Server()
    try:
        env = dict(cli_env, PICO_URL=f"http://{server.addr}")
        listed = pico(env, "list")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == "no sessions\n"
    finally:
        server.stop()


def test_ssh_takes_a_command_after_the_id_as_openssh_does(cli_env):
    sid = create(cli_env)
    try:
        ran = pico(cli_env, "ssh", sid, "echo hi; exit 4")
        assert (ran.returncode, ran.stdout) == (4, "hi\n"), ran.stderr
        words = pico(cli_env, "ssh", sid, "echo", "a b")  # several words: quoted one by one
        assert words.stdout == "a b\n", words.stderr
        dashed = pico(cli_env, "ssh", sid, "--", "ls", "-d", "/")
        assert dashed.stdout == "/\n", dashed.stderr
    finally:
        pico(cli_env, "delete", sid)


def test_interactive_shell_is_bash_where_bash_exists(cli_env):
    assert os.path.exists("/bin/bash"), "this test needs /bin/bash on the host"
    sid = create(cli_env)
    try:
        # no command and stdin not a terminal: the login shell reads its commands from stdin
        shell = pico(cli_env, "ssh", sid, stdin='echo "bash=${BASH_VERSION:-none} shell=$SHELL"; exit 3\n')
        assert shell.returncode == 3, shell.stderr
        assert "bash=5" in shell.stdout or "bash=4" in shell.stdout, shell.stdout
        assert "shell=/bin/bash" in shell.stdout
    finally:
        pico(cli_env, "delete", sid)


def test_ssh_config_install_makes_dot_ssh_and_includes_once(cli_env):
    home = cli_env["HOME"]
    assert not os.path.exists(f"{home}/.ssh")
    for _ in range(2):
        done = pico(cli_env, "ssh-config", "--install")
        assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(f"{home}/.ssh").st_mode) == 0o700
    config = open(f"{home}/.ssh/config").read()
    includes = [line for line in config.splitlines() if line.startswith("Include ")]
    assert len(includes) == 1, config
    # and stock OpenSSH now reaches a session by its id (-F: ssh reads the passwd home's
    # config, not $HOME's)
    sid = create(cli_env)
    try:
        ssh = subprocess.run(["ssh", "-F", f"{home}/.ssh/config", "-o", "BatchMode=yes", f"sandbox@{sid}",
                              "echo via-openssh"], env=cli_env, capture_output=True, text=True, timeout=120)
        assert ssh.stdout == "via-openssh\n", ssh.stderr
    finally:
        pico(cli_env, "delete", sid)


def test_unreachable_server_says_what_to_do(cli_env):
    env = dict(cli_env, PICO_URL="http://127.0.0.1:1")
    failed = pico(env, "list")
    assert failed.returncode == 1
    assert "cannot reach the pico server at 127.0.0.1:1" in failed.stderr
    assert "pico-apiserver" in failed.stderr and "PICO_URL" in failed.stderr


def test_401_names_pico_token(cli_env):
    server = Server("--jwt-secret", "first-hour-secret-0123456789", "--bind", "127.0.0.1")
    try:
        env = dict(cli_env, PICO_URL=f"http://{server.addr}")
        for extra in ({}, {"PICO_TOKEN": "not-a-token"}):
            failed = pico(dict(env, **extra), "list")
            assert failed.returncode == 1
            assert "HTTP 401" in failed.stderr and "PICO_TOKEN" in failed.stderr, failed.stderr
    finally:
        server.stop()


def test_cp_into_a_missing_directory_and_of_a_missing_file(cli_env, tmp_path):
    sid = create(cli_env)
    try:
        assert pico(cli_env, "exec", sid, "--", "sh", "-c", "mkdir src && echo x > src/main.rs").returncode == 0
        missing_dir = tmp_path / "out"
        copied = pico(cli_env, "cp", f"{sid}:src/main.rs", f"{missing_dir}/")
        assert copied.returncode == 1
        assert "Is a directory" not in copied.stderr
        assert f"local directory {missing_dir}/ does not exist" in copied.stderr, copied.stderr
        nested = pico(cli_env, "cp", f"{sid}:src/main.rs", f"{missing_dir}/main.rs")
        assert f"local directory {missing_dir} does not exist" in nested.stderr, nested.stderr
        gone = pico(cli_env, "cp", f"{sid}:src/nope.rs", str(tmp_path))
        assert gone.returncode == 1
        assert gone.stderr.strip() == "pico: src/nope.rs: no such file or directory in the session", gone.stderr
        assert gone.stderr.lower().count("no such file") == 1
        ok = pico(cli_env, "cp", f"{sid}:src/main.rs", f"{tmp_path}/")
        assert ok.returncode == 0 and (tmp_path / "main.rs").read_text() == "x\n", ok.stderr
    finally:
        pico(cli_env, "delete", sid)
