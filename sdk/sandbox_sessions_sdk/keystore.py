"""Per-user store of session private keys, and client-side key generation.

The store is a directory (mode 0700) holding one file per session, named
``<session id>.key``, in OpenSSH private-key format with mode 0600. Its location is, in
order: the ``path`` argument, ``$PICO_KEY_DIR``, ``$XDG_CONFIG_HOME/pico/keys``,
``~/.config/pico/keys``.

:class:`~sandbox_sessions_sdk.SessionsClient` writes a key when it creates a session and
removes it when the session is deleted; :class:`~sandbox_sessions_sdk.SessionSSHClient`
finds it by session id, so a session made in one process can be used from another
without passing any key around.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

import paramiko

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_key_dir() -> Path:
    """The directory the key store uses when none is given."""
    env = os.environ.get("PICO_KEY_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "pico" / "keys"


def generate_ed25519_keypair(comment: str = "pico-sdk") -> Tuple[str, str]:
    """Make a new ed25519 key pair on this machine.

    Returns:
        ``(private_key, public_key)``: the private key in OpenSSH PEM format and the
        public key as an ``authorized_keys`` line (``ssh-ed25519 AAAA... comment``).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.OpenSSH,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    public = key.public_key().public_bytes(
        encoding=serialization.Encoding.OpenSSH,
        format=serialization.PublicFormat.OpenSSH,
    ).decode("ascii")
    return private, f"{public} {comment}" if comment else public


def load_private_key(key: Union[str, bytes, os.PathLike[str]], password: Optional[str] = None) -> paramiko.PKey:
    """Load a private key given as OpenSSH/PEM text or as a path to a key file.

    Supports ed25519, ECDSA and RSA keys.
    """
    if isinstance(key, bytes):
        text: Optional[str] = key.decode("utf-8")
    elif isinstance(key, str) and "-----BEGIN" in key:
        text = key
    else:
        text = Path(os.fspath(key)).expanduser().read_text()
    last_error: Optional[Exception] = None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text), password=password)
        except (paramiko.SSHException, ValueError) as exc:
            last_error = exc
    raise ValueError(f"unsupported or invalid private key: {last_error}")


class KeyStore:
    """Files holding each session's private key, readable only by the current user."""

    def __init__(self, path: Union[str, os.PathLike[str], None] = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_key_dir()

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r})"

    def path_for(self, session_id: str) -> Path:
        """The file that holds (or would hold) the key of ``session_id``."""
        if not _SAFE_ID.match(session_id or ""):
            raise ValueError(f"not a valid session id: {session_id!r}")
        return self.path / f"{session_id}.key"

    def save(self, session_id: str, private_key: str) -> Path:
        """Store ``private_key`` for ``session_id`` (atomically, mode 0600); returns the file."""
        target = self.path_for(session_id)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=str(self.path))  # created 0600
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(private_key if private_key.endswith("\n") else private_key + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return target

    def load(self, session_id: str) -> Optional[str]:
        """The stored private key text of ``session_id``, or ``None``."""
        try:
            return self.path_for(session_id).read_text()
        except (FileNotFoundError, ValueError):
            return None

    def load_pkey(self, session_id: str) -> Optional[paramiko.PKey]:
        """The stored key of ``session_id`` as a paramiko key, or ``None``."""
        text = self.load(session_id)
        return load_private_key(text) if text else None

    def delete(self, session_id: str) -> bool:
        """Remove the key of ``session_id``; returns whether there was one."""
        try:
            self.path_for(session_id).unlink()
            return True
        except (FileNotFoundError, ValueError):
            return False


# What the clients' ``key_store`` argument accepts.
KeyStoreArg = Union[KeyStore, str, "os.PathLike[str]", None, bool]


def resolve_key_store(key_store: KeyStoreArg) -> Optional[KeyStore]:
    """The key store a client's ``key_store`` argument names: ``False`` = none, ``None`` or
    ``True`` = the default store, a :class:`KeyStore` as is, a path = a store there."""
    if key_store is False:
        return None
    if key_store is None or key_store is True:
        return KeyStore()
    if isinstance(key_store, KeyStore):
        return key_store
    return KeyStore(key_store)


__all__ = [
    "KeyStore",
    "KeyStoreArg",
    "default_key_dir",
    "generate_ed25519_keypair",
    "load_private_key",
    "resolve_key_store",
]
