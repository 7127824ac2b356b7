//! A real Prometheus scrapes a running ledger. Needs Debian's `prometheus`
//! package (installed by .ci/run); elsewhere it says it was skipped.

use crate::harness::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn prometheus_scrapes_metrics() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install prometheus"
        );
        skipped("prometheus_scrapes_metrics: prometheus is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    server.post_events(&[event("scraped-1"), event("scraped-2")]);
    let target = server.url.trim_start_matches("http://").to_string();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: aiaudit\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = |q: &str| -> Option<f64> {
        let v: Value = client()
            .get(format!("http://127.0.0.1:{port}/api/v1/query"))
            .query(&[("query", q)])
            .send()
            .ok()?
            .json()
            .ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ok = false;
    while Instant::now() < deadline {
        if query("up{job=\"aiaudit\"}") == Some(1.0)
            && query("aiaudit_events_processed_total{tenant=\"acme\"}") == Some(2.0)
        {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(ok, "Prometheus never scraped the ledger's metrics");
}
