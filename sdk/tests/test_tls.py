"""HTTPS: the REST client and the CONNECT tunnel over TLS (a server with --enable-tls and a
self-signed certificate made here)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os

import pytest

from sdk.sandbox_sessions_sdk import (
    HTTPConnectTunnel,
    SandboxConnectionError,
    SessionsClient,
    SessionSSHClient,
)
from sdk.tests.helpers import PicoServer


def _self_signed(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pico-sdk-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A server with --enable-tls and a self-signed certificate for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(directory)
    server = PicoServer(
        directory / "state",
        ["--enable-tls", "--tls-cert", str(cert), "--tls-key", str(key), "--create-rate", "0"],
    )
    server.url = server.url.replace("http://", "https://")
    server.ca = str(cert)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_rest_and_ssh_over_https(tls_server, tmp_path):
    with SessionsClient(tls_server.url, None, verify_ssl=tls_server.ca) as c:
        s = c.create_session(ttl=300)
        try:
            assert c.get_session(s.session_id).status == "running"
            with SessionSSHClient(tls_server.url, None, s.session_id, verify_ssl=tls_server.ca) as ssh:
                r = ssh.run_command("echo over-tls; echo e >&2; exit 2")
                assert r == {"stdout": "over-tls\n", "stderr": "e\n", "exit_code": 2}
                # both directions at once, many records: the TLS bridge keeps them intact
                data = os.urandom(8 << 20)
                src, dst = tmp_path / "up.bin", tmp_path / "down.bin"
                src.write_bytes(data)
                ssh.upload_file(src, "up.bin")
                ssh.download_file("up.bin", dst)
                assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
                r = ssh.run_command("head -c 3000000 /dev/zero | tr '\\0' x; cat up.bin | wc -c", timeout=60)
                assert r["stdout"].endswith(f"{len(data)}\n") and r["stdout"].count("x") == 3000000
            # verify_ssl=False skips verification, for the tunnel too
            with SessionSSHClient(tls_server.url, None, s.session_id, verify_ssl=False) as ssh:
                assert ssh.run_command("true")["exit_code"] == 0
        finally:
            c.delete_session(s.session_id)


def test_untrusted_certificate_is_refused(tls_server):
    with SessionsClient(tls_server.url, None) as c:  # system CAs only
        with pytest.raises(SandboxConnectionError):
            c.list_sessions()
    with pytest.raises(SandboxConnectionError):
        HTTPConnectTunnel(tls_server.url, None, "00000000-0000-4000-8000-000000000000").open()
