//! Blobs on the embedded backend: one file per blob under `blobs/`, named
//! by the blob's id in hex and sharded by its first byte
//! (`blobs/ab/ab12…`). A blob is written to `blobs/.tmp/`, fsync'd, then
//! renamed into place (and the directory fsync'd), so a name under its id
//! always holds the whole blob. What lies in `.tmp/` after a crash was
//! never acknowledged and is removed on open.

use crate::{BlobWriter, Error, Result};
use aiaudit_tlog::Hash;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The blob directory of a data directory.
#[derive(Debug)]
pub(crate) struct FsBlobs {
    dir: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) fn hex(id: &Hash) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(name: &str) -> Option<Hash> {
    if name.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl FsBlobs {
    /// Opens `<data dir>/blobs`, creating it when `writable`, and clears
    /// interrupted writes.
    pub(crate) fn open(data_dir: &Path, writable: bool) -> Result<FsBlobs> {
        let dir = data_dir.join("blobs");
        if writable {
            let tmp = dir.join(".tmp");
            match fs::remove_dir_all(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            fs::create_dir_all(&tmp)?;
            // Every shard exists before any blob is written, durably, so a
            // blob's commit fsyncs only its own shard.
            for b in 0..=255u8 {
                let shard = dir.join(format!("{b:02x}"));
                if !shard.is_dir() {
                    fs::create_dir_all(&shard)?;
                }
            }
            File::open(&dir)?.sync_all()?;
            File::open(data_dir)?.sync_all()?;
        }
        Ok(FsBlobs { dir })
    }

    fn path(&self, id: &Hash) -> PathBuf {
        let name = hex(id);
        self.dir.join(&name[..2]).join(name)
    }

    pub(crate) fn writer(&self, id: &Hash) -> Result<Box<dyn BlobWriter>> {
        let tmp = self.dir.join(".tmp").join(format!(
            "{}.{}.{}",
            hex(id),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        Ok(Box::new(FsBlobWriter {
            file: io::BufWriter::with_capacity(256 << 10, file),
            tmp,
            dest: self.path(id),
        }))
    }

    pub(crate) fn read(&self, id: &Hash, offset: u64, len: usize) -> Result<Vec<u8>> {
        let file = File::open(self.path(id))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::Format(format!("blob {} ends early", hex(id)))
            } else {
                e.into()
            }
        })?;
        Ok(buf)
    }

    pub(crate) fn len(&self, id: &Hash) -> Result<Option<u64>> {
        match fs::metadata(self.path(id)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn remove(&self, id: &Hash) -> Result<()> {
        match fs::remove_file(self.path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every blob stored, with its length, in no particular order.
    pub(crate) fn list(&self, each: &mut dyn FnMut(Hash, u64) -> Result<()>) -> Result<()> {
        let shards = match fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for shard in shards {
            let shard = shard?;
            if shard.file_name().len() != 2 || !shard.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(shard.path())? {
                let file = file?;
                let name = file.file_name();
                let Some(id) = name.to_str().and_then(unhex) else {
                    continue;
                };
                each(id, file.metadata()?.len())?;
            }
        }
        Ok(())
    }
}

struct FsBlobWriter {
    file: io::BufWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl BlobWriter for FsBlobWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(self.file.write_all(bytes)?)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        let this = &*self;
        let shard = this.dest.parent().expect("a blob path has a shard");
        fs::rename(&this.tmp, &this.dest)?;
        File::open(shard)?.sync_all()?;
        Ok(())
    }
}

impl Drop for FsBlobWriter {
    fn drop(&mut self) {
        // Not committed (or committed: then the temp name is gone already).
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_lists_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobs::open(dir.path(), true).unwrap();
        let id = [0xab; 32];
        let mut w = blobs.writer(&id).unwrap();
        w.write(b"hello ").unwrap();
        w.write(b"world").unwrap();
        assert_eq!(blobs.len(&id).unwrap(), None, "visible before commit");
        w.commit().unwrap();
        assert_eq!(blobs.len(&id).unwrap(), Some(11));
        assert_eq!(blobs.read(&id, 6, 5).unwrap(), b"world");
        assert!(blobs.read(&id, 6, 6).is_err());
        let mode = fs::metadata(blobs.path(&id)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let mut seen = Vec::new();
        blobs
            .list(&mut |id, n| {
                seen.push((id, n));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(id, 11)]);
        // An abandoned writer leaves nothing; reopening clears .tmp.
        let w = blobs.writer(&[1; 32]).unwrap();
        drop(w);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/.tmp")).unwrap().count(),
            0
        );
        blobs.remove(&id).unwrap();
        assert_eq!(blobs.len(&id).unwrap(), None);
    }
}
