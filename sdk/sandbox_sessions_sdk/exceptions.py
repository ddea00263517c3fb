"""Exceptions raised by the SDK, and the mapping from the server's JSON error body.

Every error answer of pico is ``{"error": CODE, "message": text, "details"?: object,
"timestamp": ..., "requestId": ...}``; :func:`error_from_response` turns one into the
matching exception class.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Type


class SandboxAPIError(Exception):
    """Base class of every SDK error.

    Attributes:
        message: human-readable text (the server's ``message`` when there is one).
        error_code: the server's machine-readable ``error`` code (e.g. ``INVALID_TTL``),
            or an SDK code such as ``HOST_KEY_MISMATCH`` for client-side failures.
        details: the server's ``details`` object (empty dict when absent).
        status_code: the HTTP status, when the error came from an HTTP answer.
        request_id: the server's ``requestId``, useful when reading server logs.
    """

    def __init__(
        self,
        message: str,
        error_code: Optional[str] = None,
        details: Optional[Dict[str, Any]] = None,
        status_code: Optional[int] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.details: Dict[str, Any] = details or {}
        self.status_code = status_code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.error_code:
            parts.append(f"[{self.error_code}]")
        if self.status_code is not None:
            parts.append(f"(HTTP {self.status_code})")
        return " ".join(parts)


class SandboxConnectionError(SandboxAPIError):
    """The server, the tunnel or the sandbox's SSH server could not be reached or used."""


class SandboxOperationError(SandboxAPIError):
    """The server refused or failed an operation (bad request, sandbox failure, ...)."""


class SessionNotFoundError(SandboxAPIError):
    """The session does not exist, or belongs to another user (HTTP 404)."""


class UnauthorizedError(SandboxAPIError):
    """The bearer token is missing, invalid or expired (HTTP 401)."""


class ForbiddenError(SandboxOperationError):
    """The server refused what was asked, whoever asks (HTTP 403): e.g. a tunnel to
    anything but a session. A valid token does not change the answer, so this is not an
    :class:`UnauthorizedError`."""


class InvalidArgumentError(SandboxOperationError, ValueError):
    """An argument the server would refuse, caught before any request is sent.

    Also a :class:`ValueError`, as the original SDK raised, so ``except ValueError`` in
    code written for it keeps working. ``error_code`` is the code the server would have
    answered (``INVALID_TTL``, ``INVALID_LIMIT``, ``INVALID_REQUEST``)."""


class RateLimitError(SandboxAPIError):
    """A quota or rate limit was hit (HTTP 429): ``QUOTA_EXCEEDED`` (too many live
    sessions) or ``RATE_LIMITED`` (too many requests).

    For ``RATE_LIMITED``, ``limit``, ``remaining`` and ``reset`` (seconds) come from the
    ``X-RateLimit-*`` headers; for ``QUOTA_EXCEEDED``, ``limit`` is the session quota.
    ``retry_after`` is the ``Retry-After`` header in seconds. Unknown values are ``None``.
    """

    def __init__(
        self,
        message: str,
        limit: Optional[int] = None,
        remaining: Optional[int] = None,
        reset: Optional[int] = None,
        retry_after: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        self.retry_after = retry_after


class HostKeyVerificationError(SandboxConnectionError):
    """The sandbox's SSH host key is not one the session advertises in ``hostKeys``."""


class SSHAuthenticationError(SandboxConnectionError):
    """The sandbox's SSH server refused our key or password."""


class CommandTimeoutError(SandboxOperationError):
    """A command did not finish within its timeout.

    ``stdout`` and ``stderr`` hold what the command printed before it was abandoned.
    """

    def __init__(self, message: str, stdout: str = "", stderr: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("error_code", "COMMAND_TIMEOUT")
        super().__init__(message, **kwargs)
        self.stdout = stdout
        self.stderr = stderr


# Only codes pico sends (pico-wire's ErrorCode). `NOT_FOUND` is a path with no route (a
# wrong `api_url` prefix, say), not a missing session, so it stays a SandboxOperationError.
_BY_CODE: Dict[str, Type[SandboxAPIError]] = {
    "UNAUTHORIZED": UnauthorizedError,
    "FORBIDDEN": ForbiddenError,
    "SESSION_NOT_FOUND": SessionNotFoundError,
    "NOT_FOUND": SandboxOperationError,
    "QUOTA_EXCEEDED": RateLimitError,
    "RATE_LIMITED": RateLimitError,
}

# For answers without pico's JSON body (e.g. from a proxy in front of it).
_BY_STATUS: Dict[int, Type[SandboxAPIError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: SessionNotFoundError,
    429: RateLimitError,
}


def _int_or_none(value: Any) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def error_from_response(
    status_code: int,
    body: Any,
    headers: Optional[Mapping[str, str]] = None,
    default: Type[SandboxAPIError] = SandboxOperationError,
) -> SandboxAPIError:
    """Build the exception for an HTTP error answer.

    Args:
        status_code: the HTTP status.
        body: the parsed JSON body (a dict), the raw body (bytes/str), or ``None``.
        headers: the answer's headers (case-insensitive mapping preferred).
        default: the class used when neither the code nor the status is a known one.
    """
    data: Dict[str, Any] = {}
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body) if body.strip() else None
        except ValueError:
            parsed = None
        data = parsed if isinstance(parsed, dict) else {}
        if not data and body.strip():
            data = {"message": body.strip()[:500]}
    elif isinstance(body, dict):
        data = body

    code = data.get("error") if isinstance(data.get("error"), str) else None
    message = data.get("message") or f"request failed with HTTP status {status_code}"
    details = data.get("details") if isinstance(data.get("details"), dict) else None
    request_id = data.get("requestId")

    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status_code) or default
    kwargs: Dict[str, Any] = dict(
        error_code=code or f"HTTP_{status_code}",
        details=details,
        status_code=status_code,
        request_id=request_id,
    )
    if cls is RateLimitError:
        h = headers or {}
        d = details or {}
        retry_after = _int_or_none(h.get("Retry-After", d.get("retryAfter")))
        limit: Optional[int]
        remaining: Optional[int]
        reset: Optional[int]
        if code == "QUOTA_EXCEEDED":  # a cap on live sessions: the headers describe another limit
            limit, remaining, reset = _int_or_none(d.get("limit")), 0, None
        else:
            limit = _int_or_none(h.get("X-RateLimit-Limit", d.get("limit")))
            remaining = _int_or_none(h.get("X-RateLimit-Remaining", d.get("remaining")))
            reset = _int_or_none(h.get("X-RateLimit-Reset", d.get("reset", retry_after)))
        return RateLimitError(
            str(message), limit=limit, remaining=remaining, reset=reset, retry_after=retry_after, **kwargs
        )
    return cls(str(message), **kwargs)


__all__ = [
    "SandboxAPIError",
    "SandboxConnectionError",
    "SandboxOperationError",
    "SessionNotFoundError",
    "UnauthorizedError",
    "ForbiddenError",
    "InvalidArgumentError",
    "RateLimitError",
    "HostKeyVerificationError",
    "SSHAuthenticationError",
    "CommandTimeoutError",
    "error_from_response",
]
