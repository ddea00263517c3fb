"""pico Python SDK: sandbox sessions over REST, SSH/SFTP through an HTTP CONNECT tunnel.

Quick start (the SDK makes the session's key pair and keeps the private key in the
per-user key store, so the SSH client needs no key)::

    from sandbox_sessions_sdk import SessionsClient, SessionSSHClient

    with SessionsClient(api_url="http://127.0.0.1:8080", bearer_token=token) as client:
        session = client.create_session(ttl=3600)
        ssh = SessionSSHClient(api_url="http://127.0.0.1:8080", bearer_token=token,
                               session_id=session.session_id, username="sandbox")
        print(ssh.run_command("ls -la")["stdout"])
        ssh.close()
        client.delete_session(session.session_id)
"""

from . import exceptions
from ._version import __version__
from .client import (
    Session,
    SessionList,
    SessionsClient,
    SessionStatus,
    SSHInfo,
    parse_timestamp,
)
from .exceptions import *  # noqa: F403  (the names are exceptions.__all__)
from .keystore import KeyStore, default_key_dir, generate_ed25519_keypair, load_private_key
from .ssh import SessionSSHClient
from .tunnel import HTTPConnectTunnel

__all__ = [
    "SessionsClient",
    "SessionSSHClient",
    "HTTPConnectTunnel",
    "Session",
    "SessionList",
    "SessionStatus",
    "SSHInfo",
    "KeyStore",
    "default_key_dir",
    "generate_ed25519_keypair",
    "load_private_key",
    "parse_timestamp",
    "__version__",
]
# The exceptions, listed once: in exceptions.__all__.
__all__ += exceptions.__all__
