"""Entry format v3 read from docs/format.md alone, with no code of ours:
PyNaCl's XChaCha20-Poly1305 and the zstandard package.

    python3 tests/interop/entry_v3.py                       # the vectors
    python3 tests/interop/entry_v3.py <url> <token> <index> <event.json>

With no arguments, decodes and opens every vector of
docs/vectors/entry-v3.json with its key and checks the event comes back.
With arguments, fetches entry <index> of a running ledger with its opening
(GET /v1/events/<index>?proof=true), checks the opening against the
entry's commitment without any key, rebuilds the event and compares it
with the event posted (a JSON file). Exits 1 with the reason on failure.
"""

import base64
import hashlib
import json
import pathlib
import struct
import sys
import urllib.request

import nacl.bindings
import zstandard

ROOT = pathlib.Path(__file__).resolve().parents[2]
NESTED = ("source", "actor", "outcome", "ai")


def parse(entry):
    """The header fields of a v3 entry and where its ciphertext starts."""
    if entry[0] != 3:
        raise ValueError("not a v3 entry")
    flags, at = entry[1], 2
    if flags & ~1:
        raise ValueError("unknown flags")

    def take(n):
        nonlocal at
        if at + n > len(entry):
            raise ValueError("entry ends early")
        part = entry[at:at + n]
        at += n
        return part

    def u16():
        return struct.unpack(">H", take(2))[0]

    appended_by = take(u16()).decode()
    index = json.loads(take(u16()))
    key_id = struct.unpack(">Q", take(8))[0]
    nonce = take(24)
    commitment = take(32)
    blobs = []
    for _ in range(u16()):
        pointer = take(u16()).decode()
        size = struct.unpack(">Q", take(8))[0]
        blobs.append((pointer, size, take(32)))
    return {"flags": flags, "appended_by": appended_by, "index": index, "key_id": key_id,
            "nonce": nonce, "commitment": commitment, "blobs": blobs, "header_len": at}


def rebuild(header, opening):
    """The event from a checked opening and the clear index."""
    if hashlib.sha256(opening).digest() != header["commitment"]:
        raise ValueError("the opening does not match the commitment")
    body = json.loads(opening[32:])
    if body.get("v") != 3:
        raise ValueError("not a v3 opening")
    event = body["event"]
    for name, value in header["index"].items():
        if name == "subject":
            continue
        if name in NESTED:
            target = event.setdefault(name, {})
            for member, v in value.items():
                if member in target:
                    raise ValueError("the opening repeats a clear field")
                target[member] = v
        else:
            if name in event:
                raise ValueError("the opening repeats a clear field")
            event[name] = value
    if header["blobs"]:
        raise ValueError("blob content is not part of this check")
    return event


def open_with_key(entry, key):
    header = parse(entry)
    ct = entry[header["header_len"]:]
    plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        ct, entry[:header["header_len"]], header["nonce"], key)
    if header["flags"] & 1:
        plain = zstandard.ZstdDecompressor().decompress(plain)
    return header, plain


def vectors():
    doc = json.loads((ROOT / "docs/vectors/entry-v3.json").read_text())
    key = bytes.fromhex(doc["key_hex"])
    for v in doc["vectors"]:
        entry = bytes.fromhex(v["entry_hex"])
        header, opening = open_with_key(entry, key)
        assert header["key_id"] == doc["key_id"], "key id"
        assert header["appended_by"] == doc["appended_by"], "appended_by"
        assert bool(header["flags"] & 1) == v["compressed"], "compression flag"
        assert opening.hex() == v["opening_hex"], "opening"
        assert hashlib.sha256(b"\0" + entry).hexdigest() == v["leaf_hash_hex"], "leaf hash"
        assert header["index"]["subject"] == doc["subject_tag"], "subject tag"
        assert rebuild(header, opening) == v["event"], "event"
    print(json.dumps({"vectors": len(doc["vectors"])}))


def live(url, token, index, event_file):
    req = urllib.request.Request(f"{url}/v1/events/{index}?proof=true",
                                 headers={"Authorization": f"Bearer {token}"})
    answer = json.load(urllib.request.urlopen(req))
    entry = base64.b64decode(answer["entry"])
    header = parse(entry)
    event = rebuild(header, base64.b64decode(answer["opening"]))
    want = json.loads(pathlib.Path(event_file).read_text())
    if event != want:
        raise ValueError(f"rebuilt {event!r}, posted {want!r}")
    print(json.dumps({"index": index, "flags": header["flags"], "entry_bytes": len(entry)}))


if __name__ == "__main__":
    try:
        if len(sys.argv) == 1:
            vectors()
        else:
            live(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
    except Exception as e:  # the reason, for the test's failure message
        print(f"entry_v3.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
