"""Entry format v3 and its blobs read from docs/format.md alone, with no
code of ours: PyNaCl's XChaCha20-Poly1305 and the zstandard package.

    python3 tests/interop/entry_v3.py                       # the vectors
    python3 tests/interop/entry_v3.py <url> <token> <index> <event.json>

With no arguments, decodes and opens every vector of
docs/vectors/entry-v3.json with its key: the entry, then each blob it
lists from the vector's stored bytes; puts the blobs back and checks the
whole event comes back. With arguments, fetches entry <index> of a running
ledger with its opening (GET /v1/events/<index>?proof=true), checks the
opening against the entry's commitment without any key; for each blob the
entry lists, fetches its content (GET /v1/events/<index>/blobs/<n>) and
its stored bytes (GET /v1/blobs/<id>, an admin token) and checks them
without any key (the content against its commitment with the salt in the
opening, the stored bytes against the SHA-256 in the entry); then rebuilds
the event and compares it with the event posted (a JSON file). Exits 1
with the reason on failure.
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
BLOB_HEADER_LEN = 44  # "AIB1", key u64, size u64, chunk size u32, chunk count u32, nonce prefix [16]
MAX_CHUNK = 4 << 20
# Flags bit 1 (only with bit 0): the zstd frame was made with this
# dictionary, which the frame does not name; docs/format.md gives its SHA-256.
OPENINGS_DICTIONARY = ROOT / "crates/event/dictionaries/openings-1.zdict"
OPENINGS_DICTIONARY_SHA256 = "5d34f9797fc4c28a31b0f4f061ea8158fa4d5008fd58be56fe404b981e0b22dc"


def openings_dictionary():
    data = OPENINGS_DICTIONARY.read_bytes()
    if hashlib.sha256(data).hexdigest() != OPENINGS_DICTIONARY_SHA256:
        raise ValueError("the openings dictionary is not the documented one")
    return zstandard.ZstdCompressionDict(data)


class Bytes:
    """Reads big-endian fields in order, refusing to run past the end."""

    def __init__(self, data, what):
        self.data, self.at, self.what = data, 0, what

    def take(self, n):
        if self.at + n > len(self.data):
            raise ValueError(f"{self.what} ends early")
        part = self.data[self.at:self.at + n]
        self.at += n
        return part

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]


def parse(entry):
    """The header fields of a v3 entry and where its ciphertext starts."""
    r = Bytes(entry, "the entry")
    if r.u8() != 3:
        raise ValueError("not a v3 entry")
    flags = r.u8()
    if flags & ~3 or flags == 2:
        raise ValueError("unknown flags")
    appended_by = r.take(r.u16()).decode()
    index = json.loads(r.take(r.u16()))
    key_id = r.u64()
    nonce = r.take(24)
    commitment = r.take(32)
    blobs = []
    for _ in range(r.u16()):
        pointer = r.take(r.u16()).decode()
        blobs.append({"pointer": pointer, "size": r.u64(), "commitment": r.take(32),
                      "stored": r.take(32)})
    if len(entry) - r.at < 16:
        raise ValueError("no ciphertext")
    return {"flags": flags, "appended_by": appended_by, "index": index, "key_id": key_id,
            "nonce": nonce, "commitment": commitment, "blobs": blobs, "header_len": r.at}


def pointer_tokens(pointer):
    """RFC 6901: the reference tokens of a JSON Pointer."""
    if not pointer.startswith("/"):
        raise ValueError(f"{pointer!r} is not a JSON Pointer")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def put_member(event, pointer, value):
    """Puts a blob's content at its pointer: the parent must be an object and the slot empty."""
    *parents, last = pointer_tokens(pointer)
    target = event
    for t in parents:
        target = target.get(t) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        raise ValueError(f"{pointer}: its parent is not an object of the event")
    if last in target:
        raise ValueError(f"{pointer}: the opening already holds this member")
    target[last] = value


def opening_blobs(header, body):
    """The opening's blob list, each with its salt, checked against the header's refs."""
    slots = body.get("blobs", [])
    if [s["pointer"] for s in slots] != [b["pointer"] for b in header["blobs"]]:
        raise ValueError("the opening's blobs are not the entry's, in its order")
    salts = [base64.b64decode(s["salt"], validate=True) for s in slots]
    if any(len(s) != 32 for s in salts):
        raise ValueError("a blob salt is not 32 bytes")
    return salts


def rebuild(header, opening, contents=()):
    """The whole event from a checked opening, the clear index and each
    blob's content (its member's canonical JSON, in the entry's order),
    every content checked against its commitment with the opening's salt."""
    if hashlib.sha256(opening).digest() != header["commitment"]:
        raise ValueError("the opening does not match the commitment")
    body = json.loads(opening[32:])
    if body.get("v") != 3:
        raise ValueError("not a v3 opening")
    salts = opening_blobs(header, body)
    if len(contents) != len(header["blobs"]):
        raise ValueError(f"{len(header['blobs'])} blobs listed, {len(contents)} contents given")
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
    for ref, salt, content in zip(header["blobs"], salts, contents):
        if len(content) != ref["size"]:
            raise ValueError(f"blob at {ref['pointer']}: {len(content)} bytes, "
                             f"the entry logs {ref['size']}")
        if hashlib.sha256(salt + content).digest() != ref["commitment"]:
            raise ValueError(f"blob at {ref['pointer']} does not match its commitment")
        put_member(event, ref["pointer"], json.loads(content))
    return event


def open_with_key(entry, key):
    header = parse(entry)
    ct = entry[header["header_len"]:]
    plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        ct, entry[:header["header_len"]], header["nonce"], key)
    if header["flags"] & 2:
        plain = zstandard.ZstdDecompressor(dict_data=openings_dictionary()).decompress(plain)
    elif header["flags"] & 1:
        plain = zstandard.ZstdDecompressor().decompress(plain)
    return header, plain


def check_stored(stored, ref):
    """With no key: the stored blob is the one its entry logs, and its
    header is well formed and holds the ref's size. Returns the header."""
    if hashlib.sha256(stored).digest() != ref["stored"]:
        raise ValueError(f"blob at {ref['pointer']}: its stored bytes are not the ones "
                         "the entry logs")
    r = Bytes(stored, "the stored blob")
    if r.take(4) != b"AIB1":
        raise ValueError("not a blob (no AIB1 header)")
    blob = {"key_id": r.u64(), "size": r.u64(), "chunk": r.u32(), "chunks": r.u32(),
            "nonce_prefix": r.take(16)}
    if not 0 < blob["chunk"] <= MAX_CHUNK:
        raise ValueError(f"chunk size {blob['chunk']} out of range")
    if blob["chunks"] != max(1, -(-blob["size"] // blob["chunk"])):
        raise ValueError(f"{blob['chunks']} chunks cannot hold {blob['size']} bytes")
    if blob["size"] != ref["size"]:
        raise ValueError(f"blob at {ref['pointer']} holds {blob['size']} bytes, "
                         f"the entry logs {ref['size']}")
    flags = []
    for i in range(blob["chunks"]):  # the frames, in the clear: flags and lengths
        flags.append(r.u8())
        length = r.u32()
        want = min(blob["chunk"], blob["size"] - i * blob["chunk"])
        if not 16 <= length <= want + 16:  # compressed only when smaller; 16: the tag
            raise ValueError(f"chunk {i} is {length} bytes for {want} of content")
        r.take(length)
    if r.at != len(stored):
        raise ValueError("bytes after the last chunk")
    blob["flags"] = flags
    return blob


def open_blob(stored, key, key_id, ref):
    """A stored blob's content, opened with its entry's data key: the
    stored SHA-256 first, then each chunk with nonce = prefix || u64 i and
    associated data = the 44 header bytes || blob id || u32 i || flags."""
    blob = check_stored(stored, ref)
    if blob["key_id"] != key_id:
        raise ValueError(f"blob sealed under key {blob['key_id']}, its entry names {key_id}")
    head = stored[:BLOB_HEADER_LEN]
    r = Bytes(stored, "the stored blob")
    r.take(BLOB_HEADER_LEN)
    content = b""
    for i in range(blob["chunks"]):
        want = min(blob["chunk"], blob["size"] - i * blob["chunk"])
        flags = r.u8()
        if flags & ~1:
            raise ValueError(f"chunk {i} has unknown flags")
        ct = r.take(r.u32())
        nonce = blob["nonce_prefix"] + struct.pack(">Q", i)
        aad = head + ref["commitment"] + struct.pack(">I", i) + bytes([flags])
        plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, aad, nonce, key)
        if flags & 1:
            plain = zstandard.ZstdDecompressor().decompress(plain, max_output_size=want)
        if len(plain) != want:
            raise ValueError(f"chunk {i} holds {len(plain)} bytes, not {want}")
        content += plain
    return content


def vectors():
    doc = json.loads((ROOT / "docs/vectors/entry-v3.json").read_text())
    key = bytes.fromhex(doc["key_hex"])
    blobs = 0
    for v in doc["vectors"]:
        name = v["name"]
        entry = bytes.fromhex(v["entry_hex"])
        header, opening = open_with_key(entry, key)
        assert header["key_id"] == doc["key_id"], f"{name}: key id"
        assert header["appended_by"] == doc["appended_by"], f"{name}: appended_by"
        assert bool(header["flags"] & 1) == v["compressed"], f"{name}: compression flag"
        assert bool(header["flags"] & 2) == ("dictionary" in v), f"{name}: dictionary flag"
        assert opening.hex() == v["opening_hex"], f"{name}: opening"
        assert hashlib.sha256(b"\0" + entry).hexdigest() == v["leaf_hash_hex"], f"{name}: leaf hash"
        assert header["index"]["subject"] == doc["subject_tag"], f"{name}: subject tag"
        listed = v.get("blobs", [])
        assert len(header["blobs"]) == len(listed), f"{name}: blobs listed"
        salts = opening_blobs(header, json.loads(opening[32:]))
        contents = []
        for ref, salt, b in zip(header["blobs"], salts, listed):
            assert ref["pointer"] == b["pointer"], f"{name}: blob pointer"
            assert ref["size"] == b["size"], f"{name}: blob size"
            assert ref["commitment"].hex() == b["id_hex"], f"{name}: blob id"
            assert ref["stored"].hex() == b["stored_sha256_hex"], f"{name}: stored hash"
            assert salt.hex() == b["salt_hex"], f"{name}: blob salt"
            stored = bytes.fromhex(b["stored_hex"])
            blob = check_stored(stored, ref)
            assert blob["nonce_prefix"].hex() == b["nonce_prefix_hex"], f"{name}: nonce prefix"
            assert all(bool(f & 1) == v["compressed"] for f in blob["flags"]), \
                f"{name}: chunk compression flag"
            contents.append(open_blob(stored, key, header["key_id"], ref))
        assert rebuild(header, opening, contents) == v["event"], f"{name}: event"
        blobs += len(contents)
    print(json.dumps({"vectors": len(doc["vectors"]), "blobs": blobs}))


def get(url, token):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return r.read()


def live(url, token, index, event_file):
    answer = json.loads(get(f"{url}/v1/events/{index}?proof=true", token))
    entry = base64.b64decode(answer["entry"])
    header = parse(entry)
    contents, chunk_flags = [], []
    for n, ref in enumerate(header["blobs"]):
        # No key anywhere: the content is checked against its commitment
        # (in rebuild), the stored bytes against the entry's SHA-256.
        contents.append(get(f"{url}/v1/events/{index}/blobs/{n}", token))
        stored = get(f"{url}/v1/blobs/{ref['commitment'].hex()}", token)
        blob = check_stored(stored, ref)
        if blob["key_id"] != header["key_id"]:
            raise ValueError(f"blob {n} sealed under key {blob['key_id']}, "
                             f"its entry names {header['key_id']}")
        chunk_flags.append(blob["flags"])
    event = rebuild(header, base64.b64decode(answer["opening"]), contents)
    want = json.loads(pathlib.Path(event_file).read_text())
    if event != want:
        raise ValueError(f"rebuilt {event!r}, posted {want!r}")
    print(json.dumps({"index": index, "flags": header["flags"], "entry_bytes": len(entry),
                      "blobs": [{"pointer": r["pointer"], "size": r["size"], "chunk_flags": f}
                                for r, f in zip(header["blobs"], chunk_flags)]}))


if __name__ == "__main__":
    try:
        if len(sys.argv) == 1:
            vectors()
        else:
            live(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
    except Exception as e:  # the reason, for the test's failure message
        print(f"entry_v3.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
