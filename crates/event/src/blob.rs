//! Out-of-line content: an event member too large for a log entry, sealed
//! into a blob stored beside the log (docs/format.md, "Blobs").
//!
//! The entry commits to the member (SHA-256 of a salt and its canonical
//! JSON, the blob's id) and to the stored bytes (their SHA-256), so the leaf
//! commits to every byte of the event and anyone can check a stored blob
//! without a key. The content is sealed in chunks of [`CHUNK`] bytes so that
//! readers and writers hold one chunk at a time, each chunk under the
//! event's data key with its number, the blob's id and the chunk count in
//! the associated data: chunks cannot be swapped, reordered, dropped or
//! moved to another blob.
//!
//! ```text
//! header   "AIB1" | key u64 | size u64 | chunk size u32 | chunks u32 | nonce prefix [16]
//! chunk i  flags u8 (bit 0: zstd) | u32 length | XChaCha20-Poly1305(chunk or zstd(chunk))
//!          nonce = prefix || u64 i, AAD = header || blob id || u32 i || flags
//! ```

use crate::envelope::DataKey;
use aiaudit_tlog::Hash;
use ring::digest::{Context, SHA256};

/// The magic at the start of every stored blob.
pub const MAGIC: &[u8; 4] = b"AIB1";
/// Bytes of the stored header.
pub const HEADER_LEN: usize = 4 + 8 + 8 + 4 + 4 + 16;
/// Bytes of content per chunk.
pub const CHUNK: usize = 1 << 20;
/// The largest chunk size a reader accepts (a bound on what one chunk may
/// decompress to).
pub const MAX_CHUNK: usize = 4 << 20;
/// Chunk flag: the chunk's ciphertext seals a zstd frame.
pub const CHUNK_ZSTD: u8 = 1;
const TAG: usize = 16;
const ZSTD_LEVEL: i32 = 1;

/// Why a blob cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("blob {0}: {1}")]
    Corrupt(String, String),
    #[error("blob {0}: reading it failed: {1}")]
    Io(String, String),
}

/// The header of a stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key: u64,
    /// Bytes of content (the member's canonical JSON).
    pub size: u64,
    pub chunk: u32,
    pub chunks: u32,
    pub nonce_prefix: [u8; 16],
}

impl Header {
    fn new(key: u64, size: u64, nonce_prefix: [u8; 16]) -> Header {
        let chunks = size.div_ceil(CHUNK as u64).max(1) as u32;
        Header {
            key,
            size,
            chunk: CHUNK as u32,
            chunks,
            nonce_prefix,
        }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4..12].copy_from_slice(&self.key.to_be_bytes());
        out[12..20].copy_from_slice(&self.size.to_be_bytes());
        out[20..24].copy_from_slice(&self.chunk.to_be_bytes());
        out[24..28].copy_from_slice(&self.chunks.to_be_bytes());
        out[28..44].copy_from_slice(&self.nonce_prefix);
        out
    }

    /// Parses and bounds a header: the chunk size within [`MAX_CHUNK`], the
    /// chunk count the one the size needs.
    pub fn parse(bytes: &[u8]) -> Result<Header, String> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err("not a blob (no AIB1 header)".into());
        }
        let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().expect("8"));
        let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4"));
        let h = Header {
            key: u64_at(4),
            size: u64_at(12),
            chunk: u32_at(20),
            chunks: u32_at(24),
            nonce_prefix: bytes[28..44].try_into().expect("16"),
        };
        if h.chunk == 0 || h.chunk as usize > MAX_CHUNK {
            return Err(format!("chunk size {} out of range", h.chunk));
        }
        if h.chunks as u64 != h.size.div_ceil(h.chunk as u64).max(1) {
            return Err(format!(
                "{} chunks cannot hold {} bytes of {}",
                h.chunks, h.size, h.chunk
            ));
        }
        Ok(h)
    }

    /// Bytes of content in chunk `i`.
    fn chunk_len(&self, i: u32) -> usize {
        let start = i as u64 * self.chunk as u64;
        (self.size - start).min(self.chunk as u64) as usize
    }
}

fn nonce(prefix: &[u8; 16], i: u32) -> [u8; 24] {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(prefix);
    n[16..].copy_from_slice(&(i as u64).to_be_bytes());
    n
}

fn chunk_aad(header: &[u8; HEADER_LEN], id: &Hash, i: u32, flags: u8) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 32 + 5);
    aad.extend_from_slice(header);
    aad.extend_from_slice(id);
    aad.extend_from_slice(&i.to_be_bytes());
    aad.push(flags);
    aad
}

/// The blob's id: SHA-256(salt || content), the commitment its entry logs.
pub fn commitment(salt: &[u8; 32], content: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(salt);
    c.update(content);
    c.finish().as_ref().try_into().expect("32 bytes")
}

/// Seals `content` (a member's canonical JSON) into stored blob bytes,
/// handing them to `out` a chunk at a time. Returns the SHA-256 of
/// everything handed over, which the entry logs beside the id.
pub fn seal<E>(
    content: &[u8],
    id: &Hash,
    key: DataKey<'_>,
    nonce_prefix: [u8; 16],
    compress: bool,
    mut out: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Hash, E> {
    let header = Header::new(key.id, content.len() as u64, nonce_prefix);
    let head = header.to_bytes();
    let mut stored = Context::new(&SHA256);
    stored.update(&head);
    out(&head)?;
    let mut compressor = if compress {
        zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()
    } else {
        None
    };
    for i in 0..header.chunks {
        let start = i as usize * CHUNK;
        let plain = &content[start..start + header.chunk_len(i)];
        let packed = compressor
            .as_mut()
            .and_then(|c| c.compress(plain).ok())
            .filter(|c| c.len() < plain.len());
        let flags = if packed.is_some() { CHUNK_ZSTD } else { 0 };
        let ct = aiaudit_xchacha::seal(
            key.key,
            &nonce(&nonce_prefix, i),
            &chunk_aad(&head, id, i, flags),
            packed.as_deref().unwrap_or(plain),
        )
        .expect("XChaCha20-Poly1305 seals any length this small");
        let mut frame = Vec::with_capacity(5 + ct.len());
        frame.push(flags);
        frame.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        frame.extend_from_slice(&ct);
        stored.update(&frame);
        out(&frame)?;
    }
    Ok(stored.finish().as_ref().try_into().expect("32 bytes"))
}

/// Where a reader gets stored blob bytes: `read(offset, len)` returns
/// exactly `len` bytes or an error (a blob that ends early is corrupt).
pub trait Source {
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, String>;
}

impl<F: Fn(u64, usize) -> Result<Vec<u8>, String>> Source for F {
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        self(offset, len)
    }
}

/// Reads a stored blob chunk by chunk.
pub struct Opener<'a, S: Source + ?Sized> {
    source: &'a S,
    id: Hash,
    head: [u8; HEADER_LEN],
    pub header: Header,
    /// A copy of the data key, wiped when the opener is dropped.
    key: zeroize::Zeroizing<[u8; 32]>,
    /// Where the next chunk's frame starts, and its number.
    at: u64,
    next: u32,
}

fn hex(id: &Hash) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl<'a, S: Source + ?Sized> Opener<'a, S> {
    /// Reads the header and checks it was sealed for this key and size.
    pub fn new(
        source: &'a S,
        id: &Hash,
        key: DataKey<'_>,
        size: u64,
    ) -> Result<Opener<'a, S>, BlobError> {
        let name = hex(id);
        let corrupt = |d: String| BlobError::Corrupt(name.clone(), d);
        let bytes = source
            .read(0, HEADER_LEN)
            .map_err(|e| BlobError::Io(name.clone(), e))?;
        let header = Header::parse(&bytes).map_err(corrupt)?;
        if header.key != key.id {
            return Err(corrupt(format!(
                "sealed under key {}, its entry names key {}",
                header.key, key.id
            )));
        }
        if header.size != size {
            return Err(corrupt(format!(
                "holds {} bytes, its entry logs {size}",
                header.size
            )));
        }
        Ok(Opener {
            source,
            id: *id,
            head: header.to_bytes(),
            header,
            key: zeroize::Zeroizing::new(*key.key),
            at: HEADER_LEN as u64,
            next: 0,
        })
    }

    /// The next chunk's content, or None after the last.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, BlobError> {
        if self.next == self.header.chunks {
            return Ok(None);
        }
        let name = hex(&self.id);
        let io = |e: String| BlobError::Io(name.clone(), e);
        let corrupt = |d: String| BlobError::Corrupt(name.clone(), d);
        let i = self.next;
        let want = self.header.chunk_len(i);
        let frame = self.source.read(self.at, 5).map_err(io)?;
        let flags = frame[0];
        let len = u32::from_be_bytes(frame[1..5].try_into().expect("4")) as usize;
        // A compressed chunk is kept only when smaller, so no frame exceeds its content.
        if flags & !CHUNK_ZSTD != 0 || len < TAG || len > want + TAG {
            return Err(corrupt(format!("chunk {i} has a bad frame")));
        }
        let ct = self.source.read(self.at + 5, len).map_err(io)?;
        let packed = aiaudit_xchacha::open(
            &self.key,
            &nonce(&self.header.nonce_prefix, i),
            &chunk_aad(&self.head, &self.id, i, flags),
            &ct,
        )
        .map_err(|_| corrupt(format!("chunk {i} does not decrypt under its data key")))?;
        let plain = if flags & CHUNK_ZSTD != 0 {
            zstd::bulk::decompress(&packed, want)
                .map_err(|_| corrupt(format!("chunk {i} is not a zstd frame")))?
        } else {
            packed
        };
        if plain.len() != want {
            return Err(corrupt(format!(
                "chunk {i} holds {} bytes, not {want}",
                plain.len()
            )));
        }
        self.at += 5 + len as u64;
        self.next += 1;
        Ok(Some(plain))
    }

    /// Skips to chunk `i` (reading only frame headers), for range reads.
    pub fn seek_chunk(&mut self, i: u32) -> Result<(), BlobError> {
        let name = hex(&self.id);
        while self.next < i.min(self.header.chunks) {
            let frame = self
                .source
                .read(self.at, 5)
                .map_err(|e| BlobError::Io(name.clone(), e))?;
            let len = u32::from_be_bytes(frame[1..5].try_into().expect("4")) as u64;
            self.at += 5 + len;
            self.next += 1;
        }
        Ok(())
    }
}

/// Reads a whole blob and checks it against its commitment:
/// SHA-256(salt || content) must be the id the entry logs.
pub fn open<S: Source + ?Sized>(
    source: &S,
    id: &Hash,
    salt: &[u8; 32],
    key: DataKey<'_>,
    size: u64,
) -> Result<Vec<u8>, BlobError> {
    let mut opener = Opener::new(source, id, key, size)?;
    let mut content = Vec::with_capacity(size as usize);
    let mut hash = Context::new(&SHA256);
    hash.update(salt);
    while let Some(chunk) = opener.next_chunk()? {
        hash.update(&chunk);
        content.extend_from_slice(&chunk);
    }
    if hash.finish().as_ref() != id {
        return Err(BlobError::Corrupt(
            hex(id),
            "its content does not match the commitment its entry logs".into(),
        ));
    }
    Ok(content)
}

/// Reads a whole blob as [`open`] does and also checks that its stored
/// bytes, `stored_len` of them, hash to `stored_sha256` (what the entry
/// logs), in the same single pass.
pub fn open_verified<S: Source + ?Sized>(
    source: &S,
    stored_len: u64,
    stored_sha256: &Hash,
    id: &Hash,
    salt: &[u8; 32],
    key: DataKey<'_>,
    size: u64,
) -> Result<Vec<u8>, BlobError> {
    let hashing = Hashing {
        inner: source,
        ctx: std::cell::RefCell::new(Context::new(&SHA256)),
        at: std::cell::Cell::new(0),
        in_order: std::cell::Cell::new(true),
    };
    let content = open(&hashing, id, salt, key, size)?;
    let digest = hashing.ctx.into_inner().finish();
    if !hashing.in_order.get() || hashing.at.get() != stored_len || digest.as_ref() != stored_sha256
    {
        return Err(BlobError::Corrupt(
            hex(id),
            "its stored bytes are not the ones its entry logs".into(),
        ));
    }
    Ok(content)
}

/// A source that hashes what is read from it, in order from offset 0.
struct Hashing<'a, S: Source + ?Sized> {
    inner: &'a S,
    ctx: std::cell::RefCell<Context>,
    at: std::cell::Cell<u64>,
    in_order: std::cell::Cell<bool>,
}

impl<S: Source + ?Sized> Source for Hashing<'_, S> {
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        if offset != self.at.get() {
            self.in_order.set(false);
        }
        let bytes = self.inner.read(offset, len)?;
        self.ctx.borrow_mut().update(&bytes);
        self.at.set(offset + len as u64);
        Ok(bytes)
    }
}

/// Checks stored blob bytes against the SHA-256 the entry logs for them,
/// without any key (what `aiaudit verify` does for every blob), reading
/// `len` bytes a chunk at a time.
pub fn stored_hash<S: Source + ?Sized>(source: &S, len: u64) -> Result<Hash, String> {
    let mut hash = Context::new(&SHA256);
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(CHUNK as u64) as usize;
        hash.update(&source.read(at, n)?);
        at += n as u64;
    }
    Ok(hash.finish().as_ref().try_into().expect("32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9; 32];

    fn sealed(content: &[u8], compress: bool) -> (Hash, Vec<u8>, Hash) {
        let id = commitment(&[1; 32], content);
        let mut stored = Vec::new();
        let hash = seal::<()>(
            content,
            &id,
            DataKey { id: 4, key: &KEY },
            [2; 16],
            compress,
            |b| {
                stored.extend_from_slice(b);
                Ok(())
            },
        )
        .unwrap();
        (id, stored, hash)
    }

    fn source(bytes: &[u8]) -> impl Fn(u64, usize) -> Result<Vec<u8>, String> + '_ {
        move |at, len| {
            let s = at as usize;
            bytes
                .get(s..s + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "ends early".to_string())
        }
    }

    fn content(n: usize) -> Vec<u8> {
        let mut s = b"\"".to_vec();
        let mut x = 12345u64;
        while s.len() < n - 1 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.extend_from_slice(if x >> 63 == 0 { b"model " } else { b"answer " });
        }
        s.truncate(n - 1);
        s.push(b'"');
        s
    }

    #[test]
    fn round_trips_across_chunks_and_checks_the_stored_hash() {
        for (n, compress) in [
            (10, false),
            (CHUNK, true),
            (CHUNK * 2 + 77, true),
            (3000, false),
        ] {
            let c = content(n);
            let (id, stored, hash) = sealed(&c, compress);
            let src = source(&stored);
            let key = DataKey { id: 4, key: &KEY };
            assert_eq!(open(&src, &id, &[1; 32], key, n as u64).unwrap(), c);
            assert_eq!(stored_hash(&src, stored.len() as u64).unwrap(), hash);
            if compress {
                assert!(stored.len() < n, "{} vs {n}", stored.len());
            }
        }
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let c = content(2 * CHUNK + 10);
        let (id, stored, _) = sealed(&c, true);
        let key = DataKey { id: 4, key: &KEY };
        // Every header byte, and a sample across the chunks.
        let step = (stored.len() / 997).max(1);
        for i in (0..HEADER_LEN + 8).chain((0..stored.len()).step_by(step)) {
            let mut bad = stored.clone();
            bad[i] ^= 0x10;
            assert!(
                open(&source(&bad), &id, &[1; 32], key, c.len() as u64).is_err(),
                "byte {i} changed and still opened"
            );
        }
        let cut = &stored[..stored.len() - 1];
        assert!(open(&source(cut), &id, &[1; 32], key, c.len() as u64).is_err());
        // Another salt (another event's commitment) and another key fail too.
        assert!(open(&source(&stored), &id, &[3; 32], key, c.len() as u64).is_err());
        let other = DataKey {
            id: 4,
            key: &[8; 32],
        };
        assert!(open(&source(&stored), &id, &[1; 32], other, c.len() as u64).is_err());
    }

    #[test]
    fn open_verified_checks_the_stored_bytes_in_the_same_pass() {
        let c = content(CHUNK + 3);
        let (id, mut stored, hash) = sealed(&c, true);
        let key = DataKey { id: 4, key: &KEY };
        let n = c.len() as u64;
        let len = stored.len() as u64;
        assert_eq!(
            open_verified(&source(&stored), len, &hash, &id, &[1; 32], key, n).unwrap(),
            c
        );
        assert!(open_verified(&source(&stored), len, &[0; 32], &id, &[1; 32], key, n).is_err());
        // Trailing bytes after the last chunk change the stored hash.
        stored.push(0);
        assert!(open_verified(&source(&stored), len + 1, &hash, &id, &[1; 32], key, n).is_err());
    }

    #[test]
    fn chunks_cannot_move_between_blobs() {
        let c = content(2 * CHUNK);
        let (id, stored, _) = sealed(&c, false);
        let (id2, stored2, _) = sealed(&content(2 * CHUNK + 1)[..2 * CHUNK], false);
        assert_ne!(id, id2);
        // Chunk 1 of one blob spliced into the other: same length, same key.
        let first = HEADER_LEN + 5 + CHUNK + TAG;
        let mut spliced = stored.clone();
        spliced[first..].copy_from_slice(&stored2[first..]);
        let key = DataKey { id: 4, key: &KEY };
        assert!(open(&source(&spliced), &id, &[1; 32], key, c.len() as u64).is_err());
    }

    #[test]
    fn range_reads_seek_by_frame() {
        let c = content(3 * CHUNK + 5);
        let (id, stored, _) = sealed(&c, true);
        let src = source(&stored);
        let key = DataKey { id: 4, key: &KEY };
        let mut o = Opener::new(&src, &id, key, c.len() as u64).unwrap();
        o.seek_chunk(2).unwrap();
        assert_eq!(o.next_chunk().unwrap().unwrap(), &c[2 * CHUNK..3 * CHUNK]);
        assert_eq!(o.next_chunk().unwrap().unwrap(), &c[3 * CHUNK..]);
        assert_eq!(o.next_chunk().unwrap(), None);
    }
}
