//! A failing flush of a keyring file, for tests only: a running ledger's
//! keyring sits behind its engine, out of a test's reach, so a fault is
//! armed by the file's directory instead.
//!
//! Compiled only with the cargo feature `fault-injection`, which nothing but
//! dev-dependencies enable: a release build has neither this module nor a
//! single extra instruction on the flush path.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Directories whose keyring file fails its next flush.
static FAIL_NEXT_SYNC: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The next flush of the keyring file in `dir` fails (once), after the
/// records were written, as a disk that lost them would.
pub fn fail_next_sync(dir: &Path) {
    FAIL_NEXT_SYNC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir.to_path_buf());
}

/// Whether a fault is armed for the keyring file at `path` (disarming it).
pub(crate) fn sync_fails(path: &Path) -> bool {
    let mut armed = FAIL_NEXT_SYNC.lock().unwrap_or_else(|e| e.into_inner());
    let Some(at) = armed
        .iter()
        .position(|d| path.parent() == Some(d.as_path()))
    else {
        return false;
    };
    armed.remove(at);
    true
}
