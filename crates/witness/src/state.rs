//! The witness's state and the tlog-witness rules.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aiaudit_tlog::{
    check_tree, split_note, AddCheckpoint, Checkpoint, CosignatureSigner, Hash, Verifier,
};
use anyhow::{bail, Context};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a submission was not cosigned; each maps to the status code the
/// tlog-witness spec gives it.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 400: the body, the checkpoint or the sizes are malformed.
    #[error("{0}")]
    Malformed(String),
    /// 404: the witness does not know the checkpoint's origin.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 403: no valid signature by a trusted key of the origin (or an
    /// invalid one by such a key).
    #[error("{0}")]
    Untrusted(String),
    /// 409 `text/x.tlog.size`: the old size is not the size the witness holds.
    #[error("the witness holds size {held}, not {old}")]
    OldSize {
        /// The size the client claimed.
        old: u64,
        /// The size the witness holds.
        held: u64,
    },
    /// 409: same size as held, different root: a fork (kept as evidence).
    #[error("size {0} is held with a different root hash")]
    RootConflict(u64),
    /// 422: the consistency proof does not verify (kept as evidence).
    #[error("the consistency proof from {old} to {new} does not verify")]
    BadProof {
        /// The size the proof starts from.
        old: u64,
        /// The checkpoint's size.
        new: u64,
    },
    /// 500: the witness could not persist its state; nothing was cosigned.
    #[error("storage: {0}")]
    Storage(String),
}

impl Refusal {
    /// The HTTP status code the spec gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Untrusted(_) => 403,
            Refusal::OldSize { .. } | Refusal::RootConflict(_) => 409,
            Refusal::BadProof { .. } => 422,
            Refusal::Storage(_) => 500,
        }
    }
}

/// The latest checkpoint cosigned for one log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Held {
    /// The log's origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash, base64.
    pub root: String,
    /// The checkpoint note as submitted (log signatures included).
    pub checkpoint: String,
    /// When it was cosigned, seconds since the Unix epoch.
    pub cosigned_at: u64,
}

/// One piece of evidence of misbehaviour.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evidence {
    /// Format of this record.
    pub version: u32,
    /// Its file name under `evidence/`.
    pub id: String,
    /// What conflicted.
    pub reason: String,
    /// The log's origin.
    pub origin: String,
    /// When it was submitted, seconds since the Unix epoch.
    pub time: u64,
    /// The checkpoint the witness held then.
    pub held_checkpoint: String,
    /// The whole request body (old size, proof, the conflicting checkpoint).
    pub request: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabel {
    origin: String,
}

struct Metrics {
    registry: Registry,
    requests: Family<CodeLabel, Counter>,
    evidence: Family<OriginLabel, Counter>,
    size: Family<OriginLabel, Gauge>,
    cosigned_at: Family<OriginLabel, Gauge>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<CodeLabel, Counter>::default();
        let evidence = Family::<OriginLabel, Counter>::default();
        let size = Family::<OriginLabel, Gauge>::default();
        let cosigned_at = Family::<OriginLabel, Gauge>::default();
        registry.register(
            "aiaudit_witness_add_checkpoint",
            "add-checkpoint requests by answer status code",
            requests.clone(),
        );
        registry.register(
            "aiaudit_witness_evidence",
            "trusted-signed checkpoints that conflicted with the one held (evidence kept)",
            evidence.clone(),
        );
        registry.register(
            "aiaudit_witness_log_size",
            "size of the latest checkpoint cosigned per log",
            size.clone(),
        );
        registry.register(
            "aiaudit_witness_log_cosigned_timestamp_seconds",
            "when the latest checkpoint of each log was cosigned",
            cosigned_at.clone(),
        );
        Metrics {
            registry,
            requests,
            evidence,
            size,
            cosigned_at,
        }
    }
}

/// How to open a witness.
#[derive(Clone, Debug)]
pub struct WitnessOptions {
    /// The data directory (created 0700 when missing).
    pub dir: PathBuf,
    /// The witness's key name; used when the key is generated, and checked
    /// against the stored key afterwards. `None`: the stored key's name, or
    /// `<hostname>/witness` for a new key.
    pub name: Option<String>,
    /// The log keys it trusts; a key's name is the log's origin.
    pub logs: Vec<Verifier>,
}

/// A witness over its data directory.
pub struct Witness {
    dir: PathBuf,
    signer: CosignatureSigner,
    logs: HashMap<String, Vec<Verifier>>,
    /// Held across the old-size check and the persistence of the new
    /// checkpoint, so concurrent submissions cannot roll a log back.
    held: Mutex<HashMap<String, Held>>,
    metrics: Metrics,
    _lock: File,
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

fn origin_file(origin: &str) -> String {
    format!("{}.json", hex::encode(Sha256::digest(origin.as_bytes())))
}

fn hostname() -> String {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

impl Witness {
    /// Opens (or creates) the witness in `opts.dir`: takes the directory's
    /// lock, loads or generates the key, writes `witness.vkey`, loads the
    /// checkpoints held.
    pub fn open(opts: WitnessOptions) -> anyhow::Result<Witness> {
        let dir = opts.dir.clone();
        fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("creating {}", dir.display()))?;
        fs::create_dir_all(dir.join("evidence"))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("witness.lock"))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            bail!("{} is in use by another witness process", dir.display());
        }
        let key_path = dir.join("witness.key");
        let signer = match fs::read_to_string(&key_path) {
            Ok(text) => {
                let s = CosignatureSigner::parse(&text)
                    .with_context(|| format!("{}", key_path.display()))?;
                if let Some(n) = &opts.name {
                    if n != s.name() {
                        bail!(
                            "--name {n:?} differs from the name of the stored key {:?} ({})",
                            s.name(),
                            key_path.display()
                        );
                    }
                }
                s
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = opts
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}/witness", hostname()));
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed)
                    .map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
                let s = CosignatureSigner::from_seed(&name, seed)
                    .with_context(|| format!("key name {name:?}"))?;
                write_atomically(
                    &dir,
                    "witness.key",
                    format!("{}\n", s.to_skey()).as_bytes(),
                    0o600,
                )?;
                tracing::info!(vkey = %s.verifier().to_vkey(), "generated a new witness key");
                s
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", key_path.display())),
        };
        write_atomically(
            &dir,
            "witness.vkey",
            format!("{}\n", signer.verifier().to_vkey()).as_bytes(),
            0o644,
        )?;
        let mut logs: HashMap<String, Vec<Verifier>> = HashMap::new();
        for v in opts.logs {
            logs.entry(v.name().to_string()).or_default().push(v);
        }
        let metrics = Metrics::new();
        let mut held = HashMap::new();
        for entry in fs::read_dir(dir.join("logs"))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let h: Held = serde_json::from_slice(&fs::read(&path)?)
                .with_context(|| format!("{}", path.display()))?;
            let label = OriginLabel {
                origin: h.origin.clone(),
            };
            metrics.size.get_or_create(&label).set(h.size as i64);
            metrics
                .cosigned_at
                .get_or_create(&label)
                .set(h.cosigned_at as i64);
            held.insert(h.origin.clone(), h);
        }
        Ok(Witness {
            dir,
            signer,
            logs,
            held: Mutex::new(held),
            metrics,
            _lock: lock,
        })
    }

    /// The witness's verifier key (signature type 0x04).
    pub fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }

    /// The origins it witnesses.
    pub fn origins(&self) -> Vec<String> {
        let mut o: Vec<String> = self.logs.keys().cloned().collect();
        o.sort();
        o
    }

    /// The checkpoint held for `origin`.
    pub fn held(&self, origin: &str) -> Option<Held> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
            .cloned()
    }

    /// Prometheus text exposition of the witness's metrics.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.metrics.registry);
        out
    }

    /// Counts an answer by status code (the HTTP layer calls it).
    pub(crate) fn count(&self, code: u16) {
        self.metrics
            .requests
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// Handles one `add-checkpoint` body at `now` (seconds since the Unix
    /// epoch, non-zero). Returns the cosignature line on success.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, Refusal> {
        let text = std::str::from_utf8(body)
            .map_err(|_| Refusal::Malformed("the body is not UTF-8".into()))?;
        let req = AddCheckpoint::parse(text).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let (cp_body, sigs) =
            split_note(&req.checkpoint).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let cp = Checkpoint::parse_body(cp_body).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let keys = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| Refusal::UnknownOrigin(cp.origin.clone()))?;
        let mut trusted = false;
        for v in keys {
            for s in sigs
                .iter()
                .filter(|s| s.name == v.name() && s.key_id == v.key_id())
            {
                let ok = <&[u8; 64]>::try_from(s.signature.as_slice())
                    .is_ok_and(|sig| v.verify(cp_body.as_bytes(), sig));
                if !ok {
                    return Err(Refusal::Untrusted(format!(
                        "an invalid signature by the trusted key {}+{:08x}",
                        v.name(),
                        v.key_id()
                    )));
                }
                trusted = true;
            }
        }
        if !trusted {
            return Err(Refusal::Untrusted(format!(
                "no signature by a trusted key of {:?}",
                cp.origin
            )));
        }
        if req.old_size > cp.size {
            return Err(Refusal::Malformed(format!(
                "old size {} is larger than the checkpoint's size {}",
                req.old_size, cp.size
            )));
        }

        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let prev = held.get(&cp.origin).cloned();
        let held_size = prev.as_ref().map_or(0, |h| h.size);
        if req.old_size != held_size {
            return Err(Refusal::OldSize {
                old: req.old_size,
                held: held_size,
            });
        }
        let prev_root: Option<Hash> = prev.as_ref().and_then(|h| {
            STANDARD
                .decode(&h.root)
                .ok()
                .and_then(|r| r.try_into().ok())
        });
        // Every tree extends the empty one: a held size of zero checks
        // nothing but the empty proof, like a log never seen.
        if let (Some(p), Some(root)) = (prev.as_ref().filter(|p| p.size > 0), prev_root) {
            if cp.size == p.size {
                if root != cp.root {
                    let held_cp = p.checkpoint.clone();
                    drop(held);
                    self.keep_evidence(
                        &cp.origin,
                        "same size, different root",
                        &held_cp,
                        text,
                        now,
                    );
                    return Err(Refusal::RootConflict(cp.size));
                }
            } else if check_tree(&req.proof, cp.size, &cp.root, p.size, &root).is_err() {
                let held_cp = p.checkpoint.clone();
                drop(held);
                self.keep_evidence(
                    &cp.origin,
                    &format!(
                        "consistency proof from {} to {} does not verify",
                        p.size, cp.size
                    ),
                    &held_cp,
                    text,
                    now,
                );
                return Err(Refusal::BadProof {
                    old: p.size,
                    new: cp.size,
                });
            }
        } else if !req.proof.is_empty() {
            // Nothing held: the spec wants an empty proof from size zero.
            return Err(Refusal::BadProof {
                old: 0,
                new: cp.size,
            });
        }
        let same = prev.as_ref().is_some_and(|p| p.size == cp.size);
        if !same {
            let next = Held {
                origin: cp.origin.clone(),
                size: cp.size,
                root: STANDARD.encode(cp.root),
                checkpoint: req.checkpoint.clone(),
                cosigned_at: now,
            };
            let bytes =
                serde_json::to_vec_pretty(&next).map_err(|e| Refusal::Storage(e.to_string()))?;
            // Persisted before the answer, under the lock.
            write_atomically(
                &self.dir.join("logs"),
                &origin_file(&cp.origin),
                &bytes,
                0o600,
            )
            .map_err(|e| {
                tracing::error!(error = %e, "persisting a checkpoint failed; not cosigned");
                Refusal::Storage(e.to_string())
            })?;
            held.insert(cp.origin.clone(), next);
        }
        drop(held);
        let label = OriginLabel {
            origin: cp.origin.clone(),
        };
        self.metrics.size.get_or_create(&label).set(cp.size as i64);
        self.metrics
            .cosigned_at
            .get_or_create(&label)
            .set(now as i64);
        Ok(self.signer.cosign(cp_body, now))
    }

    fn keep_evidence(&self, origin: &str, reason: &str, held: &str, request: &str, now: u64) {
        let mut rnd = [0u8; 4];
        let _ = getrandom::getrandom(&mut rnd);
        let id = format!("{now}-{}.json", hex::encode(rnd));
        let ev = Evidence {
            version: 1,
            id: id.clone(),
            reason: reason.to_string(),
            origin: origin.to_string(),
            time: now,
            held_checkpoint: held.to_string(),
            request: request.to_string(),
        };
        self.metrics
            .evidence
            .get_or_create(&OriginLabel {
                origin: origin.to_string(),
            })
            .inc();
        let saved = serde_json::to_vec_pretty(&ev)
            .map_err(std::io::Error::other)
            .and_then(|b| write_atomically(&self.dir.join("evidence"), &id, &b, 0o600));
        match saved {
            Ok(()) => tracing::error!(
                origin,
                reason,
                evidence = %id,
                "LOG MISBEHAVIOUR: a checkpoint signed by the log's key conflicts with the one this witness cosigned; evidence kept"
            ),
            Err(e) => tracing::error!(
                origin,
                reason,
                error = %e,
                "LOG MISBEHAVIOUR: a checkpoint signed by the log's key conflicts with the one this witness cosigned; saving the evidence FAILED"
            ),
        }
    }

    /// The evidence kept, oldest first.
    pub fn evidence(&self) -> anyhow::Result<Vec<Evidence>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.dir.join("evidence"))? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            out.push(serde_json::from_slice::<Evidence>(&fs::read(&path)?)?);
        }
        out.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaudit_tlog::{prove_tree, sign_note, MemoryTree, Signer};

    /// The tree of "e<i>" (or "f<i>" from `fork_at` on).
    fn tree(size: u64, fork_at: u64) -> MemoryTree {
        MemoryTree::of_entries((0..size).map(|i| {
            if i < fork_at {
                format!("e{i}")
            } else {
                format!("f{i}")
            }
        }))
    }

    fn log() -> Signer {
        Signer::from_seed("example.test/log", [3; 32]).unwrap()
    }

    fn request(log: &Signer, old: u64, size: u64, fork_at: u64) -> String {
        let t = tree(size, fork_at);
        let cp = Checkpoint {
            origin: log.name().into(),
            size,
            root: t.root(),
            extensions: vec![],
        };
        let proof = if old == 0 || old == size {
            vec![]
        } else {
            prove_tree(size, old, &t).unwrap()
        };
        AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: sign_note(&cp.body(), log).unwrap(),
        }
        .format()
    }

    fn open(dir: &Path) -> Witness {
        Witness::open(WitnessOptions {
            dir: dir.to_path_buf(),
            name: Some("w.example/1".into()),
            logs: vec![log().verifier()],
        })
        .unwrap()
    }

    #[test]
    fn the_spec_status_codes_and_no_rollback() {
        let tmp = tempfile::tempdir().unwrap();
        let w = open(tmp.path());
        let log = log();
        let code = |r: Result<String, Refusal>| r.map(|_| 200).unwrap_or_else(|e| e.status());
        assert_eq!(
            code(w.add_checkpoint(request(&log, 0, 10, 99).as_bytes(), 1)),
            200
        );
        assert_eq!(
            code(w.add_checkpoint(request(&log, 10, 20, 99).as_bytes(), 2)),
            200
        );
        // Stale old size: 409 with the held size.
        match w.add_checkpoint(request(&log, 10, 15, 99).as_bytes(), 3) {
            Err(Refusal::OldSize { held: 20, .. }) => {}
            other => panic!("{other:?}"),
        }
        // Same size, same root: cosigned again; different root: 409 + evidence.
        assert_eq!(
            code(w.add_checkpoint(request(&log, 20, 20, 99).as_bytes(), 4)),
            200
        );
        assert_eq!(
            code(w.add_checkpoint(request(&log, 20, 20, 5).as_bytes(), 5)),
            409
        );
        // A fork that grew: the proof from the held tree fails: 422 + evidence.
        assert_eq!(
            code(w.add_checkpoint(request(&log, 20, 30, 5).as_bytes(), 6)),
            422
        );
        assert_eq!(w.evidence().unwrap().len(), 2);
        assert_eq!(w.held(log.name()).unwrap().size, 20);
        // Unknown origin 404, other key 403, old > size 400, garbage 400.
        let other = Signer::from_seed("other.test/log", [4; 32]).unwrap();
        assert_eq!(
            code(w.add_checkpoint(request(&other, 0, 3, 99).as_bytes(), 7)),
            404
        );
        let imposter = Signer::from_seed("example.test/log", [5; 32]).unwrap();
        assert_eq!(
            code(w.add_checkpoint(request(&imposter, 20, 25, 99).as_bytes(), 7)),
            403
        );
        let mut bad = request(&log, 20, 25, 99);
        bad = bad.replacen("old 20", "old 26", 1);
        assert_eq!(code(w.add_checkpoint(bad.as_bytes(), 7)), 400);
        assert_eq!(code(w.add_checkpoint(b"\xff\xfe", 7)), 400);
        assert_eq!(code(w.add_checkpoint(b"old 1\n", 7)), 400);
        // The state survives a restart.
        drop(w);
        let w = open(tmp.path());
        assert_eq!(w.held(log.name()).unwrap().size, 20);
        assert_eq!(
            code(w.add_checkpoint(request(&log, 20, 21, 99).as_bytes(), 8)),
            200
        );
    }

    /// The alert rules name only metrics the witness exports.
    #[test]
    fn the_alert_rules_name_real_witness_metrics() {
        let tmp = tempfile::tempdir().unwrap();
        let w = open(tmp.path());
        w.keep_evidence("example.test/log", "test", "held", "request", 1);
        let text = w.metrics_text();
        let rules = include_str!("../../../deploy/prometheus/alerts.yml");
        let mut named = 0;
        for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("aiaudit_witness_evidence") {
                named += 1;
                assert!(text.contains(word), "{word} is not exported");
            }
        }
        assert!(named > 0);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let _w = open(tmp.path());
        assert!(Witness::open(WitnessOptions {
            dir: tmp.path().to_path_buf(),
            name: None,
            logs: vec![],
        })
        .is_err());
    }

    #[test]
    fn concurrent_submissions_never_roll_back() {
        let tmp = tempfile::tempdir().unwrap();
        let w = std::sync::Arc::new(open(tmp.path()));
        let log = log();
        w.add_checkpoint(request(&log, 0, 1, 99).as_bytes(), 1)
            .unwrap();
        // Many clients race from the same old size to different new sizes:
        // exactly one wins, and the held size only grows.
        let threads: Vec<_> = (2..10u64)
            .map(|n| {
                let w = w.clone();
                let body = request(&log, 1, n, 99);
                std::thread::spawn(move || w.add_checkpoint(body.as_bytes(), 2).is_ok())
            })
            .collect();
        let wins = threads
            .into_iter()
            .filter(|_| true)
            .map(|t| t.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(wins, 1);
        let held = w.held(log.name()).unwrap().size;
        assert!(held >= 2);
        match w.add_checkpoint(request(&log, 1, 12, 99).as_bytes(), 3) {
            Err(Refusal::OldSize { held: h, .. }) => assert_eq!(h, held),
            other => panic!("{other:?}"),
        }
    }
}
