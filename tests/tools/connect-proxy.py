#!/usr/bin/env python3
"""OpenSSH ProxyCommand: opens `CONNECT /v1/sessions/ID/tunnel` on a pico server and relays
stdin/stdout through it. Usage: connect-proxy.py http://HOST:PORT SESSION_ID [TOKEN]"""
import os, pathlib, selectors, socket, sys
from urllib.parse import urlsplit

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import raw_connect  # noqa: E402

url, session = urlsplit(sys.argv[1]), sys.argv[2]
token = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("PICO_TOKEN", "")
sock = socket.create_connection((url.hostname, url.port or 80))
auth = [f"Authorization: Bearer {token}"] if token else []
status, head = raw_connect.connect(sock, session, host=url.netloc, headers=auth)
if status == 0:
    sys.exit("tunnel: connection closed before the answer")
if status != 200:
    sys.exit("tunnel refused: " + head.decode(errors="replace").splitlines()[0])
sel = selectors.DefaultSelector()
sel.register(sys.stdin.buffer, selectors.EVENT_READ, "up")
sel.register(sock, selectors.EVENT_READ, "down")
while sel.get_map():
    for key, _ in sel.select():
        if key.data == "up":
            data = os.read(sys.stdin.fileno(), 65536)
            if data:
                sock.sendall(data)
            else:  # half-close: our stdin ended, the sandbox may still talk
                sock.shutdown(socket.SHUT_WR); sel.unregister(sys.stdin.buffer)
        else:
            data = sock.recv(65536)
            if not data:
                sys.exit(0)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
