//! Entry format v3: the sealed entry in binary (docs/format.md).
//!
//! v2 spent a third of a sealed entry on base64 and stored the clear fields
//! twice (in the index and again inside the sealed event). v3 keeps the
//! same commitment rule and cipher but writes the ciphertext as bytes,
//! keeps the clear fields only in the clear header, may compress the opening
//! before sealing it, and lists the event's out-of-line content (blobs)
//! with their commitments so the leaf commits to every byte of the event.
//!
//! ```text
//! 0x03 | flags u8 | u16 A | appended_by | u16 I | clear index (canonical JSON)
//!      | key u64 | nonce [24] | commitment [32]
//!      | u16 B | B × (u16 P | pointer | size u64 | commitment [32] | stored sha256 [32])
//!      | ciphertext (the rest): XChaCha20-Poly1305(opening or zstd(opening)), AAD = every byte before it
//! opening = salt [32] || {["blobs":[{"pointer":…,"salt":…}],]"event":<event minus clear
//!                         fields (subject kept), minus blobs>[,"redacted":[…]][,"signature":{…}],"v":3}
//! commitment = SHA-256(opening)
//! ```

use crate::canonical::{write_canonical, write_members};
use crate::envelope::{sha256, write_clear_index, DataKey, CLEAR_FIELDS, SEAL_RANDOM_LEN};
use crate::signature::EventSignature;
use crate::{CheckedEvent, EventError, PreparedEvent};
use aiaudit_tlog::{record_hash, Hash, MAX_ENTRY_SIZE};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::{Map, Value};
use std::cell::RefCell;

/// The first byte of every v3 entry (v1 and v2 entries begin with `{`).
pub const VERSION_BYTE: u8 = 3;
/// Flag bit: the ciphertext seals a zstd frame of the opening.
pub const FLAG_ZSTD: u8 = 1;
/// Flag bit, only with [`FLAG_ZSTD`]: the frame was compressed with the
/// openings dictionary [`OPENINGS_DICTIONARY`] (the frame does not name it).
pub const FLAG_DICTIONARY: u8 = 2;
/// The zstd dictionary of openings (docs/format.md, "The openings
/// dictionary"): 4,096 bytes, SHA-256 `5d34f979…0b22dc`. Entries sealed with
/// it need these exact bytes to open, so they never change; a better
/// dictionary would be another flag.
pub const OPENINGS_DICTIONARY: &[u8] = include_bytes!("../dictionaries/openings-1.zdict");
/// Whether stored `entry` is a v3 entry whose opening was compressed with
/// [`OPENINGS_DICTIONARY`] (builds without it cannot open it).
pub fn uses_openings_dictionary(entry: &[u8]) -> bool {
    entry.first() == Some(&VERSION_BYTE) && entry.get(1).is_some_and(|f| f & FLAG_DICTIONARY != 0)
}

/// The most an opening may decompress to: an event's largest size plus room.
pub const MAX_OPENING: usize = 17 << 20;
const SALT_LEN: usize = 32;
/// zstd level for openings. On 1 KiB AI events level 1 compresses as well
/// as zstd's default 3 in three quarters of the time (docs/performance.md);
/// negative levels barely compress events this small.
const ZSTD_LEVEL: i32 = 1;

/// Out-of-line content the entry commits to: the event member at `pointer`
/// (RFC 6901), `size` bytes of canonical JSON, stored as an encrypted blob
/// whose id is `commitment` = SHA-256(salt || those bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub pointer: String,
    pub size: u64,
    pub commitment: Hash,
    /// SHA-256 of the stored (sealed) blob bytes: lets anyone check a stored
    /// blob with no key, before and after its key is destroyed.
    pub stored: Hash,
}

/// A blob to list in an entry: its reference and the salt its opening keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlob {
    pub reference: BlobRef,
    pub salt: [u8; 32],
}

/// The parts of a v3 entry a reader needs beyond [`crate::envelope::Sealed`]'s.
#[derive(Debug, Clone, PartialEq)]
pub struct V3 {
    pub flags: u8,
    /// The clear index without the subject tag, merged back into the opened event.
    pub clear: Map<String, Value>,
    pub blobs: Vec<BlobRef>,
    /// Every byte before the ciphertext: the AEAD's associated data.
    pub header: Vec<u8>,
}

/// A v3 entry split into its fields, without any key.
pub struct Parsed<'a> {
    pub flags: u8,
    pub appended_by: Option<&'a str>,
    pub index: &'a [u8],
    pub key: u64,
    pub nonce: [u8; 24],
    pub commitment: Hash,
    pub blobs: Vec<BlobRef>,
    pub header_len: usize,
}

fn err(pointer: &str, detail: impl Into<String>) -> EventError {
    EventError::new(pointer, detail)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], EventError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| err(what, "entry ends early"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self, what: &str) -> Result<usize, EventError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]) as usize)
    }
    fn u64(&mut self, what: &str) -> Result<u64, EventError> {
        let s = self.take(8, what)?;
        Ok(u64::from_be_bytes(s.try_into().expect("8 bytes")))
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], EventError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }
    fn text(&mut self, what: &str) -> Result<&'a str, EventError> {
        let n = self.u16(what)?;
        std::str::from_utf8(self.take(n, what)?).map_err(|_| err(what, "not UTF-8"))
    }
}

/// Splits a v3 entry into its fields (no key needed, nothing decrypted).
pub fn parse(entry: &[u8]) -> Result<Parsed<'_>, EventError> {
    let mut r = Reader { b: entry, at: 0 };
    if r.take(1, "/v")?[0] != VERSION_BYTE {
        return Err(err("/v", "not a v3 entry"));
    }
    let flags = r.take(1, "/flags")?[0];
    if flags & !(FLAG_ZSTD | FLAG_DICTIONARY) != 0 || flags == FLAG_DICTIONARY {
        return Err(err("/flags", format!("unknown flags {flags:#04x}")));
    }
    let appended_by = r.text("/appended_by")?;
    let index_len = r.u16("/index")?;
    let index = r.take(index_len, "/index")?;
    let key = r.u64("/sealed/key")?;
    let nonce = r.array::<24>("/sealed/nonce")?;
    let commitment = r.array::<32>("/commitment")?;
    let count = r.u16("/blobs")?;
    let mut blobs = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let pointer = r.text("/blobs")?;
        if !pointer.starts_with('/') {
            return Err(err("/blobs", "a blob pointer starts with /"));
        }
        blobs.push(BlobRef {
            pointer: pointer.to_string(),
            size: r.u64("/blobs")?,
            commitment: r.array::<32>("/blobs")?,
            stored: r.array::<32>("/blobs")?,
        });
    }
    if r.at + 16 > entry.len() {
        return Err(err("/sealed/ct", "no ciphertext"));
    }
    Ok(Parsed {
        flags,
        appended_by: (!appended_by.is_empty()).then_some(appended_by),
        index,
        key,
        nonce,
        commitment,
        blobs,
        header_len: r.at,
    })
}

/// The blobs an entry lists (none for v1, v2, or an entry that does not
/// parse: its own check reports that).
pub fn blob_refs(entry: &[u8]) -> Vec<BlobRef> {
    if entry.first() != Some(&VERSION_BYTE) {
        return Vec::new();
    }
    parse(entry).map(|p| p.blobs).unwrap_or_default()
}

/// The clear index of a v3 entry, as its bytes (canonical JSON), for
/// readers that scan it without decoding the rest.
pub fn index_bytes(entry: &[u8]) -> Option<&[u8]> {
    if entry.first() != Some(&VERSION_BYTE) {
        return None;
    }
    parse(entry).ok().map(|p| p.index)
}

/// The members of a clear object the remainder keeps.
type Kept<'a> = Vec<(&'a String, &'a Value)>;

/// Writes the canonical JSON of the event minus its clear fields (the
/// subject stays: the clear index holds only its tag); an object emptied by
/// the removal goes too, so [`merge_clear`] restores exactly the original.
/// Written straight from the event, with no copy of it on the ingest path.
pub fn write_remainder(out: &mut Vec<u8>, event: &Map<String, Value>) {
    let top = CLEAR_FIELDS[0].1;
    let members: Vec<(&String, (Option<Kept<'_>>, &Value))> = event
        .iter()
        .filter(|(k, _)| k.as_str() == "subject" || !top.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let clear = CLEAR_FIELDS
                .iter()
                .find(|(o, _)| !o.is_empty() && o == k)
                .map(|(_, m)| *m);
            match (clear, v) {
                (Some(clear), Value::Object(inner)) => {
                    let kept: Vec<(&String, &Value)> = inner
                        .iter()
                        .filter(|(m, _)| !clear.contains(&m.as_str()))
                        .collect();
                    // Emptied by the removal: gone, as in `remainder`.
                    (!kept.is_empty() || inner.is_empty()).then_some((k, (Some(kept), v)))
                }
                _ => Some((k, (None, v))),
            }
        })
        .collect();
    write_members(out, members, |out, (kept, v)| match kept {
        None => write_canonical(out, v),
        Some(kept) => write_members(out, kept, write_canonical),
    });
}

/// Puts the clear fields back into what [`write_remainder`] wrote. Refuses a remainder that
/// holds a clear field itself (the opening would contradict the index).
pub fn merge_clear(
    mut rest: Map<String, Value>,
    clear: &Map<String, Value>,
) -> Result<Map<String, Value>, EventError> {
    let repeated = || err("/event", "the opening repeats a clear field");
    for (k, v) in clear {
        let nested = CLEAR_FIELDS.iter().any(|(o, _)| !o.is_empty() && o == k);
        match (nested, v) {
            (true, Value::Object(members)) => {
                let slot = rest
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(target) = slot else {
                    return Err(repeated());
                };
                for (m, mv) in members {
                    if target.insert(m.clone(), mv.clone()).is_some() {
                        return Err(repeated());
                    }
                }
            }
            _ => {
                if rest.insert(k.clone(), v.clone()).is_some() {
                    return Err(repeated());
                }
            }
        }
    }
    Ok(rest)
}

/// Which members of `event` go out of line, as JSON Pointers in the order
/// the entry lists them. `always`: pointers stored out of line whenever
/// present; any other member goes when its canonical JSON reaches
/// `threshold` bytes. Clear fields never do (the index needs them). An
/// object at or above the threshold is split (its large members go, the
/// rest stays) when what stays is under the threshold, and goes whole
/// otherwise; arrays and scalars go whole, so no array index ever shifts.
/// `whole` is the event's canonical length: below the threshold nothing
/// is measured.
pub fn plan_blobs(
    event: &Map<String, Value>,
    whole: usize,
    threshold: usize,
    always: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in always {
        // No pointer may lie inside another: one of them would have no parent to go back into.
        if !is_clear_pointer(p) && pointer_get(event, p).is_some() && !overlaps(&out, p) {
            out.push(p.clone());
        }
    }
    if whole < threshold {
        return out;
    }
    let mut buf = Vec::new();
    plan_object(event, "", true, threshold, &mut out, &mut buf);
    debug_assert!(out.iter().enumerate().all(|(i, p)| !overlaps(&out[..i], p)));
    out
}

/// Whether `p` lies strictly inside the member `q` names.
fn is_below(p: &str, q: &str) -> bool {
    p.len() > q.len() && p.starts_with(q) && p.as_bytes()[q.len()] == b'/'
}

/// Whether `p` equals, contains or lies inside a pointer of `chosen`.
fn overlaps(chosen: &[String], p: &str) -> bool {
    chosen
        .iter()
        .any(|q| q == p || is_below(p, q) || is_below(q, p))
}

fn canonical_len(v: &Value, buf: &mut Vec<u8>) -> usize {
    buf.clear();
    write_canonical(buf, v);
    buf.len()
}

fn escape_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Whether a pointer names a clear field (or a clear object whole).
fn is_clear_pointer(pointer: &str) -> bool {
    let mut parts = pointer.split('/').skip(1);
    let Some(first) = parts.next() else {
        return true;
    };
    let top = CLEAR_FIELDS[0].1;
    if top.contains(&first) {
        return true;
    }
    match (CLEAR_FIELDS.iter().find(|(o, _)| *o == first), parts.next()) {
        (Some(_), None) => true,
        (Some((_, members)), Some(m)) => members.contains(&m),
        (None, _) => false,
    }
}

/// Plans the members of the object at `at`. A `pinned` object stays in the
/// event whatever its size (the event itself, the objects holding clear
/// fields, an object holding a member `blob_fields` names): its own members
/// go, largest first, until the rest is under the threshold.
fn plan_object(
    obj: &Map<String, Value>,
    at: &str,
    pinned: bool,
    threshold: usize,
    out: &mut Vec<String>,
    buf: &mut Vec<u8>,
) {
    // An object holding a member already chosen cannot go whole: plan inside it.
    let mut holding = Vec::new();
    // The members that may move, with their sizes; clear ones stay.
    let mut movable: Vec<(String, &Value, usize)> = Vec::new();
    for (k, v) in obj {
        let p = format!("{at}/{}", escape_token(k));
        if is_clear_pointer(&p) || out.iter().any(|q| *q == p || is_below(&p, q)) {
            continue;
        }
        if out.iter().any(|q| is_below(q, &p)) {
            holding.push((p, v));
            continue;
        }
        let n = canonical_len(v, buf);
        movable.push((p, v, n));
    }
    for (p, v) in holding {
        if let Value::Object(inner) = v {
            plan_object(inner, &p, true, threshold, out, buf);
        }
    }
    if at.is_empty() {
        for (object, _) in &CLEAR_FIELDS[1..] {
            if let Some(Value::Object(inner)) = obj.get(*object) {
                plan_object(inner, &format!("/{object}"), true, threshold, out, buf);
            }
        }
    }
    let small: usize = movable
        .iter()
        .filter(|m| m.2 < threshold)
        .map(|m| m.2)
        .sum();
    for (p, v, n) in &movable {
        if *n >= threshold {
            place(p, v, threshold, out, buf);
        }
    }
    if pinned && small >= threshold {
        movable.retain(|m| m.2 < threshold);
        movable.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        let mut rest = small;
        for (p, _, n) in movable {
            if rest < threshold {
                break;
            }
            rest -= n;
            out.push(p);
        }
    }
}

/// A member at or above the threshold: split or moved whole (see [`plan_blobs`]).
fn place(pointer: &str, v: &Value, threshold: usize, out: &mut Vec<String>, buf: &mut Vec<u8>) {
    let Value::Object(inner) = v else {
        out.push(pointer.to_string());
        return;
    };
    let sizes: Vec<usize> = inner.values().map(|m| canonical_len(m, buf)).collect();
    let big = sizes.iter().filter(|&&n| n >= threshold).count();
    let small: usize = sizes.iter().filter(|&&n| n < threshold).sum();
    if big == 0 || small >= threshold {
        out.push(pointer.to_string());
        return;
    }
    for ((k, m), n) in inner.iter().zip(sizes) {
        if n >= threshold {
            place(
                &format!("{pointer}/{}", escape_token(k)),
                m,
                threshold,
                out,
                buf,
            );
        }
    }
}

fn tokens(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

fn pointer_get<'a>(event: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let tokens = tokens(pointer)?;
    let (last, parents) = tokens.split_last()?;
    let mut obj = event;
    for t in parents {
        obj = obj.get(t)?.as_object()?;
    }
    obj.get(last)
}

/// Removes the member at `pointer` (object members only) and returns it.
pub fn take_member(event: &mut Map<String, Value>, pointer: &str) -> Option<Value> {
    let tokens = tokens(pointer)?;
    let (last, parents) = tokens.split_last()?;
    let mut obj = event;
    for t in parents {
        obj = obj.get_mut(t)?.as_object_mut()?;
    }
    obj.remove(last)
}

/// Puts a blob's content back at its pointer: the parent must be an object
/// and the slot empty (an opening holding the member already would let it
/// contradict the blob).
pub fn put_member(
    event: &mut Map<String, Value>,
    pointer: &str,
    value: Value,
) -> Result<(), EventError> {
    let bad = |d: &str| err("/blobs", format!("{pointer}: {d}"));
    let tokens = tokens(pointer).ok_or_else(|| bad("not a JSON Pointer"))?;
    let (last, parents) = tokens.split_last().ok_or_else(|| bad("empty"))?;
    let mut obj = event;
    for t in parents {
        obj = obj
            .get_mut(t)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| bad("its parent is not an object of the event"))?;
    }
    if obj.contains_key(last) {
        return Err(bad("the opening already holds this member"));
    }
    obj.insert(last.clone(), value);
    Ok(())
}

/// How [`seal`] may compress an opening (kept only when it gets smaller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Off,
    /// zstd on its own: every build that reads v3 opens it.
    Zstd,
    /// zstd with [`OPENINGS_DICTIONARY`]: about 40 % less CPU on 1 KiB
    /// openings (no entropy tables built per frame) and smaller, but only
    /// builds that know the dictionary open it (entry-format gate 5).
    ZstdDictionary,
}

type Compressors = [Option<zstd::bulk::Compressor<'static>>; 2];

thread_local! {
    static COMPRESSORS: RefCell<Compressors> = const { RefCell::new([None, None]) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(opening: &[u8], dictionary: bool) -> Option<Vec<u8>> {
    COMPRESSORS.with(|c| {
        let mut slots = c.borrow_mut();
        let slot = &mut slots[usize::from(dictionary)];
        if slot.is_none() {
            *slot = if dictionary {
                zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, OPENINGS_DICTIONARY)
                    .and_then(|mut c| {
                        use zstd::stream::raw::CParameter;
                        // The flag names the dictionary: four bytes saved per entry.
                        c.set_parameter(CParameter::DictIdFlag(false))?;
                        // Skip ahead faster between matches: 44 % less time
                        // on 1 KiB openings than zstd's level 1 for 4 - 7 %
                        // of the ratio (docs/performance.md, sessions 32 and
                        // 33). zstd's automatic mode would then leave
                        // literals raw; they stay Huffman-coded.
                        c.set_parameter(CParameter::TargetLength(3))?;
                        c.set_parameter(CParameter::LiteralCompressionMode(
                            zstd::zstd_safe::ParamSwitch::Enable,
                        ))?;
                        Ok(c)
                    })
                    .ok()
            } else {
                zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()
            };
        }
        slot.as_mut()?.compress(opening).ok()
    })
}

fn decompress(frame: &[u8], dictionary: bool) -> Result<Vec<u8>, EventError> {
    let bad = |d: &str| err("/sealed/ct", format!("the compressed opening {d}"));
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n as usize <= MAX_OPENING => n as usize,
        Ok(Some(_)) => return Err(bad("is larger than any event")),
        _ => return Err(bad("does not state its size")),
    };
    let out = if dictionary {
        DECOMPRESSOR.with(|d| {
            let mut slot = d.borrow_mut();
            if slot.is_none() {
                *slot = zstd::bulk::Decompressor::with_dictionary(OPENINGS_DICTIONARY).ok();
            }
            slot.as_mut()
                .ok_or_else(|| bad("needs a dictionary that would not load"))?
                .decompress(frame, size)
                .map_err(|_| bad("is not a zstd frame made with the openings dictionary"))
        })?
    } else {
        zstd::bulk::decompress(frame, size).map_err(|_| bad("is not a zstd frame"))?
    };
    if out.len() != size {
        return Err(bad("is not the size it states"));
    }
    Ok(out)
}

/// What [`seal`] (and the v2 [`crate::envelope::seal`]) needs beyond the key.
#[derive(Clone, Copy)]
pub struct SealInput<'a> {
    pub event: &'a Map<String, Value>,
    pub checked: &'a CheckedEvent,
    pub signature: Option<&'a EventSignature>,
    pub appended_by: Option<&'a str>,
    pub redacted: &'a [String],
    pub subject_tag: Option<&'a str>,
    /// How to try compressing the opening (kept only when it is smaller).
    pub compress: Compression,
    /// Members already stored out of line (and absent from `event`), in
    /// the order the entry lists them.
    pub blobs: &'a [SealedBlob],
}

impl<'a> SealInput<'a> {
    /// An event as it came, checked: no signature, no principal, nothing
    /// redacted or out of line, no subject tag, not compressed. Set the
    /// rest with struct update syntax.
    pub fn new(event: &'a Map<String, Value>, checked: &'a CheckedEvent) -> Self {
        SealInput {
            event,
            checked,
            signature: None,
            appended_by: None,
            redacted: &[],
            subject_tag: None,
            compress: Compression::Off,
            blobs: &[],
        }
    }
}

/// Seals a checked event into a v3 entry under `key`.
pub fn seal(
    input: &SealInput<'_>,
    key: DataKey<'_>,
    random: &[u8; SEAL_RANDOM_LEN],
) -> Result<PreparedEvent, Vec<EventError>> {
    let (nonce, salt) = random.split_at(24);
    let mut opening = Vec::with_capacity(SALT_LEN + input.checked.canonical_len + 64);
    opening.extend_from_slice(salt);
    opening.push(b'{');
    if !input.blobs.is_empty() {
        let slots: Vec<Value> = input
            .blobs
            .iter()
            .map(
                |b| serde_json::json!({"pointer": b.reference.pointer, "salt": B64.encode(b.salt)}),
            )
            .collect();
        opening.extend_from_slice(b"\"blobs\":");
        write_canonical(&mut opening, &Value::Array(slots));
        opening.push(b',');
    }
    opening.extend_from_slice(b"\"event\":");
    write_remainder(&mut opening, input.event);
    if !input.redacted.is_empty() {
        let mut sorted = input.redacted.to_vec();
        sorted.sort();
        opening.extend_from_slice(b",\"redacted\":");
        write_canonical(&mut opening, &Value::from(sorted));
    }
    if let Some(sig) = input.signature {
        opening.extend_from_slice(b",\"signature\":");
        write_canonical(&mut opening, &sig.to_json());
    }
    opening.extend_from_slice(b",\"v\":3}");
    let commitment = sha256(&opening);

    let mut flags = 0u8;
    let dictionary = input.compress == Compression::ZstdDictionary;
    let compressed = match input.compress {
        Compression::Off => None,
        _ => compress(&opening, dictionary).filter(|c| c.len() < opening.len()),
    };
    if compressed.is_some() {
        flags |= FLAG_ZSTD;
        if dictionary {
            flags |= FLAG_DICTIONARY;
        }
    }

    let mut index_json = Vec::with_capacity(256);
    write_clear_index(&mut index_json, input.event, input.subject_tag);
    let who = input.appended_by.unwrap_or("").as_bytes();
    let too_long = |what: &str, n: usize| {
        vec![err(
            what,
            format!("{n} bytes; a v3 entry holds at most 65,535"),
        )]
    };
    let who_len = u16::try_from(who.len()).map_err(|_| too_long("/appended_by", who.len()))?;
    let index_len =
        u16::try_from(index_json.len()).map_err(|_| too_long("/index", index_json.len()))?;

    let plain = compressed.as_deref().unwrap_or(&opening);
    let mut entry = Vec::with_capacity(plain.len() + index_json.len() + who.len() + 128);
    entry.push(VERSION_BYTE);
    entry.push(flags);
    entry.extend_from_slice(&who_len.to_be_bytes());
    entry.extend_from_slice(who);
    entry.extend_from_slice(&index_len.to_be_bytes());
    entry.extend_from_slice(&index_json);
    entry.extend_from_slice(&key.id.to_be_bytes());
    entry.extend_from_slice(nonce);
    entry.extend_from_slice(&commitment);
    let count =
        u16::try_from(input.blobs.len()).map_err(|_| too_long("/blobs", input.blobs.len()))?;
    entry.extend_from_slice(&count.to_be_bytes());
    for b in input.blobs {
        let r = &b.reference;
        let p = u16::try_from(r.pointer.len()).map_err(|_| too_long("/blobs", r.pointer.len()))?;
        entry.extend_from_slice(&p.to_be_bytes());
        entry.extend_from_slice(r.pointer.as_bytes());
        entry.extend_from_slice(&r.size.to_be_bytes());
        entry.extend_from_slice(&r.commitment);
        entry.extend_from_slice(&r.stored);
    }
    // The ciphertext goes straight after the bytes it is bound to.
    let header_len = entry.len();
    entry.reserve(plain.len() + aiaudit_xchacha::TAG_LEN);
    entry.extend_from_slice(plain);
    let (header, body) = entry.split_at_mut(header_len);
    let nonce: &[u8; 24] = nonce.try_into().expect("24-byte nonce");
    let tag = aiaudit_xchacha::seal_in_place(key.key, nonce, header, body)
        .map_err(|_| vec![err("", "encryption failed")])?;
    entry.extend_from_slice(&tag);
    if entry.len() > MAX_ENTRY_SIZE {
        return Err(vec![err(
            "",
            format!(
                "the sealed event is {} bytes; the most a log entry holds is {MAX_ENTRY_SIZE}",
                entry.len()
            ),
        )]);
    }
    let leaf = record_hash(&entry);
    Ok(PreparedEvent {
        id: input.checked.id.clone(),
        dedup_key: crate::dedup_key(input.checked.tenant(), &input.checked.id),
        entry,
        leaf,
    })
}

/// Decodes a v3 entry (no key) into the common stored form.
pub(crate) fn decode(entry: &[u8]) -> Result<crate::envelope::Stored, EventError> {
    let p = parse(entry)?;
    let index: Map<String, Value> = match serde_json::from_slice(p.index) {
        Ok(Value::Object(m)) => m,
        _ => return Err(err("/index", "the clear index is not a JSON object")),
    };
    let mut clear = index.clone();
    clear.remove("subject");
    Ok(crate::envelope::Stored {
        version: 3,
        appended_by: p.appended_by.map(str::to_string),
        index,
        plain: None,
        sealed: Some(crate::envelope::Sealed {
            key: p.key,
            nonce: p.nonce,
            ct: entry[p.header_len..].to_vec(),
            commitment: p.commitment,
            v3: Some(V3 {
                flags: p.flags,
                clear,
                blobs: p.blobs,
                header: entry[..p.header_len].to_vec(),
            }),
        }),
    })
}

/// Decrypts a v3 ciphertext into its opening (decompressed).
pub(crate) fn decrypt(
    v3: &V3,
    nonce: &[u8; 24],
    ct: &[u8],
    key: &[u8; 32],
) -> Result<Vec<u8>, EventError> {
    let plain = aiaudit_xchacha::open(key, nonce, &v3.header, ct)
        .map_err(|_| err("/sealed/ct", "does not decrypt under its data key"))?;
    if v3.flags & FLAG_ZSTD != 0 {
        decompress(&plain, v3.flags & FLAG_DICTIONARY != 0)
    } else {
        Ok(plain)
    }
}

/// A v3 opening's blob slot: where the content goes and its salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSlot {
    pub pointer: String,
    pub salt: [u8; 32],
}

/// Reads a v3 opening (already checked against the commitment): the whole
/// event but its blobs, the blob slots, redactions and signature.
pub(crate) fn read_opening(
    v3: &V3,
    body: &[u8],
) -> Result<(crate::Entry, Vec<String>, Vec<BlobSlot>), EventError> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(err("/commitment", "the opening is not a JSON object"));
    };
    if obj.get("v").and_then(Value::as_u64) != Some(3) {
        return Err(err("/v", "the opening of a v3 entry is not version 3"));
    }
    let Some(Value::Object(rest)) = obj.remove("event") else {
        return Err(err("/event", "the opening has no event object"));
    };
    let event = merge_clear(rest, &v3.clear)?;
    let redacted = match obj.remove("redacted") {
        None => Vec::new(),
        Some(r) => {
            serde_json::from_value(r).map_err(|_| err("/redacted", "not a list of field paths"))?
        }
    };
    let mut slots = Vec::new();
    if let Some(list) = obj.remove("blobs") {
        let list = list.as_array().ok_or_else(|| err("/blobs", "not a list"))?;
        for b in list {
            let pointer = b.get("pointer").and_then(Value::as_str);
            let salt = b
                .get("salt")
                .and_then(Value::as_str)
                .and_then(|s| B64.decode(s).ok())
                .and_then(|s| <[u8; 32]>::try_from(s).ok());
            match (pointer, salt) {
                (Some(p), Some(s)) => slots.push(BlobSlot {
                    pointer: p.to_string(),
                    salt: s,
                }),
                _ => {
                    return Err(err(
                        "/blobs",
                        "a blob slot needs a pointer and a 32-byte salt",
                    ))
                }
            }
        }
    }
    let listed: Vec<&str> = v3.blobs.iter().map(|b| b.pointer.as_str()).collect();
    let slotted: Vec<&str> = slots.iter().map(|s| s.pointer.as_str()).collect();
    if listed != slotted {
        return Err(err("/blobs", "the opening's blobs differ from the entry's"));
    }
    let entry = crate::Entry {
        version: 3,
        event,
        signature: obj.remove("signature"),
        appended_by: None,
    };
    Ok((entry, redacted, slots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decode_stored, index_matches};
    use proptest::prelude::*;
    use serde_json::json;

    const KEY: [u8; 32] = [7; 32];

    /// [`write_remainder`]'s output built as a map, the plain way, to check it.
    fn remainder(event: &Map<String, Value>) -> Map<String, Value> {
        let mut rest = event.clone();
        for (object, members) in CLEAR_FIELDS {
            if object.is_empty() {
                for m in *members {
                    if *m != "subject" {
                        rest.remove(*m);
                    }
                }
            } else if let Some(Value::Object(inner)) = rest.get_mut(*object) {
                let had = !inner.is_empty();
                for m in *members {
                    inner.remove(*m);
                }
                if had && inner.is_empty() {
                    rest.remove(*object);
                }
            }
        }
        rest
    }

    fn event(content: &str) -> Value {
        json!({"time": "2026-11-27T09:14:03.120Z", "id": "e1", "tenant": "acme",
            "source": {"name": "app", "build": 7}, "actor": {"id": "u1", "type": "user"},
            "action": "model.invoke", "subject": "customer-1",
            "ai": {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3},
            "input": {"content": content}, "outcome": {"status": "success", "reason": "why"}})
    }

    fn sealed(e: &Value, compress: Compression, who: Option<&str>) -> PreparedEvent {
        let checked = crate::check(e).unwrap();
        seal(
            &SealInput {
                event: e.as_object().unwrap(),
                checked: &checked,
                signature: None,
                appended_by: who,
                redacted: &[],
                subject_tag: Some("hmac-sha256:ab"),
                compress,
                blobs: &[],
            },
            DataKey { id: 9, key: &KEY },
            &[1; SEAL_RANDOM_LEN],
        )
        .unwrap()
    }

    #[test]
    fn seals_opens_and_restores_the_exact_event() {
        use Compression::*;
        for (compress, flags) in [(Off, 0), (Zstd, FLAG_ZSTD), (ZstdDictionary, 3)] {
            let e = event(&"the model said something long ".repeat(20));
            let p = sealed(&e, compress, Some("token:t1"));
            assert_eq!(p.entry[0], VERSION_BYTE);
            assert_eq!(p.entry[1], flags);
            let stored = decode_stored(&p.entry).unwrap();
            assert_eq!(stored.version, 3);
            assert_eq!(stored.appended_by.as_deref(), Some("token:t1"));
            assert_eq!(stored.id(), Some("e1"));
            assert_eq!(stored.index["subject"], "hmac-sha256:ab");
            assert_eq!(stored.index["outcome"], json!({"status": "success"}));
            let s = stored.sealed.as_ref().unwrap();
            let opened = s.open(&KEY).unwrap();
            assert_eq!(&opened.entry.event, e.as_object().unwrap());
            assert!(index_matches(&stored.index, &opened.entry.event));
            // Clear fields are stored once: the opening lacks them.
            let body = std::str::from_utf8(&opened.opening[32..]).unwrap();
            assert!(!body.contains("model.invoke") && body.contains("customer-1"));
            // The opening alone (no key) proves the same event.
            let again = s.check_opening(opened.opening.clone()).unwrap();
            assert_eq!(again.entry, opened.entry);
            let mut canonical = Vec::new();
            crate::canonical::write_object(&mut canonical, &opened.entry.event);
            assert_eq!(canonical, crate::canonical_event(&e));
            assert_eq!(canonical.len(), crate::check(&e).unwrap().canonical_len);
        }
    }

    #[test]
    fn compression_shrinks_repetitive_content() {
        let e = event(&"the model said something long ".repeat(20));
        let plain = sealed(&e, Compression::Off, None).entry.len();
        let small = sealed(&e, Compression::Zstd, None).entry.len();
        assert!(small * 2 < plain, "{small} vs {plain}");
    }

    #[test]
    fn the_dictionary_makes_small_openings_smaller() {
        // English the dictionary never saw (it learnt from docs/).
        let text = "Please summarise the customer's complaint about the late delivery \
            and suggest a refund amount that follows the published policy for orders \
            over fifty dollars; mention the tracking number and apologise once.";
        let e = event(text);
        let alone = sealed(&e, Compression::Zstd, None).entry.len();
        let with = sealed(&e, Compression::ZstdDictionary, None).entry.len();
        assert!(
            with < alone,
            "{with} with the dictionary vs {alone} without"
        );
    }

    #[test]
    fn a_dictionary_flag_without_zstd_is_refused() {
        let mut p = sealed(&event("short"), Compression::ZstdDictionary, None).entry;
        assert_eq!(p[1], FLAG_ZSTD | FLAG_DICTIONARY);
        p[1] = FLAG_DICTIONARY;
        let e = decode_stored(&p).map(|_| ()).expect_err("refused");
        assert!(format!("{e:?}").contains("unknown flags"), "{e:?}");
    }

    #[test]
    fn a_frame_needs_the_dictionary_it_was_made_with() {
        let opening = format!(
            "{{\"event\":{{\"input\":\"{}\"}},\"v\":3}}",
            "tool call ".repeat(30)
        );
        let with = compress(opening.as_bytes(), true).unwrap();
        let without = compress(opening.as_bytes(), false).unwrap();
        assert_eq!(decompress(&with, true).unwrap(), opening.as_bytes());
        assert_eq!(decompress(&without, false).unwrap(), opening.as_bytes());
        assert!(decompress(&with, false).is_err());
    }

    #[test]
    fn any_changed_byte_fails_to_open() {
        let p = sealed(
            &event("short"),
            Compression::ZstdDictionary,
            Some("token:t1"),
        );
        for i in 0..p.entry.len() {
            let mut bad = p.entry.clone();
            bad[i] ^= 0x20;
            let opened = decode_stored(&bad).and_then(|s| {
                let s2 = s.sealed.clone().unwrap();
                let o = s2.open(&KEY)?;
                if !index_matches(&s.index, &o.entry.event) {
                    return Err(err("/index", "differs"));
                }
                if s.appended_by.as_deref() != Some("token:t1") {
                    return Err(err("/appended_by", "differs"));
                }
                Ok(o)
            });
            assert!(opened.is_err(), "byte {i} changed and still opened");
        }
        assert!(decode_stored(&p.entry)
            .unwrap()
            .sealed
            .unwrap()
            .open(&[8; 32])
            .is_err());
    }

    #[test]
    fn refuses_truncated_and_unknown_entries() {
        let p = sealed(&event("short"), Compression::Off, None);
        let header = parse(&p.entry).unwrap().header_len;
        for n in 0..header + 16 {
            assert!(parse(&p.entry[..n]).is_err(), "{n} bytes parsed");
        }
        // A cut ciphertext parses but never opens.
        let cut = decode_stored(&p.entry[..p.entry.len() - 1]).unwrap();
        assert!(cut.sealed.unwrap().open(&KEY).is_err());
        let mut flags = p.entry.clone();
        flags[1] = 0x80;
        assert!(decode_stored(&flags).is_err());
    }

    #[test]
    fn an_opening_that_repeats_a_clear_field_is_refused() {
        let clear = json!({"id": "e1", "source": {"name": "a"}});
        let clear = clear.as_object().unwrap();
        let rest = json!({"id": "e2"}).as_object().unwrap().clone();
        assert!(merge_clear(rest, clear).is_err());
        let rest = json!({"source": {"name": "b"}})
            .as_object()
            .unwrap()
            .clone();
        assert!(merge_clear(rest, clear).is_err());
        let rest = json!({"source": {"x": 1}}).as_object().unwrap().clone();
        assert_eq!(
            Value::Object(merge_clear(rest, clear).unwrap()),
            json!({"id": "e1", "source": {"name": "a", "x": 1}})
        );
    }

    #[test]
    fn plans_large_members_out_and_keeps_clear_fields() {
        let big = "x".repeat(40_000);
        let e = json!({"id": "e1", "tenant": "acme", "action": "a", "time": "t",
            "source": {"name": big.clone(), "notes": big.clone()},
            "input": {"content": big.clone(), "role": "user"},
            "output": {"content": big.clone(), "parts": ["a", big.clone()]},
            "attributes": {"k": "v"}, "a/b~": big.clone()});
        let e = e.as_object().unwrap();
        let plan = plan_blobs(
            e,
            300_000,
            16 << 10,
            &["/attributes/k".into(), "/id".into()],
        );
        assert_eq!(
            plan,
            vec![
                "/attributes/k",
                "/source/notes",
                "/a~1b~0",
                "/input/content",
                "/output/content",
                "/output/parts"
            ]
        );
        // Below the threshold nothing moves but what config names.
        assert_eq!(plan_blobs(e, 100, 16 << 10, &[]), Vec::<String>::new());
        // Every planned member comes out and goes back to the same event.
        let mut copy = e.clone();
        let taken: Vec<Value> = plan
            .iter()
            .map(|p| take_member(&mut copy, p).unwrap())
            .collect();
        assert!(copy.get("a/b~").is_none() && copy["input"] == json!({"role": "user"}));
        for (p, v) in plan.iter().zip(taken) {
            put_member(&mut copy, p, v).unwrap();
        }
        assert_eq!(&copy, e);
        assert!(put_member(&mut copy, "/input/content", json!(1)).is_err());
        assert!(put_member(&mut copy, "/nope/x", json!(1)).is_err());
    }

    #[test]
    fn a_named_member_and_its_parent_never_both_go() {
        let e = json!({"id": "e1", "output": {"content": "c".repeat(8000), "reasoning": "r".repeat(9000)},
            "source": {"name": "n", "notes": "x".repeat(20_000)}});
        let e = e.as_object().unwrap();
        let named = [
            "/output/content".to_string(),
            "/output".to_string(),
            "/source/notes/x".to_string(),
        ];
        let plan = plan_blobs(e, 60_000, 16 << 10, &named);
        assert_eq!(plan, vec!["/output/content", "/source/notes"]);
        // Whatever is named, every plan goes out and back to the same event.
        for named in [
            &["/output".to_string()][..],
            &["/output/content".into(), "/output/reasoning".into()],
        ] {
            let plan = plan_blobs(e, 60_000, 8 << 10, named);
            let mut copy = e.clone();
            let taken: Vec<Value> = plan
                .iter()
                .map(|p| take_member(&mut copy, p).unwrap())
                .collect();
            for (p, v) in plan.iter().zip(taken) {
                put_member(&mut copy, p, v).unwrap();
            }
            assert_eq!(&copy, e, "{plan:?}");
        }
    }

    #[test]
    fn an_object_of_many_small_members_goes_whole() {
        let mut attrs = Map::new();
        for i in 0..500 {
            attrs.insert(format!("k{i}"), json!("v".repeat(100)));
        }
        let e = json!({"id": "e1", "attributes": attrs, "input": {"content": "small"}});
        let e = e.as_object().unwrap();
        assert_eq!(plan_blobs(e, 60_000, 16 << 10, &[]), vec!["/attributes"]);
        // Many small top-level members: the largest go until the rest is small.
        let mut top = Map::new();
        top.insert("id".into(), json!("e1"));
        for i in 0..20 {
            top.insert(format!("m{i:02}"), json!("y".repeat(1000 + i)));
        }
        let plan = plan_blobs(&top, 21_000, 16 << 10, &[]);
        assert_eq!(plan.len(), 4, "{plan:?}");
        assert_eq!(plan[0], "/m19");
    }

    #[test]
    fn blobs_are_listed_in_the_header_and_the_opening() {
        let e = event("inline");
        let checked = crate::check(&e).unwrap();
        let mut rest = e.as_object().unwrap().clone();
        let content = take_member(&mut rest, "/input/content").unwrap();
        let mut bytes = Vec::new();
        write_canonical(&mut bytes, &content);
        let salt = [5u8; 32];
        let blob = SealedBlob {
            reference: BlobRef {
                pointer: "/input/content".into(),
                size: bytes.len() as u64,
                commitment: crate::blob::commitment(&salt, &bytes),
                stored: [6; 32],
            },
            salt,
        };
        let p = seal(
            &SealInput {
                event: &rest,
                checked: &checked,
                signature: None,
                appended_by: None,
                redacted: &[],
                subject_tag: None,
                compress: Compression::Off,
                blobs: std::slice::from_ref(&blob),
            },
            DataKey { id: 9, key: &KEY },
            &[1; SEAL_RANDOM_LEN],
        )
        .unwrap();
        let stored = decode_stored(&p.entry).unwrap();
        let s = stored.sealed.unwrap();
        assert_eq!(s.v3.as_ref().unwrap().blobs, vec![blob.reference.clone()]);
        let opened = s.open(&KEY).unwrap();
        assert_eq!(
            opened.blobs,
            vec![BlobSlot {
                pointer: "/input/content".into(),
                salt
            }]
        );
        assert!(opened.entry.event["input"].as_object().unwrap().is_empty());
        let body = std::str::from_utf8(&opened.opening[32..]).unwrap();
        assert!(
            body.starts_with("{\"blobs\":[{\"pointer\":\"/input/content\",\"salt\":"),
            "{body}"
        );
        let mut event = opened.entry.event.clone();
        put_member(&mut event, "/input/content", content).unwrap();
        assert_eq!(&event, e.as_object().unwrap());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z ]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop::collection::btree_map("(name|id|type|status|version|x)", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    proptest! {
        #[test]
        fn remainder_and_clear_fields_make_the_event_again(
            members in prop::collection::btree_map(
                "(id|time|tenant|subject|source|actor|outcome|ai|input|risk_level|other)",
                arb_value(), 0..8)
        ) {
            let event: Map<String, Value> = members.into_iter().collect();
            let mut clear = crate::envelope::clear_fields(&event);
            clear.remove("subject");
            let rest = remainder(&event);
            let (mut direct, mut built) = (Vec::new(), Vec::new());
            write_remainder(&mut direct, &event);
            crate::canonical::write_object(&mut built, &rest);
            prop_assert_eq!(direct, built);
            let back = merge_clear(rest, &clear).unwrap();
            prop_assert_eq!(back, event);
        }
    }
}
