"""Repository-root shim for the pico Python SDK.

The package itself is :mod:`sdk.sandbox_sessions_sdk` (installed as
``sandbox_sessions_sdk`` by ``pip install ./sdk``). This file only makes
``from sdk.sandbox_sessions_sdk import SessionsClient, SessionSSHClient`` work from a
checkout of the repository without installing anything.
"""
