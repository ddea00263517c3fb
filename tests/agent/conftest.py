"""Starts the real pico-agent binary for paramiko tests (path from PICO_AGENT_BIN)."""
import os
import pathlib
import socket
import subprocess

import paramiko
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
AGENT_BIN = os.environ.get("PICO_AGENT_BIN", str(REPO / "target" / "debug" / "pico-agent"))


def keygen(path, kind="ed25519"):
    args = ["ssh-keygen", "-q", "-N", "", "-C", "test", "-t", kind, "-f", str(path)]
    if kind == "rsa":
        args += ["-b", "2048"]
    subprocess.run(args, check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        for name, kind in [("host", "ed25519"), ("client", "ed25519"), ("client_rsa", "rsa"),
                           ("client_ecdsa", "ecdsa"), ("stranger", "ed25519")]:
            keygen(tmp_path / name, kind)
        authorized = "".join((tmp_path / f"{n}.pub").read_text() for n in ("client", "client_rsa", "client_ecdsa"))
        (tmp_path / "authorized_keys").write_text(authorized)
        (tmp_path / "env").write_text("SESSION_NAME=paramiko\n")
        self.socket_path = tmp_path / "agent.sock"
        self.log = open(tmp_path / "agent.log", "wb")
        self.proc = subprocess.Popen(
            [AGENT_BIN, "serve", "--listen", f"unix:{self.socket_path}",
             "--host-key", str(tmp_path / "host"), "--authorized-keys", str(tmp_path / "authorized_keys"),
             "--home", str(self.home), "--env-file", str(tmp_path / "env")],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline()
        assert line == b"ready\n", f"agent did not start: {(tmp_path / 'agent.log').read_text()}"
        host_pub = (tmp_path / "host.pub").read_text().split()
        self.host_key = paramiko.PKey.from_type_string(host_pub[0], __import__("base64").b64decode(host_pub[1]))

    def connect(self, user="sandbox", key="client"):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(self.socket_path))
        client = paramiko.SSHClient()
        client.get_host_keys().add("sandbox", self.host_key.get_name(), self.host_key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("sandbox", username=user, key_filename=str(self.dir / key), sock=sock,
                       look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
        return client

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path)
    yield a
    a.stop()
