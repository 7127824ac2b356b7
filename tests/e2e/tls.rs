//! HTTPS on the ledger with rustls: certificate from PEM files, the CLI
//! trusting it with --ca-cert, and a new certificate picked up on SIGHUP.

use crate::harness::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn self_signed(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key, ck.cert.pem())
}

fn trusting(pem: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn https_with_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(dir.path(), "one");
    let port = free_port();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("AIAUDIT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("https://localhost:{port}");
    let client = trusting(&pem);
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{url}/healthz")).send().is_err() {
        assert!(Instant::now() < deadline, "no HTTPS answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Plain HTTP gets nothing useful on a TLS port.
    assert!(
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz"))
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );
    let token = admin_token(&data);
    let r = client
        .post(format!("{url}/v1/events"))
        .bearer_auth(&token)
        .json(&vec![event("tls-1")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = Command::new(BIN)
        .args(["verify", "--url", &url, "--token", &token, "--ca-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );

    // A new certificate in the same files, then SIGHUP: new connections get it.
    let (cert2, key2, pem2) = self_signed(dir.path(), "two");
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    assert!(trusting(&pem2)
        .get(format!("{url}/healthz"))
        .send()
        .is_err());
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while trusting(&pem2)
        .get(format!("{url}/healthz"))
        .send()
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not loaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(trusting(&pem).get(format!("{url}/healthz")).send().is_err());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
