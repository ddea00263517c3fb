"""HTTP CONNECT tunnel to a session's SSH server, through the pico API server."""

from __future__ import annotations

import select
import socket
import ssl
import threading
from typing import Dict, List, Optional, Union

from .client import split_api_url
from .exceptions import SandboxAPIError, SandboxConnectionError, error_from_response

_MAX_HEAD = 16 * 1024
_MAX_BODY = 64 * 1024


class HTTPConnectTunnel:
    """A raw byte stream to the sandbox's SSH server.

    Opens a TCP connection to the API server (TLS when ``api_url`` is ``https``), writes
    ``CONNECT <path> HTTP/1.1`` by hand, and reads the answer byte by byte up to the blank
    line, so that the SSH banner which follows is left in the socket for the SSH client.
    The returned socket can be passed as ``sock=`` to paramiko.

    Over TLS the returned socket is one end of a local socket pair, relayed to the TLS
    connection by one thread: paramiko reads and writes its socket from two threads at
    once, which an ``ssl.SSLSocket`` does not survive (corrupted records), while a plain
    socket does.

    Args:
        api_url: the pico server (``http[s]://host:port``, optionally ending in ``/v1``).
        bearer_token: the JWT (sent as ``Authorization: Bearer``); ``None`` for no auth.
        session_id: the session to reach.
        connect_path_template: the CONNECT target, with ``{sessionId}``; defaults to the
            server's ``/v1/sessions/{sessionId}/tunnel``. ``/sessions/{sessionId}`` (the
            original SDK's) is accepted by the server too.
        timeout: seconds for connecting and for the CONNECT answer.
        verify_ssl: verify the server certificate (``True``/``False`` or a CA bundle path).
        extra_headers: more request headers.
    """

    def __init__(
        self,
        api_url: str,
        bearer_token: Optional[str],
        session_id: str,
        connect_path_template: Optional[str] = None,
        timeout: float = 10,
        verify_ssl: Union[bool, str] = True,
        extra_headers: Optional[Dict[str, str]] = None,
    ) -> None:
        self.scheme, self.netloc, self.root = split_api_url(api_url)
        self.api_url = api_url
        self.token = bearer_token
        self.session_id = session_id
        self.connect_path_template = connect_path_template or (
            self.root + "/v1/sessions/{sessionId}/tunnel"
        )
        self.timeout = timeout
        self.verify_ssl = verify_ssl
        self.extra_headers = dict(extra_headers or {})
        self._socket: Optional[socket.socket] = None
        self._bridge: Optional[_TLSBridge] = None

    @property
    def path(self) -> str:
        """The CONNECT target of this tunnel."""
        return self.connect_path_template.format(sessionId=self.session_id)

    def _tls_context(self) -> ssl.SSLContext:
        if self.verify_ssl is False:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif isinstance(self.verify_ssl, str):
            ctx = ssl.create_default_context(cafile=self.verify_ssl)
        else:
            ctx = ssl.create_default_context()
        ctx.set_alpn_protocols(["http/1.1"])  # CONNECT tunnels are HTTP/1.1
        return ctx

    def open(self) -> socket.socket:
        """Open the tunnel and return its socket, positioned at the first SSH byte.

        Raises:
            UnauthorizedError: 401. SessionNotFoundError: 404. RateLimitError: 429.
            SandboxConnectionError: the server or the sandbox is unreachable (502/503,
                network and TLS errors, a malformed answer).
        """
        from urllib.parse import urlsplit

        parts = urlsplit(f"{self.scheme}://{self.netloc}")
        host = parts.hostname or ""
        port = parts.port or (443 if self.scheme == "https" else 80)
        try:
            sock: socket.socket = socket.create_connection((host, port), timeout=self.timeout)
        except OSError as exc:
            raise SandboxConnectionError(
                f"cannot connect to {host}:{port}: {exc}", error_code="CONNECTION_FAILED"
            ) from exc
        try:
            if self.scheme == "https":
                sock = self._tls_context().wrap_socket(sock, server_hostname=host)
            sock.settimeout(self.timeout)
            lines = [f"CONNECT {self.path} HTTP/1.1", f"Host: {self.netloc}"]
            if self.token:
                lines.append(f"Authorization: Bearer {self.token}")
            lines += [f"{k}: {v}" for k, v in self.extra_headers.items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            status, headers = self._read_head(sock)
            if status != 200:
                body = self._read_body(sock, headers)
                raise error_from_response(status, body, headers, default=SandboxConnectionError)
            sock.settimeout(None)
        except SandboxAPIError:
            sock.close()
            raise
        except (OSError, ssl.SSLError, ValueError) as exc:
            sock.close()
            raise SandboxConnectionError(
                f"HTTP CONNECT to {self.netloc}{self.path} failed: {exc}",
                error_code="TUNNEL_FAILED",
            ) from exc
        if isinstance(sock, ssl.SSLSocket):
            self._bridge = _TLSBridge(sock)
            sock = self._bridge.app
        self._socket = sock
        return sock

    @staticmethod
    def _read_head(sock: socket.socket) -> tuple[int, Dict[str, str]]:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = sock.recv(1)  # one byte at a time: never read into the SSH stream
            if not byte:
                raise ValueError(f"connection closed during the CONNECT answer ({head[:200]!r})")
            head += byte
            if len(head) > _MAX_HEAD:
                raise ValueError("CONNECT answer header too large")
        text = head.decode("latin-1")
        status_line, _, rest = text.partition("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:200]!r}")
        headers: Dict[str, str] = _Headers()
        for line in rest.split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip()] = v.strip()
        return int(parts[1]), headers

    @staticmethod
    def _read_body(sock: socket.socket, headers: Dict[str, str]) -> bytes:
        try:
            length = min(int(headers.get("Content-Length", "0")), _MAX_BODY)
        except ValueError:
            length = 0
        body = b""
        try:
            while len(body) < length:
                chunk = sock.recv(length - len(body))
                if not chunk:
                    break
                body += chunk
        except OSError:
            pass
        return body

    def close(self) -> None:
        """Close the tunnel's socket."""
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None

    def __enter__(self) -> socket.socket:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TLSBridge:
    """Relays bytes between a TLS socket and a local socket pair, in a single thread, so
    that the SSL object is never used by two threads at once."""

    _LIMIT = 1 << 20  # bytes buffered per direction before reading pauses

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.tls = tls
        self.app, self._inner = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="pico-tls-bridge", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tls, inner = self.tls, self._inner
        tls.setblocking(False)
        inner.setblocking(False)
        to_inner = bytearray()
        to_tls = bytearray()
        tls_eof = inner_eof = False
        tls_needs_write = tls_needs_read = False
        try:
            while True:
                if (tls_eof and not to_inner) or (inner_eof and not to_tls):
                    return
                rl: List[socket.socket] = []
                if (not tls_eof and len(to_inner) < self._LIMIT) or tls_needs_read:
                    rl.append(tls)
                if not inner_eof and len(to_tls) < self._LIMIT:
                    rl.append(inner)
                wl: List[socket.socket] = []
                if to_inner:
                    wl.append(inner)
                if to_tls or tls_needs_write:
                    wl.append(tls)
                can_read_tls = tls in rl and not tls_eof and tls.pending() > 0
                readable, writable, _ = select.select(rl, wl, [], 0 if can_read_tls else None)
                tls_ready = tls in readable or tls in writable or can_read_tls
                if tls_ready and not tls_eof and len(to_inner) < self._LIMIT:
                    tls_needs_write = False
                    try:
                        data = tls.recv(65536)
                        if data:
                            to_inner += data
                        else:
                            tls_eof = True
                    except ssl.SSLWantReadError:
                        pass
                    except ssl.SSLWantWriteError:
                        tls_needs_write = True
                    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                        tls_eof = True
                if inner in readable:
                    try:
                        data = inner.recv(65536)
                        if data:
                            to_tls += data
                        else:
                            inner_eof = True
                    except BlockingIOError:
                        pass
                if to_inner:
                    try:
                        del to_inner[: inner.send(to_inner)]
                    except BlockingIOError:
                        pass
                if to_tls and (tls_ready or tls in writable):
                    tls_needs_read = False
                    try:
                        del to_tls[: tls.send(to_tls)]
                    except ssl.SSLWantWriteError:
                        pass
                    except ssl.SSLWantReadError:
                        tls_needs_read = True
        except OSError:
            return
        finally:
            for s in (inner, tls):
                try:
                    s.close()
                except OSError:
                    pass


class _Headers(Dict[str, str]):
    """A case-insensitive header dict (enough for lookups by canonical name)."""

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


__all__ = ["HTTPConnectTunnel"]
