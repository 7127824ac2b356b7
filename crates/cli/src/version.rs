//! `aiaudit --version`: the release, and every on-disk and wire format this
//! binary reads and writes, so an operator can tell before an upgrade or a
//! rollback whether two builds can share a data directory or a database.

/// What `aiaudit --version` prints (`-V`: the release alone).
pub static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(long_version);

fn long_version() -> String {
    let spool = String::from_utf8_lossy(aiaudit_emitter::SPOOL_FORMAT_LINE);
    format!(
        "{version}\n\
         entries: writes sealed v{sealed_v3} (v{sealed_v2} with --entry-format 2) and plain v{plain}; reads v1, v2, v3\n\
         entry-format gate: up to {gate} (4: subject keys from families)\n\
         data directory: {fs}\n\
         search index: SQLite v{index}, PostgreSQL v{pg_index}\n\
         PostgreSQL schema: v{pg_schema} (migrates older schemas up at start; refuses newer ones)\n\
         subject-key index: v{subject_index}; member index: v{members}\n\
         backups: writes {backup_2} (with blobs) or {backup_1}; reads both\n\
         bundles: writes {bundle_2} (with blobs) or {bundle_1}; reads both\n\
         emitter spool: {spool} (reads and upgrades aiaudit-spool 1)\n\
         batch signatures: aiaudit-batch-v2 (RFC 8785) and aiaudit-batch-v1",
        version = env!("CARGO_PKG_VERSION"),
        sealed_v3 = aiaudit_event::sealed_v3::VERSION_BYTE,
        sealed_v2 = aiaudit_event::envelope::SEALED_ENTRY_VERSION,
        gate = aiaudit_ledger::entry_format::LATEST,
        plain = aiaudit_event::ENTRY_VERSION,
        fs = aiaudit_store::FORMAT_LINE,
        index = aiaudit_index::INDEX_VERSION,
        pg_index = aiaudit_index::PG_INDEX_VERSION,
        pg_schema = aiaudit_store::PG_SCHEMA_VERSION,
        subject_index = aiaudit_keyring::SUBJECT_INDEX_VERSION,
        members = aiaudit_keyring::MEMBERS_VERSION,
        backup_1 = aiaudit_backup::layout::FORMAT,
        backup_2 = aiaudit_backup::layout::FORMAT_2,
        bundle_1 = aiaudit_bundle::FORMAT,
        bundle_2 = aiaudit_bundle::FORMAT_2,
        spool = spool.trim_end(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_release_and_every_format() {
        let v = super::long_version();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        for needle in [
            "writes sealed v3 (v2 with --entry-format 2) and plain v1",
            "aiaudit-fs 1",
            "aiaudit-backup 2",
            "aiaudit-bundle 2",
            "aiaudit-spool 2",
            "PostgreSQL schema: v",
        ] {
            assert!(v.contains(needle), "{needle} missing from:\n{v}");
        }
    }
}
