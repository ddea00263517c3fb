"""Pause and resume through the SDK and the `pico` CLI against a real server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sdk.sandbox_sessions_sdk import SandboxOperationError, SessionStatus


def test_pause_resume_and_status(client, new_session):
    s = new_session(ttl=300, idle_timeout=0, idle_action="pause")
    assert s.idle_action == "pause" and s.paused_at is None
    paused = client.pause_session(s.session_id)
    assert paused.status is SessionStatus.PAUSED and paused.status == "paused"
    assert paused.paused_at is not None
    assert client.get_session(s).status is SessionStatus.PAUSED
    assert client.pause_session(s).status is SessionStatus.PAUSED  # idempotent
    resumed = client.resume_session(s.session_id)
    assert resumed.status is SessionStatus.RUNNING and resumed.paused_at is None
    assert client.resume_session(s).status is SessionStatus.RUNNING


def test_ssh_to_a_paused_session_resumes_it(client, new_session):
    s = new_session(ttl=300)
    client.pause_session(s)
    with client.ssh_client(s) as ssh:
        assert ssh.run_command("echo awake")["stdout"] == "awake\n"
    assert client.get_session(s).status is SessionStatus.RUNNING


def test_bad_idle_action_is_refused_before_any_request(client):
    with pytest.raises(SandboxOperationError) as err:
        client.create_session(ttl=300, idle_action="sleep")
    assert isinstance(err.value, ValueError) and err.value.error_code == "INVALID_REQUEST"


def test_cli_pause_resume_and_status_column(server, new_session, tmp_path):
    s = new_session(ttl=300)
    pico = Path(os.environ.get("PICO_BIN_DIR", "target/debug")) / "pico"
    env = {**os.environ, "PICO_URL": server.url, "XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run([str(pico), *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert '"status": "paused"' in run("pause", s.session_id, "-o", "json")
    row = [line for line in run("list").splitlines() if s.session_id[:8] in line]
    assert row and "paused" in row[0], run("list")
    assert '"status": "running"' in run("resume", s.session_id, "-o", "json")
