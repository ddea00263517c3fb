"""Shared constants and helpers of the SDK tests."""

from __future__ import annotations

import glob
import os
import select
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("PICO_BIN_DIR") or REPO / "target" / "debug")
JWT_SECRET = "sdk-test-secret-" + uuid.uuid4().hex


def make_token(sub: str = "alice", secret: str = JWT_SECRET, exp_in: int = 3600, **claims) -> str:
    """An HS256 JWT for `sub`, minted with pyjwt."""
    import jwt

    now = int(time.time())
    payload = {"sub": sub, "iat": now, "exp": now + exp_in}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


class PicoServer:
    """One running `pico-apiserver`; `url` is its base URL."""

    def __init__(self, state_dir: Path, extra_args: List[str]) -> None:
        binary = BIN_DIR / "pico-apiserver"
        if not binary.exists():
            raise RuntimeError(f"{binary} not found: build it (`cargo build --bins`) or set PICO_BIN_DIR")
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        args = [str(binary), "--port", "0", "--state-dir", str(state_dir), "--shutdown-grace", "1"]
        if os.environ.get("PICO_AGENT_BINARY"):
            args += ["--agent-binary", os.environ["PICO_AGENT_BINARY"]]
        args += extra_args
        # The server reads PICO_* variables as flag defaults: start it from a clean slate.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PICO_")}
        self.log_path = state_dir.parent / (state_dir.name + ".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, env=env, start_new_session=True
        )
        assert self.proc.stdout is not None
        line = self._first_line(self.proc.stdout, 60)
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"pico-apiserver did not start: {line!r}\n{self.log_path.read_text()[-3000:]}")
        self.addr = line.split()[-1]
        self.url = f"http://{self.addr}"
        # drain anything else it prints so it can never block on a full pipe
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def _first_line(self, pipe, timeout: float) -> str:
        fd = pipe.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return buf.decode(errors="replace") + " (timed out)"
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
        return buf.decode(errors="replace").strip()

    def agent_pids(self) -> List[int]:
        pids = []
        for path in glob.glob(str(self.state_dir / "sessions" / "*" / "agent.pid")):
            try:
                pids.append(int(Path(path).read_text().strip()))
            except (OSError, ValueError):
                pass
        return pids

    def stop(self) -> None:
        agents = set(self.agent_pids())
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        agents |= set(self.agent_pids())
        for pid in agents:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._log.close()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""
