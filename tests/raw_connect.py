"""Raw HTTP CONNECT for the Python tests and tools: send the request on a socket the caller
made (plain or TLS) and read the answer's head byte by byte, so that no tunnel byte (the
sandbox's SSH banner) is eaten."""


def connect(sock, session_id, host="x", headers=()):
    """Sends `CONNECT /v1/sessions/ID/tunnel` and returns the answer's status and head.

    `headers` are extra `Name: value` lines. The status is 0 when the server closed the
    connection before a whole head."""
    lines = [f"CONNECT /v1/sessions/{session_id}/tunnel HTTP/1.1", f"Host: {host}", *headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            return 0, head
        head += byte
    return int(head.split()[1]), head


def open_tunnel(sock, session_id, host="x", headers=()):
    """`connect`, and fails unless the exact `200` answer came back; returns the socket."""
    status, head = connect(sock, session_id, host, headers)
    if head != b"HTTP/1.1 200 Connection Established\r\n\r\n":
        raise AssertionError(f"tunnel refused ({status}): {head!r}")
    return sock
