"""HTTPS with a certificate made here: REST over HTTP/1.1 and HTTP/2, a CONNECT tunnel
carrying SSH over TLS, and a certificate rotation picked up without a restart while the open
tunnel keeps working."""
import datetime
import io
import ipaddress
import os
import socket
import ssl
import subprocess
import time

import paramiko
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import raw_connect  # tests/ is on sys.path (conftest.py)


def make_cert(cert_path, key_path, name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    # Write beside and rename, as a rotation would, so the server never reads half a file.
    for path, data in [(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption())),
                       (cert_path, cert.public_bytes(serialization.Encoding.PEM))]:
        tmp = f"{path}.new"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return cert.public_bytes(serialization.Encoding.DER)


def tls_socket(server, cafile, alpn=None):
    context = ssl.create_default_context(cafile=cafile)
    if cafile is None:  # only to look at what the server serves
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    raw = socket.create_connection((server.host, server.port), timeout=30)
    return context.wrap_socket(raw, server_hostname="localhost")


def open_tunnel(server, cafile, session_id):
    return raw_connect.open_tunnel(tls_socket(server, cafile), session_id, host="localhost")


def ssh_over(sock, session):
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=30)
    host_key = transport.get_remote_server_key()
    assert f"{host_key.get_name()} {host_key.get_base64()}" == " ".join(session["ssh"]["hostKeys"][0].split()[:2])
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(session["sshPrivateKey"]))
    transport.auth_publickey("sandbox", key)
    return transport


def run(transport, command):
    channel = transport.open_session()
    channel.exec_command(command)
    out = channel.makefile("rb").read()
    return channel.recv_exit_status(), out


def test_https_rest_tunnel_and_rotation(start_server, tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    first = make_cert(cert, key, "first")
    server = start_server("--enable-tls", "--tls-cert", cert, "--tls-key", key)
    base = f"https://localhost:{server.port}"
    assert requests.get(f"{base}/health", verify=str(cert), timeout=30).json() == {"status": "healthy"}
    # HTTP/2 through ALPN, answered by the same server.
    version = subprocess.run(["curl", "-s", "--http2", "--cacert", str(cert), "-o", "/dev/null",
                              "-w", "%{http_version}", f"{base}/health"], capture_output=True, text=True)
    assert version.stdout == "2", version
    with tls_socket(server, str(cert), ["h2", "http/1.1"]) as s:
        assert s.selected_alpn_protocol() == "h2"
    # Plain HTTP on the TLS port goes nowhere.
    with socket.create_connection((server.host, server.port), timeout=30) as plain:
        plain.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        plain.settimeout(15)
        try:
            answer = plain.recv(100)
        except (ConnectionResetError, socket.timeout):
            answer = b""
        assert not answer.startswith(b"HTTP/1.1 200")

    session = requests.post(f"{base}/v1/sessions", verify=str(cert), timeout=60).json()
    transport = ssh_over(open_tunnel(server, str(cert), session["sessionId"]), session)
    assert run(transport, "echo over tls; exit 4") == (4, b"over tls\n")

    # Rotate: new connections get the new certificate, the open tunnel keeps working.
    second = make_cert(cert, key, "second")
    assert second != first
    deadline = time.time() + 20
    while True:
        with tls_socket(server, None) as s:
            served = s.getpeercert(binary_form=True)
        if served == second:
            break
        assert time.time() < deadline, "rotated certificate not served"
        time.sleep(0.2)
    assert run(transport, "echo still here") == (0, b"still here\n")
    fresh = ssh_over(open_tunnel(server, str(cert), session["sessionId"]), session)
    assert run(fresh, "echo new tunnel") == (0, b"new tunnel\n")
    transport.close()
    fresh.close()


def test_bad_tls_flags_fail_at_start(tmp_path):
    from pico_server import BIN_DIR
    for args in [["--enable-tls"], ["--enable-tls", "--tls-cert", tmp_path / "missing.crt", "--tls-key", tmp_path / "missing.key"],
                 ["--tls-cert", tmp_path / "x.crt"]]:
        result = subprocess.run([str(BIN_DIR / "pico-apiserver"), "--port", "0", "--state-dir", tmp_path / "s",
                                 *map(str, args)], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "tls" in result.stderr.lower(), result.stderr
        assert "panicked" not in result.stderr
