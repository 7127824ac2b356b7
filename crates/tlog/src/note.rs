//! C2SP signed notes with Ed25519 keys (algorithm byte 0x01), compatible with
//! Go's golang.org/x/mod/sumdb/note.

use std::fmt;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::hash::{malformed, Error, Result};

/// The signature type byte of Ed25519 keys.
const ALG_ED25519: u8 = 0x01;
/// Prefix of every signature line: U+2014 EM DASH and a space.
pub(crate) const SIG_PREFIX: &str = "\u{2014} ";
/// Like Go's note package, refuse to look at notes with more signatures
/// than this, to bound the work an attacker can cause.
const MAX_SIGNATURES: usize = 100;

/// Returns the key ID of an Ed25519 key: the first 4 bytes, big-endian, of
/// SHA-256(name || 0x0A || 0x01 || public_key).
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    typed_key_id(name, ALG_ED25519, public_key)
}

/// The key ID of a key of signature type `alg`: the first 4 bytes,
/// big-endian, of SHA-256(name || 0x0A || alg || public_key).
pub(crate) fn typed_key_id(name: &str, alg: u8, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Reports whether `name` can be a key name: non-empty, printable, without
/// whitespace or '+' (which separates the fields of key strings).
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// Decodes base64(alg || key) into the 32 key bytes.
pub(crate) fn decode_key(b64: &str, what: &'static str, alg: u8) -> Result<[u8; 32]> {
    let raw = STANDARD
        .decode(b64)
        .map_err(|e| malformed(what, format!("bad base64: {e}")))?;
    match raw.split_first() {
        Some((&a, key)) if a == alg => key
            .try_into()
            .map_err(|_| malformed(what, format!("Ed25519 key of {} bytes", key.len()))),
        Some((a, _)) => Err(malformed(
            what,
            format!("unsupported algorithm {a:#04x} (expected {alg:#04x})"),
        )),
        None => Err(malformed(what, "empty key")),
    }
}

/// Splits `"PRIVATE+KEY+<name>+<hex8>+<base64>"` into the name, key ID and
/// base64 key (which comes last because it may itself contain '+').
pub(crate) fn split_skey<'a>(skey: &'a str, what: &'static str) -> Result<(&'a str, u32, &'a str)> {
    let mut fields = skey.splitn(5, '+');
    let (Some("PRIVATE"), Some("KEY"), Some(name), Some(hex8), Some(b64)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(malformed(what, "not PRIVATE+KEY+<name>+<id>+<key>"));
    };
    if !is_valid_name(name) {
        return Err(malformed(what, "invalid key name"));
    }
    Ok((name, parse_key_id(hex8, what)?, b64))
}

/// Splits `"<name>+<hex8>+<base64>"` into the name, key ID and base64 key.
pub(crate) fn split_vkey<'a>(vkey: &'a str, what: &'static str) -> Result<(&'a str, u32, &'a str)> {
    let mut fields = vkey.splitn(3, '+');
    let (Some(name), Some(hex8), Some(b64)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(malformed(what, "not <name>+<id>+<key>"));
    };
    if !is_valid_name(name) {
        return Err(malformed(what, format!("invalid key name {name:?}")));
    }
    Ok((name, parse_key_id(hex8, what)?, b64))
}

/// Parses the 8 hex digits of a key ID.
pub(crate) fn parse_key_id(hex8: &str, what: &'static str) -> Result<u32> {
    if hex8.len() != 8 || !hex8.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(what, "key id is not 8 hex digits"));
    }
    u32::from_str_radix(hex8, 16).map_err(|_| malformed(what, "key id is not 8 hex digits"))
}

/// base64(alg || key).
pub(crate) fn encode_key(key: &[u8; 32], alg: u8) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(alg);
    raw.extend_from_slice(key);
    STANDARD.encode(raw)
}

/// A named Ed25519 signing key.
///
/// `Debug` prints the name and key ID only, never the private key.
#[derive(Clone)]
pub struct Signer {
    name: String,
    id: u32,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Returns the signer for the Ed25519 `seed` (the 32-byte private key)
    /// under `name`.
    ///
    /// Errors: [`Error::InvalidArgument`] when the name is empty, contains
    /// whitespace, control characters or '+'.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Signer> {
        if !is_valid_name(name) {
            return Err(Error::InvalidArgument(format!("invalid key name {name:?}")));
        }
        let key = SigningKey::from_bytes(&seed);
        Ok(Signer {
            name: name.to_string(),
            id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parses a signer key `"PRIVATE+KEY+<name>+<hex8>+<base64(0x01||seed)>"`
    /// and checks that the key ID matches the name and key.
    ///
    /// Errors: [`Error::Malformed`] with what = "signer key". The error never
    /// contains the key material.
    pub fn parse(skey: &str) -> Result<Signer> {
        const WHAT: &str = "signer key";
        let (name, id, b64) = split_skey(skey, WHAT)?;
        // Do not echo decoding details: they would describe secret bytes.
        let seed =
            decode_key(b64, WHAT, ALG_ED25519).map_err(|_| malformed(WHAT, "bad private key"))?;
        let signer = Signer::from_seed(name, seed)?;
        if signer.id != id {
            return Err(malformed(WHAT, "key id does not match name and key"));
        }
        Ok(signer)
    }

    /// Returns the signer key string that [`Signer::parse`] accepts. It
    /// contains the private key.
    pub fn to_skey(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            encode_key(&self.key.to_bytes(), ALG_ED25519)
        )
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key ID.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// Returns the verifier for this signer's public key.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `msg` with Ed25519. Signatures are deterministic.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

/// A named Ed25519 public key that checks note signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl Verifier {
    /// Returns the verifier for `public_key` under `name`.
    ///
    /// Errors: [`Error::InvalidArgument`] for an invalid name,
    /// [`Error::Malformed`] when the bytes are not an Ed25519 public key.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Verifier> {
        if !is_valid_name(name) {
            return Err(Error::InvalidArgument(format!("invalid key name {name:?}")));
        }
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| malformed("verifier key", "not an Ed25519 public key"))?;
        Ok(Verifier {
            name: name.to_string(),
            id: key_id(name, public_key),
            key,
        })
    }

    /// Parses a verifier key `"<name>+<hex8>+<base64(0x01||pk)>"` and checks
    /// that the key ID matches the name and key.
    ///
    /// Errors: [`Error::Malformed`] with what = "verifier key".
    pub fn parse(vkey: &str) -> Result<Verifier> {
        const WHAT: &str = "verifier key";
        let (name, id, b64) = split_vkey(vkey, WHAT)?;
        let pk = decode_key(b64, WHAT, ALG_ED25519)?;
        let v = Verifier::new(name, &pk)?;
        if v.id != id {
            return Err(malformed(WHAT, "key id does not match name and key"));
        }
        Ok(v)
    }

    /// Returns the verifier key string that [`Verifier::parse`] accepts.
    pub fn to_vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.id,
            encode_key(self.key.as_bytes(), ALG_ED25519)
        )
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key ID.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// Returns the raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Reports whether `sig` is a valid signature of `msg` by this key.
    ///
    /// Uses strict verification (canonical encodings, no small-order keys),
    /// which every signature made by [`Signer::sign`] passes.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.key
            .verify_strict(msg, &Signature::from_bytes(sig))
            .is_ok()
    }
}

/// Signed note text: body (must end in '\n', no other restrictions beyond valid UTF-8) + "\n" + `"— <name> <base64(keyid BE 4 bytes || sig 64)>\n"` (U+2014 EM DASH).
///
/// Errors: [`Error::InvalidArgument`] when `body` does not end in a newline.
pub fn sign_note(body: &str, signer: &Signer) -> Result<String> {
    if !body.ends_with('\n') {
        return Err(Error::InvalidArgument(
            "note body does not end with a newline".into(),
        ));
    }
    let mut sig = Vec::with_capacity(68);
    sig.extend_from_slice(&signer.id.to_be_bytes());
    sig.extend_from_slice(&signer.sign(body.as_bytes()));
    Ok(format!(
        "{body}\n{SIG_PREFIX}{} {}\n",
        signer.name,
        STANDARD.encode(sig)
    ))
}

/// One signature line of a signed note: the key name, the key ID (the first
/// four bytes of the decoded signature) and the bytes after the key ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name the line names.
    pub name: String,
    /// The key ID, big-endian from the first four decoded bytes.
    pub key_id: u32,
    /// Everything after the key ID: a signature, or for a cosignature the
    /// timestamp and the signature.
    pub signature: Vec<u8>,
    /// The whole line, without its final newline.
    pub line: String,
}

/// Splits a signed note into its body (with its final newline) and its
/// signature lines, checking the format of every line whoever signed it:
/// `"— <name> <base64>"`, the decoded bytes at least 5, at most 100 lines.
/// Nothing is verified.
///
/// Errors: [`Error::Malformed`] with what = "note".
pub fn split_note(note: &str) -> Result<(&str, Vec<NoteSignature>)> {
    const WHAT: &str = "note";
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed(WHAT, "no blank line before the signatures"))?;
    // The body keeps its final newline; the blank line belongs to neither.
    let body = &note[..split + 1];
    let sigs = &note[split + 2..];
    let sigs = sigs
        .strip_suffix('\n')
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed(WHAT, "signature block is empty or lacks a final newline"))?;
    let mut out = Vec::new();
    for (n, line) in sigs.split('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(malformed(WHAT, "too many signatures"));
        }
        out.push(
            parse_signature_line(line)
                .map_err(|_| malformed(WHAT, format!("bad signature line {}", n + 1)))?,
        );
    }
    Ok((body, out))
}

/// Parses one signature line (without its newline): `"— <name> <base64>"`
/// whose decoded bytes are a 4-byte key ID and at least one more byte.
///
/// Errors: [`Error::Malformed`] with what = "signature line".
pub fn parse_signature_line(line: &str) -> Result<NoteSignature> {
    let bad = || malformed("signature line", "not \"\u{2014} <name> <base64>\"");
    let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(bad)?;
    let (name, b64) = rest.split_once(' ').ok_or_else(bad)?;
    if !is_valid_name(name) || b64.is_empty() {
        return Err(bad());
    }
    let raw = STANDARD.decode(b64).map_err(|_| bad())?;
    let [a, b, c, d, sig @ ..] = raw.as_slice() else {
        return Err(bad());
    };
    if sig.is_empty() {
        return Err(bad());
    }
    Ok(NoteSignature {
        name: name.to_string(),
        key_id: u32::from_be_bytes([*a, *b, *c, *d]),
        signature: sig.to_vec(),
        line: line.to_string(),
    })
}

/// Splits the note at the last "\n\n", checks signature lines format, and verifies that at least one signature line
/// matches the verifier (name and key id) and is valid. Unknown signatures are ignored. Returns the body.
/// Errors: Malformed for a bad note, BadSignature when no valid signature by this verifier.
///
/// Every signature line must be well formed (`"— <name> <base64>"`, the
/// decoded signature at least 5 bytes), even those of unknown keys; a note
/// with more than 100 signature lines is malformed.
pub fn open_note<'a>(note: &'a str, verifier: &Verifier) -> Result<&'a str> {
    let (body, sigs) = split_note(note)?;
    let mut matched = false;
    let mut valid = false;
    for sig in &sigs {
        if sig.name != verifier.name || sig.key_id != verifier.id {
            continue;
        }
        matched = true;
        if !valid {
            if let Ok(s) = <&[u8; 64]>::try_from(sig.signature.as_slice()) {
                valid = verifier.verify(body.as_bytes(), s);
            }
        }
    }
    if valid {
        return Ok(body);
    }
    let key = format!("{}+{:08x}", verifier.name, verifier.id);
    Err(Error::BadSignature(if matched {
        format!("invalid signature by {key}")
    } else {
        format!("no signature by {key}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_seed("example.test/log", [7u8; 32]).unwrap()
    }

    #[test]
    fn key_strings_round_trip() {
        let s = signer();
        let skey = s.to_skey();
        assert!(skey.starts_with("PRIVATE+KEY+example.test/log+"));
        let s2 = Signer::parse(&skey).unwrap();
        assert_eq!(s2.to_skey(), skey);
        assert_eq!(s2.name(), "example.test/log");
        let v = s.verifier();
        let vkey = v.to_vkey();
        assert_eq!(Verifier::parse(&vkey).unwrap(), v);
        assert_eq!(v.key_id(), s.key_id());
        assert_eq!(v.key_id(), key_id(v.name(), &v.public_key()));
        assert!(format!("{s:?}").contains("example.test/log"));
        assert!(!format!("{s:?}").contains(&skey));
    }

    #[test]
    fn names() {
        for name in ["", "a b", "a\tb", "a+b", "a\u{0}b", "a\u{a0}b", "a\nb"] {
            assert!(matches!(
                Signer::from_seed(name, [1; 32]),
                Err(Error::InvalidArgument(_))
            ));
        }
        Signer::from_seed("ünïcode/名", [1; 32]).unwrap();
    }

    #[test]
    fn bad_key_strings() {
        let s = signer();
        let skey = s.to_skey();
        let vkey = s.verifier().to_vkey();
        let (vname, vrest) = vkey.split_once('+').unwrap();
        let (vid, vb64) = vrest.split_once('+').unwrap();
        for bad in [
            "".to_string(),
            vname.to_string(),
            format!("{vname}+{vid}"),
            format!("{vname}+{vid}+"),
            format!("+{vid}+{vb64}"),
            format!("other+{vid}+{vb64}"),
            format!("{vname}+00000000+{vb64}"),
            format!("{vname}+{}+{vb64}", &vid[1..]),
            format!("{vname}+0x{}+{vb64}", &vid[2..]),
            format!("{vname}+{vid}+{}", &vb64[1..]),
            format!("{vname}+{vid}+{}", STANDARD.encode([2u8; 33])),
            format!("{vname}+{vid}+{}", STANDARD.encode([1u8; 32])),
            skey.clone(),
        ] {
            assert!(
                matches!(Verifier::parse(&bad), Err(Error::Malformed { .. })),
                "{bad:?}"
            );
        }
        let (_, rest) = skey.split_once("PRIVATE+KEY+").unwrap();
        let (name, rest) = rest.split_once('+').unwrap();
        let (id, b64) = rest.split_once('+').unwrap();
        for bad in [
            "".to_string(),
            vkey.clone(),
            format!("PRIVATE+KEY+{name}+{id}"),
            format!("private+key+{name}+{id}+{b64}"),
            format!("PRIVATE+KEY+other+{id}+{b64}"),
            format!("PRIVATE+KEY+{name}+00000000+{b64}"),
            format!("PRIVATE+KEY+{name}+{id}+{}", STANDARD.encode([1u8; 32])),
            format!("PRIVATE+KEY+{name}+{id}+{}", STANDARD.encode([3u8; 33])),
        ] {
            let err = Signer::parse(&bad).unwrap_err();
            assert!(matches!(err, Error::Malformed { .. }), "{bad:?}");
            assert!(!err.to_string().contains(b64), "error leaks the key");
        }
    }

    #[test]
    fn sign_and_open() {
        let s = signer();
        let v = s.verifier();
        let note = sign_note("hello\n", &s).unwrap();
        assert!(note.starts_with("hello\n\n\u{2014} example.test/log "));
        assert_eq!(open_note(&note, &v).unwrap(), "hello\n");

        // Bodies may contain blank lines and end in one.
        for body in ["a\n\nb\n", "a\n\n", "\n", "x\u{1}y\n"] {
            let note = sign_note(body, &s).unwrap();
            assert_eq!(open_note(&note, &v).unwrap(), body);
        }
        assert!(matches!(
            sign_note("no newline", &s),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(sign_note("", &s), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn other_signatures() {
        let s = signer();
        let other = Signer::from_seed("other", [9u8; 32]).unwrap();
        let note = sign_note("body\n", &s).unwrap();
        let other_note = sign_note("body\n", &other).unwrap();
        let other_line = other_note.split_once("\n\n").unwrap().1;

        // Unknown signatures are ignored, before or after ours.
        let both = format!("{note}{other_line}");
        assert_eq!(open_note(&both, &s.verifier()).unwrap(), "body\n");
        assert_eq!(open_note(&both, &other.verifier()).unwrap(), "body\n");
        let both = format!("body\n\n{other_line}{}", note.split_once("\n\n").unwrap().1);
        assert_eq!(open_note(&both, &s.verifier()).unwrap(), "body\n");

        // Only someone else's signature.
        assert!(matches!(
            open_note(&other_note, &s.verifier()),
            Err(Error::BadSignature(_))
        ));
        // Same name, different key.
        let impostor = Signer::from_seed("example.test/log", [8u8; 32]).unwrap();
        assert!(matches!(
            open_note(&note, &impostor.verifier()),
            Err(Error::BadSignature(_))
        ));
    }

    #[test]
    fn tampering() {
        let s = signer();
        let v = s.verifier();
        let note = sign_note("body\n", &s).unwrap();
        let changed = note.replacen("body", "bodz", 1);
        assert!(matches!(
            open_note(&changed, &v),
            Err(Error::BadSignature(_))
        ));

        // A valid-looking line whose signature bytes are wrong.
        let (body, line) = note.split_once("\n\n").unwrap();
        let b64 = line.trim_end().rsplit_once(' ').unwrap().1;
        let mut sig = STANDARD.decode(b64).unwrap();
        sig[10] ^= 1;
        let forged = format!(
            "{body}\n\n\u{2014} {} {}\n",
            v.name(),
            STANDARD.encode(&sig)
        );
        assert!(matches!(
            open_note(&forged, &v),
            Err(Error::BadSignature(_))
        ));
        // Truncated signature with the right key id: not valid, not malformed.
        let short = format!(
            "{body}\n\n\u{2014} {} {}\n",
            v.name(),
            STANDARD.encode(&sig[..10])
        );
        assert!(matches!(open_note(&short, &v), Err(Error::BadSignature(_))));
    }

    #[test]
    fn malformed_notes() {
        let s = signer();
        let v = s.verifier();
        let note = sign_note("body\n", &s).unwrap();
        let (body, line) = note.split_once("\n\n").unwrap();
        let line = line.trim_end();
        let b64 = line.rsplit_once(' ').unwrap().1;
        let many: String = (0..101).map(|_| format!("{line}\n")).collect();
        for bad in [
            "".to_string(),
            "body\n".to_string(),
            format!("{body}\n{line}\n"),
            format!("{body}\n\n{line}"),
            format!("{body}\n\n{line}\n\n"),
            format!("{body}\n\n"),
            format!("{body}\n\n\n"),
            format!("{body}\n\n- {} {b64}\n", v.name()),
            format!("{body}\n\n\u{2014}{} {b64}\n", v.name()),
            format!("{body}\n\n\u{2014} {}\n", v.name()),
            format!("{body}\n\n\u{2014} {} \n", v.name()),
            format!("{body}\n\n\u{2014} {b64}\n"),
            format!("{body}\n\n\u{2014} {} {b64} x\n", v.name()),
            format!("{body}\n\n\u{2014} a+b {b64}\n"),
            format!("{body}\n\n\u{2014} {} AAAA\n", v.name()),
            format!("{body}\n\n\u{2014} {} AAAAAA==\n", v.name()),
            format!("{body}\n\n\u{2014} {} {b64}\r\n", v.name()),
            format!("{body}\n\n{line}\n\u{2014} x !!!!\n"),
            format!("{body}\n\n{many}"),
        ] {
            assert!(
                matches!(
                    open_note(&bad, &v),
                    Err(Error::Malformed { what: "note", .. })
                ),
                "{bad:?}"
            );
        }
        // 100 signatures are still fine.
        let hundred: String = (0..100).map(|_| format!("{line}\n")).collect();
        assert_eq!(
            open_note(&format!("{body}\n\n{hundred}"), &v).unwrap(),
            "body\n"
        );
    }
}
