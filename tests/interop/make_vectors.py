"""Writes docs/vectors/batch-signatures.json: canonical forms and signed
batches, computed here with outside implementations only (PyPI's rfc8785
and cryptography), never with the ledger's code, so the Rust, Python and
Node tests that check against this file test three implementations against
each other. Format v1's canonical form is computed from the rules
docs/format.md states, written out again here in Python.

    python3 tests/interop/make_vectors.py > docs/vectors/batch-signatures.json
"""

import base64
import hashlib
import json
import struct
import sys

import rfc8785
from batchsig import merkle_root, message, vkey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization


def ijson(text):
    """Parses as an I-JSON reader does: every number is a double."""
    return json.loads(text, parse_int=float)


def v1_float(f):
    """Format v1's layout of a non-integer (docs/format.md)."""
    sign = "-" if str(f).startswith("-") else ""
    f = abs(f)
    if f == 0:
        return sign + "0.0"
    # Shortest round-trip digits from repr, whatever layout repr chose.
    r = repr(f)
    if "e" in r:
        m, e = r.split("e")
        e = int(e)
    else:
        m, e = r, 0
    if "." in m:
        ip, fp = m.split(".")
    else:
        ip, fp = m, ""
    digits = (ip + fp).lstrip("0")
    lead = len(ip + fp) - len((ip + fp).lstrip("0"))
    exp = e + len(ip) - 1 - lead
    digits = digits.rstrip("0") or "0"
    n = len(digits)
    if -5 <= exp <= 15:
        if exp >= n - 1:
            return sign + digits + "0" * (exp - (n - 1)) + ".0"
        if exp >= 0:
            return sign + digits[: exp + 1] + "." + digits[exp + 1 :]
        return sign + "0." + "0" * (-exp - 1) + digits
    frac = "." + digits[1:] if n > 1 else ""
    return sign + digits[0] + frac + "e" + ("+" if exp >= 0 else "-") + str(abs(exp))


def v1(value):
    """Format v1's canonical JSON (docs/format.md, "Entry encoding, version 1")."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return v1_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(v1(v) for v in value) + "]"
    members = sorted(value.items(), key=lambda kv: kv[0].encode("utf-8"))
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + v1(v) for k, v in members) + "}"


def v1_reads(text):
    """Parses as the ledger does: integers that fit in 64 bits stay exact."""

    def parse_int(s):
        n = int(s)
        return n if -(2**63) <= n < 2**64 else float(s)

    return json.loads(text, parse_int=parse_int)


def from_bits(hex_bits):
    return struct.unpack(">d", bytes.fromhex(hex_bits))[0]


# RFC 8785 Appendix B: IEEE 754 bit patterns and what JCS prints.
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]

RFC_EXAMPLES = [
    (
        "rfc8785-3.2.2",
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}',
    ),
    (
        "rfc8785-3.2.3-sorting",
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}',
    ),
]

# Every event valid under the event schema (docs/events.md): custom data
# under "attributes", GenAI fields under "ai".
HEAD = '"tenant":"lagos-health","source":{"name":"triage-bot"},"actor":{"id":"agent-7","type":"agent"}'

AI_EVENTS = [
    (
        "non-ascii-text",
        '{"id":"01J-yo","time":"2026-12-02T08:00:00Z",' + HEAD + ',"action":"model.invoke",'
        '"input":{"content":"Ẹ káàbọ̀! Báwo ni? — 你好 — مرحبا — Ñandú"}}',
    ),
    (
        "emoji-and-astral-keys",
        '{"id":"01J-emoji","time":"2026-12-02T08:00:01Z",' + HEAD + ',"action":"model.invoke",'
        '"output":{"content":"👍🏾 🇳🇬 𝄞 😀"},"attributes":{"😀":1,"דּ":2,"é":3,"z":4,"€":5,"\\u0080":6}}',
    ),
    (
        "control-characters",
        '{"id":"01J-ctl","time":"2026-12-02T08:00:02Z",' + HEAD + ',"action":"tool.call",'
        '"output":{"content":"\\u0000\\u0001\\u0007\\b\\t\\n\\u000b\\f\\r\\u001f\\u007f\\u2028\\u2029 \\"q\\" \\\\ /"}}',
    ),
    (
        "floats-large-and-small",
        '{"id":"01J-num","time":"2026-12-02T08:00:03Z",' + HEAD + ',"action":"model.invoke",'
        '"ai":{"gen_ai.request.temperature":0.7,"gen_ai.request.top_p":1.0,"gen_ai.request.top_k":2.0},'
        '"attributes":{"metrics":[1e21,1E-7,0.000001,0.00001,1e16,1e15,123456.789e3,0.30000000000000004,'
        '5e-324,1.7976931348623157e308,-0.0,-1.25e-5,1683261207005445.25]}}',
    ),
    (
        "integers-past-2^53",
        '{"id":"01J-int","time":"2026-12-02T08:00:04Z",' + HEAD + ',"action":"model.invoke",'
        '"ai":{"gen_ai.usage.input_tokens":9007199254740992,"gen_ai.request.seed":18014398509481984},'
        '"attributes":{"b":-9007199254740992,"d":9223372036854775808,"e":-9223372036854775808,"f":0,"g":-7,'
        '"h":9223372036854776000}}',
    ),
    (
        "nested-and-empty",
        '{"id":"01J-nest","time":"2026-12-02T08:00:05Z",' + HEAD + ',"action":"agent.decision",'
        '"attributes":{"steps":[{"tool":"search","args":{"q":"","k":[]}},{"tool":"none","args":{}}],'
        '"ok":true,"reason":null}}',
    ),
]

REFUSED = [
    ("integer-2^53+1", '{"id":"r1","n":9007199254740993}', "/n"),
    ("u64-max", '{"id":"r2","usage":{"tokens":18446744073709551615}}', "/usage/tokens"),
    ("nested-negative", '{"id":"r3","a":[0,{"b/c":-9007199254740993}]}', "/a/1/b~1c"),
]


def canonical_entry(name, text):
    entry = {"name": name, "json": text, "v2": rfc8785.dumps(ijson(text)).decode()}
    entry["v1"] = v1(v1_reads(text))
    return entry


def signed_batch(fmt, events_text, canonical):
    seed = bytes(range(1, 33))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    name = "vectors-emitter"
    text, leaves = message(fmt, name, [c.encode() for c in canonical])
    root = merkle_root(leaves)
    return {
        "format": fmt,
        "emitter": name,
        "seed_hex": seed.hex(),
        "vkey": vkey(name, public),
        "events": events_text,
        "leaves_hex": [l.hex() for l in leaves],
        "root": base64.b64encode(root).decode(),
        "message": text,
        "signature": base64.b64encode(key.sign(text.encode())).decode(),
    }


def main():
    numbers = []
    for bits, want in RFC_NUMBERS:
        f = from_bits(bits)
        got = rfc8785.dumps(f).decode()
        assert got == want, (bits, got, want)
        numbers.append({"ieee754_hex": bits, "json": repr(f), "v2": want, "v1": v1_float(f)})
    canonical = [canonical_entry(n, t) for n, t in RFC_EXAMPLES + AI_EVENTS]
    events = [t for n, t in AI_EVENTS]
    v2 = [c["v2"] for c in canonical[len(RFC_EXAMPLES):]]
    v1s = [c["v1"] for c in canonical[len(RFC_EXAMPLES):]]
    out = {
        "about": "Canonical forms and signed batches for AIAudit batch signatures (docs/format.md). "
        "v1: aiaudit-batch-v1 / entry format v1 canonical JSON; v2: RFC 8785 (aiaudit-batch-v2). "
        "Generated by tests/interop/make_vectors.py with PyPI rfc8785 and cryptography.",
        "rfc8785_numbers": numbers,
        "canonical": canonical,
        "refused_by_v2": [{"name": n, "json": t, "pointer": p} for n, t, p in REFUSED],
        "batches": [
            signed_batch("aiaudit-batch-v2", events, v2),
            signed_batch("aiaudit-batch-v1", events, v1s),
        ],
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
