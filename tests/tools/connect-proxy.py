#!/usr/bin/env python3
"""OpenSSH ProxyCommand: opens `CONNECT /v1/sessions/ID/tunnel` on a pico server and relays
stdin/stdout through it. Usage: connect-proxy.py http://HOST:PORT SESSION_ID [TOKEN]"""
import os, selectors, socket, sys
from urllib.parse import urlsplit

url, session = urlsplit(sys.argv[1]), sys.argv[2]
token = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("PICO_TOKEN", "")
sock = socket.create_connection((url.hostname, url.port or 80))
auth = f"Authorization: Bearer {token}\r\n" if token else ""
sock.sendall(f"CONNECT /v1/sessions/{session}/tunnel HTTP/1.1\r\nHost: {url.netloc}\r\n{auth}\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:  # read the answer byte by byte: never eat the SSH banner
    byte = sock.recv(1)
    if not byte:
        sys.exit("tunnel: connection closed before the answer")
    head += byte
if not head.startswith(b"HTTP/1.1 200"):
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
