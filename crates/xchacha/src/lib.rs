//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha, section 2.3): the AEAD that
//! seals event content, blob chunks and wrapped data keys.
//!
//! The construction is the draft's: HChaCha20 of the key and the nonce's
//! first 16 bytes gives a subkey, and IETF ChaCha20-Poly1305 (RFC 8439)
//! under that subkey, with four zero bytes and the nonce's last 8 as its
//! nonce, seals the message. HChaCha20 is RustCrypto's (`chacha20`), the
//! AEAD is ring's; nothing here computes a cipher or a MAC itself.
//!
//! Why not the `chacha20poly1305` crate, which computes the same bytes
//! (the tests check it, over random inputs): its Poly1305 takes about
//! 1.4 µs to set up per message on CPUs with AVX2, more than sealing a
//! 1 KiB event then costs in ring, and the ledger seals an event per
//! entry and wraps a key per new data subject (docs/performance.md).

use chacha20::cipher::consts::U10;
use chacha20::cipher::generic_array::GenericArray;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroize;

/// Bytes of the key.
pub const KEY_LEN: usize = 32;
/// Bytes of the nonce (random nonces are safe at this length).
pub const NONCE_LEN: usize = 24;
/// Bytes of the tag that follows the ciphertext.
pub const TAG_LEN: usize = 16;

/// Sealing or opening failed: the ciphertext, tag, nonce, key or associated
/// data is not the one sealed (or a message is too long to seal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XChaCha20-Poly1305 failed (wrong key, nonce, data or tag)")
    }
}

impl std::error::Error for Error {}

/// The ChaCha20-Poly1305 key and nonce that XChaCha20-Poly1305 with `key`
/// and `nonce` reduces to.
fn reduce(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN]) -> Result<(LessSafeKey, Nonce), Error> {
    let mut subkey = chacha20::hchacha::<U10>(
        GenericArray::from_slice(key),
        GenericArray::from_slice(&nonce[..16]),
    );
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &subkey);
    subkey.as_mut_slice().zeroize();
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(&nonce[16..]);
    Ok((
        LessSafeKey::new(unbound.map_err(|_| Error)?),
        Nonce::assume_unique_for_key(short),
    ))
}

/// Encrypts `in_out` in place and returns its tag.
pub fn seal_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
) -> Result<[u8; TAG_LEN], Error> {
    let (key, nonce) = reduce(key, nonce)?;
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
        .map_err(|_| Error)?;
    Ok(tag.as_ref().try_into().expect("16-byte tag"))
}

/// The ciphertext and tag of `msg`.
pub fn seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(msg.len() + TAG_LEN);
    out.extend_from_slice(msg);
    let tag = seal_in_place(key, nonce, aad, &mut out)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The message of `sealed` (ciphertext then tag), if it was sealed with
/// this key, nonce and associated data.
pub fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, Error> {
    if sealed.len() < TAG_LEN {
        return Err(Error);
    }
    let (key, nonce) = reduce(key, nonce)?;
    let mut buf = sealed.to_vec();
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| Error)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use proptest::prelude::*;

    fn reference(key: &[u8; 32], nonce: &[u8; 24], aad: &[u8], msg: &[u8]) -> Vec<u8> {
        XChaCha20Poly1305::new(key.into())
            .encrypt(XNonce::from_slice(nonce), Payload { msg, aad })
            .unwrap()
    }

    proptest! {
        /// The same bytes as RustCrypto's XChaCha20-Poly1305, both ways.
        #[test]
        fn seals_and_opens_as_the_reference_implementation_does(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 24]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..80),
            msg in proptest::collection::vec(any::<u8>(), 0..2100),
        ) {
            let ours = seal(&key, &nonce, &aad, &msg).unwrap();
            prop_assert_eq!(&ours, &reference(&key, &nonce, &aad, &msg));
            prop_assert_eq!(open(&key, &nonce, &aad, &ours).unwrap(), msg.clone());
            let mut in_place = msg.clone();
            let tag = seal_in_place(&key, &nonce, &aad, &mut in_place).unwrap();
            prop_assert_eq!(&in_place[..], &ours[..msg.len()]);
            prop_assert_eq!(&tag[..], &ours[msg.len()..]);
        }
    }

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1: key, nonce, associated
    /// data and plaintext as given there; the ciphertext's first and last
    /// bytes and the tag as given there.
    #[test]
    fn the_drafts_example_seals_to_its_ciphertext_and_tag() {
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
        let aad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let msg = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let sealed = seal(&key, &nonce, &aad, msg).unwrap();
        assert_eq!(sealed, reference(&key, &nonce, &aad, msg));
        let (ct, tag) = sealed.split_at(msg.len());
        assert_eq!(ct[..4], [0xbd, 0x6d, 0x17, 0x9d]);
        assert_eq!(
            tag,
            [
                0xc0, 0x87, 0x59, 0x24, 0xc1, 0xc7, 0x98, 0x79, 0x47, 0xde, 0xaf, 0xd8, 0x78, 0x0a,
                0xcf, 0x49
            ]
        );
    }

    /// Any change to what was sealed, or the wrong key, nonce or associated
    /// data, fails to open.
    #[test]
    fn anything_changed_fails_to_open() {
        let (key, nonce, aad, msg) = ([1u8; 32], [2u8; 24], b"aad", b"a data key or an event");
        let sealed = seal(&key, &nonce, aad, msg).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(open(&key, &nonce, aad, &bad), Err(Error), "byte {i}");
        }
        assert_eq!(open(&[3; 32], &nonce, aad, &sealed), Err(Error));
        assert_eq!(open(&key, &[3; 24], aad, &sealed), Err(Error));
        assert_eq!(open(&key, &nonce, b"aaD", &sealed), Err(Error));
        assert_eq!(open(&key, &nonce, aad, &sealed[..TAG_LEN - 1]), Err(Error));
        assert_eq!(open(&key, &nonce, aad, &sealed).unwrap(), msg);
    }
}
