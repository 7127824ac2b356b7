//! Keys of the embedded id index (`ids.redb`, key format 3; docs/format.md).
//!
//! An event whose id is a UUID in canonical lowercase form, as every SDK
//! makes them, is keyed by 20 fixed bytes: its tenant's number (u32 BE,
//! table `tenant_numbers`) and the UUID's 16 bytes. Fixed-width keys let
//! redb insert without rewriting every offset of a leaf page, take half
//! the bytes of the text key, and keep UUIDv7 ids in time order within a
//! tenant, so inserts still land at the right edge of the tree. Any other
//! id keeps the text key `<tenant>/<id>` (table `tenant_ids`), and so do
//! the UUID ids indexed before key format 3.

use redb::{TableDefinition, TypeName};
use std::cmp::Ordering;

/// A tenant's number and a UUID's bytes.
pub(crate) type UuidKeyBytes = [u8; 20];

/// `UuidKeyBytes` in redb: fixed width, compared as bytes.
#[derive(Debug)]
pub(crate) struct UuidKey;

impl redb::Value for UuidKey {
    type SelfType<'a> = UuidKeyBytes;
    type AsBytes<'a> = UuidKeyBytes;

    fn fixed_width() -> Option<usize> {
        Some(20)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> UuidKeyBytes
    where
        Self: 'a,
    {
        // redb hands back exactly the fixed width.
        let mut key = [0u8; 20];
        let n = data.len().min(20);
        key[..n].copy_from_slice(&data[..n]);
        key
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a UuidKeyBytes) -> UuidKeyBytes
    where
        Self: 'b,
    {
        *value
    }

    fn type_name() -> TypeName {
        TypeName::new("aiaudit::tenant_number_uuid")
    }
}

impl redb::Key for UuidKey {
    fn compare(a: &[u8], b: &[u8]) -> Ordering {
        a.cmp(b)
    }
}

/// (tenant number, UUID) -> log index.
pub(crate) const UUID_IDS: TableDefinition<UuidKey, u64> = TableDefinition::new("tenant_uuid_ids");
/// Tenant -> its number in `UUID_IDS` keys (numbers from 0, never reused).
pub(crate) const TENANT_NUMBERS: TableDefinition<&str, u32> =
    TableDefinition::new("tenant_numbers");

/// A dedup key (`<tenant>/<id>`; tenants hold no `/`) split in two.
pub(crate) fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// The 16 bytes of a UUID written as 36 lowercase hex digits and hyphens
/// (8-4-4-4-12). Only that form: `ABC…` and `abc…` are different ids.
pub(crate) fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let s = id.as_bytes();
    if s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if s[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hi = lower_hex(s[i])?;
        let lo = lower_hex(s[i + 1])?;
        out[n] = hi << 4 | lo;
        n += 1;
        i += 2;
    }
    Some(out)
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The fixed key of a UUID id of the tenant numbered `tenant`.
pub(crate) fn uuid_key(tenant: u32, uuid: &[u8; 16]) -> UuidKeyBytes {
    let mut key = [0u8; 20];
    key[..4].copy_from_slice(&tenant.to_be_bytes());
    key[4..].copy_from_slice(uuid);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_lowercase_form_is_a_uuid() {
        let id = "0190f3a2-7b1c-7def-8a9b-0123456789ab";
        let b = uuid_bytes(id).unwrap();
        assert_eq!(b[0], 0x01);
        assert_eq!(b[15], 0xab);
        assert_eq!(uuid_bytes(&id.to_uppercase()), None);
        assert_eq!(uuid_bytes(&id.replace('-', "")), None);
        assert_eq!(uuid_bytes(&id[..35]), None);
        assert_eq!(uuid_bytes("0190f3a2-7b1c-7def-8a9b-0123456789ag"), None);
        assert_eq!(uuid_bytes("0190f3a2_7b1c-7def-8a9b-0123456789ab"), None);
        // Multi-byte text of the right length is not a UUID.
        assert_eq!(uuid_bytes(&"é".repeat(18)), None);
    }

    #[test]
    fn keys_keep_uuid_order_within_a_tenant() {
        let a = uuid_bytes("0190f3a2-7b1c-7def-8a9b-0123456789ab").unwrap();
        let b = uuid_bytes("0190f3a2-7b1d-7000-8000-000000000000").unwrap();
        assert!(uuid_key(1, &a) < uuid_key(1, &b));
        assert!(uuid_key(1, &b) < uuid_key(2, &a));
        assert_eq!(split("acme/x/y"), ("acme", "x/y"));
    }
}
