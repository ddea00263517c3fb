"""SSH and SFTP to a session's sandbox, through the API server's CONNECT tunnel."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Union

import paramiko

from .client import Session, SessionsClient, split_api_url
from .exceptions import (
    CommandTimeoutError,
    HostKeyVerificationError,
    SandboxAPIError,
    SandboxConnectionError,
    SandboxOperationError,
    SSHAuthenticationError,
)
from .keystore import KeyStoreArg, load_private_key, resolve_key_store
from .settings import resolve_api_url, resolve_token
from .tunnel import HTTPConnectTunnel


class _SessionHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Accepts exactly the host keys the session announces; anything else is refused (or,
    when the session announces none and the caller gave a policy, left to that policy).

    paramiko's own ``HostKeys`` keeps one key per type and host, which would lose a second
    announced key of the same type (key rotation), so the check is done here instead."""

    def __init__(self, host_keys: List[str], fallback: Optional[paramiko.MissingHostKeyPolicy]) -> None:
        self.allowed = set()
        for line in host_keys:
            parts = line.split()
            if len(parts) >= 2:
                self.allowed.add((parts[0], parts[1]))
        self.fallback = fallback

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        offered = (key.get_name(), key.get_base64())
        if offered in self.allowed:
            return
        if not self.allowed and self.fallback is not None:
            self.fallback.missing_host_key(client, hostname, key)
            return
        raise HostKeyVerificationError(
            f"the SSH host key of session {hostname} ({offered[0]} {offered[1]}) is not one of "
            "the session's hostKeys; refusing to connect",
            error_code="HOST_KEY_MISMATCH",
        )


class SessionSSHClient:
    """SSH/SFTP client of one session, over an HTTP CONNECT tunnel through the API server.

    Example (the session's key was stored by :meth:`SessionsClient.create_session`)::

        with SessionSSHClient(api_url, token, session_id) as ssh:
            print(ssh.run_command("ls -la")["stdout"])
            ssh.upload_file("local.txt", "remote.txt")

    The sandbox's host key is checked against the session's ``hostKeys`` (fetched from the
    API when not given); a key that is not listed is refused with
    :class:`HostKeyVerificationError`.

    Args:
        api_url, bearer_token: the pico server and JWT (as for :class:`SessionsClient`).
        session_id: the session.
        username: SSH user (``sandbox``).
        password: SSH password, when the sandbox accepts one (pico's agent does not).
        pkey: the private key: a ``paramiko.PKey``, a path to a key file, or the key's
            OpenSSH text. Default: the key store's key for this session, else the keys
            of ``~/.ssh`` and the SSH agent (``look_for_keys``/``allow_agent``).
        timeout: seconds for the tunnel, the SSH handshake and authentication.
        verify_ssl: verify the API server's TLS certificate.
        host_keys: the accepted host keys (``"ssh-ed25519 AAAA..."`` lines); default: the
            session's ``hostKeys`` from the API.
        host_key_policy: a paramiko policy for host keys when the session announces none
            (default: refuse). A mismatch with announced keys is always refused.
        key_store: a :class:`KeyStore`, a directory, ``None`` (default store) or ``False``.
        connect_path_template: CONNECT target with ``{sessionId}`` (default
            ``/v1/sessions/{sessionId}/tunnel``).
        get_pty: run commands with a pseudo-terminal (merges stderr into stdout).
        look_for_keys, allow_agent: fall back to ``~/.ssh`` keys / the SSH agent when no
            key was given or stored.
    """

    def __init__(
        self,
        api_url: Optional[str] = None,
        bearer_token: Optional[str] = None,
        session_id: Optional[str] = None,
        username: str = "sandbox",
        password: Optional[str] = None,
        pkey: Union[paramiko.PKey, str, os.PathLike[str], None] = None,
        timeout: float = 20,
        verify_ssl: Union[bool, str] = True,
        connect_path_template: Optional[str] = None,
        host_key_policy: Optional[paramiko.MissingHostKeyPolicy] = None,
        get_pty: bool = False,
        *,
        host_keys: Optional[List[str]] = None,
        key_store: KeyStoreArg = None,
        look_for_keys: bool = True,
        allow_agent: bool = True,
    ) -> None:
        if not session_id:
            raise ValueError("session_id is required")
        api_url = resolve_api_url(api_url)
        split_api_url(api_url)  # validate early
        self.api_url: str = api_url
        self.token = resolve_token(bearer_token)
        self.session_id = session_id
        self.username = username
        self.password = password
        self.pkey = pkey
        self.timeout = timeout
        self.verify_ssl = verify_ssl
        self.host_keys = list(host_keys) if host_keys is not None else None
        self.host_key_policy = host_key_policy
        self.key_store = resolve_key_store(key_store)
        self.connect_path_template = connect_path_template
        self.get_pty = get_pty
        self.look_for_keys = look_for_keys
        self.allow_agent = allow_agent

        self._tunnel: Optional[HTTPConnectTunnel] = None
        self._ssh: Optional[paramiko.SSHClient] = None
        self._sftp: Optional[paramiko.SFTPClient] = None

    @classmethod
    def from_session(
        cls,
        session: Session,
        api_url: Optional[str] = None,
        bearer_token: Optional[str] = None,
        **kwargs: Any,
    ) -> SessionSSHClient:
        """A client for ``session``, using its SSH user, host keys and (when the session
        came from ``create_session``) its private key."""
        kwargs.setdefault("username", session.ssh.username)
        if session.ssh.host_keys:
            kwargs.setdefault("host_keys", session.ssh.host_keys)
        if session.ssh_private_key and kwargs.get("pkey") is None:
            kwargs["pkey"] = session.ssh_private_key
        return cls(api_url, bearer_token, session.session_id, **kwargs)

    # -- connection -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the SSH connection is up."""
        t = self._ssh.get_transport() if self._ssh else None
        return bool(t and t.is_active())

    def _resolve_pkey(self) -> Optional[paramiko.PKey]:
        if isinstance(self.pkey, paramiko.PKey):
            return self.pkey
        if self.pkey is not None:
            return load_private_key(self.pkey)
        if self.key_store is not None:
            return self.key_store.load_pkey(self.session_id)
        return None

    def connect(self) -> SessionSSHClient:
        """Open the tunnel, verify the host key and authenticate. Idempotent.

        Raises:
            SessionNotFoundError, UnauthorizedError: from the API or the tunnel.
            HostKeyVerificationError: the sandbox's host key is not an announced one.
            SSHAuthenticationError: the key (or password) was refused.
            SandboxConnectionError: any other failure to reach the sandbox.
        """
        if self.connected:
            return self
        self.close()
        host_keys = self.host_keys
        if host_keys is None:
            with SessionsClient(
                self.api_url, self.token, timeout=self.timeout, verify_ssl=self.verify_ssl, key_store=False
            ) as api:
                session = api.get_session(self.session_id)
            host_keys = self.host_keys = session.ssh.host_keys
        pkey = self._resolve_pkey()

        ssh = paramiko.SSHClient()  # no known_hosts: every key goes through the policy
        hostname = self.session_id
        ssh.set_missing_host_key_policy(_SessionHostKeyPolicy(host_keys, self.host_key_policy))

        tunnel = HTTPConnectTunnel(
            self.api_url,
            self.token,
            self.session_id,
            connect_path_template=self.connect_path_template,
            timeout=self.timeout,
            verify_ssl=self.verify_ssl,
        )
        sock = tunnel.open()
        no_key = pkey is None and self.password is None
        try:
            ssh.connect(
                hostname=hostname,
                port=22,
                username=self.username,
                password=self.password,
                pkey=pkey,
                sock=sock,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                look_for_keys=self.look_for_keys and no_key,
                allow_agent=self.allow_agent and no_key,
            )
        except BaseException as exc:
            ssh.close()
            tunnel.close()
            error = self._connect_error(exc, no_key)
            if error is exc:
                raise
            raise error from exc
        self._tunnel = tunnel
        self._ssh = ssh
        return self

    def _connect_error(self, exc: BaseException, no_key: bool) -> BaseException:
        """The SDK exception for a failure of ``paramiko.SSHClient.connect``."""
        if isinstance(exc, SandboxAPIError) or not isinstance(exc, (paramiko.SSHException, OSError, EOFError)):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyVerificationError(
                f"the SSH host key of session {self.session_id} "
                f"({exc.key.get_name()} {exc.key.get_base64()}) does not match its hostKeys; "
                "refusing to connect",
                error_code="HOST_KEY_MISMATCH",
            )
        if isinstance(exc, paramiko.AuthenticationException) or "authentication methods" in str(exc):
            hint = " (no key given and none stored for this session)" if no_key else ""
            return SSHAuthenticationError(
                f"SSH authentication as {self.username!r} failed{hint}: {exc}",
                error_code="SSH_AUTH_FAILED",
            )
        return SandboxConnectionError(
            f"SSH connection to session {self.session_id} failed: {exc}", error_code="SSH_FAILED"
        )

    def _transport(self) -> paramiko.Transport:
        if not self._ssh:
            self.connect()
        assert self._ssh is not None
        transport = self._ssh.get_transport()
        if transport is None or not transport.is_active():
            raise SandboxConnectionError("the SSH connection is closed", error_code="SSH_CLOSED")
        return transport

    # -- commands ---------------------------------------------------------------------

    def run_command(
        self,
        command: str,
        timeout: Optional[float] = 60,
        *,
        input: Union[str, bytes, None] = None,
        environment: Optional[Dict[str, str]] = None,
        encoding: str = "utf-8",
    ) -> Dict[str, Any]:
        """Run ``command`` in the sandbox (connecting first when needed).

        Args:
            command: a shell command line.
            timeout: seconds before the command is abandoned (its channel closed);
                ``None`` waits forever.
            input: bytes or text written to the command's stdin (then closed).
            environment: environment variables to request; the server may ignore some
                (pico's agent accepts ``LANG``, ``TERM`` and ``LC_*`` by default).
            encoding: how stdout/stderr are decoded (undecodable bytes are replaced).

        Returns:
            ``{"stdout": str, "stderr": str, "exit_code": int}`` (``exit_code`` is -1 when
            the command ended without an exit status, e.g. by a signal).

        Raises:
            CommandTimeoutError: the command ran longer than ``timeout`` (holds the output
                so far in ``stdout``/``stderr``).
            SandboxConnectionError: the connection failed.
        """
        transport = self._transport()
        try:
            chan = transport.open_session(timeout=self.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SandboxConnectionError(f"cannot open an SSH channel: {exc}", error_code="SSH_FAILED") from exc
        out: List[bytes] = []
        err: List[bytes] = []
        try:
            if self.get_pty:
                chan.get_pty()
            if environment:
                chan.update_environment(environment)
            chan.exec_command(command)

            def pump(read: Callable[[int], bytes], sink: List[bytes]) -> None:
                try:
                    while True:
                        data = read(65536)
                        if not data:
                            return
                        sink.append(data)
                except (OSError, EOFError, paramiko.SSHException):
                    return

            readers = [
                threading.Thread(target=pump, args=(chan.recv, out), daemon=True),
                threading.Thread(target=pump, args=(chan.recv_stderr, err), daemon=True),
            ]
            for t in readers:
                t.start()
            if input is not None:
                chan.sendall(input.encode(encoding) if isinstance(input, str) else input)
            chan.shutdown_write()

            deadline = None if timeout is None else time.monotonic() + timeout
            finished = True
            for t in readers:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                t.join(remaining)
                if t.is_alive():
                    finished = False
                    break
            if finished:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                finished = chan.status_event.wait(remaining)
            if not finished:
                chan.close()
                for t in readers:
                    t.join(1)
                raise CommandTimeoutError(
                    f"command timed out after {timeout}s: {command!r}",
                    stdout=b"".join(out).decode(encoding, errors="replace"),
                    stderr=b"".join(err).decode(encoding, errors="replace"),
                )
            exit_code = chan.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SandboxConnectionError(f"command failed: {exc}", error_code="SSH_FAILED") from exc
        finally:
            chan.close()
        return {
            "stdout": b"".join(out).decode(encoding, errors="replace"),
            "stderr": b"".join(err).decode(encoding, errors="replace"),
            "exit_code": exit_code,
        }

    # -- files ------------------------------------------------------------------------

    def open_sftp(self) -> paramiko.SFTPClient:
        """The SFTP client of this connection (opened once, closed by :meth:`close`)."""
        if self._sftp is None:
            transport = self._transport()
            try:
                self._sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise SandboxConnectionError(f"cannot open SFTP: {exc}", error_code="SFTP_FAILED") from exc
            if self._sftp is None:
                raise SandboxConnectionError("the server refused the sftp subsystem", error_code="SFTP_FAILED")
        return self._sftp

    def upload_file(
        self,
        local_path: Union[str, os.PathLike[str]],
        remote_path: str,
        callback: Optional[Callable[[int, int], object]] = None,
    ) -> paramiko.SFTPAttributes:
        """Copy a local file to ``remote_path`` (relative paths are in the sandbox home).

        Returns the remote file's attributes. Raises :class:`SandboxOperationError` on
        SFTP errors (e.g. a missing remote directory).
        """
        sftp = self.open_sftp()
        try:
            return sftp.put(os.fspath(local_path), remote_path, callback=callback)
        except OSError as exc:
            raise SandboxOperationError(f"upload to {remote_path!r} failed: {exc}", error_code="SFTP_FAILED") from exc

    def download_file(
        self,
        remote_path: str,
        local_path: Union[str, os.PathLike[str]],
        callback: Optional[Callable[[int, int], object]] = None,
    ) -> None:
        """Copy ``remote_path`` from the sandbox to a local file.

        Raises :class:`SandboxOperationError` on SFTP errors (e.g. no such remote file).
        """
        sftp = self.open_sftp()
        try:
            sftp.get(remote_path, os.fspath(local_path), callback=callback)
        except OSError as exc:
            raise SandboxOperationError(f"download of {remote_path!r} failed: {exc}", error_code="SFTP_FAILED") from exc

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        """Close SFTP, SSH and the tunnel (safe to call more than once)."""
        for closer in (self._sftp, self._ssh, self._tunnel):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 - closing must not raise
                    pass
        self._sftp = None
        self._ssh = None
        self._tunnel = None

    def __enter__(self) -> SessionSSHClient:
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"SessionSSHClient(session_id={self.session_id!r}, {state})"


__all__ = ["SessionSSHClient"]
