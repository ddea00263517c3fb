"""Where the SDK's settings come from when the caller leaves them out: the environment.

Written once here, so :class:`SessionsClient`, :class:`SessionSSHClient` and the key store
resolve ``api_url``, the token and the key store the same way.
"""

from __future__ import annotations

import os
from typing import Optional

# pico's own names first, then the original SDK's, so scripts written for either work.
API_URL_ENV = ("PICO_URL", "SANDBOX_API_URL")
TOKEN_ENV = ("PICO_TOKEN", "SANDBOX_API_TOKEN")


def _first_env(names: tuple[str, ...]) -> Optional[str]:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_api_url(api_url: Optional[str]) -> str:
    """``api_url`` when given, else ``$PICO_URL``, else ``$SANDBOX_API_URL``."""
    value = api_url or _first_env(API_URL_ENV)
    if not value:
        raise ValueError("api_url is required (or set PICO_URL)")
    return value


def resolve_token(bearer_token: Optional[str]) -> Optional[str]:
    """``bearer_token`` when given, else ``$PICO_TOKEN``, else ``$SANDBOX_API_TOKEN``."""
    return bearer_token or _first_env(TOKEN_ENV)
