//! Backup manifests (`manifest.json`, format aiaudit-backup 1) as restore
//! and verify read them from a directory or an S3 bucket, and backup
//! location specs (`--backup-to`, `backup_to`).
//!
//! Properties: no panic; an accepted manifest survives its own
//! serialization and lists contiguous, non-empty segments from `from` to
//! `size`.
#![no_main]

use aiaudit_backup::{layout, Location, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        assert_eq!(Manifest::parse(&m.to_json()).ok().as_ref(), Some(&m));
        let mut next = m.from;
        for seg in m.segments() {
            let (from, count) = (seg.from.unwrap(), seg.count.unwrap_or(0));
            assert_eq!(from, next);
            assert!(count > 0);
            assert_eq!(seg.name, layout::segment_name(from));
            next = from.checked_add(count).expect("segments end inside u64");
        }
        assert_eq!(next, m.size);
        assert!(layout::check_id(&m.id).is_ok());
        for f in &m.files {
            assert!(!f
                .name
                .split('/')
                .any(|part| part == ".." || part.is_empty()));
        }
    }
    if let Ok(spec) = std::str::from_utf8(data) {
        // An s3:// spec builds the S3 client, which reads the system's root
        // certificates (about 1 ms): left out, as it would slow the whole
        // target tenfold for parsing that is object_store's.
        if !spec.starts_with("s3://") {
            let _ = Location::parse(spec);
        }
    }
});
