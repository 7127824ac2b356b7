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

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn new_ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

/// A certificate issued by `ca`: (certificate PEM, key PEM).
fn issue(ca: &Ca, cn: &str, client: bool) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn mtls_client(ca_pem: &str, identity: Option<&(String, String)>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{key}{cert}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[test]
fn mutual_tls_maps_client_certificates_to_emitters() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("aiaudit test CA");
    let ca_pem = ca.cert.pem();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let (server_cert, server_key) = issue(&ca, "localhost", false);
    let (cert_file, key_file) = (dir.path().join("s.crt"), dir.path().join("s.key"));
    std::fs::write(&cert_file, server_cert).unwrap();
    std::fs::write(&key_file, server_key).unwrap();
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
        .arg(&cert_file)
        .arg("--tls-key")
        .arg(&key_file)
        .arg("--tls-client-ca")
        .arg(&ca_file)
        .env("AIAUDIT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("https://localhost:{port}");
    let anonymous = mtls_client(&ca_pem, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while anonymous.get(format!("{url}/healthz")).send().is_err() {
        assert!(Instant::now() < deadline, "no HTTPS answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = admin_token(&data);

    // Register the emitter the certificate names, with the tenant it may write.
    let key_path = dir.path().join("gw.key");
    let out = Command::new(BIN)
        .args(["emitter", "keygen", "--name", "edge-gw-9", "--out"])
        .arg(&key_path)
        .output()
        .unwrap();
    let vkey = stdout(&out).trim().to_string();
    let out = Command::new(BIN)
        .args(["--ca-cert"])
        .arg(&ca_file)
        .args([
            "emitter",
            "register",
            "--url",
            &url,
            "--token",
            &token,
            "--name",
            "edge-gw-9",
            "--public-key",
            &vkey,
            "--tenant",
            "acme",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let post = |client: &reqwest::blocking::Client, id: &str, tenant: &str| {
        let mut e = event(id);
        e["tenant"] = serde_json::json!(tenant);
        client
            .post(format!("{url}/v1/events"))
            .json(&vec![e])
            .send()
            .map(|r| r.status().as_u16())
    };
    let gateway = mtls_client(&ca_pem, Some(&issue(&ca, "edge-gw-9", true)));
    assert_eq!(post(&gateway, "m1", "acme").unwrap(), 200);
    assert_eq!(post(&gateway, "m2", "other").unwrap(), 403);
    // A certificate of the right CA that names no registered emitter: 401.
    let stranger = mtls_client(&ca_pem, Some(&issue(&ca, "stranger", true)));
    assert_eq!(post(&stranger, "m3", "acme").unwrap(), 401);
    // No certificate and no token: 401; a token alone still works.
    assert_eq!(post(&anonymous, "m4", "acme").unwrap(), 401);
    let r = anonymous
        .post(format!("{url}/v1/events"))
        .bearer_auth(&token)
        .json(&vec![event("m5")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A certificate from another CA fails the handshake.
    let rogue_ca = new_ca("rogue CA");
    let rogue = mtls_client(&ca_pem, Some(&issue(&rogue_ca, "edge-gw-9", true)));
    assert!(post(&rogue, "m6", "acme").is_err());
    // The gateway's event was logged as coming from its certificate.
    let e: serde_json::Value = anonymous
        .get(format!("{url}/v1/events/0"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(e["event"]["id"], "m1");
    let _ = child.kill();
    let _ = child.wait();
}
