//! C2SP tlog-cosignature `cosignature/v1`: a witness's Ed25519 statement
//! that, at a given time, a checkpoint was the largest consistent tree it
//! had seen for that log.
//!
//! Keys are signature type 0x04: key ID = SHA-256(name || 0x0A || 0x04 ||
//! public key)[:4]. The signed message is `"cosignature/v1\ntime <t>\n"`
//! followed by the checkpoint body; the signature line's bytes are the key
//! ID, the timestamp as 8 big-endian bytes, then the 64-byte signature. A
//! cosignature line is a signed-note signature line, so it is appended to
//! the log's note and a verifier that only knows the log key ignores it.

use std::fmt;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::hash::{malformed, Error, Result};
use crate::note::{
    decode_key, encode_key, is_valid_name, split_skey, split_vkey, typed_key_id, NoteSignature,
    SIG_PREFIX,
};

/// The signature type byte of `cosignature/v1` keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Returns the key ID of a `cosignature/v1` key: the first 4 bytes,
/// big-endian, of SHA-256(name || 0x0A || 0x04 || public_key).
pub fn cosignature_key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    typed_key_id(name, ALG_COSIGNATURE_V1, public_key)
}

/// The message a witness signs: `"cosignature/v1\ntime <timestamp>\n"`
/// followed by the checkpoint body (which ends in a newline).
pub fn cosigned_message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

/// A witness's named Ed25519 key that makes `cosignature/v1` lines.
///
/// `Debug` prints the name and key ID only, never the private key.
#[derive(Clone)]
pub struct CosignatureSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignatureSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl CosignatureSigner {
    /// The signer for the Ed25519 `seed` under `name`.
    ///
    /// Errors: [`Error::InvalidArgument`] for an invalid key name.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<CosignatureSigner> {
        if !is_valid_name(name) {
            return Err(Error::InvalidArgument(format!("invalid key name {name:?}")));
        }
        let key = SigningKey::from_bytes(&seed);
        Ok(CosignatureSigner {
            name: name.to_string(),
            id: cosignature_key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parses `"PRIVATE+KEY+<name>+<hex8>+<base64(0x04||seed)>"` (the signed
    /// note signer-key shape with the cosignature type byte).
    ///
    /// Errors: [`Error::Malformed`] with what = "witness signer key"; the
    /// error never describes the key material.
    pub fn parse(skey: &str) -> Result<CosignatureSigner> {
        const WHAT: &str = "witness signer key";
        let (name, id, b64) = split_skey(skey.trim(), WHAT)?;
        let seed = decode_key(b64, WHAT, ALG_COSIGNATURE_V1)
            .map_err(|_| malformed(WHAT, "bad private key"))?;
        let signer = CosignatureSigner::from_seed(name, seed)
            .map_err(|_| malformed(WHAT, "invalid key name"))?;
        if signer.id != id {
            return Err(malformed(WHAT, "key id does not match name and key"));
        }
        Ok(signer)
    }

    /// The string [`CosignatureSigner::parse`] accepts. It holds the private key.
    pub fn to_skey(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            encode_key(&self.key.to_bytes(), ALG_COSIGNATURE_V1)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier of this key.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The cosignature line (with its final newline) over the checkpoint
    /// `body` at `timestamp` (seconds since the Unix epoch; the witness
    /// protocol forbids zero, which is the caller's to respect).
    pub fn cosign(&self, body: &str, timestamp: u64) -> String {
        let sig = self
            .key
            .sign(cosigned_message(body, timestamp).as_bytes())
            .to_bytes();
        let mut raw = Vec::with_capacity(4 + 8 + 64);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig);
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }
}

/// A witness's public key (`<name>+<hex8>+<base64(0x04||pk)>`) that checks
/// cosignature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parses a witness verifier key and checks its key ID.
    ///
    /// Errors: [`Error::Malformed`] with what = "witness verifier key".
    pub fn parse(vkey: &str) -> Result<CosignatureVerifier> {
        const WHAT: &str = "witness verifier key";
        let (name, id, b64) = split_vkey(vkey.trim(), WHAT)?;
        let pk = decode_key(b64, WHAT, ALG_COSIGNATURE_V1)?;
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|_| malformed(WHAT, "not an Ed25519 public key"))?;
        if cosignature_key_id(name, &pk) != id {
            return Err(malformed(WHAT, "key id does not match name and key"));
        }
        Ok(CosignatureVerifier {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// The verifier key string.
    pub fn to_vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.id,
            encode_key(self.key.as_bytes(), ALG_COSIGNATURE_V1)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// Checks one signature line of a note against this key: it must name
    /// this key, hold a non-zero timestamp and a valid signature over the
    /// checkpoint `body`. Returns the timestamp, or `None` when the line is
    /// another key's or does not verify.
    pub fn verify(&self, body: &str, sig: &NoteSignature) -> Option<u64> {
        if sig.name != self.name || sig.key_id != self.id || sig.signature.len() != 72 {
            return None;
        }
        let timestamp = u64::from_be_bytes(sig.signature[..8].try_into().ok()?);
        let s: &[u8; 64] = sig.signature[8..].try_into().ok()?;
        if timestamp == 0 {
            return None;
        }
        let msg = cosigned_message(body, timestamp);
        self.key
            .verify_strict(msg.as_bytes(), &Signature::from_bytes(s))
            .ok()
            .map(|()| timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::parse_signature_line;

    const BODY: &str = "example.test/log\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    #[test]
    fn a_cosignature_verifies_only_over_its_body_and_key() {
        let w = CosignatureSigner::from_seed("w.example/1", [7; 32]).unwrap();
        let line = w.cosign(BODY, 1_700_000_000);
        let sig = parse_signature_line(line.trim_end()).unwrap();
        let v = w.verifier();
        assert_eq!(v.verify(BODY, &sig), Some(1_700_000_000));
        assert_eq!(v.verify(&BODY.replace('7', "8"), &sig), None);
        let other = CosignatureSigner::from_seed("w.example/1", [8; 32]).unwrap();
        assert_eq!(other.verifier().verify(BODY, &sig), None);
    }

    #[test]
    fn keys_round_trip_and_refuse_the_log_key_type() {
        let w = CosignatureSigner::from_seed("w.example/1", [9; 32]).unwrap();
        let back = CosignatureSigner::parse(&w.to_skey()).unwrap();
        assert_eq!(back.verifier(), w.verifier());
        let v = CosignatureVerifier::parse(&w.verifier().to_vkey()).unwrap();
        assert_eq!(v, w.verifier());
        let log = crate::Signer::from_seed("w.example/1", [9; 32]).unwrap();
        assert!(CosignatureVerifier::parse(&log.verifier().to_vkey()).is_err());
    }

    #[test]
    fn a_zero_timestamp_is_not_a_cosignature() {
        let w = CosignatureSigner::from_seed("w.example/1", [7; 32]).unwrap();
        let line = w.cosign(BODY, 0);
        let sig = parse_signature_line(line.trim_end()).unwrap();
        assert_eq!(w.verifier().verify(BODY, &sig), None);
    }
}
