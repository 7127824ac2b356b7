//! The ledger's read API from the outside, for verifiers, monitors,
//! backups, validation and DR drills: the latest checkpoint opened with a
//! key the caller trusts, tiles and entry bundles (a [`TileReader`], so
//! [`aiaudit_tlog::audit_log`] can check a whole log through it), RFC 6962
//! proofs, and whether a checkpoint seen before is a prefix of the latest.
//!
//! Not here: writing (emitters have their SDK), and anything a proof does
//! not need the network for (that is `aiaudit-tlog`).

use aiaudit_tlog::{
    check_record, check_tree, open_note, record_hash, Checkpoint, Hash, Policy, PolicyCheck, Tile,
    TileReader, TlogProof, Verifier,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;
use std::time::Duration;

/// What can go wrong talking to a ledger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    /// The ledger answered something that is not what the API promises.
    #[error("{0}")]
    Invalid(String),
    /// A signature or proof that does not check.
    #[error("{0}")]
    Verification(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A ledger at a base URL.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client of the ledger at `base_url`, sending `token` (if any) as a
    /// bearer token and trusting `ca_pem` (if any) besides the system's roots.
    pub fn new(base_url: &str, token: Option<&str>, ca_pem: Option<&[u8]>) -> Result<Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                .map_err(|_| Error::Invalid("the token is not a valid header value".into()))?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut b = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .default_headers(headers);
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::Invalid(format!("the CA certificate is not PEM: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| Error::Http {
            url: base_url.to_string(),
            source: e,
        })?;
        Ok(Client::with_http(base_url, http))
    }

    /// A client over an HTTP client the caller built.
    pub fn with_http(base_url: &str, http: reqwest::blocking::Client) -> Client {
        Client {
            base: base_url.trim_end_matches('/').to_string(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn get(&self, path: &str) -> Result<reqwest::blocking::Response> {
        let url = format!("{}{path}", self.base);
        let resp = self.http.get(&url).send().map_err(|source| Error::Http {
            url: url.clone(),
            source,
        })?;
        if !resp.status().is_success() {
            return Err(Error::Status {
                url,
                status: resp.status().as_u16(),
            });
        }
        Ok(resp)
    }

    fn get_json(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        self.get(path)?
            .json()
            .map_err(|source| Error::Http { url, source })
    }

    /// `GET /v1/info`: the log's identity, size and status.
    pub fn info(&self) -> Result<Value> {
        self.get_json("/v1/info")
    }

    /// The verifier key the ledger announces for itself. Trust it only
    /// when nothing better is pinned: a compromised server announces its own.
    pub fn announced_key(&self) -> Result<Verifier> {
        let info = self.info()?;
        let vkey = info["verifier_key"]
            .as_str()
            .ok_or_else(|| Error::Invalid("/v1/info has no verifier_key".into()))?;
        Verifier::parse(vkey).map_err(|e| Error::Invalid(format!("verifier_key: {e}")))
    }

    /// The latest signed checkpoint, as served (a C2SP signed note).
    pub fn checkpoint_note(&self) -> Result<String> {
        let url = format!("{}/checkpoint", self.base);
        self.get("/checkpoint")?
            .text()
            .map_err(|source| Error::Http { url, source })
    }

    /// The latest checkpoint, its signature checked with `verifier` and its
    /// origin with the key's name; and the note it came in.
    pub fn checkpoint(&self, verifier: &Verifier) -> Result<(Checkpoint, String)> {
        let note = self.checkpoint_note()?;
        let checkpoint = open_checkpoint(&note, verifier)?;
        Ok((checkpoint, note))
    }

    /// The latest checkpoint, accepted only when one of `policy`'s log keys
    /// signed it and its witness quorum cosigned it (C2SP tlog-policy). The
    /// error names the witnesses whose cosignature is missing.
    pub fn witnessed_checkpoint(&self, policy: &Policy) -> Result<(PolicyCheck, String)> {
        let note = self.checkpoint_note()?;
        let check = policy
            .verify_checkpoint(&note)
            .map_err(|e| Error::Verification(e.to_string()))?;
        Ok((check, note))
    }

    /// A C2SP tlog-proof of the event at `index` (readers of its tenant),
    /// to keep and check offline with [`verify_tlog_proof`].
    pub fn tlog_proof(&self, index: u64) -> Result<String> {
        let path = format!("/v1/events/{index}/tlog-proof");
        let url = format!("{}{path}", self.base);
        let text = self
            .get(&path)?
            .text()
            .map_err(|source| Error::Http { url, source })?;
        TlogProof::parse(&text).map_err(|e| Error::Invalid(format!("tlog-proof: {e}")))?;
        Ok(text)
    }

    /// A tile or entry bundle (`tile/...`, C2SP tlog-tiles).
    pub fn tile(&self, tile: &Tile) -> Result<Vec<u8>> {
        let path = format!("/{}", tile.path());
        let url = format!("{}{path}", self.base);
        Ok(self
            .get(&path)?
            .bytes()
            .map_err(|source| Error::Http { url, source })?
            .to_vec())
    }

    /// Bytes `[offset, offset + len)` of the encryption keyring (wrapped
    /// keys only) and the keyring's whole length now, for backups that copy
    /// it a piece at a time; `None` when the ledger has none (404). Needs an
    /// admin token of every tenant. `len` must be at least 1.
    pub fn keyring_range(&self, offset: u64, len: u64) -> Result<Option<(Vec<u8>, u64)>> {
        let path = "/v1/keys/keyring";
        let url = format!("{}{path}", self.base);
        let last = offset
            .checked_add(len.max(1) - 1)
            .ok_or_else(|| Error::Invalid(format!("bytes {offset}..+{len} of the keyring")))?;
        let sent = self
            .http
            .get(&url)
            .header(reqwest::header::RANGE, format!("bytes={offset}-{last}"))
            .send()
            .map_err(|source| Error::Http {
                url: url.clone(),
                source,
            })?;
        let status = sent.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status == 200 {
            return Err(Error::Invalid(format!(
                "{url} ignored a byte range: that ledger is older than this aiaudit, upgrade it to back up its keyring"
            )));
        }
        if status != 206 {
            return Err(Error::Status { url, status });
        }
        // `bytes first-last/total`: the range asked for (or its part up to
        // the end), never other bytes of the same length.
        let range = sent
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split_once('/'))
            .and_then(|(span, total)| {
                let (first, end) = span.split_once('-')?;
                Some((
                    first.parse::<u64>().ok()?,
                    end.parse::<u64>().ok()?,
                    total.parse::<u64>().ok()?,
                ))
            });
        let total = match range {
            Some((first, end, total)) if first == offset && end <= last && end < total => total,
            _ => {
                return Err(Error::Invalid(format!(
                    "{url}: a 206 answer whose Content-Range is not the bytes {offset}-{last} asked for"
                )))
            }
        };
        let bytes = sent
            .bytes()
            .map_err(|source| Error::Http { url, source })?
            .to_vec();
        Ok(Some((bytes, total)))
    }

    /// A blob's stored bytes (`GET /v1/blobs/{id}`, admins of every tenant).
    pub fn stored_blob(&self, id: &str) -> Result<Vec<u8>> {
        let path = format!("/v1/blobs/{id}");
        let url = format!("{}{path}", self.base);
        let resp = self.get(&path)?;
        Ok(resp
            .bytes()
            .map_err(|source| Error::Http { url, source })?
            .to_vec())
    }

    /// Whether the ledger says it is ready (`/readyz` answers 200).
    pub fn ready(&self) -> bool {
        self.get("/readyz").is_ok()
    }

    /// One event by index (`GET /v1/events/{index}`), as the ledger answers it.
    pub fn entry(&self, index: u64) -> Result<Value> {
        self.get_json(&format!("/v1/events/{index}"))
    }

    /// The consistency proof from the tree of `old` to that of `size`.
    pub fn consistency_proof(&self, old: u64, size: u64) -> Result<Vec<Hash>> {
        let proof = self.get_json(&format!("/v1/proof/consistency?old={old}&size={size}"))?;
        hashes(&proof["proof"])
    }

    /// The inclusion proof of entry `index` in the tree of `size`, and its leaf hash.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Vec<Hash>, Hash)> {
        let proof = self.get_json(&format!("/v1/proof/inclusion?index={index}&size={size}"))?;
        let leaf = hash(&proof["leaf_hash"])?;
        Ok((hashes(&proof["proof"])?, leaf))
    }

    /// Whether the tree `(old_size, old_root)` is a prefix of `(size, root)`:
    /// the ledger's consistency proof, checked here. `Ok(false)` is a log
    /// that rewrote or lost history.
    pub fn is_prefix(
        &self,
        (old_size, old_root): (u64, &Hash),
        (size, root): (u64, &Hash),
    ) -> Result<bool> {
        if old_size == 0 || old_size == size {
            return Ok(old_size == 0 || old_root == root);
        }
        if old_size > size {
            return Ok(false);
        }
        let proof = self.consistency_proof(old_size, size)?;
        Ok(check_tree(&proof, size, root, old_size, old_root).is_ok())
    }
}

/// What a tlog-proof that verified proves: the entry at `index` is in the
/// checkpoint `check` describes, which the policy's quorum cosigned.
#[derive(Debug, Clone)]
pub struct ProvenEntry {
    pub index: u64,
    /// The stored entry (docs/format.md), as the proof carries it.
    pub entry: Vec<u8>,
    pub check: PolicyCheck,
}

/// Checks a C2SP tlog-proof offline: the checkpoint is signed by a log key
/// of `policy` and cosigned by its quorum, and the entry the proof carries
/// (its `extra` data) is at its index in that tree. Nothing is fetched.
pub fn verify_tlog_proof(text: &str, policy: &Policy) -> Result<ProvenEntry> {
    let proof = TlogProof::parse(text).map_err(|e| Error::Invalid(e.to_string()))?;
    let check = policy
        .verify_checkpoint(&proof.checkpoint)
        .map_err(|e| Error::Verification(e.to_string()))?;
    let entry = proof.extra.ok_or_else(|| {
        Error::Invalid("the proof carries no entry (extra line) to recompute the leaf from".into())
    })?;
    check_record(
        &proof.proof,
        check.checkpoint.size,
        &check.checkpoint.root,
        proof.index,
        &record_hash(&entry),
    )
    .map_err(|e| {
        Error::Verification(format!(
            "the entry at index {} is not in the checkpoint of size {}: {e}",
            proof.index, check.checkpoint.size
        ))
    })?;
    Ok(ProvenEntry {
        index: proof.index,
        entry,
        check,
    })
}

/// A checkpoint from its signed note: signature by `verifier`, origin the key's name.
pub fn open_checkpoint(note: &str, verifier: &Verifier) -> Result<Checkpoint> {
    let body = open_note(note, verifier)
        .map_err(|e| Error::Verification(format!("checkpoint signature: {e}")))?;
    let checkpoint = Checkpoint::parse_body(body)
        .map_err(|e| Error::Invalid(format!("checkpoint body: {e}")))?;
    if checkpoint.origin != verifier.name() {
        return Err(Error::Verification(format!(
            "checkpoint origin {:?} differs from the key name {:?}",
            checkpoint.origin,
            verifier.name()
        )));
    }
    Ok(checkpoint)
}

fn hash(v: &Value) -> Result<Hash> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::Invalid("a hash is not 32 bytes of base64".into()))
}

fn hashes(v: &Value) -> Result<Vec<Hash>> {
    v.as_array()
        .ok_or_else(|| Error::Invalid("the ledger sent no proof".into()))?
        .iter()
        .map(hash)
        .collect()
}

/// Tiles read through the client, for [`aiaudit_tlog::audit_log`].
impl TileReader for Client {
    fn read_tile(&mut self, tile: &Tile) -> aiaudit_tlog::Result<Vec<u8>> {
        Client::tile(self, tile).map_err(|e| aiaudit_tlog::Error::Read(Box::new(e)))
    }

    /// The cores that hash entry bundles fetch them too, one request each
    /// at a time, so the audit waits on the network once per core rather
    /// than once in all.
    fn bundle_reader(&self) -> Option<aiaudit_tlog::BundleReader> {
        let client = self.clone();
        Some(std::sync::Arc::new(move |tile: &Tile| {
            client
                .tile(tile)
                .map_err(|e| aiaudit_tlog::Error::Read(Box::new(e)))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_checkpoints_signed_by_the_pinned_key_for_its_origin() {
        let signer = aiaudit_tlog::Signer::from_seed("example.com/log", [1; 32]).unwrap();
        let other = aiaudit_tlog::Signer::from_seed("example.com/log", [2; 32]).unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 3,
            root: [7; 32],
            extensions: vec![],
        };
        let note = aiaudit_tlog::sign_note(&cp.body(), &signer).unwrap();
        assert_eq!(open_checkpoint(&note, &signer.verifier()).unwrap(), cp);
        assert!(matches!(
            open_checkpoint(&note, &other.verifier()),
            Err(Error::Verification(_))
        ));
        // A key named for another log cannot vouch for this one.
        let misnamed = aiaudit_tlog::Signer::from_seed("other/log", [1; 32]).unwrap();
        let bad = Checkpoint {
            origin: "example.com/log".into(),
            ..cp
        };
        let note = aiaudit_tlog::sign_note(&bad.body(), &misnamed).unwrap();
        assert!(matches!(
            open_checkpoint(&note, &misnamed.verifier()),
            Err(Error::Verification(_))
        ));
    }

    #[test]
    fn proof_hashes_must_be_32_bytes_of_base64() {
        let ok = B64.encode([5u8; 32]);
        assert_eq!(hashes(&serde_json::json!([ok])).unwrap(), vec![[5u8; 32]]);
        assert!(hashes(&serde_json::json!(["AAAA"])).is_err());
        assert!(hashes(&serde_json::json!("x")).is_err());
    }

    #[test]
    fn a_tlog_proof_needs_the_quorum_and_its_own_entry() {
        use aiaudit_tlog::{prove_record, sign_note, CosignatureSigner, MemoryTree, Signer};
        let entries: Vec<Vec<u8>> = (0..5).map(|i| format!("e{i}").into_bytes()).collect();
        let tree = MemoryTree::of_entries(&entries);
        let log = Signer::from_seed("example.com/log", [1; 32]).unwrap();
        let w = CosignatureSigner::from_seed("w.example/1", [2; 32]).unwrap();
        let cp = Checkpoint {
            origin: log.name().into(),
            size: 5,
            root: tree.root(),
            extensions: vec![],
        };
        let note = sign_note(&cp.body(), &log).unwrap();
        let policy = Policy::parse(&format!(
            "log {}\nwitness w1 {}\nquorum w1\n",
            log.verifier().to_vkey(),
            w.verifier().to_vkey()
        ))
        .unwrap();
        let proof = |note: &str, entry: &[u8]| {
            TlogProof {
                extra: Some(entry.to_vec()),
                index: 3,
                proof: prove_record(5, 3, &tree).unwrap(),
                checkpoint: note.to_string(),
            }
            .format()
        };
        // No cosignature: refused, naming the witness.
        let err = verify_tlog_proof(&proof(&note, &entries[3]), &policy).unwrap_err();
        assert!(err.to_string().contains("missing w1"), "{err}");
        let cosigned = format!("{note}{}", w.cosign(&cp.body(), 1_700_000_000));
        let ok = verify_tlog_proof(&proof(&cosigned, &entries[3]), &policy).unwrap();
        assert_eq!((ok.index, ok.entry.as_slice()), (3, &entries[3][..]));
        assert_eq!(ok.check.cosigned["w1"], 1_700_000_000);
        // Another entry at that index does not verify.
        assert!(verify_tlog_proof(&proof(&cosigned, &entries[2]), &policy).is_err());
    }
}
