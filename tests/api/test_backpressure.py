"""A tunnel client that stops reading cannot make the server buffer without bound: the
relay stops reading from the sandbox when the client's socket is full."""
import io
import pathlib
import socket
import sys
import threading
import time

import paramiko
import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import raw_connect  # noqa: E402
from pico_server import Server  # noqa: E402


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_never_reads_does_not_grow_server_memory():
    server = Server()
    try:
        session = requests.post(f"http://{server.addr}/v1/sessions", timeout=60).json()
        tunnel = socket.create_connection((server.host, server.port), timeout=30)
        tunnel.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        raw_connect.open_tunnel(tunnel, session["sessionId"])

        # paramiko talks to one end of a socket pair; a relay thread moves bytes to the tunnel
        # until `stalled` is set, after which nothing is read from the tunnel any more.
        ours, theirs = socket.socketpair()
        stalled = threading.Event()

        def up():
            while True:
                data = ours.recv(65536)
                if not data:
                    return
                tunnel.sendall(data)

        def down():
            while not stalled.is_set():
                tunnel.settimeout(0.2)
                try:
                    data = tunnel.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                ours.sendall(data)

        threading.Thread(target=up, daemon=True).start()
        threading.Thread(target=down, daemon=True).start()
        transport = paramiko.Transport(theirs, default_window_size=2**31 - 1,
                                       default_max_packet_size=32768)
        transport.start_client(timeout=30)
        transport.auth_publickey("sandbox", paramiko.Ed25519Key.from_private_key(io.StringIO(session["sshPrivateKey"])))
        channel = transport.open_session(window_size=2**31 - 1, max_packet_size=32768)
        before = rss_kib(server.proc.pid)
        stalled.set()
        # The sandbox could send 1 GiB at once: the SSH window allows it.
        channel.exec_command("head -c 1073741824 /dev/zero")
        peak = before
        for _ in range(30):
            time.sleep(0.1)
            peak = max(peak, rss_kib(server.proc.pid))
        assert peak - before < 16 * 1024, f"server RSS grew from {before} to {peak} KiB"
        # The server still answers others.
        assert requests.get(f"http://{server.addr}/health", timeout=30).status_code == 200
        transport.close()
        tunnel.close()
    finally:
        server.stop()
