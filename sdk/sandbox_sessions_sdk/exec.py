"""Commands, code and files of a session over HTTP (``/commands``, ``/code``, ``/files``):
no SSH client and no key needed, one shared connection to the sandbox on the server side.

:class:`ExecMixin` is part of :class:`~sandbox_sessions_sdk.SessionsClient`::

    with SessionsClient("http://127.0.0.1:8080", token) as client:
        session = client.create_session()
        result = client.run_code(session.session_id, "print(6 * 7)")
        print(result["stdout"], result["exitCode"])
        for event in client.stream_command(session.session_id, "make test"):
            print(event)
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Union

import requests

from .exceptions import SandboxConnectionError, error_from_response

if TYPE_CHECKING:  # pragma: no cover
    from .client import Session

LANGUAGES = ("python", "javascript", "bash")
MIN_TIMEOUT = 1
MAX_TIMEOUT = 300
#: Bytes read or written per chunk when moving files.
CHUNK = 1024 * 1024
#: Seconds the HTTP call may take beyond the command's own timeout.
SLACK = 30


class CommandResult(Dict[str, Any]):
    """What ``run_command`` and ``run_code`` return: the server's dict (``status``,
    ``exitCode``, ``stdout``, ``stderr``, ``durationMs``, and ``truncated`` when output was
    cut), with attribute access for convenience."""

    @property
    def status(self) -> str:
        return str(self["status"])

    @property
    def exit_code(self) -> Optional[int]:
        code = self.get("exitCode")
        return int(code) if code is not None else None

    @property
    def stdout(self) -> str:
        return str(self.get("stdout", ""))

    @property
    def stderr(self) -> str:
        return str(self.get("stderr", ""))

    @property
    def ok(self) -> bool:
        """The command exited 0."""
        return self.get("status") == "completed"


def _check_timeout(timeout: Any) -> int:
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise ValueError(f"timeout must be an integer number of seconds, got {timeout!r}")
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        raise ValueError(f"timeout must be between {MIN_TIMEOUT} and {MAX_TIMEOUT} seconds, got {timeout}")
    return timeout


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise ValueError("path must be a non-empty string")
    if "\0" in path:
        raise ValueError("path must not contain NUL bytes")
    return path


class ExecMixin:
    """Exec and file methods of :class:`SessionsClient` (see the module's docstring)."""

    # Provided by SessionsClient.
    base_url: str
    timeout: float
    verify_ssl: Union[bool, str]
    _session: requests.Session

    if TYPE_CHECKING:  # pragma: no cover

        @staticmethod
        def _id(session: Union[str, Session]) -> str: ...

    def _call(self, method: str, path: str, *, stream: bool = False, wait: float = 0,
              **kwargs: Any) -> requests.Response:
        """A raw call whose errors become SDK exceptions; the body is left to the caller."""
        url = self.base_url + path
        try:
            response = self._session.request(
                method, url, timeout=max(self.timeout, wait), verify=self.verify_ssl,
                stream=stream, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise SandboxConnectionError(f"failed to reach {url}: {exc}",
                                         error_code="CONNECTION_FAILED") from exc
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            response.close()
            raise error_from_response(response.status_code, body, response.headers)
        return response

    def run_command(
        self,
        session_id: Union[str, Session],
        command: str,
        timeout: int = 60,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[str] = None,
    ) -> CommandResult:
        """Run ``command`` under ``/bin/sh -c`` in the sandbox (as the sandbox user, in its
        home or ``cwd``) and return its :class:`CommandResult`.

        At ``timeout`` seconds (1..300) the command's whole process group is killed and the
        result's ``status`` is ``"timeout"``. A non-zero exit is ``"failed"``, not an error.

        Raises:
            ValueError: bad arguments (before any request).
            SessionNotFoundError, UnauthorizedError, SandboxAPIError: as the server answers.
        """
        body = self._command_body(command, timeout, env, cwd, stdin)
        path = f"/sessions/{self._id(session_id)}/commands"
        return CommandResult(self._call("POST", path, json=body, wait=timeout + SLACK).json())

    def stream_command(
        self,
        session_id: Union[str, Session],
        command: str,
        timeout: int = 60,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[str] = None,
    ) -> Iterator[Dict[str, Any]]:
        """Run ``command`` and yield its events as they happen: ``{"stdout": text}``,
        ``{"stderr": text}``, and last ``{"exit": {"status", "exitCode", "durationMs"}}``.

        Closing the iterator early (``break``, or garbage collection) hangs up, which kills
        the command in the sandbox.
        """
        body = self._command_body(command, timeout, env, cwd, stdin)
        path = f"/sessions/{self._id(session_id)}/commands"
        response = self._call("POST", path, json=body, stream=True, wait=timeout + SLACK,
                              headers={"Accept": "application/x-ndjson"})
        try:
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)
        finally:
            response.close()

    @staticmethod
    def _command_body(command: Any, timeout: Any, env: Optional[Mapping[str, str]],
                      cwd: Optional[str], stdin: Optional[str]) -> Dict[str, Any]:
        body: Dict[str, Any] = {"command": _check_text("command", command),
                                "timeout": _check_timeout(timeout)}
        if env:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
                raise ValueError("env must map strings to strings")
            body["env"] = dict(env)
        if cwd is not None:
            body["cwd"] = _check_path(cwd)
        if stdin is not None:
            if not isinstance(stdin, str):
                raise ValueError("stdin must be a string")
            body["stdin"] = stdin
        return body

    def run_code(
        self,
        session_id: Union[str, Session],
        code: str,
        language: str = "python",
        timeout: int = 60,
    ) -> CommandResult:
        """Run ``code`` with the sandbox's interpreter (``python`` → ``python3``,
        ``javascript`` → ``node``, ``bash``) and return its :class:`CommandResult`.

        A sandbox without the interpreter answers ``status="failed"``, ``exitCode=127``.

        Raises:
            ValueError: empty ``session_id`` or ``code``, unknown ``language``, ``timeout``
                outside 1..300 (before any request).
        """
        if not session_id:
            raise ValueError("session_id is required")
        _check_text("code", code)
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        body = {"language": language, "code": code, "timeout": _check_timeout(timeout)}
        path = f"/sessions/{self._id(session_id)}/code"
        return CommandResult(self._call("POST", path, json=body, wait=timeout + SLACK).json())

    def upload_file(
        self,
        session_id: Union[str, Session],
        local_path: Union[str, os.PathLike[str]],
        remote_path: str,
        overwrite: bool = True,
    ) -> Dict[str, Any]:
        """Copy a local file into the sandbox (streamed; parent directories are made) and
        return its FileInfo (``name``, ``path``, ``type``, ``size``, ``permissions``,
        ``modifiedAt``). With ``overwrite=False`` an existing file raises
        :class:`SandboxOperationError` with ``error_code == "FILE_EXISTS"``."""
        _check_path(remote_path)
        path = f"/sessions/{self._id(session_id)}/files"
        params = {"path": remote_path, "overwrite": "true" if overwrite else "false"}
        with open(local_path, "rb") as f:
            # A file object is streamed with its Content-Length (so the server can refuse an
            # oversized upload before any byte moves).
            response = self._call(
                "POST", path, params=params, data=f,
                headers={"Content-Type": "application/octet-stream"},
                wait=max(self.timeout, 3600))
        info: Dict[str, Any] = response.json()
        return info

    def download_file(
        self,
        session_id: Union[str, Session],
        remote_path: str,
        local_path: Union[str, os.PathLike[str]],
    ) -> int:
        """Copy a file out of the sandbox (streamed) and return the number of bytes written.
        The local file is written beside its final name and renamed when complete."""
        _check_path(remote_path)
        path = f"/sessions/{self._id(session_id)}/files"
        response = self._call("GET", path, params={"path": remote_path}, stream=True,
                              wait=max(self.timeout, 3600))
        target = os.fspath(local_path)
        partial = f"{target}.part"
        written = 0
        try:
            if response.headers.get("Content-Type", "").startswith("application/json"):
                raise IsADirectoryError(f"{remote_path} is a directory in the sandbox")
            with open(partial, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    written += len(chunk)
            os.replace(partial, target)
        finally:
            response.close()
            if os.path.exists(partial):
                os.unlink(partial)
        return written

    def list_files(self, session_id: Union[str, Session], path: str = ".") -> List[Dict[str, Any]]:
        """The entries (FileInfo dicts, sorted by name) of a directory in the sandbox."""
        _check_path(path)
        url = f"/sessions/{self._id(session_id)}/files"
        response = self._call("GET", url, params={"path": path})
        if not response.headers.get("Content-Type", "").startswith("application/json"):
            response.close()
            raise NotADirectoryError(f"{path} is not a directory in the sandbox")
        entries: List[Dict[str, Any]] = response.json()["entries"]
        return entries

    def delete_file(self, session_id: Union[str, Session], path: str, recursive: bool = False) -> None:
        """Delete a file, or a directory (with ``recursive=True`` when it is not empty)."""
        _check_path(path)
        url = f"/sessions/{self._id(session_id)}/files"
        self._call("DELETE", url, params={"path": path, "recursive": "true" if recursive else "false"})
