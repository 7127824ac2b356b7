//! A small real log (plain, signed and sealed entries), a bundle of some of
//! its events, and every way of tampering with it that the issue names.

use super::*;
use aiaudit_event::envelope::{decode_stored, seal, DataKey};
use aiaudit_event::signature::{sign_batch, verify_batch, EventSignature, SignatureFormat};
use aiaudit_tlog::{prove_record, sign_note, Checkpoint, Hash, NodeReader, Signer, TreeBuilder};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::{json, Value};
use std::io::Read;

const ORIGIN: &str = "example.test/log";
const DATA_KEY: [u8; 32] = [7; 32];

fn log_signer() -> Signer {
    Signer::from_seed(ORIGIN, [1; 32]).unwrap()
}

fn event(i: u64) -> Value {
    json!({"time": "2026-11-27T09:14:03Z", "id": format!("e{i}"), "tenant": "acme",
           "source": {"name": "app"}, "actor": {"id": "u1", "type": "user"},
           "action": "model.invoke", "subject": "customer-1",
           "input": {"content": format!("secret {i}")}})
}

/// An in-memory log: every node of every level.
struct MemLog {
    levels: Vec<Vec<Hash>>,
    entries: Vec<Vec<u8>>,
    openings: Vec<Option<Vec<u8>>>,
    tree: TreeBuilder,
}

impl NodeReader for MemLog {
    fn read_node(&self, level: u32, index: u64) -> aiaudit_tlog::Result<Hash> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or_else(|| aiaudit_tlog::Error::InvalidArgument("no such node".into()))
    }
}

impl MemLog {
    fn new() -> Self {
        MemLog {
            levels: vec![Vec::new(); 65],
            entries: Vec::new(),
            openings: Vec::new(),
            tree: TreeBuilder::new(),
        }
    }

    fn push(&mut self, entry: Vec<u8>, opening: Option<Vec<u8>>) {
        let levels = &mut self.levels;
        self.tree
            .push(aiaudit_tlog::record_hash(&entry), |l, _, h| {
                levels[l as usize].push(*h)
            });
        self.entries.push(entry);
        self.openings.push(opening);
    }

    fn checkpoint(&self, signer: &Signer) -> String {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: self.tree.size(),
            root: self.tree.root(),
            extensions: vec![],
        };
        sign_note(&cp.body(), signer).unwrap()
    }

    fn export(&self, indexes: &[u64], size: u64, with_openings: bool) -> Vec<BundleEvent> {
        indexes
            .iter()
            .map(|&i| BundleEvent {
                index: i,
                entry: self.entries[i as usize].clone(),
                inclusion_proof: prove_record(size, i, self).unwrap(),
                opening: self.openings[i as usize].clone().filter(|_| with_openings),
            })
            .collect()
    }
}

fn sealed(
    checked: &aiaudit_event::CheckedEvent,
    sig: Option<&EventSignature>,
    n: u8,
) -> (Vec<u8>, Vec<u8>) {
    let p = seal(
        checked,
        sig,
        Some("token:0a1b"),
        &[],
        Some("hmac-sha256:00ff"),
        DataKey {
            id: 1,
            key: &DATA_KEY,
        },
        &[n; 56],
    )
    .unwrap();
    let opening = decode_stored(&p.entry)
        .unwrap()
        .sealed
        .unwrap()
        .open(&DATA_KEY)
        .unwrap()
        .opening;
    (p.entry, opening)
}

/// 20 entries: 0..8 plain, 8..11 a signed batch (plain), 11..14 sealed,
/// 14..16 a signed batch (sealed), the rest plain.
fn make_log() -> MemLog {
    let mut log = MemLog::new();
    let emitter = Signer::from_seed("edge-gw-7", [9; 32]).unwrap();
    // Both batch-signature formats: v1 (older emitters) and v2 (RFC 8785).
    let batch = |from: u64, format: SignatureFormat| {
        let checked: Vec<_> = (from..from + 3)
            .map(|i| aiaudit_event::check(&event(i)).unwrap())
            .collect();
        let canon: Vec<Vec<u8>> = (from..from + 3)
            .map(|i| format.event_bytes(event(i).as_object().unwrap()).unwrap())
            .collect();
        let sig = sign_batch(&emitter, format, &canon);
        let sigs = verify_batch(&emitter.verifier(), format, &canon, &sig).unwrap();
        checked.into_iter().zip(sigs).collect::<Vec<_>>()
    };
    for i in 0..8 {
        log.push(aiaudit_event::prepare(event(i)).unwrap().entry, None);
    }
    for (c, s) in batch(8, SignatureFormat::V1) {
        log.push(
            aiaudit_event::finish(c, Some(&s), None).unwrap().entry,
            None,
        );
    }
    for i in 11..14 {
        let (entry, opening) = sealed(&aiaudit_event::check(&event(i)).unwrap(), None, i as u8);
        log.push(entry, Some(opening));
    }
    for (n, (c, s)) in batch(14, SignatureFormat::V2)
        .into_iter()
        .take(2)
        .enumerate()
    {
        let (entry, opening) = sealed(&c, Some(&s), 100 + n as u8);
        log.push(entry, Some(opening));
    }
    for i in 16..20 {
        log.push(aiaudit_event::prepare(event(i)).unwrap().entry, None);
    }
    log
}

const EXPORTED: [u64; 8] = [1, 3, 8, 9, 11, 12, 14, 19];

fn good_bundle() -> (MemLog, Vec<u8>) {
    let log = make_log();
    let signer = log_signer();
    let mut events = log.export(&EXPORTED, 20, true);
    events[5].opening = None; // index 12: content not exported (as if erased)
    let bundle = write_bundle(
        Vec::new(),
        &signer,
        &log.checkpoint(&signer),
        &events,
        json!({"tenant": "acme", "subject": "customer-1"}),
        "2026-12-01T10:00:00Z",
    )
    .unwrap();
    (log, bundle)
}

fn vkey() -> String {
    log_signer().verifier().to_vkey()
}

/// The members of a bundle, in order.
fn unpack(bundle: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(bundle));
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn pack(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut t = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        t.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

fn member<'a>(m: &'a mut [(String, Vec<u8>)], name: &str) -> &'a mut Vec<u8> {
    &mut m.iter_mut().find(|(n, _)| n == name).unwrap().1
}

/// Edits the event lines with `f`, keeping the rest as is.
fn edit_lines(m: &mut [(String, Vec<u8>)], f: impl Fn(&mut Vec<Value>)) {
    let events = member(m, EVENTS);
    let mut lines: Vec<Value> = events
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    f(&mut lines);
    *events = lines
        .iter()
        .flat_map(|l| {
            let mut b = serde_json::to_vec(l).unwrap();
            b.push(b'\n');
            b
        })
        .collect();
}

/// What a forger without the log's key can do: make the manifest agree
/// with the changed files again (the manifest.sig then no longer does).
fn recompute_manifest(m: &mut [(String, Vec<u8>)]) {
    let mut manifest: Manifest = serde_json::from_slice(member(m, MANIFEST)).unwrap();
    let events = member(m, EVENTS).clone();
    manifest.indexes = events
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    manifest.event_count = manifest.indexes.len() as u64;
    for name in &MEMBERS[..4] {
        let mut d = Digest::new();
        d.update(member(m, name));
        manifest.files.insert(name.to_string(), d.file_digest());
    }
    let mut json = serde_json::to_vec(&manifest).unwrap();
    json.push(b'\n');
    *member(m, MANIFEST) = json;
}

/// What a dishonest exporter holding the log's key can do: also re-sign
/// the manifest. Only what the checkpoint covers still protects the events.
fn resign(m: &mut [(String, Vec<u8>)], signer: &Signer) {
    recompute_manifest(m);
    let sha = sha256(member(m, MANIFEST));
    *member(m, MANIFEST_SIG) = sign_note(&sig_body(&sha), signer).unwrap().into_bytes();
}

/// Verifies and returns every problem as text (panics if it passes).
fn failures(bundle: &[u8], key: Option<&str>) -> Vec<String> {
    match verify_bundle(bundle, key) {
        Ok(r) => panic!("verified: {r:?}"),
        Err(e) => {
            assert!(!e.problems.is_empty());
            e.problems.iter().map(|p| p.to_string()).collect()
        }
    }
}

fn assert_has(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "no problem contains {needle:?}: {problems:#?}"
    );
}

#[test]
fn a_good_bundle_verifies() {
    let (_, bundle) = good_bundle();
    let r = verify_bundle(bundle.as_slice(), Some(&vkey())).unwrap();
    assert_eq!(r.origin, ORIGIN);
    assert_eq!(r.checkpoint_size, 20);
    assert_eq!(r.events, 8);
    assert_eq!(r.plain, 5); // 1, 3, 8, 9, 19
    assert_eq!(r.sealed_with_content, 2); // 11, 14
    assert_eq!(r.sealed_without_content, 1); // 12
    assert_eq!(r.emitter_signatures, 3); // 8, 9, 14
    assert_eq!(r.emitters.len(), 1);
    assert!(r.emitters.keys().next().unwrap().starts_with("edge-gw-7+"));
    assert_eq!((r.first_index, r.last_index), (Some(1), Some(19)));
    assert!(r.key_trusted);
    assert!(r.warnings.is_empty());
    assert_eq!(r.created, "2026-12-01T10:00:00Z");
    assert_eq!(r.filters["subject"], "customer-1");

    // Without a key: passes, with the warning.
    let r = verify_bundle(bundle.as_slice(), None).unwrap();
    assert!(!r.key_trusted);
    assert!(r.warnings[0].contains("consistent with itself"));

    // The members, in order, and readable events for a human.
    let m = unpack(&bundle);
    let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, MEMBERS);
    let events = String::from_utf8(m[3].1.clone()).unwrap();
    assert!(events.contains("secret 11")); // opened
    assert!(!events.contains("secret 12")); // sealed, no opening
    assert!(String::from_utf8_lossy(&m[0].1).contains("aiaudit verify --bundle"));
}

#[test]
fn bundles_are_deterministic_and_empty_ones_verify() {
    let (_, a) = good_bundle();
    let (_, b) = good_bundle();
    assert_eq!(a, b);
    let log = make_log();
    let signer = log_signer();
    let empty = write_bundle(
        Vec::new(),
        &signer,
        &log.checkpoint(&signer),
        &[],
        json!({}),
        "x",
    )
    .unwrap();
    assert_eq!(
        verify_bundle(empty.as_slice(), Some(&vkey()))
            .unwrap()
            .events,
        0
    );
}

#[test]
fn the_streaming_writer_spools_to_any_seekable_store() {
    let log = make_log();
    let signer = log_signer();
    let mut spool = std::io::Cursor::new(b"junk before".to_vec());
    spool.set_position(11);
    let mut w = BundleWriter::new(
        Vec::new(),
        spool,
        &signer,
        &log.checkpoint(&signer),
        json!(null),
        "2026-12-01T10:00:00Z",
    )
    .unwrap();
    for e in log.export(&[0, 5, 17], 20, true) {
        w.add(&e).unwrap();
    }
    assert_eq!(w.len(), 3);
    let out = w.finish().unwrap();
    assert_eq!(
        verify_bundle(out.as_slice(), Some(&vkey())).unwrap().events,
        3
    );
}

#[test]
fn a_changed_byte_in_an_entry_fails() {
    let (_, bundle) = good_bundle();
    let mut m = unpack(&bundle);
    edit_lines(&mut m, |lines| {
        let mut entry = B64.decode(lines[1]["entry"].as_str().unwrap()).unwrap();
        entry[20] ^= 1;
        lines[1]["entry"] = B64.encode(entry).into();
    });
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(
        &p,
        "events.ndjson: event at index 3: leaf_hash is not the hash",
    );
    assert_has(&p, "manifest.json: events.ndjson sha256 mismatch");

    // Even with a matching leaf hash and a re-signed manifest, the proof fails.
    edit_lines(&mut m, |lines| {
        let entry = B64.decode(lines[1]["entry"].as_str().unwrap()).unwrap();
        lines[1]["leaf_hash"] = B64.encode(aiaudit_tlog::record_hash(&entry)).into();
    });
    resign(&mut m, &log_signer());
    let p = failures(&pack(&m), Some(&vkey()));
    assert_eq!(
        p,
        ["events.ndjson: event at index 3: inclusion proof does not lead to the checkpoint root"]
    );
}

#[test]
fn a_changed_byte_anywhere_in_the_file_fails() {
    let (_, bundle) = good_bundle();
    // Not bytes 4..10 of the gzip header (time, flags, OS): no content.
    for pos in [
        0,
        1,
        3,
        12,
        bundle.len() / 3,
        bundle.len() / 2,
        bundle.len() - 5,
    ] {
        let mut bad = bundle.clone();
        bad[pos] ^= 0x20;
        assert!(
            verify_bundle(bad.as_slice(), Some(&vkey())).is_err(),
            "byte {pos}"
        );
    }
}

#[test]
fn a_removed_event_fails() {
    let (_, bundle) = good_bundle();
    let mut m = unpack(&bundle);
    edit_lines(&mut m, |lines| {
        lines.remove(2); // index 8
    });
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(
        &p,
        "manifest.json: lists index 8 but events.ndjson lacks it",
    );
    assert_has(&p, "manifest.json: events.ndjson sha256 mismatch");

    // The manifest recomputed to match: its signature no longer does.
    recompute_manifest(&mut m);
    let p = failures(&pack(&m), Some(&vkey()));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_has(&p, "manifest.sig: signs another manifest.json");

    // And re-signed with a key of the forger's own, shipped as log.vkey:
    // caught by the trusted key.
    let forger = Signer::from_seed(ORIGIN, [66; 32]).unwrap();
    *member(&mut m, VKEY) = format!("{}\n", forger.verifier().to_vkey()).into_bytes();
    resign(&mut m, &forger);
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(&p, "log.vkey: the bundle's key");
    assert_has(
        &p,
        "manifest.sig: signature does not verify with the trusted key",
    );
}

#[test]
fn a_swapped_checkpoint_fails() {
    let (log, bundle) = good_bundle();
    // Signed by another key under the log's name.
    let impostor = Signer::from_seed(ORIGIN, [2; 32]).unwrap();
    let mut m = unpack(&bundle);
    *member(&mut m, CHECKPOINT) = log.checkpoint(&impostor).into_bytes();
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(
        &p,
        "checkpoint: signature does not verify with the trusted key",
    );
    assert_has(&p, "manifest.json: checkpoint sha256 mismatch");

    // A genuine checkpoint of the log at another size: proofs fail.
    let mut bigger = make_log();
    bigger.push(aiaudit_event::prepare(event(20)).unwrap().entry, None);
    let mut m = unpack(&bundle);
    *member(&mut m, CHECKPOINT) = bigger.checkpoint(&log_signer()).into_bytes();
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(&p, "manifest.json: checkpoint sha256 mismatch");
    assert_has(&p, "manifest.json: names the checkpoint at size 20");
    assert_has(
        &p,
        "events.ndjson: event at index 1: inclusion proof does not lead to the checkpoint root",
    );
}

#[test]
fn a_wrong_vkey_fails() {
    let (_, bundle) = good_bundle();
    let other = Signer::from_seed(ORIGIN, [3; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let p = failures(&bundle, Some(&other));
    assert_has(&p, "log.vkey: the bundle's key");
    assert_has(
        &p,
        "checkpoint: signature does not verify with the trusted key",
    );
    assert_has(
        &p,
        "manifest.sig: signature does not verify with the trusted key",
    );
    let p = failures(&bundle, Some("not a key"));
    assert_has(&p, "--vkey: not a verifier key");
}

#[test]
fn a_changed_opening_fails() {
    let (_, bundle) = good_bundle();
    let mut m = unpack(&bundle);
    edit_lines(&mut m, |lines| {
        let mut opening = B64.decode(lines[4]["opening"].as_str().unwrap()).unwrap();
        let n = opening.len();
        opening[n - 20] ^= 1;
        lines[4]["opening"] = B64.encode(opening).into();
    });
    resign(&mut m, &log_signer());
    let p = failures(&pack(&m), Some(&vkey()));
    assert_eq!(
        p,
        ["events.ndjson: event at index 11: opening: /commitment the opening does not match the commitment"]
    );
}

#[test]
fn an_event_field_that_lies_fails() {
    let (_, bundle) = good_bundle();
    for line in [0, 4] {
        let mut m = unpack(&bundle);
        edit_lines(&mut m, |lines| {
            lines[line]["event"]["action"] = "human.review".into();
        });
        resign(&mut m, &log_signer());
        let p = failures(&pack(&m), Some(&vkey()));
        assert_has(
            &p,
            "the \"event\" field differs from the event the entry proves",
        );
    }
    let mut m = unpack(&bundle);
    edit_lines(&mut m, |lines| {
        lines[5]["event"] = json!({"id": "e12"}); // sealed, no opening
    });
    resign(&mut m, &log_signer());
    assert_has(
        &failures(&pack(&m), Some(&vkey())),
        "events.ndjson: event at index 12: an \"event\" field for a sealed entry",
    );
}

#[test]
fn extra_missing_duplicate_and_reordered_events_fail() {
    let (_, bundle) = good_bundle();
    let mut m = unpack(&bundle);
    m.insert(4, ("evil.sh".into(), b"rm -rf /".to_vec()));
    let p = failures(&pack(&m), Some(&vkey()));
    assert_eq!(
        p,
        ["evil.sh: an extra file, not part of format aiaudit-bundle 1"]
    );

    let mut m = unpack(&bundle);
    m.pop();
    assert_eq!(
        failures(&pack(&m), Some(&vkey())),
        ["manifest.sig: missing"]
    );

    let mut m = unpack(&bundle);
    m.swap(2, 3);
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(&p, "checkpoint: missing, or not before events.ndjson");

    let mut m = unpack(&bundle);
    edit_lines(&mut m, |lines| {
        let dup = lines[2].clone();
        lines.insert(2, dup);
    });
    resign(&mut m, &log_signer());
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(
        &p,
        "events.ndjson: event at index 8: not in ascending index order, or listed twice",
    );
}

#[test]
fn a_bad_emitter_signature_in_a_logged_entry_fails() {
    // The log itself holds an entry whose batch signature is wrong (the
    // ledger should never write one; the verifier must not take it on trust).
    let mut log = make_log();
    let emitter = Signer::from_seed("edge-gw-7", [9; 32]).unwrap();
    let c = aiaudit_event::check(&event(20)).unwrap();
    let canon = vec![c.canonical.clone()];
    let v1 = SignatureFormat::V1;
    let mut sig = verify_batch(
        &emitter.verifier(),
        v1,
        &canon,
        &sign_batch(&emitter, v1, &canon),
    )
    .unwrap()
    .remove(0);
    sig.signature[0] ^= 1;
    log.push(
        aiaudit_event::finish(c, Some(&sig), None).unwrap().entry,
        None,
    );
    let signer = log_signer();
    let events = log.export(&[2, 20], 21, true);
    let b = write_bundle(
        Vec::new(),
        &signer,
        &log.checkpoint(&signer),
        &events,
        json!({}),
        "t",
    )
    .unwrap();
    assert_eq!(
        failures(&b, Some(&vkey())),
        ["events.ndjson: event at index 20: emitter signature: entry signature: the emitter's signature does not verify"]
    );
}

#[test]
fn hostile_archives_are_refused_without_panicking() {
    assert_has(&failures(b"", None), "bundle: the archive is damaged");
    assert_has(
        &failures(b"not gzip at all", None),
        "bundle: the archive is damaged",
    );

    let (_, bundle) = good_bundle();
    // A line over 1 MiB.
    let mut m = unpack(&bundle);
    member(&mut m, EVENTS).extend(vec![b'x'; MAX_EVENT_LINE + 10]);
    assert_has(
        &failures(&pack(&m), None),
        "events.ndjson: line 9 is longer than 1048576 bytes",
    );
    // A small member over its bound.
    let mut m = unpack(&bundle);
    *member(&mut m, README) = vec![b' '; MAX_SMALL_MEMBER as usize + 1];
    assert_has(
        &failures(&pack(&m), None),
        "README.txt: 65537 bytes, more than",
    );
    // Garbage lines and a missing final newline.
    let mut m = unpack(&bundle);
    member(&mut m, EVENTS).extend(b"{\"index\":1}\n[]");
    let p = failures(&pack(&m), None);
    assert_has(&p, "events.ndjson: line 9: not a valid event line");
    assert_has(&p, "events.ndjson: line 10 lacks its final newline");
    // Data after the archive.
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bundle.as_slice())
        .read_to_end(&mut raw)
        .unwrap();
    raw.extend(b"trailing");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    assert_eq!(
        failures(&gz.finish().unwrap(), None),
        ["bundle: data after the end of the archive"]
    );
}

#[test]
fn the_writer_refuses_what_would_not_verify() {
    let log = make_log();
    let signer = log_signer();
    let cp = log.checkpoint(&signer);
    let write = |events: &[BundleEvent]| {
        write_bundle(Vec::new(), &signer, &cp, events, json!({}), "t")
            .unwrap_err()
            .to_string()
    };
    let mut e = log.export(&[3, 4], 20, true);
    e.swap(0, 1);
    assert!(write(&e).contains("event at index 3: events must come in ascending"));
    let mut e = log.export(&[3], 20, true);
    e[0].inclusion_proof[0][0] ^= 1;
    assert!(write(&e).contains("inclusion proof does not lead"));
    let mut e = log.export(&[3], 20, true);
    e[0].index = 20;
    assert!(write(&e).contains("not covered by the checkpoint"));
    let mut e = log.export(&[11], 20, true);
    e[0].opening.as_mut().unwrap()[40] ^= 1;
    assert!(write(&e).contains("event at index 11: opening:"));
    let mut e = log.export(&[3], 20, true);
    e[0].opening = Some(vec![1, 2, 3]);
    assert!(write(&e).contains("not sealed"));
    // A checkpoint by another key, or of another log.
    let other = Signer::from_seed("other.test/log", [1; 32]).unwrap();
    let err = write_bundle(Vec::new(), &other, &cp, &[], json!({}), "t").unwrap_err();
    assert!(err.to_string().starts_with("checkpoint:"), "{err}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any single changed byte inside any member's content is caught.
        #[test]
        fn any_changed_content_byte_fails(member_i in 0usize..6, at in any::<proptest::sample::Index>(), bit in 0u8..8) {
            let bundle = cached_bundle();
            let mut m = unpack(&bundle);
            let data = &mut m[member_i].1;
            let i = at.index(data.len());
            data[i] ^= 1 << bit;
            prop_assert!(verify_bundle(pack(&m).as_slice(), Some(&vkey())).is_err());
        }
    }

    fn cached_bundle() -> Vec<u8> {
        static B: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        B.get_or_init(|| good_bundle().1).clone()
    }
}

#[test]
fn long_names_and_too_many_members_are_refused() {
    let (_, bundle) = good_bundle();
    let mut m = unpack(&bundle);
    // A GNU long name: its data is a member of its own, not gathered.
    let mut t = tar::Builder::new(Vec::new());
    for (name, data) in &m {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        t.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    t.append_data(&mut h, "x".repeat(300), &b"y"[..]).unwrap();
    let raw = t.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let p = failures(&gz.finish().unwrap(), Some(&vkey()));
    assert_has(&p, "././@LongLink: an extra file");

    for i in 0..20 {
        m.push((format!("extra{i}"), vec![]));
    }
    assert_has(
        &failures(&pack(&m), Some(&vkey())),
        "bundle: more than 16 members",
    );
}
