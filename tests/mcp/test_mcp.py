"""`pico mcp` driven by the official MCP Python SDK (`mcp` from PyPI) as an agent framework
would: `pico mcp` as a stdio subprocess, every tool against a real server."""
import asyncio
import json
import os

from conftest import BIN_DIR
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

TOOLS = {"create_session", "delete_session", "list_sessions", "run_command", "run_code",
         "read_file", "write_file", "list_files", "delete_file"}


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


def ok(result):
    assert not result.is_error, text(result)
    return text(result)


async def drive(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICO_")}
    env.update(PICO_URL=f"http://{server.addr}", HOME=str(tmp_path))
    params = StdioServerParameters(command=str(BIN_DIR / "pico"), args=["mcp"], env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as mcp:
        init = await mcp.initialize()
        assert init.server_info.name == "pico"
        listed = await mcp.list_tools()
        assert TOOLS <= {t.name for t in listed.tools}
        run_command = next(t for t in listed.tools if t.name == "run_command")
        assert {"session_id", "command"} <= set(run_command.input_schema["required"])

        session = json.loads(ok(await mcp.call_tool("create_session", {"ttl": 600})))
        sid = session["sessionId"]
        assert session["status"] == "running"
        assert "sshPrivateKey" not in session
        listed = json.loads(ok(await mcp.call_tool("list_sessions", {})))
        assert sid in [s["sessionId"] for s in listed["sessions"]]

        result = json.loads(ok(await mcp.call_tool("run_command", {
            "session_id": sid, "command": "echo out; echo err >&2; exit 3"})))
        assert (result["status"], result["exitCode"]) == ("failed", 3)
        assert (result["stdout"], result["stderr"]) == ("out\n", "err\n")
        result = json.loads(ok(await mcp.call_tool("run_command", {
            "session_id": sid, "command": "cat; echo $GREETING", "stdin": "in\n",
            "env": {"GREETING": "hi"}})))
        assert result["stdout"] == "in\nhi\n"

        result = json.loads(ok(await mcp.call_tool("run_code", {
            "session_id": sid, "code": "print(6 * 7)"})))
        assert (result["status"], result["stdout"]) == ("completed", "42\n")
        result = json.loads(ok(await mcp.call_tool("run_code", {
            "session_id": sid, "language": "bash", "code": "echo $((1 + 1))"})))
        assert result["stdout"] == "2\n"

        info = json.loads(ok(await mcp.call_tool("write_file", {
            "session_id": sid, "path": "work/notes.txt", "content": "héllo\n"})))
        assert (info["name"], info["size"]) == ("notes.txt", len("héllo\n".encode()))
        assert ok(await mcp.call_tool("read_file", {
            "session_id": sid, "path": "work/notes.txt"})) == "héllo\n"
        listing = json.loads(ok(await mcp.call_tool("list_files", {
            "session_id": sid, "path": "work"})))
        assert [e["name"] for e in listing["entries"]] == ["notes.txt"]
        # What the model did is visible to a command, and the other way round.
        result = json.loads(ok(await mcp.call_tool("run_command", {
            "session_id": sid, "command": "cat work/notes.txt"})))
        assert result["stdout"] == "héllo\n"

        # Errors come back as tool errors with the server's message, never a crash.
        refused = await mcp.call_tool("write_file", {
            "session_id": sid, "path": "work/notes.txt", "content": "x", "overwrite": False})
        assert refused.is_error and "FILE_EXISTS" in text(refused)
        missing = await mcp.call_tool("read_file", {"session_id": sid, "path": "nope.txt"})
        assert missing.is_error and "FILE_NOT_FOUND" in text(missing)
        folder = await mcp.call_tool("read_file", {"session_id": sid, "path": "work"})
        assert folder.is_error and "list_files" in text(folder)
        empty = await mcp.call_tool("run_command", {"session_id": sid, "command": ""})
        assert empty.is_error and "400" in text(empty)

        ok(await mcp.call_tool("delete_file", {"session_id": sid, "path": "work"}))
        gone = await mcp.call_tool("list_files", {"session_id": sid, "path": "work"})
        assert gone.is_error and "FILE_NOT_FOUND" in text(gone)

        assert sid in ok(await mcp.call_tool("delete_session", {"session_id": sid}))
        unknown = await mcp.call_tool("run_command", {"session_id": sid, "command": "true"})
        assert unknown.is_error and "SESSION_NOT_FOUND" in text(unknown)


def test_pico_mcp_serves_every_tool_to_a_real_mcp_client(server, tmp_path):
    asyncio.run(asyncio.wait_for(drive(server, tmp_path), timeout=120))
