//! Witnesses (C2SP tlog-witness): three `aiaudit witness serve` processes
//! cosign a ledger's checkpoints; clients check them under a tlog-policy;
//! a forked copy of the ledger (a split view) is refused by every witness.

use crate::harness::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start_witness(dir: &Path, port: u16, name: &str, log_vkey: &str) -> Server {
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args([
            "witness", "serve", "--listen", &listen, "--name", name, "--log", log_vkey,
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("AIAUDIT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting aiaudit witness");
    let w = Server {
        child,
        url: format!("http://{listen}"),
        token: String::new(),
    };
    w.wait_ready();
    w
}

/// Waits until `/checkpoint` covers at least `size` entries with at least
/// `cosigs` cosignature lines; returns the note.
fn wait_cosigned(server: &Server, size: u64, cosigs: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let note = server.get("/checkpoint").text().unwrap();
        let got_size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
        let sigs = note.lines().filter(|l| l.starts_with('\u{2014}')).count();
        if got_size >= size && sigs > cosigs {
            return note;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of size >= {size} with {cosigs} cosignatures; last:\n{note}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post_n(server: &Server, prefix: &str, n: usize) {
    let events: Vec<Value> = (0..n).map(|i| event(&format!("{prefix}-{i}"))).collect();
    server.post_events(&events);
}

fn evidence(w: &Server) -> Vec<Value> {
    let v: Value = client()
        .get(format!("{}/evidence", w.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["evidence"].as_array().cloned().unwrap_or_default()
}

/// `aiaudit verify --url` of a ledger under a witness policy.
fn verify_url(server: &Server, policy: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "verify",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--policy",
        policy,
    ];
    args.extend_from_slice(extra);
    verify_ok(&args)
}

fn verify_ok(args: &[&str]) -> (bool, String) {
    let out = aiaudit(args);
    (
        out.status.success(),
        format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn witnesses_cosign_clients_need_the_quorum_and_a_split_view_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ledger");
    init_ledger(&data);
    let log_vkey = std::fs::read_to_string(data.join("log.vkey"))
        .unwrap()
        .trim()
        .to_string();

    // Three witnesses, each generating its key on first start.
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let wdirs: Vec<_> = (0..3).map(|i| tmp.path().join(format!("w{i}"))).collect();
    let mut witnesses: Vec<Option<Server>> = (0..3)
        .map(|i| {
            Some(start_witness(
                &wdirs[i],
                ports[i],
                &format!("witness.test/w{i}"),
                &log_vkey,
            ))
        })
        .collect();
    let wkeys: Vec<String> = wdirs
        .iter()
        .map(|d| {
            std::fs::read_to_string(d.join("witness.vkey"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    let mode = std::fs::metadata(wdirs[0].join("witness.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let policy = |group: &str| {
        let mut p = format!("log {log_vkey}\n");
        for i in 0..3 {
            p.push_str(&format!(
                "witness w{i} {} http://127.0.0.1:{}\n",
                wkeys[i], ports[i]
            ));
        }
        p.push_str(&format!("group main {group} w0 w1 w2\nquorum main\n"));
        p
    };
    let policy_2of3 = tmp.path().join("2of3.policy");
    std::fs::write(&policy_2of3, policy("2")).unwrap();
    let policy_all = tmp.path().join("all.policy");
    std::fs::write(&policy_all, policy("all")).unwrap();
    let p23 = policy_2of3.to_str().unwrap();
    let pall = policy_all.to_str().unwrap();

    let ledger_port = free_port();
    let server = Server::start_on(&data, ledger_port, &["--witness-policy", p23]);
    post_n(&server, "a", 20);
    server.wait_size(20);
    // Every witness cosigns; the note still opens with only the log key.
    let note = wait_cosigned(&server, 20, 3);
    assert!(note.contains("witness.test/w0") && note.contains("witness.test/w2"));
    let (ok, out) = verify_url(&server, pall, &["--json"]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["cosigned_by"].as_object().unwrap().len(), 3, "{v}");

    // A tlog-proof of one event verifies offline under the policy; a
    // proof whose entry was changed does not.
    let proof = tmp.path().join("e5.tlog-proof");
    write_proof(&server, 5, &proof);
    let text = std::fs::read_to_string(&proof).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
    let (ok, out) = verify_ok(&[
        "verify",
        "--proof",
        proof.to_str().unwrap(),
        "--policy",
        p23,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("index 5"), "{out}");
    let tampered = tmp.path().join("tampered.tlog-proof");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1] = format!("extra {}", base64_of(b"not the entry"));
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let (ok, out) = verify_ok(&[
        "verify",
        "--proof",
        tampered.to_str().unwrap(),
        "--policy",
        p23,
    ]);
    assert!(!ok && out.contains("not in the checkpoint"), "{out}");

    // One witness killed -9 under load: 2 of 3 still cosign, the all-policy
    // refuses naming it, and once restarted it catches up.
    witnesses[1].take().unwrap().kill9();
    post_n(&server, "b", 30);
    server.wait_size(50);
    let note = wait_cosigned(&server, 50, 2);
    assert!(!note.contains("witness.test/w1"), "{note}");
    let (ok, out) = verify_url(&server, p23, &[]);
    assert!(ok, "{out}");
    let (ok, out) = verify_url(&server, pall, &[]);
    assert!(!ok && out.contains("missing w1"), "{out}");
    witnesses[1] = Some(start_witness(
        &wdirs[1],
        ports[1],
        "witness.test/w1",
        &log_vkey,
    ));
    post_n(&server, "c", 5);
    wait_cosigned(&server, 55, 3);
    let info = server.get_json("/v1/info");
    assert_eq!(info["witnesses"].as_array().unwrap().len(), 3, "{info}");
    assert!(
        server
            .metric("aiaudit_witness_cosigned_size{witness=\"w1\"}")
            .unwrap()
            >= 55.0
    );

    // A split view: a copy of the ledger (same key, same data) is fed other
    // events and submits its checkpoints to the same witnesses.
    server.stop();
    let fork_dir = tmp.path().join("fork");
    copy_dir(&data, &fork_dir);
    let server = Server::start_on(&data, ledger_port, &["--witness-policy", p23]);
    post_n(&server, "honest", 5);
    let honest = wait_cosigned(&server, 60, 3);
    let honest_proof = tmp.path().join("honest.tlog-proof");
    write_proof(&server, 57, &honest_proof);

    let fork = Server::start_with(&fork_dir, &["--witness-policy", p23]);
    post_n(&fork, "forked", 40);
    fork.wait_size(95);
    // Every witness refuses the fork and keeps the evidence.
    let deadline = Instant::now() + Duration::from_secs(30);
    for w in witnesses.iter().flatten() {
        while evidence(w).is_empty() {
            assert!(
                Instant::now() < deadline,
                "witness {} kept no evidence",
                w.url
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let ev = &evidence(w)[0];
        let full: Value = client()
            .get(format!("{}/evidence/{}", w.url, ev["id"].as_str().unwrap()))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            full["request"].as_str().unwrap().contains("\n95\n"),
            "{full}"
        );
        let m = client()
            .get(format!("{}/metrics", w.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(m.contains("aiaudit_witness_evidence_total"), "{m}");
    }
    // The fork's checkpoint carries no cosignature and fails the policy...
    let forked_note = fork.get("/checkpoint").text().unwrap();
    assert!(!forked_note.contains("witness.test/"), "{forked_note}");
    let (ok, out) = verify_url(&fork, p23, &[]);
    assert!(!ok && out.contains("quorum"), "{out}");
    // ...while the honest proof still verifies, and its checkpoint is not the fork's.
    let (ok, out) = verify_ok(&[
        "verify",
        "--proof",
        honest_proof.to_str().unwrap(),
        "--policy",
        p23,
    ]);
    assert!(ok, "{out}");
    assert_ne!(honest.lines().nth(2), forked_note.lines().nth(2));
    // The witnesses still hold the honest tree.
    for w in witnesses.iter().flatten() {
        let logs: Value = client()
            .get(format!("{}/logs", w.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let held = &logs["logs"][0];
        assert!(held["size"].as_u64().unwrap() <= 60, "{held}");
        assert!(
            honest.contains(held["root"].as_str().unwrap()) || held["size"].as_u64() < Some(60)
        );
    }
}

/// `aiaudit proof --index` of one event into `path`.
fn write_proof(server: &Server, index: u64, path: &Path) {
    let out = aiaudit(&[
        "proof",
        "--url",
        &server.url,
        "--token",
        &server.token,
        "--index",
        &index.to_string(),
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// An add-checkpoint body for the tree of `size` signed by `log`, from `old`.
fn add_checkpoint(log: &aiaudit_tlog::Signer, old: u64, size: u64) -> String {
    let tree =
        aiaudit_tlog::MemoryTree::of_entries((0..size.max(old)).map(|i| format!("entry {i}")));
    let cp = aiaudit_tlog::Checkpoint {
        origin: log.name().into(),
        size,
        root: aiaudit_tlog::tree_hash(size, &tree).unwrap(),
        extensions: vec![],
    };
    let proof = if old == 0 || old >= size {
        vec![]
    } else {
        aiaudit_tlog::prove_tree(size, old, &tree).unwrap()
    };
    aiaudit_tlog::AddCheckpoint {
        old_size: old,
        proof,
        checkpoint: aiaudit_tlog::sign_note(&cp.body(), log).unwrap(),
    }
    .format()
}

fn submit(w: &Server, body: &str) -> (u16, String, String) {
    let r = client()
        .post(format!("{}/add-checkpoint", w.url))
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.text().unwrap())
}

fn held_size(w: &Server) -> u64 {
    let logs: Value = client()
        .get(format!("{}/logs", w.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    logs["logs"][0]["size"].as_u64().unwrap_or(0)
}

#[test]
fn bad_input_to_a_witness_gets_the_spec_status_and_never_corrupts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = aiaudit_tlog::Signer::from_seed("example.test/log", [7; 32]).unwrap();
    let port = free_port();
    let w = start_witness(
        tmp.path(),
        port,
        "witness.test/b",
        &log.verifier().to_vkey(),
    );
    let wkey = aiaudit_tlog::CosignatureVerifier::parse(
        std::fs::read_to_string(tmp.path().join("witness.vkey"))
            .unwrap()
            .trim(),
    )
    .unwrap();

    // The first checkpoint is cosigned, and the line verifies under the witness key.
    let first = add_checkpoint(&log, 0, 10);
    let (status, _, line) = submit(&w, &first);
    assert_eq!(status, 200, "{line}");
    let body = aiaudit_tlog::split_note(&first[first.find("\n\n").unwrap() + 2..])
        .unwrap()
        .0
        .to_string();
    let sig = aiaudit_tlog::parse_signature_line(line.trim_end()).unwrap();
    assert!(wkey.verify(&body, &sig).is_some());

    let hash_line = format!("{}\n", base64_of(&[1u8; 32]));
    let valid_cp = &first[first.find("\n\n").unwrap() + 2..];
    let other_log = aiaudit_tlog::Signer::from_seed("other.test/log", [8; 32]).unwrap();
    let imposter = aiaudit_tlog::Signer::from_seed("example.test/log", [9; 32]).unwrap();
    let cases: Vec<(String, u16)> = vec![
        ("garbage".into(), 400),
        ("old 10\n".into(), 400),
        (format!("old 10\n{}\n{valid_cp}", hash_line.repeat(64)), 400),
        (format!("old 99999999999999999999999\n\n{valid_cp}"), 400),
        (format!("old 010\n\n{valid_cp}"), 400),
        (format!("old 10\nnot-base64\n\n{valid_cp}"), 400),
        (
            "old 10\n\nexample.test/log\n12\nnot a root\n\n— x AAAAAA==\n".to_string(),
            400,
        ),
        (add_checkpoint(&log, 11, 10), 400),
        ("x".repeat(100 * 1024), 413),
        (add_checkpoint(&other_log, 0, 5), 404),
        (add_checkpoint(&imposter, 10, 12), 403),
        // A proof from the held size that does not verify (here: garbage hashes).
        (
            format!(
                "old 10\n{}\n{}",
                hash_line.repeat(3),
                &add_checkpoint(&log, 0, 12)["old 0\n\n".len()..]
            ),
            422,
        ),
    ];
    for (body, want) in &cases {
        let (status, _, text) = submit(&w, body);
        assert_eq!(status, *want, "{}: {text}", &body[..body.len().min(60)]);
        assert_eq!(held_size(&w), 10, "state changed by a refused request");
    }
    // A stale old size: 409 with the size held, as text/x.tlog.size.
    let (status, ctype, text) = submit(&w, &add_checkpoint(&log, 0, 20));
    assert_eq!(
        (status, ctype.as_str(), text.as_str()),
        (409, "text/x.tlog.size", "10\n")
    );

    // Concurrent submissions from the same old size: exactly one wins,
    // the others are told the new size; the held size never goes back.
    let bodies: Vec<String> = (11..19).map(|n| add_checkpoint(&log, 10, n)).collect();
    let url = w.url.clone();
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let url = url.clone();
            std::thread::spawn(move || {
                client()
                    .post(format!("{url}/add-checkpoint"))
                    .body(b)
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");
    let held = held_size(&w);
    assert!((11..19).contains(&held));

    // Killed -9 and restarted, it holds the same checkpoint and goes on from it.
    w.kill9();
    let w = start_witness(
        tmp.path(),
        port,
        "witness.test/b",
        &log.verifier().to_vkey(),
    );
    assert_eq!(held_size(&w), held);
    let (status, _, _) = submit(&w, &add_checkpoint(&log, held, 30));
    assert_eq!(status, 200);
    assert!(evidence(&w)
        .iter()
        .any(|e| e["reason"].as_str().unwrap().contains("does not verify")));
}
