//! The `aiaudit serve` config file (TOML, docs/operations.md), through the
//! very function `aiaudit serve` and `aiaudit validate` use: `load_config`
//! in crates/cli/src/serve.rs. The CLI is a binary crate, so its source
//! file is compiled in here rather than linked.
//!
//! Properties: no panic; an accepted config keeps the invariants `serve`
//! relies on, and its backup locations parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

#[allow(dead_code)]
#[path = "../../crates/cli/src/serve.rs"]
mod serve;

fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    // One file per process: parallel fuzz jobs must not share it. In memory
    // where possible: on ext4 every rewrite is flushed to disk, which made
    // the target ten times slower.
    PATH.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("aiaudit-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = config_path();
    std::fs::write(path, data).expect("writing the config file");
    let Ok(config) = serve::load_config(Some(path), None) else {
        return;
    };
    assert!(!config.publish_interval.is_zero());
    assert!(config.group_commit_max_events >= 1);
    assert!(config.retention_check_interval >= Duration::from_secs(1));
    assert!(config.retention.values().all(|d| !d.is_zero()));
    assert!(config.backup.full_at_minute < 24 * 60);
    // What the schedule computes from these settings while serving.
    let _ = config.backup.max_age();
    let now = 1_795_770_843;
    let status = aiaudit_ledger::backups::LocationStatus {
        last_full_unix: Some(now - 3600),
        last_success_unix: Some(now - 60),
        ..Default::default()
    };
    let _ = aiaudit_ledger::backups::due(&status, &config.backup, now);
    // As in backup_manifest: no s3:// locations, whose client is slow to build.
    for spec in config
        .backup
        .locations
        .iter()
        .filter(|s| !s.starts_with("s3://"))
    {
        let _ = aiaudit_backup::Location::parse(spec);
    }
});
