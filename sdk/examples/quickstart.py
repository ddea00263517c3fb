#!/usr/bin/env python3
"""Quick start: create a session, run a command, copy a file in and out, delete it.

    PICO_URL=http://127.0.0.1:8080 PICO_TOKEN=<jwt or empty> python sdk/examples/quickstart.py

Runs from the repository root (``sdk.sandbox_sessions_sdk``) or with the SDK installed
(``pip install ./sdk``).
"""

import os
import sys
import tempfile

try:
    from sandbox_sessions_sdk import SessionsClient, SessionSSHClient
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    from sdk.sandbox_sessions_sdk import SessionsClient, SessionSSHClient

api_url = os.environ.get("PICO_URL", "http://127.0.0.1:8080")
token = os.environ.get("PICO_TOKEN", "")

with SessionsClient(api_url=api_url, bearer_token=token) as client:
    # The SDK makes an ed25519 key pair here, sends only the public key, and keeps the
    # private key in ~/.config/pico/keys (or $PICO_KEY_DIR) until the session is deleted.
    session = client.create_session(ttl=3600, metadata={"example": "quickstart"})
    print(f"session {session.session_id} is {session.status}, expires {session.expires_at}")
    try:
        with SessionSSHClient(
            api_url=api_url, bearer_token=token, session_id=session.session_id, username="sandbox"
        ) as ssh:
            result = ssh.run_command("uname -a && ls -la")
            print(result["stdout"], end="")
            print("exit code:", result["exit_code"])

            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, "hello.txt")
                with open(local, "w") as f:
                    f.write("hello from the quick start\n")
                ssh.upload_file(local, "hello.txt")
                print(ssh.run_command("cat hello.txt")["stdout"], end="")
                ssh.download_file("hello.txt", local + ".back")
                with open(local + ".back") as f:
                    assert f.read() == "hello from the quick start\n"

        print("sessions:", [s.session_id for s in client.list_sessions().sessions])
        session = client.extend_session(session.session_id, ttl=7200)
        print("extended to", session.expires_at)
    finally:
        client.delete_session(session.session_id)
        print("deleted", session.session_id)
