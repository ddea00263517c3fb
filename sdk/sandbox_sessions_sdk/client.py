"""REST client of pico: create, list, get, extend and delete sessions."""

from __future__ import annotations

import re
import warnings
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple, Union
from urllib.parse import quote, urlsplit

import requests

from ._version import __version__
from .exceptions import (
    InvalidArgumentError,
    SandboxAPIError,
    SandboxConnectionError,
    SandboxOperationError,
    error_from_response,
)
from .exec import ExecMixin
from .keystore import KeyStoreArg, generate_ed25519_keypair, resolve_key_store
from .processes import ProcessesMixin
from .settings import resolve_api_url, resolve_token

if TYPE_CHECKING:  # pragma: no cover
    from .ssh import SessionSSHClient

# The server's bounds (pico-wire); checked here so a bad argument raises before any request.
MIN_TTL = 60
MAX_TTL = 28800
MAX_LIMIT = 100


def _check_int(name: str, value: Any, low: int, high: Optional[int], code: str) -> int:
    """``value`` when it is an integer in ``low..=high``, else :class:`InvalidArgumentError`
    (a ``ValueError``) naming the argument and the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}", error_code=code)
    if value < low or (high is not None and value > high):
        bounds = f"{low}..={high}" if high is not None else f">= {low}"
        raise InvalidArgumentError(f"{name} must be {bounds}, got {value}", error_code=code)
    return value


class SessionStatus(str, Enum):
    """Status of a session. A ``str`` subclass: ``session.status == "running"`` holds."""

    PENDING = "pending"
    RUNNING = "running"
    FAILED = "failed"
    TERMINATING = "terminating"
    PAUSED = "paused"

    def __str__(self) -> str:
        return self.value


_TS = re.compile(r"^(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:?\d\d)?$")


def parse_timestamp(value: Optional[str]) -> Optional[datetime]:
    """Parse an RFC 3339 timestamp into an aware :class:`datetime` (``None`` stays ``None``).

    Accepts any number of fractional digits (Python < 3.11 ``fromisoformat`` does not).
    """
    if not value:
        return None
    m = _TS.match(value.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    date, time, frac, tz = m.groups()
    dt = datetime.strptime(f"{date}T{time}", "%Y-%m-%dT%H:%M:%S")
    if frac:
        dt = dt.replace(microsecond=int((frac + "000000")[:6]))
    if tz is None or tz in ("Z", "z"):
        tzinfo = timezone.utc
    else:
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        tzinfo = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return dt.replace(tzinfo=tzinfo)


class SSHInfo:
    """How to reach a session over SSH: ``username``, ``host_keys``, ``tunnel_path``."""

    def __init__(self, data: Optional[Dict[str, Any]] = None) -> None:
        data = data or {}
        self.username: str = data.get("username") or "sandbox"
        self.host_keys: List[str] = list(data.get("hostKeys") or [])
        self.tunnel_path: Optional[str] = data.get("tunnelPath")

    def __repr__(self) -> str:
        return f"SSHInfo(username={self.username!r}, host_keys={self.host_keys!r}, tunnel_path={self.tunnel_path!r})"


class Session:
    """A sandbox session, as the server describes it.

    Attributes:
        session_id: the session's UUID.
        status: a :class:`SessionStatus` (a ``str``; unknown values stay plain strings).
        created_at, expires_at, last_activity_at: aware UTC datetimes.
        metadata: the caller's metadata object.
        image: the requested image, or ``None``.
        ttl: the session's TTL in seconds; ``idle_timeout`` likewise (0 = off).
        idle_action: what the idle timeout does, ``"delete"`` or ``"pause"``.
        paused_at: when the session was paused (aware UTC datetime), else ``None``.
        ssh: an :class:`SSHInfo` with ``username``, ``host_keys`` and ``tunnel_path``.
        ssh_private_key: the session's private key (OpenSSH text) when this object came
            from :meth:`SessionsClient.create_session` and the SDK or the server made the
            key; ``None`` otherwise (the key store keeps it either way).
    """

    def __init__(self, data: Dict[str, Any]) -> None:
        self.session_id: str = data["sessionId"]
        status = data.get("status", "")
        try:
            self.status: Union[SessionStatus, str] = SessionStatus(status)
        except ValueError:
            self.status = status
        self.created_at: Optional[datetime] = parse_timestamp(data.get("createdAt"))
        self.expires_at: Optional[datetime] = parse_timestamp(data.get("expiresAt"))
        self.last_activity_at: Optional[datetime] = parse_timestamp(data.get("lastActivityAt"))
        self.metadata: Dict[str, Any] = data.get("metadata") or {}
        self.image: Optional[str] = data.get("image")
        self.ttl: Optional[int] = data.get("ttl")
        self.idle_timeout: Optional[int] = data.get("idleTimeout")
        self.idle_action: Optional[str] = data.get("idleAction")
        self.paused_at: Optional[datetime] = parse_timestamp(data.get("pausedAt"))
        self.ssh: SSHInfo = SSHInfo(data.get("ssh"))
        self.ssh_private_key: Optional[str] = data.get("sshPrivateKey")
        self._raw_data = data

    @property
    def id(self) -> str:
        """Alias of :attr:`session_id`."""
        return self.session_id

    @property
    def host_keys(self) -> List[str]:
        """The sandbox's SSH host keys (``authorized_keys``-style lines)."""
        return self.ssh.host_keys

    @property
    def ssh_username(self) -> str:
        """The SSH user of the sandbox."""
        return self.ssh.username

    @property
    def tunnel_path(self) -> Optional[str]:
        """The server path to ``CONNECT`` to for this session's SSH stream."""
        return self.ssh.tunnel_path

    def to_dict(self) -> Dict[str, Any]:
        """The session as the server sent it (camelCase keys)."""
        return dict(self._raw_data)

    def __repr__(self) -> str:
        return f"Session(id={self.session_id}, status={self.status}, expires_at={self.expires_at})"


class SessionList(Dict[str, Any]):
    """One page of sessions. A dict (``result["sessions"]``, ``result["total"]``, as the
    original SDK returned) that also offers ``.sessions``, ``.total``, ``.limit``,
    ``.offset`` and ``len()``."""

    @property
    def sessions(self) -> List[Session]:
        sessions: List[Session] = self["sessions"]
        return sessions

    @property
    def total(self) -> int:
        return int(self["total"])

    @property
    def limit(self) -> int:
        return int(self["limit"])

    @property
    def offset(self) -> int:
        return int(self["offset"])

    def __len__(self) -> int:  # number of sessions on this page
        return len(self["sessions"])


def split_api_url(api_url: str) -> Tuple[str, str, str]:
    """Split ``api_url`` into ``(scheme, netloc, root)``.

    Both ``http://host:8080`` and ``http://host:8080/v1`` (the original SDK's form) are
    accepted; ``root`` is the path prefix before ``/v1`` (usually empty).
    """
    if not api_url:
        raise ValueError("api_url is required (or set PICO_URL)")
    if "://" not in api_url:
        api_url = "http://" + api_url
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"api_url must be http:// or https://, got {api_url!r}")
    if not parts.hostname:
        raise ValueError(f"api_url has no host: {api_url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts.scheme, netloc, path


class SessionsClient(ExecMixin, ProcessesMixin):
    """Client of pico's REST API (``/v1/sessions``).

    Example::

        with SessionsClient("http://127.0.0.1:8080", token) as client:
            session = client.create_session(ttl=3600)
            print(session.session_id, session.status)
            client.delete_session(session.session_id)

    Args:
        api_url: the server, e.g. ``http://127.0.0.1:8080`` or ``https://pico.example/v1``;
            defaults to ``$PICO_URL``.
        bearer_token: a JWT; ``None``/empty sends no ``Authorization`` header (servers
            without auth). Defaults to ``$PICO_TOKEN``.
        timeout: HTTP timeout in seconds. Creating a session waits for the sandbox, so keep
            it above the server's ``--create-timeout`` for slow runtimes.
        verify_ssl: verify the server's TLS certificate (or a CA bundle path).
        key_store: where session private keys are kept: a :class:`KeyStore`, a directory,
            ``None`` for the default (``$PICO_KEY_DIR`` or ``~/.config/pico/keys``), or
            ``False`` to keep no keys.
        generate_keys: when :meth:`create_session` gets no ``ssh_public_key``, make the key
            pair here and send only the public key (default). With ``False`` the server
            makes the pair and returns the private key once, which is then stored.
    """

    def __init__(
        self,
        api_url: Optional[str] = None,
        bearer_token: Optional[str] = None,
        timeout: float = 30,
        verify_ssl: Union[bool, str] = True,
        *,
        key_store: KeyStoreArg = None,
        generate_keys: bool = True,
    ) -> None:
        self.scheme, self.netloc, self.root = split_api_url(resolve_api_url(api_url))
        self.api_url = f"{self.scheme}://{self.netloc}{self.root}"
        self.base_url = f"{self.api_url}/v1"
        self.bearer_token = resolve_token(bearer_token)
        self.timeout = timeout
        self.verify_ssl = verify_ssl
        self.key_store = resolve_key_store(key_store)
        self.generate_keys = generate_keys and self.key_store is not None

        self._session = requests.Session()
        self._session.headers.update(
            {"Accept": "application/json", "User-Agent": f"sandbox-sessions-sdk/{__version__}"}
        )
        if self.bearer_token:
            self._session.headers["Authorization"] = f"Bearer {self.bearer_token}"

    # -- plumbing ---------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base_url + path
        try:
            response = self._session.request(
                method, url, timeout=self.timeout, verify=self.verify_ssl, **kwargs
            )
        except requests.exceptions.RequestException as exc:
            raise SandboxConnectionError(
                f"failed to reach {url}: {exc}", error_code="CONNECTION_FAILED"
            ) from exc
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise error_from_response(response.status_code, body, response.headers)
        try:
            return response.json()
        except ValueError as exc:
            raise SandboxOperationError(
                f"{method} {url}: answer is not JSON: {response.text[:200]!r}",
                error_code="INVALID_RESPONSE",
                status_code=response.status_code,
            ) from exc

    @staticmethod
    def _id(session: Union[str, Session]) -> str:
        session_id = session.session_id if isinstance(session, Session) else session
        if not session_id or not isinstance(session_id, str):
            raise InvalidArgumentError("session_id is required", error_code="INVALID_REQUEST")
        return quote(session_id, safe="")

    # -- the API ----------------------------------------------------------------------

    def create_session(
        self,
        ttl: int = 3600,
        image: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
        ssh_public_key: Optional[str] = None,
        idle_timeout: Optional[int] = None,
        idle_action: Optional[str] = None,
    ) -> Session:
        """Create a session and wait until its sandbox is ready.

        Args:
            ttl: lifetime in seconds (the server accepts 60..=28800 unless lowered).
            image: image of the sandbox (recorded; the local runtime ignores it).
            metadata: any JSON object, returned with the session.
            ssh_public_key: an OpenSSH public key whose private half you hold. When
                omitted, the SDK makes a key pair (see ``generate_keys``) and keeps the
                private key in the key store, so :class:`SessionSSHClient` needs no key.
            idle_timeout: delete the session after this many idle seconds (0 = never).
            idle_action: ``"delete"`` (the default) or ``"pause"``: what ``idle_timeout`` does.

        Returns:
            The new :class:`Session` (``status`` ``running``).

        Raises:
            InvalidArgumentError: (a ``ValueError``) ``ttl`` outside 60..=28800, a negative
                ``idle_timeout``, an empty ``image``/``ssh_public_key``, ``metadata`` that is
                not a dict; raised before any request.
            SandboxOperationError: what the server refused (``INVALID_SSH_KEY``, a ``ttl``
                above its ``--max-ttl``, ...) or a sandbox that failed to start.
            UnauthorizedError, RateLimitError, SandboxConnectionError.
        """
        payload: Dict[str, Any] = {"ttl": _check_int("ttl", ttl, MIN_TTL, MAX_TTL, "INVALID_TTL")}
        if image is not None:
            if not isinstance(image, str) or not image.strip():
                raise InvalidArgumentError("image must be a non-empty string when given", error_code="INVALID_REQUEST")
            payload["image"] = image
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise InvalidArgumentError("metadata must be a dict", error_code="INVALID_REQUEST")
            payload["metadata"] = metadata
        if idle_timeout is not None:
            payload["idleTimeout"] = _check_int("idle_timeout", idle_timeout, 0, MAX_TTL, "INVALID_REQUEST")
        if idle_action is not None:
            if idle_action not in ("delete", "pause"):
                raise InvalidArgumentError("idle_action must be 'delete' or 'pause'", error_code="INVALID_REQUEST")
            payload["idleAction"] = idle_action
        private_key: Optional[str] = None
        if ssh_public_key is not None:
            if not isinstance(ssh_public_key, str) or not ssh_public_key.strip():
                raise InvalidArgumentError(
                    "ssh_public_key must be a non-empty string when given", error_code="INVALID_SSH_KEY"
                )
            payload["sshPublicKey"] = ssh_public_key.strip()
        elif self.generate_keys:
            private_key, payload["sshPublicKey"] = generate_ed25519_keypair()

        session = Session(self._request("POST", "/sessions", json=payload))
        if session.ssh_private_key:  # the server made the key pair
            private_key = session.ssh_private_key
        if private_key:
            session.ssh_private_key = private_key
            if self.key_store is not None:
                try:
                    self.key_store.save(session.session_id, private_key)
                except OSError as exc:
                    warnings.warn(
                        f"could not store the key of session {session.session_id} in "
                        f"{self.key_store.path}: {exc}; it is only in session.ssh_private_key",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        return session

    def list_sessions(self, limit: int = 50, offset: int = 0) -> SessionList:
        """One page of the caller's sessions, oldest first.

        Returns:
            A :class:`SessionList`: ``{"sessions": [Session, ...], "total", "limit", "offset"}``.

        Raises:
            InvalidArgumentError: (a ``ValueError``) ``limit`` outside 1..=100 or a negative
                ``offset``; raised before any request.
        """
        params = {
            "limit": _check_int("limit", limit, 1, MAX_LIMIT, "INVALID_LIMIT"),
            "offset": _check_int("offset", offset, 0, None, "INVALID_REQUEST"),
        }
        data = self._request("GET", "/sessions", params=params)
        result = SessionList(data)
        result["sessions"] = [Session(s) for s in data.get("sessions", [])]
        return result

    def iter_sessions(self, page_size: int = 100) -> Iterator[Session]:
        """Every session of the caller, fetched page by page."""
        offset = 0
        while True:
            page = self.list_sessions(limit=page_size, offset=offset)
            yield from page.sessions
            offset += len(page.sessions)
            if not page.sessions or offset >= page.total:
                return

    def get_session(self, session_id: Union[str, Session]) -> Session:
        """The session ``session_id``.

        Raises:
            SessionNotFoundError: no such session for this caller.
        """
        return Session(self._request("GET", f"/sessions/{self._id(session_id)}"))

    def extend_session(self, session_id: Union[str, Session], ttl: int) -> Session:
        """Set the session's expiry to now + ``ttl`` seconds (bounded by the server).

        Raises:
            InvalidArgumentError: (a ``ValueError``) ``ttl`` outside 60..=28800.
        """
        body = {"ttl": _check_int("ttl", ttl, MIN_TTL, MAX_TTL, "INVALID_TTL")}
        return Session(self._request("PATCH", f"/sessions/{self._id(session_id)}", json=body))

    def pause_session(self, session_id: Union[str, Session]) -> Session:
        """Pause the session: its processes stop, its files (and, on the local runtime, its
        memory) stay. Pausing a paused session is a no-op.

        Raises:
            SessionNotFoundError: no such session for this caller.
            SandboxOperationError: ``INVALID_STATE`` (a pending or failed session).
        """
        return Session(self._request("POST", f"/sessions/{self._id(session_id)}/pause"))

    def resume_session(self, session_id: Union[str, Session]) -> Session:
        """Resume a paused session (any SSH, exec or file call resumes it too).

        Raises:
            SessionNotFoundError: no such session for this caller.
        """
        return Session(self._request("POST", f"/sessions/{self._id(session_id)}/resume"))

    def delete_session(self, session_id: Union[str, Session]) -> None:
        """Delete the session and its sandbox, and forget its key in the key store.

        Raises:
            SessionNotFoundError: no such session for this caller.
        """
        raw_id = session_id.session_id if isinstance(session_id, Session) else session_id
        self._request("DELETE", f"/sessions/{self._id(session_id)}")
        if self.key_store is not None:
            self.key_store.delete(raw_id)

    def ssh_client(self, session: Union[str, Session], **kwargs: Any) -> SessionSSHClient:
        """A (not yet connected) :class:`SessionSSHClient` for ``session``, using this
        client's URL, token, TLS setting and key store."""
        from .ssh import SessionSSHClient

        kwargs.setdefault("verify_ssl", self.verify_ssl)
        kwargs.setdefault("key_store", self.key_store if self.key_store is not None else False)
        if isinstance(session, Session):
            return SessionSSHClient.from_session(session, self.api_url, self.bearer_token, **kwargs)
        return SessionSSHClient(self.api_url, self.bearer_token, session, **kwargs)

    def health(self) -> Dict[str, Any]:
        """``GET /health`` (no auth)."""
        url = f"{self.api_url}/health"
        try:
            response = self._session.get(url, timeout=self.timeout, verify=self.verify_ssl)
        except requests.exceptions.RequestException as exc:
            raise SandboxConnectionError(f"failed to reach {url}: {exc}") from exc
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.text, response.headers)
        data: Dict[str, Any] = response.json()
        return data

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._session.close()

    def __enter__(self) -> SessionsClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SessionsClient({self.api_url!r})"


__all__ = [
    "SessionsClient",
    "Session",
    "SessionList",
    "SessionStatus",
    "SSHInfo",
    "parse_timestamp",
    "split_api_url",
    "SandboxAPIError",
]
