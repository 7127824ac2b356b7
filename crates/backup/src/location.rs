//! Where backups are kept: a local directory or an S3 bucket and prefix.
//! Both are plain key/value stores of immutable files here; only the
//! directory needs explicit fsyncs for the "manifest last" rule to hold.

use anyhow::{bail, Context};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::layout::{self, Manifest, MANIFEST};

/// A backup location.
#[derive(Clone)]
pub enum Location {
    Dir(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        bucket: String,
        prefix: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix, .. } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

impl Location {
    /// `s3://bucket[/prefix]` (endpoint, region and credentials from the
    /// standard AWS_* environment variables) or a local directory path.
    pub fn parse(spec: &str) -> anyhow::Result<Location> {
        let Some(rest) = spec.strip_prefix("s3://") else {
            if spec.is_empty() || spec.contains("://") {
                bail!("{spec:?}: a backup location is a directory or s3://bucket/prefix");
            }
            return Ok(Location::Dir(PathBuf::from(spec)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{spec:?}: no bucket name");
        }
        let prefix = prefix.trim_matches('/').to_string();
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .with_context(|| format!("{spec}: S3 configuration (AWS_* environment variables)"))?;
        Ok(Location::S3 {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            prefix,
        })
    }

    fn object_path(prefix: &str, rel: &str) -> ObjectPath {
        if prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{prefix}/{rel}"))
        }
    }

    /// Stores a file. In a directory it is written to a temp file, fsync'd,
    /// renamed and its directory fsync'd, so a later manifest never refers to
    /// a file a crash could lose.
    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Location::Dir(root) => {
                let path = root.join(rel);
                tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
                    .await
                    .context("writer thread")?
            }
            Location::S3 { store, prefix, .. } => {
                let path = Self::object_path(prefix, rel);
                store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map(|_| ())
                    .with_context(|| format!("{self}: writing {rel}"))
            }
        }
    }

    /// Starts storing a file too large to hold in memory (the keyring of
    /// millions of subjects), written a piece at a time: in a directory to
    /// a temp file (mode 0600) renamed into place by [`FileWriter::finish`],
    /// on S3 as a multipart upload. Until it finishes, the file is not there.
    pub async fn writer(&self, rel: &str) -> anyhow::Result<FileWriter> {
        let sink = match self {
            Location::Dir(root) => {
                let path = root.join(rel);
                let dir = path
                    .parent()
                    .with_context(|| format!("{} has no parent directory", path.display()))?
                    .to_path_buf();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let tmp = dir.join(format!(".{name}.tmp"));
                let (tmp2, dir2) = (tmp.clone(), dir.clone());
                let file = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
                    use std::os::unix::fs::OpenOptionsExt;
                    fs::create_dir_all(&dir2)?;
                    // Anew, so that the mode holds: never a leftover's.
                    match fs::remove_file(&tmp2) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                    fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&tmp2)
                })
                .await
                .context("writer thread")?
                .with_context(|| format!("creating {}", tmp.display()))?;
                Sink::Dir {
                    file: Some(file),
                    tmp,
                    path,
                    dir,
                }
            }
            Location::S3 { store, prefix, .. } => {
                let path = Self::object_path(prefix, rel);
                let upload = store
                    .put_multipart(&path)
                    .await
                    .with_context(|| format!("{self}: starting {rel}"))?;
                Sink::S3(WriteMultipart::new(upload))
            }
        };
        Ok(FileWriter {
            at: format!("{self}/{rel}"),
            sink,
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        })
    }

    /// Opens a file to read a piece at a time; `None` when it does not exist.
    pub async fn reader(&self, rel: &str) -> anyhow::Result<Option<FileReader>> {
        let at = format!("{self}/{rel}");
        let source = match self {
            Location::Dir(root) => {
                let path = root.join(rel);
                match tokio::task::spawn_blocking(move || File::open(path))
                    .await
                    .context("reader thread")?
                {
                    Ok(f) => Source::Dir(Some(f)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e).with_context(|| format!("reading {at}")),
                }
            }
            Location::S3 { store, prefix, .. } => {
                let path = Self::object_path(prefix, rel);
                match store.get(&path).await {
                    Ok(r) => Source::S3(r.into_stream()),
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e).with_context(|| format!("reading {at}")),
                }
            }
        };
        Ok(Some(FileReader { at, source }))
    }

    /// Reads a file; `None` when it does not exist.
    pub async fn get(&self, rel: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Location::Dir(root) => {
                let path = root.join(rel);
                let read = tokio::task::spawn_blocking(move || fs::read(&path))
                    .await
                    .context("reader thread")?;
                match read {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => {
                        Err(e).with_context(|| format!("reading {}", root.join(rel).display()))
                    }
                }
            }
            Location::S3 { store, prefix, .. } => {
                let path = Self::object_path(prefix, rel);
                match store.get(&path).await {
                    Ok(r) => {
                        let bytes = r
                            .bytes()
                            .await
                            .with_context(|| format!("{self}: reading {rel}"))?;
                        Ok(Some(bytes.to_vec()))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("{self}: reading {rel}")),
                }
            }
        }
    }

    /// Ids of the backups here that have a manifest, sorted (oldest first).
    pub async fn backup_ids(&self) -> anyhow::Result<Vec<String>> {
        let mut ids = match self {
            Location::Dir(root) => match fs::read_dir(root) {
                Ok(rd) => {
                    let mut ids = Vec::new();
                    for e in rd {
                        let e = e.with_context(|| format!("listing {}", root.display()))?;
                        let name = e.file_name().to_string_lossy().into_owned();
                        if layout::check_id(&name).is_ok() && e.path().join(MANIFEST).is_file() {
                            ids.push(name);
                        }
                    }
                    ids
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
            },
            Location::S3 { store, prefix, .. } => {
                let base = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
                let objects: Vec<_> = store
                    .list(base.as_ref())
                    .try_collect()
                    .await
                    .with_context(|| format!("listing {self}"))?;
                let skip = if prefix.is_empty() {
                    0
                } else {
                    prefix.len() + 1
                };
                objects
                    .iter()
                    .filter_map(|o| {
                        let key = o.location.as_ref().get(skip..)?;
                        let id = key.strip_suffix(&format!("/{MANIFEST}"))?;
                        layout::check_id(id).is_ok().then(|| id.to_string())
                    })
                    .collect()
            }
        };
        ids.sort();
        Ok(ids)
    }

    /// Deletes a backup (retention). Its manifest goes first, so a deletion
    /// cut short leaves files no listing shows rather than a broken backup.
    pub async fn delete_backup(&self, id: &str) -> anyhow::Result<()> {
        layout::check_id(id)?;
        match self {
            Location::Dir(root) => {
                let dir = root.join(id);
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    match fs::remove_file(dir.join(MANIFEST)) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                    fs::remove_dir_all(&dir)
                })
                .await
                .context("deleter thread")?
                .with_context(|| format!("{self}: deleting {id}"))
            }
            Location::S3 { store, prefix, .. } => {
                let manifest = Self::object_path(prefix, &layout::path(id, MANIFEST));
                match store.delete(&manifest).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e).with_context(|| format!("{self}: deleting {id}")),
                }
                let base = Self::object_path(prefix, id);
                let objects: Vec<_> = store
                    .list(Some(&base))
                    .try_collect()
                    .await
                    .with_context(|| format!("listing {self}/{id}"))?;
                for o in objects {
                    store
                        .delete(&o.location)
                        .await
                        .with_context(|| format!("{self}: deleting {}", o.location))?;
                }
                Ok(())
            }
        }
    }

    /// Every manifest here, oldest first. A manifest that does not parse is an error naming it.
    pub async fn manifests(&self) -> anyhow::Result<Vec<Manifest>> {
        let mut out = Vec::new();
        for id in self.backup_ids().await? {
            let rel = layout::path(&id, MANIFEST);
            let bytes = self
                .get(&rel)
                .await?
                .with_context(|| format!("{self}: {rel} vanished while listing"))?;
            let m = Manifest::parse(&bytes).with_context(|| format!("{self}: {rel}"))?;
            if m.id != id {
                bail!("{self}: {rel} names the backup {:?}", m.id);
            }
            out.push(m);
        }
        Ok(out)
    }
}

/// How much a piece read from a directory holds.
const READ_PIECE: usize = 4 << 20;

/// A file being stored a piece at a time (see [`Location::writer`]). Drop
/// it without [`FileWriter::finish`] and nothing is stored (S3 keeps the
/// parts of an unfinished upload until the bucket's lifecycle rules clear
/// them: call [`FileWriter::abort`]).
pub struct FileWriter {
    at: String,
    sink: Sink,
    hash: ring::digest::Context,
    bytes: u64,
}

enum Sink {
    Dir {
        file: Option<File>,
        tmp: PathBuf,
        path: PathBuf,
        dir: PathBuf,
    },
    S3(WriteMultipart),
}

impl FileWriter {
    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.hash.update(&bytes);
        self.bytes += bytes.len() as u64;
        match &mut self.sink {
            Sink::Dir { file, .. } => {
                let mut f = file.take().context("an earlier write failed")?;
                let (f, wrote) = tokio::task::spawn_blocking(move || {
                    let wrote = f.write_all(&bytes);
                    (f, wrote)
                })
                .await
                .context("writer thread")?;
                wrote.with_context(|| format!("writing {}", self.at))?;
                *file = Some(f);
            }
            Sink::S3(upload) => {
                // At most a few parts in flight: memory stays bounded.
                upload
                    .wait_for_capacity(2)
                    .await
                    .with_context(|| format!("writing {}", self.at))?;
                upload.write(&bytes);
            }
        }
        Ok(())
    }

    /// Makes the file durable and visible; returns its length and SHA-256
    /// (hex). When it fails, nothing is left behind: the temp file is
    /// removed, the upload aborted.
    pub async fn finish(self) -> anyhow::Result<(u64, String)> {
        let digest = hex::encode(self.hash.finish());
        let at = self.at;
        match self.sink {
            Sink::Dir {
                file,
                tmp,
                path,
                dir,
            } => {
                let Some(f) = file else {
                    let _ = tokio::task::spawn_blocking(move || fs::remove_file(tmp)).await;
                    bail!("writing {at}: an earlier write failed");
                };
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let done = f
                        .sync_all()
                        .and_then(|()| fs::rename(&tmp, &path))
                        .and_then(|()| File::open(&dir)?.sync_all());
                    if done.is_err() {
                        let _ = fs::remove_file(&tmp);
                    }
                    done
                })
                .await
                .context("writer thread")?
                .with_context(|| format!("writing {at}"))?;
            }
            Sink::S3(mut upload) => {
                // WriteMultipart::finish gives up on a failed part without
                // aborting the upload: wait for the parts here first.
                if let Err(e) = upload.wait_for_capacity(0).await {
                    let _ = upload.abort().await;
                    return Err(e).with_context(|| format!("writing {at}"));
                }
                upload
                    .finish()
                    .await
                    .with_context(|| format!("writing {at}"))?;
            }
        }
        Ok((self.bytes, digest))
    }

    /// Gives up: the temp file is removed, the upload aborted.
    pub async fn abort(self) {
        match self.sink {
            Sink::Dir { tmp, .. } => {
                let _ = tokio::task::spawn_blocking(move || fs::remove_file(tmp)).await;
            }
            Sink::S3(upload) => {
                let _ = upload.abort().await;
            }
        }
    }
}

/// A file read a piece at a time (see [`Location::reader`]).
pub struct FileReader {
    at: String,
    source: Source,
}

enum Source {
    Dir(Option<File>),
    S3(futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>),
}

impl FileReader {
    /// The next piece, `None` at the end.
    pub async fn next(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        match &mut self.source {
            Source::Dir(file) => {
                let Some(mut f) = file.take() else {
                    return Ok(None);
                };
                let (f, read) = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; READ_PIECE];
                    let mut n = 0;
                    let read = loop {
                        match f.read(&mut buf[n..]) {
                            Ok(0) => break Ok(n),
                            Ok(k) => {
                                n += k;
                                if n == buf.len() {
                                    break Ok(n);
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    buf.truncate(n);
                    (f, read.map(|_| buf))
                })
                .await
                .context("reader thread")?;
                let buf = read.with_context(|| format!("reading {}", self.at))?;
                if buf.is_empty() {
                    return Ok(None);
                }
                *file = Some(f);
                Ok(Some(buf))
            }
            Source::S3(stream) => match stream.try_next().await {
                Ok(piece) => Ok(piece.map(|b| b.to_vec())),
                Err(e) => Err(e).with_context(|| format!("reading {}", self.at)),
            },
        }
    }
}

/// Temp file, fsync, rename, fsync the directory (creating directories as needed).
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_stores_and_lists_backups_with_manifests_only() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(dir.path().to_str().unwrap()).unwrap();
        assert!(loc.backup_ids().await.unwrap().is_empty());
        loc.put("b1-full/entries/0", b"abc".to_vec()).await.unwrap();
        assert_eq!(loc.get("b1-full/entries/0").await.unwrap().unwrap(), b"abc");
        assert!(loc.get("b1-full/nothing").await.unwrap().is_none());
        // No manifest yet: not a backup.
        assert!(loc.backup_ids().await.unwrap().is_empty());
        loc.put("b1-full/manifest.json", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(loc.backup_ids().await.unwrap(), ["b1-full"]);
        let id = "20261127T020000Z-full";
        loc.put(&format!("{id}/manifest.json"), b"{}".to_vec())
            .await
            .unwrap();
        loc.put(&format!("{id}/entries/0"), b"x".to_vec())
            .await
            .unwrap();
        loc.delete_backup(id).await.unwrap();
        assert!(!dir.path().join(id).exists());
    }

    #[test]
    fn parses_locations() {
        assert!(matches!(Location::parse("/x/y").unwrap(), Location::Dir(_)));
        assert!(Location::parse("").is_err());
        assert!(Location::parse("gs://b/p").is_err());
        assert!(Location::parse("s3:///p").is_err());
        let s3 = Location::parse("s3://bucket/some/prefix/").unwrap();
        assert_eq!(s3.to_string(), "s3://bucket/some/prefix");
    }
}
