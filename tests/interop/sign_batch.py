"""An emitter written in Python with no code of ours: canonicalises events
with PyPI's rfc8785, signs the batch (aiaudit-batch-v2, docs/format.md) with
the cryptography package's Ed25519, registers its key and posts the batch.

First checks that rfc8785 agrees with docs/vectors/batch-signatures.json.

    python3 tests/interop/sign_batch.py <ledger url> <admin token> <emitter name>

Prints the ledger's answer (JSON) on success; exits 1 with the reason otherwise.
"""

import base64
import hashlib
import json
import pathlib
import sys
import urllib.error
import urllib.request

import rfc8785
from batchsig import message, vkey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "vectors" / "batch-signatures.json"
SAFE = 2**53 - 1


def signable(value):
    """The event as an I-JSON reader sees it: rfc8785 takes integers only up
    to 2**53 - 1, so a larger one goes as the double it is, if it is one (or
    is the text ECMAScript writes for one); the ledger refuses any other."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        if -SAFE <= value <= SAFE:
            return value
        as_double = float(value)
        if int(as_double) == value or rfc8785.dumps(as_double).decode() == str(value):
            return as_double
        raise ValueError(f"{value} is not a double: send it as a string")
    if isinstance(value, list):
        return [signable(v) for v in value]
    return {k: signable(v) for k, v in value.items()}


def sign(key, name, canonical):
    text, _ = message("aiaudit-batch-v2", name, canonical)
    return base64.b64encode(key.sign(text.encode())).decode()


def check_vectors(vectors):
    for c in vectors["canonical"]:
        got = rfc8785.dumps(signable(json.loads(c["json"]))).decode()
        assert got == c["v2"], f"rfc8785 disagrees on {c['name']}: {got!r}"
    batch = next(b for b in vectors["batches"] if b["format"] == "aiaudit-batch-v2")
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(batch["seed_hex"]))
    canonical = [rfc8785.dumps(signable(json.loads(e))) for e in batch["events"]]
    assert sign(key, batch["emitter"], canonical) == batch["signature"], "vector signature differs"


def call(url, token, body, headers):
    req = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {token}", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main(url, token, name):
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    check_vectors(vectors)
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    registration = json.dumps({"name": name, "public_key": vkey(name, public), "tenants": ["lagos-health"]})
    status, text = call(f"{url}/v1/emitters", token, registration.encode(), {"Content-Type": "application/json"})
    if status != 201:
        sys.exit(f"registering {name}: HTTP {status} {text}")
    batch = next(b for b in vectors["batches"] if b["format"] == "aiaudit-batch-v2")
    lines = [e.replace('"id":"', '"id":"py-', 1) for e in batch["events"]]
    canonical = [rfc8785.dumps(signable(json.loads(line))) for line in lines]
    headers = {
        "Content-Type": "application/x-ndjson",
        "AIAudit-Emitter": name,
        "AIAudit-Signature-Format": "aiaudit-batch-v2",
        "AIAudit-Signature": sign(key, name, canonical),
    }
    status, text = call(f"{url}/v1/events", token, ("\n".join(lines) + "\n").encode(), headers)
    if status != 200:
        sys.exit(f"posting the batch: HTTP {status} {text}")
    print(text)


if __name__ == "__main__":
    main(*sys.argv[1:4])
