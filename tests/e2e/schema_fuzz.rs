//! schemathesis (PyPI) against the served OpenAPI description: every route,
//! generated and mutated inputs, with an admin token; no answer may be a 5xx.

use crate::harness::*;
use std::process::Command;

fn schemathesis() -> bool {
    let ok = Command::new("schemathesis")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs schemathesis: python3 -m pip install schemathesis"
        );
        skipped("schemathesis not installed");
    }
    ok
}

#[test]
fn no_input_makes_the_api_answer_5xx() {
    if !schemathesis() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.post_events(&[event("st-1"), event("st-2")]);
    server.wait_size(2);
    let out = Command::new("schemathesis")
        .args(["run", &format!("{}/v1/openapi.json", server.url)])
        .args(["-H", &format!("Authorization: Bearer {}", server.token)])
        .args(["--checks", "not_a_server_error", "--max-examples", "25"])
        .args(["--seed", "20261127", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    let cases = text
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or("")
        .trim()
        .to_string();
    println!("schemathesis: {cases}");
    assert!(text.contains("passed"), "{text}");
}
