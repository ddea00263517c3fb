"""Background processes from the SDK (``start_process``, ``list_processes``,
``process_output``, ``send_stdin``, ``signal``) and the CLI (``pico exec --detach``, ``ps``,
``logs -f``, ``kill``) against the real server."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from sdk.sandbox_sessions_sdk import SessionsClient
from sdk.sandbox_sessions_sdk.exceptions import SandboxAPIError
from sdk.tests.helpers import BIN_DIR, PicoServer


@pytest.fixture(scope="module")
def sid(shared_session) -> str:
    return shared_session.session_id


def _wait_exited(client: SessionsClient, sid: str, pid: int) -> dict:
    for _ in range(300):  # bounded: 30 s
        info = client.get_process(sid, pid)
        if info["state"] == "exited":
            return info
        time.sleep(0.1)
    raise AssertionError(f"process {pid} did not exit: {info}")


def test_start_follow_resume_stdin_and_signal(client, sid):
    started = client.start_process(sid, "for i in 1 2 3; do echo line$i; done; cat")
    pid = started["pid"]
    assert isinstance(started["processId"], str)
    assert any(p["pid"] == pid for p in client.list_processes(sid))

    # Resume from the `end` of the first event: the rest comes exactly once.
    events = []
    for _ in range(100):  # bounded: the three lines come at once
        events = list(client.process_output(sid, pid))
        if "".join(e.get("stdout", "") for e in events) == "line1\nline2\nline3\n":
            break
        time.sleep(0.1)
    first = events[0]
    assert first["offset"] == 0
    rest = list(client.process_output(sid, pid, offset=first["end"]))
    assert first["stdout"] + "".join(e.get("stdout", "") for e in rest) == "line1\nline2\nline3\n"

    assert client.send_stdin(sid, pid, "typed\n") == 6
    assert client.send_stdin(sid, pid, b"", close=True) == 0
    followed = list(client.process_output(sid, pid, offset=18, follow=True))
    assert "".join(e.get("stdout", "") for e in followed) == "typed\n"
    assert followed[-1]["exit"]["exitCode"] == 0
    with pytest.raises(SandboxAPIError) as exited:
        client.send_stdin(sid, pid, "late")
    assert exited.value.status_code == 409 and exited.value.error_code == "PROCESS_EXITED"

    sleeper = client.start_process(sid, "sleep 300")["pid"]
    with pytest.raises(SandboxAPIError) as bad:
        client.signal(sid, sleeper, "NOPE")
    assert bad.value.status_code == 400 and bad.value.error_code == "INVALID_SIGNAL"
    client.signal(sid, sleeper, "TERM")
    assert _wait_exited(client, sid, sleeper)["exitCode"] == 143
    with pytest.raises(SandboxAPIError) as missing:
        client.get_process(sid, 999999)
    assert missing.value.status_code == 404 and missing.value.error_code == "PROCESS_NOT_FOUND"


def test_bad_arguments_fail_before_any_request():
    client = SessionsClient(api_url="http://127.0.0.1:9", bearer_token=None)
    sid = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(ValueError):
        client.start_process(sid, " ")
    with pytest.raises(ValueError):
        client.get_process(sid, 0)
    with pytest.raises(ValueError):
        list(client.process_output(sid, 1, offset=-1))
    with pytest.raises(ValueError):
        client.signal(sid, 1, "")


def _pico(server: PicoServer, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PICO_URL=server.url)
    env.pop("PICO_TOKEN", None)
    return subprocess.run([str(BIN_DIR / "pico"), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_detach_ps_logs_and_kill(server, sid):
    started = _pico(server, "exec", "--detach", sid, "--", "sh", "-c", "echo hello; echo oops >&2; sleep 300")
    assert started.returncode == 0, started.stderr
    pid = started.stdout.strip()
    assert pid.isdigit()
    listed = _pico(server, "ps", sid)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:3] == ["PID", "STATE", "EXIT"]
    assert any(line.split()[:2] == [pid, "running"] for line in listed.stdout.splitlines())
    for _ in range(100):  # bounded: 10 s
        logs = _pico(server, "logs", sid, pid)
        if logs.stdout == "hello\n" and logs.stderr == "oops\n":
            break
        time.sleep(0.1)
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "hello\n", "oops\n")
    killed = _pico(server, "kill", sid, pid, "-s", "KILL")
    assert killed.returncode == 0, killed.stderr
    followed = _pico(server, "logs", "-f", sid, pid)
    assert (followed.returncode, followed.stdout) == (137, "hello\n"), followed.stderr
    unknown = _pico(server, "kill", sid, "999999")
    assert unknown.returncode != 0 and "999999" in unknown.stderr
