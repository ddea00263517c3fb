"""Schemathesis hooks: `sshPublicKey` has the custom format `ssh-public-key`, so generated
"valid" requests carry real public keys instead of random text."""
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import strategies as st


def _openssh(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


KEYS = [_openssh(ed25519.Ed25519PrivateKey.generate()) for _ in range(3)] + [
    _openssh(ec.generate_private_key(ec.SECP256R1()))]

schemathesis.openapi.format("ssh-public-key", st.sampled_from(KEYS))
