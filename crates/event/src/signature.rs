//! Emitter batch signatures (entry format v1, member `"signature"`).
//!
//! An emitter signs a batch by signing the RFC 6962 Merkle root of its
//! events: leaf `i` = SHA-256(0x00 || canonical JSON of event `i`), in batch
//! order. The signed message is
//!
//! ```text
//! aiaudit-batch-v1\n<emitter key name>\n<number of events>\n<base64 root>\n
//! ```
//!
//! The ledger checks the signature against the emitter's registered key and
//! stores, in each event's entry, the emitter's verifier key, the batch root
//! and size, the event's position, its inclusion proof in the batch tree and
//! the signature. Every event can thus be proven to come from that emitter
//! on its own, offline, without the rest of the batch ([`verify_entry_signature`]).

use aiaudit_tlog::{check_record, record_hash, Hash, NodeReader, TreeBuilder, Verifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};

/// Names the message format above.
pub const BATCH_MESSAGE_VERSION: &str = "aiaudit-batch-v1";

/// The bytes an emitter signs for a batch of `size` events with Merkle `root`.
pub fn batch_message(emitter: &str, size: u64, root: &Hash) -> Vec<u8> {
    format!(
        "{BATCH_MESSAGE_VERSION}\n{emitter}\n{size}\n{}\n",
        B64.encode(root)
    )
    .into_bytes()
}

/// Leaf hashes of a batch's events (canonical JSON of each event).
pub fn batch_leaves(canonical_events: &[Vec<u8>]) -> Vec<Hash> {
    canonical_events.iter().map(|e| record_hash(e)).collect()
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
            "format": BATCH_MESSAGE_VERSION,
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

/// Checks a batch signature and returns, for each event, what its entry stores.
pub fn verify_batch(
    emitter: &Verifier,
    canonical_events: &[Vec<u8>],
    signature: &[u8],
) -> Result<Vec<EventSignature>, SignatureError> {
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError(format!("a signature is 64 bytes, not {}", signature.len())))?;
    let leaves = batch_leaves(canonical_events);
    let root = batch_root(&leaves);
    let size = leaves.len() as u64;
    let msg = batch_message(emitter.name(), size, &root);
    if !emitter.verify(&msg, &sig) {
        return Err(SignatureError(format!(
            "the batch signature does not verify with emitter {:?}'s registered key",
            emitter.name()
        )));
    }
    let tree = BatchTree::new(&leaves);
    (0..size)
        .map(|i| {
            let proof = aiaudit_tlog::prove_record(size, i, &tree)
                .map_err(|e| SignatureError(format!("proving event {i}: {e}")))?;
            Ok(EventSignature {
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
    let mut canonical = Vec::new();
    crate::canonical::write_object(&mut canonical, event);
    check_record(&proof, size, &root, index, &record_hash(&canonical))
        .map_err(|_| bad("the event is not in the signed batch"))?;
    if !verifier.verify(&batch_message(verifier.name(), size, &root), &sig) {
        return Err(bad("the emitter's signature does not verify"));
    }
    Ok(key.to_string())
}

/// Signs a batch (the emitter's side): the signature over the batch root.
pub fn sign_batch(signer: &aiaudit_tlog::Signer, canonical_events: &[Vec<u8>]) -> [u8; 64] {
    let leaves = batch_leaves(canonical_events);
    let root = batch_root(&leaves);
    signer.sign(&batch_message(signer.name(), leaves.len() as u64, &root))
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

    fn canon(e: &Map<String, Value>) -> Vec<u8> {
        let mut out = Vec::new();
        crate::canonical::write_object(&mut out, e);
        out
    }

    #[test]
    fn every_event_of_a_signed_batch_verifies_alone() {
        let signer = Signer::from_seed("edge-gw-7", [7u8; 32]).unwrap();
        for n in [1, 2, 3, 7, 100] {
            let evs = events(n);
            let canonical: Vec<Vec<u8>> = evs.iter().map(canon).collect();
            let sig = sign_batch(&signer, &canonical);
            let per_event = verify_batch(&signer.verifier(), &canonical, &sig).unwrap();
            for (e, s) in evs.iter().zip(&per_event) {
                let key = verify_entry_signature(e, &s.to_json()).unwrap();
                assert_eq!(key, signer.verifier().to_vkey());
            }
            // A changed event no longer verifies.
            let mut changed = evs[0].clone();
            changed.insert("n".into(), json!(999));
            assert!(verify_entry_signature(&changed, &per_event[0].to_json()).is_err());
        }
    }

    #[test]
    fn wrong_key_order_or_tampered_signature_fails() {
        let signer = Signer::from_seed("edge-gw-7", [7u8; 32]).unwrap();
        let other = Signer::from_seed("edge-gw-7", [8u8; 32]).unwrap();
        let canonical: Vec<Vec<u8>> = events(3).iter().map(canon).collect();
        let mut sig = sign_batch(&signer, &canonical);
        assert!(verify_batch(&other.verifier(), &canonical, &sig).is_err());
        let mut reordered = canonical.clone();
        reordered.swap(0, 1);
        assert!(verify_batch(&signer.verifier(), &reordered, &sig).is_err());
        sig[10] ^= 1;
        assert!(verify_batch(&signer.verifier(), &canonical, &sig).is_err());
        assert!(verify_batch(&signer.verifier(), &canonical, &sig[..10]).is_err());
    }
}
