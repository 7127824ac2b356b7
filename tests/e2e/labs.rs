//! The operator labs (docs/labs/*.md) run as written, against this build's
//! binary: `tests/labs/run_lab.py` executes each page's console blocks and
//! checks every expected outcome, so a lab never rots. One test per lab
//! (they use distinct ports and run in parallel), and one that no page is
//! left without its test.

use crate::harness::BIN;
use std::path::Path;
use std::process::Command;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Every lab, in the order the training takes them.
const LABS: &[&str] = &[
    "01-first-deployment.md",
    "02-daily-checks.md",
    "03-incident-response.md",
    "04-dr-drill.md",
    "05-keys-and-erasure.md",
    "06-outside-auditor.md",
    "07-three-nodes.md",
];

fn run_lab(name: &str) {
    let page = Path::new(REPO).join("docs/labs").join(name);
    let out = Command::new("python3")
        .arg(Path::new(REPO).join("tests/labs/run_lab.py"))
        .arg(&page)
        .arg("--bin")
        .arg(BIN)
        .output()
        .expect("running python3 tests/labs/run_lab.py");
    assert!(
        out.status.success(),
        "lab {name} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_lab_page_has_its_test() {
    let mut pages: Vec<String> = std::fs::read_dir(Path::new(REPO).join("docs/labs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .collect();
    pages.sort();
    assert_eq!(pages, LABS, "docs/labs and the LABS list differ");
}

#[test]
fn lab_01_first_deployment() {
    run_lab(LABS[0]);
}

#[test]
fn lab_02_daily_checks() {
    run_lab(LABS[1]);
}

#[test]
fn lab_03_incident_response() {
    run_lab(LABS[2]);
}

#[test]
fn lab_04_dr_drill() {
    run_lab(LABS[3]);
}

#[test]
fn lab_05_keys_and_erasure() {
    run_lab(LABS[4]);
}

#[test]
fn lab_06_outside_auditor() {
    run_lab(LABS[5]);
}

#[test]
fn lab_07_three_nodes() {
    run_lab(LABS[6]);
}
