//! The TypeScript emitter (`sdk/typescript`, `@aiaudit/emitter`): its
//! `npm test` against this build's `aiaudit serve` (Node tests with the
//! node test runner, kill -9 of a Node process, a slow lossy link, and a
//! PWA in Debian's Chromium through playwright-core). `.ci/run` installs
//! its dependencies (`npm ci --prefix sdk/typescript`); elsewhere the test
//! runs when they are installed and says it was skipped otherwise.

use crate::harness::*;
use std::path::Path;
use std::process::Command;

#[test]
fn the_typescript_emitter_passes_its_suite_against_the_real_ledger() {
    let ci = std::env::var_os("CI").is_some();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/typescript");
    let installed = dir.join("node_modules/typescript").is_dir()
        && dir.join("node_modules/playwright-core").is_dir();
    let chromium = Path::new("/usr/bin/chromium").exists();
    if !(installed && chromium) {
        assert!(
            !ci,
            "CI needs the TypeScript emitter's dependencies (npm ci --prefix sdk/typescript) and Debian's chromium"
        );
        skipped("sdk/typescript's node_modules (npm ci --prefix sdk/typescript) or /usr/bin/chromium is missing");
        return;
    }
    let out = Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .env("AIAUDIT_BIN", BIN)
        .output()
        .expect("running npm test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("# ") || l.starts_with("not ok"))
        .collect();
    println!("{}", summary.join("\n"));
    assert!(
        out.status.success(),
        "npm test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every test ran: none skipped or left as todo.
    assert!(
        summary.contains(&"# skipped 0") && summary.contains(&"# todo 0"),
        "{summary:?}"
    );
    assert!(summary.contains(&"# fail 0"), "{summary:?}");
}
