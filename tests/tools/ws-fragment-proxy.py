#!/usr/bin/env python3
"""OpenSSH ProxyCommand over pico's WebSocket tunnel that sends everything the client
writes as ONE binary message that never ends: a first fragment, then continuation frames,
never a final one. Only a server that relays frames as they come lets SSH work through it.
Usage: ws-fragment-proxy.py HOST:PORT SESSION_ID"""
import os
import socket
import struct
import sys
import threading

addr, session = sys.argv[1], sys.argv[2]
host, port = addr.rsplit(":", 1)
sock = socket.create_connection((host, int(port)))
sock.sendall(
    (
        f"GET /v1/sessions/{session}/tunnel HTTP/1.1\r\nHost: {addr}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()
)
head = b""
while not head.endswith(b"\r\n\r\n"):
    byte = sock.recv(1)
    if not byte:
        sys.exit("connection closed during the handshake")
    head += byte
if not head.startswith(b"HTTP/1.1 101"):
    sys.exit(head.decode(errors="replace"))


def mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")


def upstream():
    first = True
    while True:
        data = os.read(0, 65536)
        if not data:
            # Never a final fragment: the message stays unfinished until the socket closes.
            sock.shutdown(socket.SHUT_WR)
            return
        opcode = 2 if first else 0
        first = False
        key = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", opcode, 0x80 | 127, n)
        sock.sendall(header + key + mask(data, key))


def recv_exact(n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


threading.Thread(target=upstream, daemon=True).start()
try:
    while True:
        b0, b1 = recv_exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", recv_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", recv_exact(8))
        payload = recv_exact(n)
        opcode = b0 & 0x0F
        if opcode == 8:
            break
        if opcode in (0, 2):
            os.write(1, payload)
except EOFError:
    pass
