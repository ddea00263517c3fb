"""JWT authentication with tokens minted by an independent library (pyjwt): every accepted
algorithm, every refusal, and tenant isolation."""
import base64
import hashlib
import hmac
import json
import socket
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import raw_connect  # tests/ is on sys.path (conftest.py)

SECRET = "a-long-enough-test-secret-for-hs256-and-hs384-0123456789"


def now():
    return int(time.time())


def claims(**extra):
    base = {"sub": "alice", "exp": now() + 600, "iat": now()}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def pem_public(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_private(private_key):
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def get(server, token=None, header="Authorization", path="/v1/sessions"):
    headers = {header: f"Bearer {token}"} if token is not None else {}
    return requests.get(f"http://{server.addr}{path}", headers=headers, timeout=30)


def assert_unauthorized(response):
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["error"] == "UNAUTHORIZED" and body["message"] and body["requestId"]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header, payload, key=b""):
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key else b""
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def keys(tmp_path):
    made = {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }
    paths = {}
    for alg, key in made.items():
        path = tmp_path / f"{alg}.pub.pem"
        path.write_bytes(pem_public(key))
        paths[alg] = path
    return made, paths


def test_hs256_tokens_and_every_refusal(start_server):
    server = start_server("--jwt-secret", SECRET, "--jwt-issuer", "https://issuer.test",
                          "--jwt-audience", "pico")
    good = dict(iss="https://issuer.test", aud="pico")
    assert get(server, jwt.encode(claims(**good), SECRET, "HS256")).status_code == 200
    # Proxy-Authorization is accepted like Authorization.
    ok = get(server, jwt.encode(claims(**good), SECRET, "HS256"), header="Proxy-Authorization")
    assert ok.status_code == 200
    refused = {
        "expired": jwt.encode(claims(exp=now() - 3600, **good), SECRET, "HS256"),
        "not yet valid": jwt.encode(claims(nbf=now() + 3600, **good), SECRET, "HS256"),
        "issued in the future": jwt.encode(claims(iat=now() + 3600, **good), SECRET, "HS256"),
        "no exp": jwt.encode(claims(exp=None, **good), SECRET, "HS256"),
        "wrong issuer": jwt.encode(claims(iss="https://evil.test", aud="pico"), SECRET, "HS256"),
        "no issuer": jwt.encode(claims(aud="pico"), SECRET, "HS256"),
        "wrong audience": jwt.encode(claims(iss="https://issuer.test", aud="other"), SECRET, "HS256"),
        "wrong key": jwt.encode(claims(**good), "another-secret-of-enough-length-for-every-hmac-algorithm-0123", "HS256"),
        "no sub": jwt.encode(claims(sub=None, **good), SECRET, "HS256"),
        "empty sub": jwt.encode(claims(sub="", **good), SECRET, "HS256"),
        "alg none": hand_made({"alg": "none", "typ": "JWT"}, claims(**good)),
        "HS384": jwt.encode(claims(**good), SECRET, "HS384"),
        "garbage": "not-a-token",
        "three dots": "a.b.c",
        "empty": "",
    }
    for name, token in refused.items():
        response = get(server, token)
        assert_unauthorized(response)
        assert response.status_code == 401, name
    # Malformed headers and tokens in the query string.
    for value in ["Bearer", "Token abc", "Basic !!!", "bearer" + " " * 3]:
        r = requests.get(f"http://{server.addr}/v1/sessions", headers={"Authorization": value}, timeout=30)
        assert_unauthorized(r)
    token = jwt.encode(claims(**good), SECRET, "HS256")
    assert_unauthorized(requests.get(f"http://{server.addr}/v1/sessions?access_token={token}", timeout=30))
    assert_unauthorized(requests.get(f"http://{server.addr}/v1/sessions?token={token}", timeout=30))
    # Basic with the token as password (what ncat and socat send) is accepted.
    basic = base64.b64encode(f"anyone:{token}".encode()).decode()
    r = requests.get(f"http://{server.addr}/v1/sessions", headers={"Proxy-Authorization": f"Basic {basic}"}, timeout=30)
    assert r.status_code == 200


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_public_key_algorithms(start_server, keys, alg):
    made, paths = keys
    server = start_server("--jwt-public-key", paths[alg])
    token = jwt.encode(claims(), pem_private(made[alg]), alg)
    assert get(server, token).status_code == 200
    # A key of the right type that is not the configured one.
    other = {"RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
             "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
             "EdDSA": ed25519.Ed25519PrivateKey.generate}[alg]()
    assert_unauthorized(get(server, jwt.encode(claims(), pem_private(other), alg)))
    assert_unauthorized(get(server, jwt.encode(claims(exp=now() - 600), pem_private(made[alg]), alg)))
    # alg none and HS256 are never accepted by a public-key server.
    assert_unauthorized(get(server, hand_made({"alg": "none"}, claims())))
    assert_unauthorized(get(server, jwt.encode(claims(), SECRET, "HS256")))


def test_hs_rs_confusion_is_refused(start_server, keys):
    made, paths = keys
    server = start_server("--jwt-public-key", paths["RS256"], "--jwt-secret", SECRET)
    public_pem = paths["RS256"].read_bytes()
    forged = hand_made({"alg": "HS256", "typ": "JWT"}, claims(), key=public_pem)
    assert_unauthorized(get(server, forged))
    assert get(server, jwt.encode(claims(), pem_private(made["RS256"]), "RS256")).status_code == 200
    assert get(server, jwt.encode(claims(), SECRET, "HS256")).status_code == 200


def connect_status(server, session_id, token):
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        status, _ = raw_connect.connect(sock, session_id, headers=[f"Proxy-Authorization: Bearer {token}"])
        return status


def test_tenants_are_isolated_and_admin_sees_all(start_server):
    server = start_server("--jwt-secret", SECRET)
    alice = jwt.encode(claims(sub="alice"), SECRET, "HS256")
    bob = jwt.encode(claims(sub="bob"), SECRET, "HS256")
    admin = jwt.encode(claims(sub="ops", scope="openid sessions:admin"), SECRET, "HS256")
    base = f"http://{server.addr}/v1/sessions"
    auth = lambda t: {"Authorization": f"Bearer {t}"}
    created = requests.post(base, headers=auth(alice), timeout=60)
    assert created.status_code == 200, created.text
    sid = created.json()["sessionId"]
    missing = requests.get(f"{base}/00000000-0000-4000-8000-000000000000", headers=auth(bob), timeout=30)
    for response in [
        requests.get(f"{base}/{sid}", headers=auth(bob), timeout=30),
        requests.patch(f"{base}/{sid}", json={"ttl": 600}, headers=auth(bob), timeout=30),
        requests.delete(f"{base}/{sid}", headers=auth(bob), timeout=30),
    ]:
        assert response.status_code == 404
        body = response.json()
        # Exactly like a missing session: same code and message.
        assert (body["error"], body["message"]) == (missing.json()["error"], missing.json()["message"])
    assert requests.get(base, headers=auth(bob), timeout=30).json()["total"] == 0
    assert connect_status(server, sid, bob) == 404
    assert connect_status(server, sid, alice) == 200
    assert requests.get(base, headers=auth(admin), timeout=30).json()["total"] == 1
    assert requests.patch(f"{base}/{sid}", json={"ttl": 900}, headers=auth(admin), timeout=30).status_code == 200
    assert connect_status(server, sid, admin) == 200
    assert requests.delete(f"{base}/{sid}", headers=auth(admin), timeout=30).status_code == 200


def test_create_rate_limit_headers(start_server):
    server = start_server("--jwt-secret", SECRET, "--create-rate", "2")
    alice = {"Authorization": f"Bearer {jwt.encode(claims(sub='alice'), SECRET, 'HS256')}"}
    bob = {"Authorization": f"Bearer {jwt.encode(claims(sub='bob'), SECRET, 'HS256')}"}
    base = f"http://{server.addr}/v1/sessions"
    first = requests.post(base, headers=alice, timeout=60)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert requests.post(base, headers=alice, timeout=60).status_code == 200
    limited = requests.post(base, headers=alice, timeout=60)
    assert limited.status_code == 429
    assert limited.json()["error"] == "RATE_LIMITED"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["Retry-After"]) >= 1
    # Another user has a bucket of their own.
    assert requests.post(base, headers=bob, timeout=60).status_code == 200


def test_no_secret_in_logs(start_server):
    server = start_server("--jwt-secret", SECRET)
    token = jwt.encode(claims(), SECRET, "HS256")
    created = requests.post(f"http://{server.addr}/v1/sessions", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    private_key = created.json()["sshPrivateKey"]
    requests.get(f"http://{server.addr}/v1/sessions", headers={"Authorization": "Bearer x.y.z"}, timeout=30)
    logs = server.logs()
    assert "request" in logs
    for secret in [SECRET, token, token.split(".")[2], private_key.splitlines()[1]]:
        assert secret not in logs
