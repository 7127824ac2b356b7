//! Subject key families: data subjects' keys derived from a few random keys
//! instead of one random key each.
//!
//! A family key is a random 32-byte key, wrapped and stored like any other
//! data key, for one (tenant, tag bucket, period). The key of a subject whose
//! tag falls in the bucket is HKDF-SHA256 of the family key (RFC 5869), its
//! `info` binding the family's record number, the tenant and the subject's
//! tag. A new data subject then costs one HKDF expansion and no record, no
//! wrap and no lookup, which is what ten million subjects need.
//!
//! Crypto-shredding still destroys one subject's keys and nobody else's:
//! an erasure first stores, for every other subject of each family the
//! erased subject belongs to, that subject's derived key wrapped in a record
//! of its own ([`crate::records::KIND_DERIVED_KEY`]), then destroys the
//! family key. Who belongs to a family is derived from the log (an entry
//! names its key id and its subject's tag in the clear) and kept in the
//! member index (`crate::members`).

use ring::hkdf;

/// Bits of a subject tag that pick its family: 4,096 families per tenant
/// and period. At ten million subjects a family has about 2,400, so an
/// erasure stores about 2,400 keys (600 KiB of records), while a tenant's
/// families fit the keyring's cache.
pub const BUCKET_BITS: u32 = 12;

/// The bucket of a subject tag: its first [`BUCKET_BITS`] bits.
pub fn bucket(tag: &[u8; 32]) -> u16 {
    u16::from_be_bytes([tag[0], tag[1]]) >> (16 - BUCKET_BITS)
}

/// The tag a family record carries (what the keyring's index finds it by):
/// SHA-256 of a label, the tenant and the bucket. Not secret; it only has to
/// differ from every subject tag (HMACs under the tenant's salt) and from
/// every other (tenant, bucket), which a hash of both does.
pub fn family_tag(tenant: &str, bucket: u16) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"aiaudit subject key family v1\0");
    h.update([tenant.len() as u8]);
    h.update(tenant.as_bytes());
    h.update(bucket.to_be_bytes());
    h.finalize().into()
}

/// A family key ready to derive from (the HKDF extract step done once).
#[derive(Clone)]
pub struct FamilyKey {
    prk: hkdf::Prk,
}

/// HKDF's salt: fixed, naming the construction (RFC 5869, section 3.1).
const SALT: &[u8] = b"aiaudit subject keys v1";

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl FamilyKey {
    pub fn new(secret: &[u8; 32]) -> FamilyKey {
        FamilyKey {
            prk: hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret),
        }
    }

    /// The data key of subject `tag` of `tenant` in the family whose record
    /// is `family` (the key id its entries name).
    pub fn derive(&self, family: u64, tenant: &str, tag: &[u8; 32]) -> [u8; 32] {
        let number = family.to_be_bytes();
        let len = [tenant.len() as u8];
        let info: [&[u8]; 5] = [b"subject key", &number, &len, tenant.as_bytes(), tag];
        let mut key = [0u8; 32];
        self.prk
            .expand(&info, Len32)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is within HKDF-SHA256's output limit");
        key
    }
}

/// A subject tag from its `hmac-sha256:<hex>` form, as entries carry it.
pub fn parse_tag(tag: &str) -> Option<[u8; 32]> {
    let hex = tag.strip_prefix(crate::ring::HMAC_PREFIX)?;
    let mut raw = [0u8; 32];
    hex::decode_to_slice(hex, &mut raw).ok()?;
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_the_first_twelve_bits() {
        let mut tag = [0u8; 32];
        assert_eq!(bucket(&tag), 0);
        tag[0] = 0xff;
        tag[1] = 0xf0;
        assert_eq!(bucket(&tag), 4095);
        tag[1] = 0x0f;
        assert_eq!(bucket(&tag), 0xff0);
    }

    #[test]
    fn a_derived_key_depends_on_every_input() {
        let k = FamilyKey::new(&[7; 32]);
        let base = k.derive(5, "acme", &[1; 32]);
        assert_eq!(base, k.derive(5, "acme", &[1; 32]));
        assert_ne!(base, k.derive(6, "acme", &[1; 32]));
        assert_ne!(base, k.derive(5, "acmf", &[1; 32]));
        assert_ne!(base, k.derive(5, "acme", &[2; 32]));
        assert_ne!(base, FamilyKey::new(&[8; 32]).derive(5, "acme", &[1; 32]));
        // The tenant's length is bound too: ("ab", tag) never meets ("a", …).
        assert_ne!(k.derive(5, "ab", &[1; 32]), k.derive(5, "a", &[b'b'; 32]),);
    }

    #[test]
    fn the_derivation_is_hkdf_sha256_as_documented() {
        // docs/format.md gives this vector: HKDF-SHA256 with salt
        // "aiaudit subject keys v1", IKM 32 bytes of 0x07, info
        // "subject key" ‖ u64 BE 5 ‖ u8 4 ‖ "acme" ‖ 32 bytes of 0x01.
        let got = FamilyKey::new(&[7; 32]).derive(5, "acme", &[1; 32]);
        let mut info = b"subject key".to_vec();
        info.extend_from_slice(&5u64.to_be_bytes());
        info.push(4);
        info.extend_from_slice(b"acme");
        info.extend_from_slice(&[1; 32]);
        // RFC 5869 written out with HMAC-SHA256 alone (one block of output).
        let hmac = |key: &[u8], data: &[&[u8]]| {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            let mut ctx = ring::hmac::Context::with_key(&k);
            for d in data {
                ctx.update(d);
            }
            ctx.sign().as_ref().to_vec()
        };
        let prk = hmac(SALT, &[&[7; 32]]);
        let okm = hmac(&prk, &[&info, &[1]]);
        assert_eq!(got.to_vec(), okm);
        assert_eq!(
            hex::encode(got),
            "0645a7ae8f6405343e2a98e2833e1c9c06df7ca2839328d368109a3f407bd62e",
            "the vector in docs/format.md"
        );
    }

    #[test]
    fn the_family_tag_is_as_documented() {
        assert_eq!(
            hex::encode(family_tag("acme", 0x123)),
            "d2afa5f6474452faa1bf2441d5b3c175a6fa6fcefbbbb58b3bb02cff73ae392e"
        );
    }

    #[test]
    fn family_tags_differ_per_tenant_and_bucket() {
        assert_ne!(family_tag("a", 1), family_tag("a", 2));
        assert_ne!(family_tag("a", 1), family_tag("b", 1));
        assert_eq!(family_tag("a", 1), family_tag("a", 1));
    }

    #[test]
    fn tags_parse_only_in_their_written_form() {
        let s = format!("{}{}", crate::ring::HMAC_PREFIX, "ab".repeat(32));
        assert_eq!(parse_tag(&s), Some([0xab; 32]));
        assert_eq!(parse_tag(&s[1..]), None);
        assert_eq!(parse_tag(&s[..s.len() - 2]), None);
        assert_eq!(parse_tag(&format!("{s}00")), None);
    }
}
