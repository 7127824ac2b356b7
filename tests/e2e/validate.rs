//! `aiaudit validate` before and after a deployment.

use crate::harness::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn validate(data: &std::path::Path, extra: &[&str]) -> (bool, Value) {
    let out = Command::new(BIN)
        .args(["validate", "--json"])
        .args(extra)
        .env("AIAUDIT_DATA_DIR", data)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(out.status.success(), v["ok"].as_bool().unwrap(), "{v}");
    (out.status.success(), v)
}

fn status_of<'a>(v: &'a Value, check: &str) -> &'a str {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no check {check:?} in {v}"))["status"]
        .as_str()
        .unwrap()
}

#[test]
fn validate_reports_each_check_and_fails_on_what_matters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let server = Server::start_with(&data, &["--backup-to", backups.to_str().unwrap()]);
    server.post_events(&[event("v1")]);
    server.wait_size(1);
    // Wait for the first scheduled backup.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.get_json("/v1/info")["backup"]["locations"][0]["last_verified_unix"].is_null() {
        assert!(std::time::Instant::now() < deadline, "no backup");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let saved = dir.path().join("validated.checkpoint");
    let url = server.url.clone();
    let token = server.token.clone();
    let args = [
        "--url",
        &url,
        "--checkpoint-file",
        saved.to_str().unwrap(),
        "--token",
        &token,
        // The host's free space is not this test's to decide.
        "--min-free-disk",
        "1MiB",
    ];
    let (ok, v) = validate(&data, &args);
    assert!(ok, "{v}");
    for check in [
        "configuration",
        "signing key",
        "/readyz",
        "/metrics",
        "checkpoint",
        "clock",
    ] {
        assert_eq!(status_of(&v, check), "ok", "{check}: {v}");
    }
    assert_eq!(
        status_of(&v, &format!("backup {}", backups.display())),
        "ok",
        "{v}"
    );
    assert_eq!(status_of(&v, "master key location"), "warn", "{v}");
    // The log grows; the next run checks consistency with the saved checkpoint.
    server.post_events(&[event("v2")]);
    server.wait_size(2);
    let (ok, v) = validate(&data, &args);
    assert!(ok, "{v}");
    let detail = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "checkpoint")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("consistent with the saved size 1"),
        "{detail}"
    );

    // A signing key readable by others is a failure, and the exit code says so.
    std::fs::set_permissions(data.join("log.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, v) = validate(&data, &args);
    assert!(!ok);
    assert_eq!(status_of(&v, "signing key"), "fail");
    std::fs::set_permissions(data.join("log.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    // A disk with less room than the floor fails.
    let mut short = args.to_vec();
    *short.last_mut().unwrap() = "1000000TiB";
    let (ok, v) = validate(&data, &short);
    assert!(!ok);
    assert_eq!(status_of(&v, "disk space"), "fail", "{v}");
    // A ledger that is not there fails the live checks.
    server.stop();
    let (ok, v) = validate(&data, &args);
    assert!(!ok);
    assert_eq!(status_of(&v, "/healthz"), "fail");
    // A config file with an unknown option fails the configuration check.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:1\"\nlisten_typo = 3\n").unwrap();
    let (ok, v) = validate(&data, &["--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(status_of(&v, "configuration"), "fail");
}

/// `validate --url` alone (what a deployment script runs): only the ledger
/// is checked, with the security probes, the compliance settings, the entry
/// format and a performance smoke test; a pinned verifier key catches a
/// server that is another log.
#[test]
fn validate_of_a_url_alone_probes_security_settings_and_speed() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.toml");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/policies/example.toml"),
        &policies,
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--retention",
            "*=400d",
            "--policy-file",
            policies.to_str().unwrap(),
        ],
    );
    server.post_events(&[event("u1"), event("u2"), event("u3")]);
    server.wait_size(3);
    let vkey = server.get_json("/v1/info")["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["validate", "--json", "--url", &server.url])
            .args(extra)
            .env_remove("AIAUDIT_DATA_DIR")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(out.status.success(), v["ok"].as_bool().unwrap(), "{v}");
        v
    };
    let v = run(&["--token", &server.token, "--verifier-key", &vkey]);
    assert_eq!(v["ok"], true, "{v}");
    // Nothing about this machine's files: there is no data dir here.
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"signing key") && !names.contains(&"disk space"),
        "{v}"
    );
    for check in [
        "security: anonymous append",
        "security: anonymous token list",
        "security: anonymous search",
        "security: transport",
        "security: content sealed at rest",
        "entry format",
        "performance smoke",
        "checkpoint",
    ] {
        assert_eq!(status_of(&v, check), "ok", "{check}: {v}");
    }
    // Retention and policies are set, scheduled checks are on by default.
    assert_eq!(status_of(&v, "compliance settings"), "ok", "{v}");
    // Without a token the settings are not shown: a warning, not a pass.
    let v = run(&["--verifier-key", &vkey]);
    assert_eq!(status_of(&v, "compliance settings"), "warn", "{v}");
    // A smoke limit no request can meet fails.
    let v = run(&["--smoke-max-p95-ms", "0", "--smoke-requests", "2"]);
    assert_eq!(v["ok"], false);
    assert_eq!(status_of(&v, "performance smoke"), "fail", "{v}");
    // Another log's key: the checkpoint is not signed by it.
    let other = aiaudit_tlog::Signer::from_seed("aiaudit.local/log", [7; 32]).unwrap();
    let v = run(&["--verifier-key", &other.verifier().to_vkey()]);
    assert_eq!(v["ok"], false);
    assert_eq!(status_of(&v, "checkpoint"), "fail", "{v}");
}
