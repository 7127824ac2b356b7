//! Asking witnesses to cosign (C2SP tlog-witness): after each checkpoint,
//! the publisher submits it to every witness of the policy with a
//! consistency proof from the size that witness last cosigned, and keeps the
//! cosignatures that verify under the witness's key. Never on the ingest
//! path: a slow or absent witness delays only its own cosignature.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiaudit_store::Storage;
use aiaudit_tlog::{
    parse_signature_line, parse_tlog_size, prove_tree, AddCheckpoint, Policy, PolicyWitness,
    TLOG_SIZE_CONTENT_TYPE,
};
use tokio::sync::watch;

use crate::metrics::{Metrics, QuorumLabel, WitnessLabel};
use crate::Published;

/// How many recent checkpoints keep their cosignatures (the quorum may
/// complete on one a little older than the newest).
const KEPT: usize = 16;

/// One checkpoint and the cosignature lines gathered for it.
#[derive(Clone, Debug)]
struct Cosigned {
    published: Arc<Published>,
    /// (witness index in the policy, the line with its newline).
    lines: Vec<(usize, String)>,
}

/// What one witness last did, for `/v1/info` and the metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WitnessStatus {
    pub name: String,
    pub url: Option<String>,
    pub cosigned_size: u64,
    pub cosigned_at: Option<u64>,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// The witnesses of a log and the cosignatures they gave.
pub struct Witnessing {
    policy: Policy,
    quorum_wait: Option<Duration>,
    recent: Mutex<VecDeque<Cosigned>>,
    status: Mutex<Vec<WitnessStatus>>,
    metrics: Arc<Metrics>,
    /// Where a witness reporting a conflicting checkpoint is reported.
    detector: std::sync::OnceLock<crate::incidents::Detector>,
}

impl Witnessing {
    /// Loads the policy file; refuses a policy whose log keys do not
    /// include this log's key, or whose witnesses have no URL.
    pub fn load(
        path: &std::path::Path,
        log_vkey: &str,
        quorum_wait: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Witnessing> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the witness policy {}: {e}", path.display()))?;
        let policy = Policy::parse(&text)
            .map_err(|e| anyhow::anyhow!("witness policy {}: {e}", path.display()))?;
        if !policy.logs().any(|l| l.to_vkey() == log_vkey) {
            anyhow::bail!(
                "witness policy {}: no `log` line holds this log's key {log_vkey}",
                path.display()
            );
        }
        if let Some(w) = policy.witnesses().iter().find(|w| w.url.is_none()) {
            anyhow::bail!(
                "witness policy {}: witness {:?} has no URL to submit checkpoints to",
                path.display(),
                w.name
            );
        }
        let status = policy
            .witnesses()
            .iter()
            .map(|w| WitnessStatus {
                name: w.name.clone(),
                url: w.url.clone(),
                ..Default::default()
            })
            .collect();
        // Present from the start (at 0), so an alert on a quorum that never
        // cosigned anything can fire.
        let q = QuorumLabel {
            quorum: "policy".into(),
        };
        metrics.quorum_size.get_or_create(&q).set(0);
        metrics.quorum_cosigned_at.get_or_create(&q).set(0);
        Ok(Witnessing {
            policy,
            quorum_wait,
            recent: Mutex::new(VecDeque::new()),
            status: Mutex::new(status),
            metrics,
            detector: Default::default(),
        })
    }

    /// Reports conflicting checkpoints to the incident service.
    pub fn set_detector(&self, d: crate::incidents::Detector) {
        let _ = self.detector.set(d);
    }

    /// The checkpoint to serve: the log's note followed by the cosignatures
    /// gathered for it. With a quorum wait, the newest checkpoint the quorum
    /// cosigned, unless `latest` has waited longer than the wait.
    pub fn served(&self, latest: &Arc<Published>) -> Arc<Published> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let with = |c: &Cosigned| {
            let mut note = c.published.note.clone();
            for (_, line) in &c.lines {
                note.push_str(line);
            }
            Arc::new(Published {
                checkpoint: c.published.checkpoint.clone(),
                note,
                at: c.published.at,
            })
        };
        if let Some(wait) = self.quorum_wait {
            if latest.at.elapsed() < wait {
                if let Some(c) = recent.iter().rev().find(|c| self.quorum_met(c)) {
                    if c.published.checkpoint.size <= latest.checkpoint.size {
                        return with(c);
                    }
                }
            }
        }
        match recent
            .iter()
            .find(|c| c.published.checkpoint == latest.checkpoint)
        {
            Some(c) => with(c),
            None => latest.clone(),
        }
    }

    /// The policy's witnesses whose valid cosignature `note` carries.
    pub fn cosigners(&self, note: &str) -> Vec<String> {
        let Ok((body, _)) = aiaudit_tlog::split_note(note) else {
            return Vec::new();
        };
        self.policy.cosigners(body, note).into_keys().collect()
    }

    fn quorum_met(&self, c: &Cosigned) -> bool {
        let names = c
            .lines
            .iter()
            .map(|(i, _)| self.policy.witnesses()[*i].name.as_str());
        self.policy.quorum_met(names)
    }

    /// Each witness's last known state.
    pub fn status(&self) -> Vec<WitnessStatus> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record(&self, i: usize, published: &Arc<Published>, line: String, timestamp: u64) {
        let w = &self.policy.witnesses()[i];
        let label = WitnessLabel {
            witness: w.name.clone(),
        };
        self.metrics
            .witness_size
            .get_or_create(&label)
            .set(published.checkpoint.size as i64);
        self.metrics
            .witness_cosigned_at
            .get_or_create(&label)
            .set(timestamp as i64);
        {
            let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            st[i].cosigned_size = published.checkpoint.size;
            st[i].cosigned_at = Some(timestamp);
            st[i].last_error = None;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let pos = recent
            .iter()
            .position(|c| c.published.checkpoint == published.checkpoint);
        let pos = match pos {
            Some(p) => p,
            None => {
                recent.push_back(Cosigned {
                    published: published.clone(),
                    lines: Vec::new(),
                });
                // Newest last, by size.
                recent
                    .make_contiguous()
                    .sort_by_key(|c| c.published.checkpoint.size);
                while recent.len() > KEPT {
                    recent.pop_front();
                }
                match recent
                    .iter()
                    .position(|c| c.published.checkpoint == published.checkpoint)
                {
                    Some(p) => p,
                    None => return, // older than everything kept
                }
            }
        };
        let c = &mut recent[pos];
        c.lines.retain(|(j, _)| *j != i);
        c.lines.push((i, line));
        c.lines.sort_by_key(|(j, _)| *j);
        if self.quorum_met(&recent[pos]) {
            let q = QuorumLabel {
                quorum: "policy".into(),
            };
            let size = published.checkpoint.size as i64;
            if self.metrics.quorum_size.get_or_create(&q).get() <= size {
                self.metrics.quorum_size.get_or_create(&q).set(size);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                self.metrics.quorum_cosigned_at.get_or_create(&q).set(now);
            }
        }
    }

    fn failed(&self, i: usize, error: String) {
        let w = &self.policy.witnesses()[i];
        self.metrics
            .witness_failures
            .get_or_create(&WitnessLabel {
                witness: w.name.clone(),
            })
            .inc();
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st[i].failures += 1;
        st[i].last_error = Some(error);
    }
}

/// Starts one submission loop per witness.
pub fn spawn(
    witnessing: Arc<Witnessing>,
    store: Arc<dyn Storage>,
    latest: watch::Receiver<Arc<Published>>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for witnesses; checkpoints go uncosigned");
            return;
        }
    };
    for i in 0..witnessing.policy.witnesses().len() {
        tokio::spawn(submit_loop(
            witnessing.clone(),
            i,
            store.clone(),
            latest.clone(),
            client.clone(),
        ));
    }
}

/// The answer to one submission.
enum Outcome {
    /// A valid cosignature line and its timestamp.
    Cosigned(String, u64),
    /// 409 `text/x.tlog.size`: the witness holds this size.
    Holds(u64),
    /// Anything else, with whether trying again soon may help.
    Failed(String, bool),
    /// 409 on the root or 422 on the proof: the witness saw another history.
    Conflict(String),
}

async fn submit(
    client: &reqwest::Client,
    w: &PolicyWitness,
    body: String,
    published: &Published,
) -> Outcome {
    let url = format!("{}/add-checkpoint", w.url.as_deref().unwrap_or_default());
    let resp = match client.post(&url).body(body).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{url}: {e}"), true),
    };
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // A witness's answers are small; refuse to read a huge one.
    let text = match resp.text().await {
        Ok(t) if t.len() <= 64 * 1024 => t,
        Ok(_) => return Outcome::Failed(format!("{url}: answer too large"), true),
        Err(e) => return Outcome::Failed(format!("{url}: {e}"), true),
    };
    let body = published.checkpoint.body();
    match status {
        200 => {
            for line in text.lines() {
                if let Ok(sig) = parse_signature_line(line) {
                    if let Some(t) = w.verifier.verify(&body, &sig) {
                        return Outcome::Cosigned(format!("{line}\n"), t);
                    }
                }
            }
            Outcome::Failed(
                format!("{url}: 200 without a valid cosignature by {}", w.verifier.name()),
                true,
            )
        }
        409 if ctype.starts_with(TLOG_SIZE_CONTENT_TYPE) => match parse_tlog_size(&text) {
            Some(size) => Outcome::Holds(size),
            None => Outcome::Failed(format!("{url}: 409 with a malformed size"), true),
        },
        // 409 on the root, 422 on the proof: the witness saw a different
        // history of this log. That is the alarm witnesses exist for.
        409 | 422 => Outcome::Conflict(format!(
            "{url}: {status}: the witness refuses this checkpoint as inconsistent with what it holds ({})",
            text.trim()
        )),
        403 | 404 => Outcome::Failed(
            format!(
                "{url}: {status}: the witness does not trust this log's key or origin ({})",
                text.trim()
            ),
            false,
        ),
        _ => Outcome::Failed(format!("{url}: {status} {}", text.trim()), status >= 500),
    }
}

async fn submit_loop(
    wit: Arc<Witnessing>,
    i: usize,
    store: Arc<dyn Storage>,
    mut latest: watch::Receiver<Arc<Published>>,
    client: reqwest::Client,
) {
    let w = wit.policy.witnesses()[i].clone();
    // The size this witness holds, as far as we know; 0 makes it tell us.
    let mut held: u64 = 0;
    let mut done: Option<aiaudit_tlog::Checkpoint> = None;
    let mut backoff = Duration::from_millis(500);
    let mut conflicts_in_a_row = 0;
    loop {
        let published = latest.borrow_and_update().clone();
        if done.as_ref() == Some(&published.checkpoint) || !store.is_publisher() {
            // Wait for a new checkpoint (or, on a follower, check again later).
            if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(5), latest.changed()).await
            {
                return; // the publisher is gone: the ledger is shutting down
            }
            continue;
        }
        let size = published.checkpoint.size;
        if held > size {
            wit.failed(
                i,
                format!("the witness holds size {held}, more than this log's {size}"),
            );
            tracing::error!(
                witness = %w.name,
                held,
                size,
                "a witness holds a larger tree than this log: it saw checkpoints this log does not have (a restore from an old backup, or a fork)"
            );
            // Try again once this log has grown (from the size the witness
            // holds), or after a minute (asking it afresh).
            match tokio::time::timeout(Duration::from_secs(60), latest.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return, // shutting down
                Err(_) => held = 0,
            }
            continue;
        }
        let proof = if held == 0 || held == size {
            Ok(Vec::new())
        } else {
            let s = store.clone();
            tokio::task::spawn_blocking(move || prove_tree(size, held, &&*s))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        };
        let proof = match proof {
            Ok(p) => p,
            Err(e) => {
                wit.failed(i, format!("proving consistency from {held}: {e}"));
                sleep_jitter(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        let body = AddCheckpoint {
            old_size: held,
            proof,
            checkpoint: published.note.clone(),
        }
        .format();
        match submit(&client, &w, body, &published).await {
            Outcome::Cosigned(line, t) => {
                wit.record(i, &published, line, t);
                held = size;
                done = Some(published.checkpoint.clone());
                backoff = Duration::from_millis(500);
                conflicts_in_a_row = 0;
                tracing::debug!(witness = %w.name, size, "cosigned");
            }
            Outcome::Holds(size) => {
                held = size;
                conflicts_in_a_row += 1;
                if conflicts_in_a_row > 3 {
                    // Another submitter (a second publisher?) keeps moving it.
                    sleep_jitter(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
            Outcome::Conflict(error) => {
                tracing::error!(witness = %w.name, error = %error, "a witness reports a conflicting checkpoint");
                if let Some(d) = wit.detector.get() {
                    d.detect(crate::incidents::Detection {
                        key: format!("witness:{}", w.name),
                        title: format!(
                            "Witness {} reports a checkpoint conflicting with what it holds",
                            w.name
                        ),
                        detail: error.clone(),
                        severity: aiaudit_incident::Severity::Critical,
                        tenant: crate::incidents::LEDGER_TENANT.into(),
                        origin: "ledger",
                        related: Default::default(),
                    });
                }
                held = 0;
                wit.failed(i, error);
                sleep_jitter(backoff.max(Duration::from_secs(30))).await;
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
            Outcome::Failed(error, transient) => {
                if transient {
                    tracing::warn!(witness = %w.name, error = %error, "witness submission failed; retrying");
                } else {
                    tracing::error!(witness = %w.name, error = %error, "witness refused the checkpoint");
                    held = 0;
                    backoff = backoff.max(Duration::from_secs(30));
                }
                wit.failed(i, error);
                sleep_jitter(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
        }
    }
}

/// Sleeps `d` give or take a quarter, so many logs do not retry in step.
async fn sleep_jitter(d: Duration) {
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    let f = 0.75 + (u16::from_le_bytes(b) as f64 / u16::MAX as f64) * 0.5;
    tokio::time::sleep(d.mul_f64(f)).await;
}
