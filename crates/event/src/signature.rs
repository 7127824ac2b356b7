//! Emitter batch signatures (entry member `"signature"`).
//!
//! An emitter signs a batch by signing the RFC 6962 Merkle root of its
//! events: leaf `i` = SHA-256(0x00 || bytes of event `i`), in batch order,
//! where the bytes are the event's canonical JSON in the format's own
//! canonical form ([`SignatureFormat`]). The signed message is
//!
//! ```text
//! <format>\n<emitter key name>\n<number of events>\n<base64 root>\n
//! ```
//!
//! The ledger checks the signature against the emitter's registered key and
//! stores, in each event's entry, the format, the emitter's verifier key,
//! the batch root and size, the event's position, its inclusion proof in the
//! batch tree and the signature. Every event can thus be proven to come from
//! that emitter on its own, offline, without the rest of the batch
//! ([`verify_entry_signature`]).

use crate::jcs::JcsError;
use aiaudit_tlog::{check_record, record_hash, Hash, NodeReader, TreeBuilder, Verifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};

/// How an emitter turned its events into the bytes it signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureFormat {
    /// `aiaudit-batch-v1`: the ledger's own canonical JSON (entry format v1
    /// rules). Verified for ever; new emitters should not use it.
    V1,
    /// `aiaudit-batch-v2`: RFC 8785 (JCS), which any language's JCS library
    /// produces. What every emitter of ours signs.
    #[default]
    V2,
}

impl SignatureFormat {
    /// Every format, oldest first.
    pub const ALL: [SignatureFormat; 2] = [SignatureFormat::V1, SignatureFormat::V2];

    /// The format's name: the first line of the signed message, the
    /// `format` member stored in entries and the value of the
    /// `AIAudit-Signature-Format` header.
    pub const fn name(self) -> &'static str {
        match self {
            SignatureFormat::V1 => "aiaudit-batch-v1",
            SignatureFormat::V2 => "aiaudit-batch-v2",
        }
    }

    /// The format of a name (the header also accepts a bare `1` or `2`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "aiaudit-batch-v1" | "1" => Some(SignatureFormat::V1),
            "aiaudit-batch-v2" | "2" => Some(SignatureFormat::V2),
            _ => None,
        }
    }

    /// The bytes of one event that its batch leaf hashes.
    pub fn event_bytes(self, event: &Map<String, Value>) -> Result<Vec<u8>, JcsError> {
        match self {
            SignatureFormat::V1 => {
                let mut out = Vec::with_capacity(256);
                crate::canonical::write_object(&mut out, event);
                Ok(out)
            }
            SignatureFormat::V2 => crate::jcs::jcs_object(event),
        }
    }
}

/// The bytes an emitter signs for a batch of `size` events with Merkle `root`.
pub fn batch_message(format: SignatureFormat, emitter: &str, size: u64, root: &Hash) -> Vec<u8> {
    format!(
        "{}\n{emitter}\n{size}\n{}\n",
        format.name(),
        B64.encode(root)
    )
    .into_bytes()
}

/// Leaf hashes of a batch's events (each event's bytes in the batch's format).
pub fn batch_leaves(event_bytes: &[Vec<u8>]) -> Vec<Hash> {
    event_bytes.iter().map(|e| record_hash(e)).collect()
}

/// The Merkle root over a batch's leaves.
pub fn batch_root(leaves: &[Hash]) -> Hash {
    let mut tree = TreeBuilder::new();
    for l in leaves {
        tree.push(*l, |_, _, _| {});
    }
    tree.root()
}

/// A whole batch tree in memory, for proving each event's place in it.
struct BatchTree {
    levels: Vec<Vec<Hash>>,
}

impl BatchTree {
    fn new(leaves: &[Hash]) -> Self {
        let mut levels = vec![leaves.to_vec()];
        while levels.last().map_or(0, Vec::len) > 1 {
            let below = levels.last().expect("non-empty");
            let above = below
                .chunks_exact(2)
                .map(|p| aiaudit_tlog::node_hash(&p[0], &p[1]))
                .collect();
            levels.push(above);
        }
        BatchTree { levels }
    }
}

impl NodeReader for BatchTree {
    fn read_node(&self, level: u32, index: u64) -> aiaudit_tlog::Result<Hash> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or_else(|| aiaudit_tlog::Error::InvalidArgument(format!("node ({level}, {index})")))
    }
}

/// What the ledger stores with each event of a signed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSignature {
    pub format: SignatureFormat,
    /// The emitter's verifier key, `<name>+<hex id>+<base64(0x01 || key)>`.
    pub emitter_key: String,
    pub batch_size: u64,
    pub batch_root: Hash,
    pub index: u64,
    pub proof: Vec<Hash>,
    pub signature: [u8; 64],
}

impl EventSignature {
    pub fn to_json(&self) -> Value {
        json!({
            "format": self.format.name(),
            "emitter_key": self.emitter_key,
            "batch_size": self.batch_size,
            "batch_root": B64.encode(self.batch_root),
            "index": self.index,
            "proof": self.proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
            "signature": B64.encode(self.signature),
        })
    }
}

/// Why a batch signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignatureError(pub String);

/// Checks a batch signature over the events' bytes in `format`
/// ([`SignatureFormat::event_bytes`]) and returns, for each event, what its
/// entry stores.
pub fn verify_batch(
    emitter: &Verifier,
    format: SignatureFormat,
    event_bytes: &[Vec<u8>],
    signature: &[u8],
) -> Result<Vec<EventSignature>, SignatureError> {
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError(format!("a signature is 64 bytes, not {}", signature.len())))?;
    let leaves = batch_leaves(event_bytes);
    let root = batch_root(&leaves);
    let size = leaves.len() as u64;
    let msg = batch_message(format, emitter.name(), size, &root);
    if !emitter.verify(&msg, &sig) {
        return Err(SignatureError(format!(
            "the batch signature ({}) does not verify with emitter {:?}'s registered key",
            format.name(),
            emitter.name()
        )));
    }
    let tree = BatchTree::new(&leaves);
    (0..size)
        .map(|i| {
            let proof = aiaudit_tlog::prove_record(size, i, &tree)
                .map_err(|e| SignatureError(format!("proving event {i}: {e}")))?;
            Ok(EventSignature {
                format,
                emitter_key: emitter.to_vkey(),
                batch_size: size,
                batch_root: root,
                index: i,
                proof,
                signature: sig,
            })
        })
        .collect()
}

/// Offline check of the `"signature"` member of an entry: the event's place
/// in the signed batch and the emitter's signature over the batch root.
/// Returns the emitter's verifier key (compare it with the one you trust).
pub fn verify_entry_signature(
    event: &Map<String, Value>,
    signature: &Value,
) -> Result<String, SignatureError> {
    let bad = |what: &str| SignatureError(format!("entry signature: {what}"));
    let format = signature["format"]
        .as_str()
        .ok_or_else(|| bad("no format"))?;
    let format = SignatureFormat::parse(format)
        .filter(|f| f.name() == format)
        .ok_or_else(|| bad(&format!("unknown format {format:?}")))?;
    let key = signature["emitter_key"]
        .as_str()
        .ok_or_else(|| bad("no emitter_key"))?;
    let verifier = Verifier::parse(key).map_err(|e| bad(&e.to_string()))?;
    let size = signature["batch_size"]
        .as_u64()
        .ok_or_else(|| bad("no batch_size"))?;
    let index = signature["index"].as_u64().ok_or_else(|| bad("no index"))?;
    let hash = |v: &Value| -> Result<Hash, SignatureError> {
        let bytes = B64
            .decode(v.as_str().unwrap_or(""))
            .map_err(|_| bad("bad base64"))?;
        bytes.try_into().map_err(|_| bad("a hash is 32 bytes"))
    };
    let root = hash(&signature["batch_root"])?;
    let proof = signature["proof"]
        .as_array()
        .ok_or_else(|| bad("no proof"))?
        .iter()
        .map(hash)
        .collect::<Result<Vec<_>, _>>()?;
    let sig = B64
        .decode(signature["signature"].as_str().unwrap_or(""))
        .map_err(|_| bad("bad base64 signature"))?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| bad("a signature is 64 bytes"))?;
    let bytes = format
        .event_bytes(event)
        .map_err(|e| bad(&format!("the event cannot be canonicalised: {e}")))?;
    check_record(&proof, size, &root, index, &record_hash(&bytes))
        .map_err(|_| bad("the event is not in the signed batch"))?;
    if !verifier.verify(&batch_message(format, verifier.name(), size, &root), &sig) {
        return Err(bad("the emitter's signature does not verify"));
    }
    Ok(key.to_string())
}

/// Signs a batch (the emitter's side): the signature over the batch root
/// of the events' bytes in `format` ([`SignatureFormat::event_bytes`]).
pub fn sign_batch(
    signer: &aiaudit_tlog::Signer,
    format: SignatureFormat,
    event_bytes: &[Vec<u8>],
) -> [u8; 64] {
    let leaves = batch_leaves(event_bytes);
    let root = batch_root(&leaves);
    signer.sign(&batch_message(
        format,
        signer.name(),
        leaves.len() as u64,
        &root,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaudit_tlog::Signer;

    fn events(n: usize) -> Vec<Map<String, Value>> {
        (0..n)
            .map(|i| {
                let Value::Object(m) = json!({"id": format!("e{i}"), "n": i}) else {
                    unreachable!()
                };
                m
            })
            .collect()
    }

    #[test]
    fn every_event_of_a_signed_batch_verifies_alone() {
        let signer = Signer::from_seed("edge-gw-7", [7u8; 32]).unwrap();
        for (format, n) in SignatureFormat::ALL
            .into_iter()
            .flat_map(|f| [1, 2, 3, 7, 100].map(|n| (f, n)))
        {
            let evs = events(n);
            let canonical: Vec<Vec<u8>> =
                evs.iter().map(|e| format.event_bytes(e).unwrap()).collect();
            let sig = sign_batch(&signer, format, &canonical);
            let per_event = verify_batch(&signer.verifier(), format, &canonical, &sig).unwrap();
            for (e, s) in evs.iter().zip(&per_event) {
                let key = verify_entry_signature(e, &s.to_json()).unwrap();
                assert_eq!(key, signer.verifier().to_vkey());
            }
            // A changed event no longer verifies.
            let mut changed = evs[0].clone();
            changed.insert("n".into(), json!(999));
            assert!(verify_entry_signature(&changed, &per_event[0].to_json()).is_err());
            // The other format's name does not verify the same signature.
            let mut other = per_event[0].to_json();
            let swapped = SignatureFormat::ALL
                .into_iter()
                .find(|f| *f != format)
                .unwrap();
            other["format"] = json!(swapped.name());
            assert!(verify_entry_signature(&evs[0], &other).is_err());
            other["format"] = json!("aiaudit-batch-v9");
            let err = verify_entry_signature(&evs[0], &other).unwrap_err();
            assert!(err.0.contains("unknown format"), "{err}");
        }
    }

    /// A signature over a float's v2 (RFC 8785) form: `2.0` and `1e21` are
    /// signed as ECMAScript prints them (`2`, `1e+21`), and the entry's
    /// event still verifies after the ledger stored it in its v1 form.
    #[test]
    fn v2_signs_what_ecmascript_prints() {
        let signer = Signer::from_seed("edge-gw-7", [7u8; 32]).unwrap();
        let Value::Object(event) =
            serde_json::from_str::<Value>(r#"{"id":"e1","x":2.0,"y":1e21,"é":"😀"}"#).unwrap()
        else {
            unreachable!()
        };
        let bytes = SignatureFormat::V2.event_bytes(&event).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"id":"e1","x":2,"y":1e+21,"é":"😀"}"#
        );
        let sig = sign_batch(&signer, SignatureFormat::V2, std::slice::from_ref(&bytes));
        let per_event =
            verify_batch(&signer.verifier(), SignatureFormat::V2, &[bytes], &sig).unwrap();
        // The stored event is the v1 canonical form, read back.
        let mut stored = Vec::new();
        crate::canonical::write_object(&mut stored, &event);
        let Value::Object(read_back) = serde_json::from_slice::<Value>(&stored).unwrap() else {
            unreachable!()
        };
        verify_entry_signature(&read_back, &per_event[0].to_json()).unwrap();
        // And the v1 path refuses this signature.
        let v1 = SignatureFormat::V1.event_bytes(&event).unwrap();
        assert!(verify_batch(&signer.verifier(), SignatureFormat::V1, &[v1], &sig).is_err());
    }

    #[test]
    fn wrong_key_order_or_tampered_signature_fails() {
        let signer = Signer::from_seed("edge-gw-7", [7u8; 32]).unwrap();
        let other = Signer::from_seed("edge-gw-7", [8u8; 32]).unwrap();
        let f = SignatureFormat::V2;
        let canonical: Vec<Vec<u8>> = events(3)
            .iter()
            .map(|e| f.event_bytes(e).unwrap())
            .collect();
        let mut sig = sign_batch(&signer, f, &canonical);
        assert!(verify_batch(&other.verifier(), f, &canonical, &sig).is_err());
        let mut reordered = canonical.clone();
        reordered.swap(0, 1);
        assert!(verify_batch(&signer.verifier(), f, &reordered, &sig).is_err());
        sig[10] ^= 1;
        assert!(verify_batch(&signer.verifier(), f, &canonical, &sig).is_err());
        assert!(verify_batch(&signer.verifier(), f, &canonical, &sig[..10]).is_err());
    }
}
