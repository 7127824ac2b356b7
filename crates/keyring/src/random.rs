//! Random bytes for keys and nonces, read from the operating system 4 KiB
//! at a time: a new data subject needs a key and a nonce, and two system
//! calls each cost more than the cryptography around them. Bytes are
//! handed out once and zeroed as they leave the buffer.

use crate::{Error, Result};
use std::cell::RefCell;

const POOL: usize = 4096;

struct Pool {
    bytes: [u8; POOL],
    /// Bytes from here on are unused.
    at: usize,
}

thread_local! {
    static POOL_OF_THREAD: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL], at: POOL }) };
}

/// Fills `out` with random bytes from the operating system's generator.
pub(crate) fn fill(out: &mut [u8]) -> Result<()> {
    if out.len() > POOL / 4 {
        return getrandom::getrandom(out).map_err(|e| Error::Key(format!("no randomness: {e}")));
    }
    POOL_OF_THREAD.with(|pool| {
        let mut pool = pool.borrow_mut();
        if POOL - pool.at < out.len() {
            getrandom::getrandom(&mut pool.bytes)
                .map_err(|e| Error::Key(format!("no randomness: {e}")))?;
            pool.at = 0;
        }
        let from = pool.at;
        let taken = &mut pool.bytes[from..from + out.len()];
        out.copy_from_slice(taken);
        taken.fill(0);
        pool.at += out.len();
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_never_handed_out_twice() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2 * super::POOL / 32 {
            let mut k = [0u8; 32];
            super::fill(&mut k).unwrap();
            assert_ne!(k, [0u8; 32]);
            assert!(seen.insert(k), "a repeated key");
        }
    }
}
