"""The pieces of an aiaudit batch signature (docs/format.md) written from
the spec in Python, shared by make_vectors.py and sign_batch.py."""

import base64
import hashlib


def merkle_root(leaves):
    """RFC 6962 Merkle tree hash over leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + merkle_root(leaves[:k]) + merkle_root(leaves[k:])).digest()


def vkey(name, public):
    """A signed-note verifier key: name, key id, base64(0x01 || Ed25519 key)."""
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    encoded = base64.b64encode(b"\x01" + public).decode()
    return f"{name}+{key_id.hex()}+{encoded}"


def message(fmt, name, canonical_events):
    """The signed message of a batch: format, emitter, size, base64 root."""
    leaves = [hashlib.sha256(b"\x00" + c).digest() for c in canonical_events]
    root = base64.b64encode(merkle_root(leaves)).decode()
    return f"{fmt}\n{name}\n{len(leaves)}\n{root}\n", leaves
