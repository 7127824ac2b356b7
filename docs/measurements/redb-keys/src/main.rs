//! The ledger's id index in redb, text keys (`tenant/uuid`, key format 2)
//! against fixed keys (tenant number and the UUID's 16 bytes, format 3):
//! `n` time-ordered UUIDv7 ids of one tenant, 80 per millisecond in random
//! order within it, inserted 40,000 per transaction without durability (as
//! integration does), each batch of 100 first looked up as absent (as the
//! sequencer does). Prints µs per key for inserts and look-ups, and the
//! file's bytes per key.
//!
//! ```sh
//! cargo run --release --manifest-path docs/measurements/redb-keys/Cargo.toml -- 1000000
//! ```

use redb::{Database, Durability, TableDefinition, TypeName};
use std::cmp::Ordering;
use std::time::Instant;

#[derive(Debug)]
struct Fixed;

impl redb::Value for Fixed {
    type SelfType<'a> = [u8; 20];
    type AsBytes<'a> = [u8; 20];
    fn fixed_width() -> Option<usize> {
        Some(20)
    }
    fn from_bytes<'a>(data: &'a [u8]) -> [u8; 20]
    where
        Self: 'a,
    {
        let mut k = [0u8; 20];
        k.copy_from_slice(&data[..20]);
        k
    }
    fn as_bytes<'a, 'b: 'a>(value: &'a [u8; 20]) -> [u8; 20]
    where
        Self: 'b,
    {
        *value
    }
    fn type_name() -> TypeName {
        TypeName::new("aiaudit::tenant_number_uuid")
    }
}

impl redb::Key for Fixed {
    fn compare(a: &[u8], b: &[u8]) -> Ordering {
        a.cmp(b)
    }
}

const TEXT: TableDefinition<&str, u64> = TableDefinition::new("tenant_ids");
const FIXED: TableDefinition<Fixed, u64> = TableDefinition::new("tenant_uuid_ids");

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |s| s.parse().expect("a count"));
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut keys: Vec<(String, [u8; 20])> = Vec::with_capacity(n as usize);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut uuid = [0u8; 16];
        uuid[..6].copy_from_slice(&(1_700_000_000_000 + i / 80).to_be_bytes()[2..]);
        uuid[6..14].copy_from_slice(&x.to_be_bytes());
        uuid[14..].copy_from_slice(&(x as u16).to_be_bytes());
        uuid[6] = 0x70 | (uuid[6] & 0x0f);
        uuid[8] = 0x80 | (uuid[8] & 0x3f);
        let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
        let text = format!(
            "bench/{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        );
        let mut fixed = [0u8; 20];
        fixed[4..].copy_from_slice(&uuid);
        keys.push((text, fixed));
    }
    for round in 0..2 {
        for fixed in [false, true] {
            let path = std::env::temp_dir().join(format!("redb-keys-{round}-{fixed}.redb"));
            let _ = std::fs::remove_file(&path);
            let db = Database::builder()
                .set_cache_size(32 << 20)
                .create(&path)
                .expect("a database");
            let (mut insert, mut look) = (0.0, 0.0);
            for chunk in keys.chunks(40_000) {
                let t = Instant::now();
                for batch in chunk.chunks(100) {
                    let tx = db.begin_read().expect("read");
                    if fixed {
                        if let Ok(table) = tx.open_table(FIXED) {
                            for k in batch {
                                assert!(table.get(k.1).expect("get").is_none());
                            }
                        }
                    } else if let Ok(table) = tx.open_table(TEXT) {
                        for k in batch {
                            assert!(table.get(k.0.as_str()).expect("get").is_none());
                        }
                    }
                }
                look += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let mut tx = db.begin_write().expect("write");
                tx.set_durability(Durability::None);
                {
                    if fixed {
                        let mut table = tx.open_table(FIXED).expect("table");
                        for (i, k) in chunk.iter().enumerate() {
                            table.insert(k.1, i as u64).expect("insert");
                        }
                    } else {
                        let mut table = tx.open_table(TEXT).expect("table");
                        for (i, k) in chunk.iter().enumerate() {
                            table.insert(k.0.as_str(), i as u64).expect("insert");
                        }
                    }
                }
                tx.commit().expect("commit");
                insert += t.elapsed().as_secs_f64();
            }
            drop(db);
            let bytes = std::fs::metadata(&path).expect("the file").len();
            let _ = std::fs::remove_file(&path);
            println!(
                "{}\tinsert {:.2} us per key\tlook-up {:.2} us per key\t{} bytes per key",
                if fixed {
                    "fixed keys (format 3)"
                } else {
                    "text keys (format 2)"
                },
                insert * 1e6 / n as f64,
                look * 1e6 / n as f64,
                bytes / n
            );
        }
    }
}
