"""Background processes of a session (DESIGN.md §13): started over HTTP, kept running in the
sandbox whatever happens to this client or the server, found again by pid.

:class:`ProcessesMixin` is part of :class:`~sandbox_sessions_sdk.SessionsClient`::

    with SessionsClient("http://127.0.0.1:8080", token) as client:
        proc = client.start_process(session_id, "python3 -m http.server 8000")
        for event in client.process_output(session_id, proc["pid"], follow=True):
            print(event)        # {"stdout": "...", "offset": 0, "end": 42}, ..., {"exit": {...}}

A follow that breaks (network, restart) is resumed without losing or repeating a byte by
passing the last ``end`` seen as ``offset`` (and ``stderr_offset`` for stderr).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Union

import requests

if TYPE_CHECKING:  # pragma: no cover
    from .client import Session

#: Read timeout, in seconds, of a followed output stream (quiet processes print nothing).
FOLLOW_WAIT = 24 * 3600.0

def _check_pid(pid: Any) -> int:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"pid must be a positive integer, got {pid!r}")
    return pid


def _check_offset(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


class ProcessesMixin:
    """Background-process methods of :class:`SessionsClient` (see the module's docstring)."""

    if TYPE_CHECKING:  # pragma: no cover

        @staticmethod
        def _id(session: Union[str, Session]) -> str: ...

        def _call(self, method: str, path: str, *, stream: bool = False, wait: float = 0,
                  **kwargs: Any) -> requests.Response: ...

    def start_process(
        self,
        session_id: Union[str, Session],
        command: str,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Start ``command`` (``/bin/sh -c``) in the background and return ``{"processId",
        "pid"}`` at once. Its stdin stays open (``send_stdin``); ``stdin`` is written first.

        Raises:
            ValueError: empty command, bad env (before any request).
            RateLimitError: the session's cap of background processes is reached
                (``error_code == "TOO_MANY_PROCESSES"``).
        """
        if not isinstance(command, str) or not command.strip():
            raise ValueError("command must be a non-empty string")
        body: Dict[str, Any] = {"command": command, "background": True}
        if env:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
                raise ValueError("env must map strings to strings")
            body["env"] = dict(env)
        if cwd is not None:
            body["cwd"] = cwd
        if stdin is not None:
            body["stdin"] = stdin
        path = f"/sessions/{self._id(session_id)}/commands"
        result: Dict[str, Any] = self._call("POST", path, json=body).json()
        return result

    def list_processes(self, session_id: Union[str, Session]) -> List[Dict[str, Any]]:
        """The session's background processes, running and recently exited: dicts with
        ``processId``, ``pid``, ``command``, ``startedAt``, ``state`` (``running`` or
        ``exited``), ``exitCode``, ``stdoutBytes``, ``stderrBytes``."""
        path = f"/sessions/{self._id(session_id)}/processes"
        processes: List[Dict[str, Any]] = self._call("GET", path).json()["processes"]
        return processes

    def get_process(self, session_id: Union[str, Session], pid: int) -> Dict[str, Any]:
        """One background process (as in :meth:`list_processes`); an unknown pid raises
        with ``error_code == "PROCESS_NOT_FOUND"``."""
        path = f"/sessions/{self._id(session_id)}/processes/{_check_pid(pid)}"
        info: Dict[str, Any] = self._call("GET", path).json()
        return info

    def process_output(
        self,
        session_id: Union[str, Session],
        pid: int,
        offset: int = 0,
        stderr_offset: int = 0,
        follow: bool = False,
    ) -> Iterator[Dict[str, Any]]:
        """Yield the process's output events from byte ``offset`` of stdout (and
        ``stderr_offset`` of stderr): ``{"stdout"|"stderr": text, "offset", "end"}``,
        ``{"dropped": n, "stream", "offset"}`` for bytes the sandbox no longer keeps, and
        ``{"exit": {...}}`` last once the process is done. With ``follow`` it waits for new
        output until then; without, it stops at what there is now. Closing the iterator
        early only stops reading: the process runs on."""
        params = {
            "offset": str(_check_offset("offset", offset)),
            "stderrOffset": str(_check_offset("stderr_offset", stderr_offset)),
            "follow": "true" if follow else "false",
        }
        path = f"/sessions/{self._id(session_id)}/processes/{_check_pid(pid)}/output"
        # A follow lasts as long as the process: the read timeout is then a day, not seconds.
        response = self._call("GET", path, params=params, stream=True,
                              wait=FOLLOW_WAIT if follow else 0)
        try:
            for line in response.iter_lines():
                if line:
                    event: Dict[str, Any] = json.loads(line)
                    yield event
        finally:
            response.close()

    def send_stdin(
        self,
        session_id: Union[str, Session],
        pid: int,
        data: Union[str, bytes] = b"",
        close: bool = False,
    ) -> int:
        """Write ``data`` to the process's stdin (``close=True`` closes it afterwards) and
        return the bytes written. An exited process (or a closed stdin) raises with
        ``error_code == "PROCESS_EXITED"``."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        path = f"/sessions/{self._id(session_id)}/processes/{_check_pid(pid)}/stdin"
        response = self._call("POST", path, data=payload,
                              params={"close": "true" if close else "false"},
                              headers={"Content-Type": "application/octet-stream"})
        return int(response.json()["written"])

    def signal(self, session_id: Union[str, Session], pid: int, signal: str = "TERM") -> None:
        """Send ``signal`` (``TERM``, ``KILL``, ``INT``, ``HUP``, …) to the process's group.
        Unknown names raise with ``error_code == "INVALID_SIGNAL"``."""
        if not isinstance(signal, str) or not signal.strip():
            raise ValueError("signal must be a non-empty string such as 'TERM'")
        path = f"/sessions/{self._id(session_id)}/processes/{_check_pid(pid)}/signal"
        self._call("POST", path, json={"signal": signal})
