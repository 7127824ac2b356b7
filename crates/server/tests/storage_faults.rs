//! Storage faults injected behind the `Storage` trait (`FaultyStore`): a
//! failed fsync is never acknowledged, a checkpoint is served only once it
//! is integrated and saved, reads that fail answer 503, never 500, and the
//! ledger carries on where it stopped once the fault clears.

use aiaudit_ledger::{start_with_storage, LedgerConfig as ServerConfig};
use aiaudit_server::api;
use aiaudit_store::{Faults, FaultyStore, FsStore, Storage};
use aiaudit_tlog::{open_note, Checkpoint, Verifier};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

struct Ledger {
    router: axum::Router,
    faults: Arc<Faults>,
    store: Arc<dyn Storage>,
    token: String,
    verifier: Verifier,
    _dir: tempfile::TempDir,
}

async fn ledger() -> Ledger {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        publish_interval: Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let (fs, recovery) = FsStore::open(dir.path()).unwrap();
    let faulty = FaultyStore::new(Arc::new(fs));
    let faults = faulty.faults.clone();
    let store: Arc<dyn Storage> = Arc::new(faulty);
    let ledger = start_with_storage(config, store.clone(), recovery)
        .await
        .unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    Ledger {
        router: api::router(ledger.clone()),
        faults,
        store,
        token,
        verifier: ledger.verifier().clone(),
        _dir: dir,
    }
}

fn events(prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"id": format!("{prefix}-{i}"), "time": "2026-11-27T09:14:03Z", "tenant": "acme",
                   "source": {"name": "faults"}, "actor": {"id": "t", "type": "service"},
                   "action": "model.invoke"})
            })
            .collect(),
    )
}

impl Ledger {
    async fn call(&self, req: Request<Body>) -> (StatusCode, String, Vec<u8>) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, ctype, body)
    }

    async fn post(&self, body: &Value) -> (StatusCode, String, Vec<u8>) {
        let req = Request::post("/v1/events")
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        self.call(req).await
    }

    async fn get(&self, path: &str) -> (StatusCode, String, Vec<u8>) {
        let req = Request::get(path)
            .header("authorization", format!("Bearer {}", self.token))
            .body(Body::empty())
            .unwrap();
        self.call(req).await
    }

    async fn checkpoint(&self) -> Checkpoint {
        let (status, _, body) = self.get("/checkpoint").await;
        assert_eq!(status, 200);
        let note = String::from_utf8(body).unwrap();
        Checkpoint::parse_body(open_note(&note, &self.verifier).unwrap()).unwrap()
    }

    async fn wait_checkpoint(&self, size: u64) -> Checkpoint {
        for _ in 0..200 {
            let cp = self.checkpoint().await;
            if cp.size >= size {
                return cp;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no checkpoint reached {size}");
    }
}

fn indexes(body: &[u8]) -> Vec<u64> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_never_acknowledged() {
    let l = ledger().await;
    let (status, _, body) = l.post(&events("before", 10)).await;
    assert_eq!(status, 200);
    assert_eq!(indexes(&body), (0..10).collect::<Vec<_>>());

    Faults::set(&l.faults.append, true);
    for _ in 0..3 {
        let (status, ctype, body) = l.post(&events("during", 5)).await;
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert_eq!(ctype, "application/problem+json");
        assert!(String::from_utf8_lossy(&body).contains("nothing was acknowledged"));
    }
    assert_eq!(l.store.size(), 10, "nothing of a failed batch is logged");
    let (status, _, body) = l.get("/readyz").await;
    assert_eq!(
        status,
        200,
        "the disk itself still takes writes: {}",
        String::from_utf8_lossy(&body)
    );

    // The emitter retries the same batch once the fault clears: it lands
    // once, right after what was there.
    Faults::set(&l.faults.append, false);
    let (status, _, body) = l.post(&events("during", 5)).await;
    assert_eq!(status, 200);
    assert_eq!(indexes(&body), (10..15).collect::<Vec<_>>());
    let cp = l.wait_checkpoint(15).await;
    assert_eq!(cp.size, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_checkpoint_is_served_before_it_is_integrated_and_saved() {
    let l = ledger().await;
    let (status, _, _) = l.post(&events("a", 4)).await;
    assert_eq!(status, 200);
    let first = l.wait_checkpoint(4).await;

    for fault in [&l.faults.integrate, &l.faults.save_checkpoint] {
        Faults::set(fault, true);
        let before = l.checkpoint().await;
        let (status, _, body) = l.post(&events(&format!("b{}", before.size), 3)).await;
        // Durable, so acknowledged; just not covered by a checkpoint yet.
        assert_eq!(status, 200);
        let new = indexes(&body);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            l.checkpoint().await,
            before,
            "a checkpoint that could not be made durable was served"
        );
        // Proofs for the new entries are refused, not made up.
        let (status, _, _) = l
            .get(&format!("/v1/proof/inclusion?index={}", new[0]))
            .await;
        assert!(status.is_client_error() || status == 503, "{status}");
        Faults::set(fault, false);
        let after = l.wait_checkpoint(before.size + 3).await;
        assert!(after.size >= before.size + 3);
    }
    assert!(l.checkpoint().await.size > first.size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reads_answer_503_not_500() {
    let l = ledger().await;
    let (status, _, _) = l.post(&events("r", 300)).await;
    assert_eq!(status, 200);
    l.wait_checkpoint(300).await;
    Faults::set(&l.faults.reads, true);
    for path in [
        "/tile/entries/000",
        "/tile/0/000",
        "/tile/0/001.p/44",
        "/v1/events/5",
        "/v1/proof/inclusion?index=7",
        "/v1/proof/consistency?old=10&size=300",
    ] {
        let (status, ctype, body) = l.get(path).await;
        assert_eq!(status, 503, "{path}: {}", String::from_utf8_lossy(&body));
        assert_eq!(ctype, "application/problem+json", "{path}");
    }
    Faults::set(&l.faults.reads, false);
    let (status, _, _) = l.get("/tile/entries/000").await;
    assert_eq!(status, 200);
}

/// A panic on the log's writer thread: the batch is not acknowledged (503,
/// problem+json, not a dropped connection), and since nothing restarts the
/// thread, `/healthz` fails (an orchestrator restarts the process) and
/// `/readyz` names the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicked_writer_fails_healthz_and_readyz() {
    let l = ledger().await;
    let (status, _, _) = l.get("/healthz").await;
    assert_eq!(status, 200);
    Faults::set(&l.faults.panic_append, true);
    let (status, ctype, body) = l.post(&events("panics", 3)).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ctype, "application/problem+json");
    Faults::set(&l.faults.panic_append, false);

    let (status, _, body) = l.get("/healthz").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let health: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "failed", "{health}");
    let (status, _, body) = l.get("/readyz").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let ready: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["checks"]["sequencer_running"], false, "{ready}");
    assert_eq!(l.store.size(), 0, "nothing of the batch was written");
}
