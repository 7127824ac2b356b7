//! The Python emitter (`sdk/python`, `pip install ./sdk/python`): its pytest
//! suite against this build's `aiaudit serve`. `.ci/run` installs the
//! package from the checkout; elsewhere the test runs when `aiaudit` and
//! `pytest` import (`python3 -m pip install ./sdk/python pytest
//! opentelemetry-sdk cryptography`), and says it was skipped otherwise.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn python() -> String {
    std::env::var("AIAUDIT_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Where the installed package lives, if `aiaudit` and `pytest` import.
fn installed_package() -> Option<PathBuf> {
    let out = Command::new(python())
        .args([
            "-c",
            "import os, aiaudit, pytest; print(os.path.dirname(aiaudit.__file__))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn newest(dir: &Path, newest_so_far: &mut SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("__pycache__") {
                newest(&path, newest_so_far);
            }
        } else if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
            *newest_so_far = (*newest_so_far).max(m);
        }
    }
}

/// The sources the package is built from changed after it was installed:
/// its tests would check old code.
fn stale(installed: &Path) -> bool {
    let mut source = SystemTime::UNIX_EPOCH;
    for dir in [
        "sdk/python/src",
        "sdk/python/python/aiaudit",
        "crates/emitter/src",
        "crates/event/src",
        "crates/otlp/src",
        "crates/tlog/src",
    ] {
        newest(&Path::new(REPO).join(dir), &mut source);
    }
    let installed_at = std::fs::read_dir(installed)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    source > installed_at
}

#[test]
fn the_python_emitter_passes_its_suite_against_the_real_ledger() {
    let ci = std::env::var_os("CI").is_some();
    let Some(installed) = installed_package() else {
        assert!(
            !ci,
            "CI needs the Python emitter: python3 -m pip install ./sdk/python pytest"
        );
        skipped("the aiaudit Python package (or pytest) is not installed");
        return;
    };
    if stale(&installed) {
        let why = format!(
            "the aiaudit Python package at {} is older than its sources: python3 -m pip install ./sdk/python",
            installed.display()
        );
        assert!(!ci, "{why}");
        skipped(&why);
        return;
    }
    let out = Command::new(python())
        .args([
            "-m",
            "pytest",
            "sdk/python/tests",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(REPO)
        .env("AIAUDIT_BIN", BIN)
        .output()
        .expect("running pytest");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pytest failed:\n{report}");
    // Under CI a skipped test is a missing tool, not a pass.
    assert!(
        !(ci && report.contains(" skipped")),
        "pytest skipped tests under CI:\n{report}"
    );
    assert!(report.contains(" passed"), "{report}");
}
