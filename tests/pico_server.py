"""Starts the real pico-apiserver for Python tests (binaries from PICO_BIN_DIR)."""
import os
import pathlib
import signal
import subprocess
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN_DIR = pathlib.Path(os.environ.get("PICO_BIN_DIR", REPO / "target" / "debug"))


class Server:
    def __init__(self, *args):
        self.tmp = tempfile.TemporaryDirectory(prefix="pico-auth")
        self.state = pathlib.Path(self.tmp.name) / "state"
        self.log = open(pathlib.Path(self.tmp.name) / "server.log", "wb")
        self.proc = subprocess.Popen(
            [str(BIN_DIR / "pico-apiserver"), "--port", "0", "--state-dir", str(self.state),
             "--agent-binary", str(BIN_DIR / "pico-agent"), *map(str, args)],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("PICO_")})
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}\n{self.logs()}")
        self.addr = line.split()[-1]
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)

    def logs(self):
        return (pathlib.Path(self.tmp.name) / "server.log").read_text(errors="replace")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        sessions = self.state / "sessions"
        if sessions.is_dir():
            for entry in sessions.iterdir():
                try:
                    os.killpg(int((entry / "agent.pid").read_text()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        self.log.close()
        self.tmp.cleanup()
