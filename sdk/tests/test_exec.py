"""The SDK's exec and file methods (``run_code``, ``run_command``, ``stream_command``,
``upload_file``, ``download_file``, ``list_files``, ``delete_file``) against the real
server: no SSH client, no key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from sdk.sandbox_sessions_sdk import SessionNotFoundError, SessionsClient
from sdk.sandbox_sessions_sdk.exceptions import SandboxAPIError
from sdk.sandbox_sessions_sdk.exec import CommandResult


@pytest.fixture(scope="module")
def sid(shared_session) -> str:
    return shared_session.session_id


def test_the_original_sdks_run_code_example(server, sid):
    # As the original SDK's README shows it, with api_url ending in /v1.
    client = SessionsClient(api_url=server.url + "/v1", bearer_token=None)
    result = client.run_code(sid, language="python", code="print('Hello from Python')")
    assert isinstance(result, dict) and isinstance(result, CommandResult)
    assert result["stdout"] == "Hello from Python\n"
    assert result["status"] == "completed" and result["exitCode"] == 0
    bash = client.run_code(sid, language="bash", code="echo \"Hello from $0\" | tr a-z A-Z")
    assert bash["stdout"].startswith("HELLO FROM")
    js = client.run_code(sid, "console.log(6 * 7)", language="javascript")
    assert js.stdout == "42\n" and js.ok


@pytest.mark.parametrize("kwargs", [
    {"session_id": "", "code": "print(1)"},
    {"code": ""},
    {"code": "   "},
    {"code": "x", "language": "cobol"},
    {"code": "x", "timeout": 0},
    {"code": "x", "timeout": 301},
    {"code": "x", "timeout": "10"},
])
def test_run_code_refuses_bad_arguments_before_any_request(kwargs):
    # Nothing listens on port 9: a request would be a connection error, not a ValueError.
    client = SessionsClient(api_url="http://127.0.0.1:9", bearer_token=None)
    args = {"session_id": "00000000-0000-4000-8000-000000000000", **kwargs}
    with pytest.raises(ValueError):
        client.run_code(**args)


def test_run_command_with_env_cwd_stdin_and_exit_codes(client, sid):
    client.run_command(sid, "mkdir -p sdkwork")
    result = client.run_command(sid, 'echo "$NAME"; pwd; cat; exit 5', env={"NAME": "pico"},
                                cwd="sdkwork", stdin="input")
    assert result.status == "failed" and result.exit_code == 5
    assert result.stdout.splitlines()[0] == "pico"
    assert result.stdout.splitlines()[1].endswith("/sdkwork")
    assert result.stdout.endswith("input")


def test_timeout_kills_the_process_group(client, sid):
    result = client.run_command(sid, "sleep 200 & sleep 201; echo never", timeout=1)
    assert result.status == "timeout" and result.exit_code is None
    procs = client.run_command(sid, "ps -eo args").stdout
    assert "sleep 20" not in procs


def test_stream_command_yields_events_in_order(client, sid):
    events = list(client.stream_command(
        sid, "for i in 1 2; do echo out$i; sleep 0.1; echo err$i >&2; sleep 0.1; done"))
    text = "".join(e.get("stdout", "") + e.get("stderr", "") for e in events)
    assert text == "out1\nerr1\nout2\nerr2\n"
    assert events[-1]["exit"]["status"] == "completed"


def test_closing_a_stream_kills_its_command(client, sid):
    stream = client.stream_command(sid, "echo ready; exec sleep 222", timeout=120)
    assert next(stream) == {"stdout": "ready\n"}
    stream.close()
    # The server notices the hang-up and kills the command; checked from a second call.
    for _ in range(50):
        if "sleep 222" not in client.run_command(sid, "ps -eo args").stdout:
            break
    else:
        pytest.fail("the command outlived its client")


def test_files_round_trip_list_and_delete(client, sid, tmp_path: Path):
    local = tmp_path / "data.bin"
    local.write_bytes(os.urandom(200_000))
    info = client.upload_file(sid, local, "sdkfiles/in/data.bin")
    assert info["size"] == 200_000 and info["type"] == "file"
    with pytest.raises(SandboxAPIError) as exists:
        client.upload_file(sid, local, "sdkfiles/in/data.bin", overwrite=False)
    assert exists.value.error_code == "FILE_EXISTS"
    back = tmp_path / "back.bin"
    assert client.download_file(sid, "sdkfiles/in/data.bin", back) == 200_000
    assert back.read_bytes() == local.read_bytes()
    names = [e["name"] for e in client.list_files(sid, "sdkfiles/in")]
    assert names == ["data.bin"]
    client.delete_file(sid, "sdkfiles", recursive=True)
    with pytest.raises(SandboxAPIError) as gone:
        client.list_files(sid, "sdkfiles")
    assert gone.value.error_code == "FILE_NOT_FOUND"


def test_unknown_session_is_not_found(client):
    with pytest.raises(SessionNotFoundError):
        client.run_command("00000000-0000-4000-8000-000000000000", "true")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# 1 GiB takes too long for CI on a shared 2-core machine; the benchmark moves 1 GiB
# (docs/PERFORMANCE.md). The memory bound below is far below this size either way.
BIG = int(os.environ.get("PICO_TEST_BIG_FILE_MIB", "256")) * 1024 * 1024


def test_big_upload_and_download_keep_server_memory_flat(server, client, sid, tmp_path: Path):
    local = tmp_path / "big.bin"
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with open(local, "wb") as f:
        for i in range(BIG // len(block)):
            chunk = block[:-1] + bytes([i % 256])
            f.write(chunk)
            digest.update(chunk)
    before = _rss_kib(server.proc.pid)
    client.upload_file(sid, local, "big.bin")
    sandbox_sum = client.run_command(sid, "sha256sum big.bin", timeout=300).stdout.split()[0]
    assert sandbox_sum == digest.hexdigest()
    back = tmp_path / "back.bin"
    assert client.download_file(sid, "big.bin", back) == BIG
    check = hashlib.sha256()
    with open(back, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()
    grown_mib = (_rss_kib(server.proc.pid) - before) / 1024
    assert grown_mib < 64, f"server RSS grew by {grown_mib:.0f} MiB moving {BIG >> 20} MiB"
    client.delete_file(sid, "big.bin")
