//! A small real log (plain, signed and sealed entries), a bundle of some of
//! its events, and every way of tampering with it that the issue names.

use super::*;
use aiaudit_event::envelope::{decode_stored, seal, DataKey};
use aiaudit_event::sealed_v3::SealInput;
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
    /// The content of each entry's blobs (v3), in its order.
    blobs: Vec<Vec<Vec<u8>>>,
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
            blobs: Vec::new(),
            tree: TreeBuilder::new(),
        }
    }

    fn push(&mut self, entry: Vec<u8>, opening: Option<Vec<u8>>) {
        self.push_with_blobs(entry, opening, vec![]);
    }

    fn push_with_blobs(&mut self, entry: Vec<u8>, opening: Option<Vec<u8>>, blobs: Vec<Vec<u8>>) {
        self.blobs.push(blobs);
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
                blobs: if with_openings {
                    self.blobs[i as usize].clone()
                } else {
                    vec![]
                },
            })
            .collect()
    }
}

fn sealed(event: &Value, sig: Option<&EventSignature>, n: u8) -> (Vec<u8>, Vec<u8>) {
    let checked = aiaudit_event::check(event).unwrap();
    let input = SealInput {
        signature: sig,
        appended_by: Some("token:0a1b"),
        subject_tag: Some("hmac-sha256:00ff"),
        ..SealInput::new(event.as_object().unwrap(), &checked)
    };
    let p = seal(
        &input,
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
        (from..from + 3)
            .map(event)
            .zip(checked)
            .zip(sigs)
            .map(|((e, c), s)| (e, c, s))
            .collect::<Vec<_>>()
    };
    for i in 0..8 {
        log.push(aiaudit_event::prepare(event(i)).unwrap().entry, None);
    }
    for (e, c, s) in batch(8, SignatureFormat::V1) {
        log.push(
            aiaudit_event::finish(&e, c, Some(&s), None).unwrap().entry,
            None,
        );
    }
    for i in 11..14 {
        let (entry, opening) = sealed(&event(i), None, i as u8);
        log.push(entry, Some(opening));
    }
    for (n, (e, _, s)) in batch(14, SignatureFormat::V2)
        .into_iter()
        .take(2)
        .enumerate()
    {
        let (entry, opening) = sealed(&e, Some(&s), 100 + n as u8);
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
    manifest.files.clear();
    for (name, data) in m.iter() {
        if MEMBERS_2[..5].contains(&name.as_str()) {
            let mut d = Digest::new();
            d.update(data);
            manifest.files.insert(name.clone(), d.file_digest());
        }
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
fn a_bundle_without_blobs_is_format_1_byte_for_byte() {
    // The tar (the gzip stream may differ between compressor versions) of
    // good_bundle as written before format 2 existed.
    let (_, bundle) = good_bundle();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(bundle.as_slice())
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(tar.len(), 19968);
    assert_eq!(
        hex(&sha256(&tar)),
        "af6ce187cc418ec06f2e3eb96be4eab3831275fc1988ab613a04db60403de8e2"
    );
    let manifest: Manifest = serde_json::from_slice(&unpack(&bundle)[4].1).unwrap();
    assert_eq!(manifest.format, FORMAT);
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
        std::io::Cursor::new(Vec::new()),
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
        ["evil.sh: an extra file, not part of format aiaudit-bundle 1 or aiaudit-bundle 2"]
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
    let e = event(20);
    let c = aiaudit_event::check(&e).unwrap();
    let canon = vec![aiaudit_event::canonical_event(&e)];
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
        aiaudit_event::finish(&e, c, Some(&sig), None)
            .unwrap()
            .entry,
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The same in a bundle with blobs (format 2, seven members).
        #[test]
        fn any_changed_content_byte_of_a_bundle_with_blobs_fails(member_i in 0usize..7, at in any::<proptest::sample::Index>(), bit in 0u8..8) {
            static B: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            let bundle = B.get_or_init(|| blob_bundle().1);
            let mut m = unpack(bundle);
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

// Format 2: events with blobs (members stored out of line, v3 entries).

use aiaudit_event::sealed_v3::{put_member, take_member, BlobRef, SealedBlob};

/// An event with large content, of the same length for every `i` < 1000;
/// its input content spans several of the verifier's 64 KiB reads.
fn big_event(i: u64) -> Value {
    let mut e = event(i);
    e["input"]["content"] = format!("long secret {i:03}. ").repeat(9000).into();
    e["output"] = json!({"content": format!("answer {i:03}"), "role": "assistant"});
    e
}

/// A v3 entry of `rest` (the event without its blobs) listing `blobs`,
/// and its opening.
fn seal_v3(
    rest: &serde_json::Map<String, Value>,
    checked: &aiaudit_event::CheckedEvent,
    sig: Option<&EventSignature>,
    blobs: &[SealedBlob],
    n: u8,
) -> (Vec<u8>, Vec<u8>) {
    let p = aiaudit_event::sealed_v3::seal(
        &SealInput {
            event: rest,
            checked,
            signature: sig,
            appended_by: Some("token:0a1b"),
            redacted: &[],
            subject_tag: Some("hmac-sha256:00ff"),
            compress: aiaudit_event::sealed_v3::Compression::Off,
            blobs,
        },
        DataKey {
            id: 1,
            key: &DATA_KEY,
        },
        &[n; aiaudit_event::envelope::SEAL_RANDOM_LEN],
    )
    .unwrap();
    let opened = decode_stored(&p.entry)
        .unwrap()
        .sealed
        .unwrap()
        .open(&DATA_KEY)
        .unwrap();
    (p.entry, opened.opening)
}

/// A v3 entry of `event` with the members at `pointers` stored out of
/// line: the entry, its opening and each blob's content.
fn sealed_with_blobs(
    event: &Value,
    sig: Option<&EventSignature>,
    pointers: &[&str],
    n: u8,
) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let checked = aiaudit_event::check(event).unwrap();
    let mut rest = event.as_object().unwrap().clone();
    let mut blobs = Vec::new();
    let mut contents = Vec::new();
    for (k, pointer) in pointers.iter().enumerate() {
        let member = take_member(&mut rest, pointer).unwrap();
        let mut bytes = Vec::new();
        aiaudit_event::write_canonical(&mut bytes, &member);
        let salt = [n ^ (k as u8 + 1) << 4; 32];
        blobs.push(SealedBlob {
            reference: BlobRef {
                pointer: pointer.to_string(),
                size: bytes.len() as u64,
                commitment: aiaudit_event::blob::commitment(&salt, &bytes),
                stored: [0; 32],
            },
            salt,
        });
        contents.push(bytes);
    }
    let (entry, opening) = seal_v3(&rest, &checked, sig, &blobs, n);
    (entry, opening, contents)
}

/// Batch signatures (format v2, over the whole events) by the emitter.
fn sign_events(events: &[Value]) -> Vec<EventSignature> {
    let emitter = Signer::from_seed("edge-gw-7", [9; 32]).unwrap();
    let format = SignatureFormat::V2;
    let canon: Vec<Vec<u8>> = events
        .iter()
        .map(|e| format.event_bytes(e.as_object().unwrap()).unwrap())
        .collect();
    let sig = sign_batch(&emitter, format, &canon);
    verify_batch(&emitter.verifier(), format, &canon, &sig).unwrap()
}

/// make_log's 20 entries, then with blobs: 20 (one), 21 (two), 22 and 23
/// (a signed batch); 24 plain; 25 with a blob.
fn make_blob_log() -> MemLog {
    let mut log = make_log();
    let (e, o, b) = sealed_with_blobs(&big_event(20), None, &["/input/content"], 20);
    log.push_with_blobs(e, Some(o), b);
    let (e, o, b) = sealed_with_blobs(&big_event(21), None, &["/input/content", "/output"], 21);
    log.push_with_blobs(e, Some(o), b);
    let sigs = sign_events(&[big_event(22), big_event(23)]);
    for (i, sig) in (22..24).zip(sigs) {
        let (e, o, b) = sealed_with_blobs(&big_event(i), Some(&sig), &["/input/content"], i as u8);
        log.push_with_blobs(e, Some(o), b);
    }
    log.push(aiaudit_event::prepare(event(24)).unwrap().entry, None);
    let (e, o, b) = sealed_with_blobs(&big_event(25), None, &["/input/content"], 25);
    log.push_with_blobs(e, Some(o), b);
    log
}

const BLOB_EXPORTED: [u64; 8] = [3, 11, 20, 21, 22, 23, 24, 25];

fn blob_events(log: &MemLog) -> Vec<BundleEvent> {
    let mut events = log.export(&BLOB_EXPORTED, 26, true);
    events[7].opening = None; // index 25: content not exported
    events[7].blobs.clear();
    events
}

fn blob_bundle() -> (MemLog, Vec<u8>) {
    let log = make_blob_log();
    let signer = log_signer();
    let bundle = write_bundle(
        Vec::new(),
        &signer,
        &log.checkpoint(&signer),
        &blob_events(&log),
        json!({"tenant": "acme"}),
        "2026-12-01T10:00:00Z",
    )
    .unwrap();
    (log, bundle)
}

/// Bytes of blob 20's (and 22's, 23's) input content, and of blob 21's output.
fn blob_sizes(log: &MemLog) -> (usize, usize) {
    (log.blobs[20][0].len(), log.blobs[21][1].len())
}

fn lines_of(m: &mut [(String, Vec<u8>)]) -> Vec<Value> {
    member(m, EVENTS)
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn a_bundle_with_blobs_is_format_2_and_verifies() {
    let (log, bundle) = blob_bundle();
    let r = verify_bundle(bundle.as_slice(), Some(&vkey())).unwrap();
    assert_eq!(r.events, 8);
    assert_eq!(r.plain, 2); // 3, 24
    assert_eq!(r.sealed_with_content, 5); // 11, 20, 21, 22, 23
    assert_eq!(r.sealed_without_content, 1); // 25
    assert_eq!(r.blobs, 5);
    let content: Vec<u8> = (20..24).flat_map(|i| log.blobs[i].concat()).collect();
    assert_eq!(r.blob_bytes, content.len() as u64);
    // 22 and 23: signed over the whole event, checked once their blobs are read.
    assert_eq!(r.emitter_signatures, 2);

    let mut m = unpack(&bundle);
    let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, MEMBERS_2);
    let manifest: Manifest = serde_json::from_slice(member(&mut m, MANIFEST)).unwrap();
    assert_eq!(manifest.format, FORMAT_2);
    assert_eq!(manifest.files[BLOBS].bytes, content.len() as u64);
    assert!(String::from_utf8_lossy(&m[0].1).contains("format aiaudit-bundle 2"));
    assert_eq!(*member(&mut m, BLOBS), content);

    // A reader rebuilds each event from its line and blobs.bin.
    let blobs = member(&mut m, BLOBS).clone();
    let (big, out) = blob_sizes(&log);
    for line in lines_of(&mut m) {
        let index = line["index"].as_u64().unwrap();
        let Some(list) = line["blobs"].as_array() else {
            assert!([3, 11, 24, 25].contains(&index), "{index}");
            continue;
        };
        let mut event = line["event"].as_object().unwrap().clone();
        assert!(event["input"].get("content").is_none());
        for b in list {
            let at = b["offset"].as_u64().unwrap() as usize;
            let n = b["bytes"].as_u64().unwrap() as usize;
            let value = serde_json::from_slice(&blobs[at..at + n]).unwrap();
            put_member(&mut event, b["pointer"].as_str().unwrap(), value).unwrap();
        }
        assert_eq!(Value::Object(event), big_event(index));
        if index == 21 {
            assert_eq!(
                line["blobs"],
                json!([{"pointer": "/input/content", "offset": big, "bytes": big},
                       {"pointer": "/output", "offset": 2 * big, "bytes": out}])
            );
        }
    }
    assert!(lines_of(&mut m)[7].get("event").is_none()); // 25, no opening

    // Deterministic; the streaming writer takes spools anywhere.
    assert_eq!(blob_bundle().1, bundle);
    let signer = log_signer();
    let mut spool = std::io::Cursor::new(b"junk".to_vec());
    spool.set_position(4);
    let mut blob_spool = std::io::Cursor::new(b"more junk".to_vec());
    blob_spool.set_position(9);
    let mut w = BundleWriter::new(
        Vec::new(),
        spool,
        blob_spool,
        &signer,
        &log.checkpoint(&signer),
        json!({"tenant": "acme"}),
        "2026-12-01T10:00:00Z",
    )
    .unwrap();
    for e in blob_events(&log) {
        w.add(&e).unwrap();
    }
    assert_eq!(w.finish().unwrap(), bundle);
}

#[test]
fn an_emitter_signature_covers_the_event_with_its_blobs() {
    // The log holds an entry whose blob is not the content the emitter
    // signed (its commitment is right: the entry logs this content).
    let mut log = make_blob_log();
    let sig = sign_events(&[big_event(26)]).remove(0);
    let mut logged = big_event(26);
    logged["input"]["content"] = "not what was signed".into();
    let (e, o, b) = sealed_with_blobs(&logged, Some(&sig), &["/input/content"], 26);
    log.push_with_blobs(e, Some(o), b);
    let signer = log_signer();
    let events = log.export(&[22, 26], 27, true);
    let bundle = write_bundle(
        Vec::new(),
        &signer,
        &log.checkpoint(&signer),
        &events,
        json!({}),
        "t",
    )
    .unwrap();
    assert_eq!(
        failures(&bundle, Some(&vkey())),
        ["events.ndjson: event at index 26: emitter signature: entry signature: the event is not in the signed batch"]
    );
}

#[test]
fn a_changed_byte_in_blobs_bin_fails() {
    let (log, bundle) = blob_bundle();
    let (big, _) = blob_sizes(&log);
    // In 21's second blob (unsigned), and in 23's (signed).
    for (at, index, pointer) in [
        (2 * big + 3, 21, "/output"),
        (4 * big, 23, "/input/content"),
    ] {
        let mut m = unpack(&bundle);
        member(&mut m, BLOBS)[at] ^= 1;
        let p = failures(&pack(&m), Some(&vkey()));
        assert_has(&p, "manifest.json: blobs.bin sha256 mismatch");
        resign(&mut m, &log_signer());
        assert_eq!(
            failures(&pack(&m), Some(&vkey())),
            [format!("blobs.bin: event at index {index}: blob {pointer}: its content does not match the commitment its entry logs")]
        );
    }
}

#[test]
fn a_truncated_blobs_bin_fails() {
    let (log, bundle) = blob_bundle();
    let (big, out) = blob_sizes(&log);
    let mut m = unpack(&bundle);
    let full = member(&mut m, BLOBS).len();
    member(&mut m, BLOBS).truncate(full - 10);
    resign(&mut m, &log_signer());
    assert_eq!(
        failures(&pack(&m), Some(&vkey())),
        [format!("blobs.bin: event at index 23: ends early: blob /input/content of this event has {} of its {big} bytes", big - 10)]
    );
    // Cut within 22's blob: 23's is missing altogether.
    member(&mut m, BLOBS).truncate(2 * big + out + 5);
    resign(&mut m, &log_signer());
    assert_eq!(
        failures(&pack(&m), Some(&vkey())),
        [
            format!("blobs.bin: event at index 22: ends early: blob /input/content of this event has 5 of its {big} bytes"),
            "blobs.bin: event at index 23: missing: blobs.bin ends before this event's blobs".to_string(),
        ]
    );
}

#[test]
fn a_blob_swapped_between_events_fails() {
    let (log, bundle) = blob_bundle();
    let (big, out) = blob_sizes(&log);
    // 20's and 22's blobs are the same length: swap their content.
    let mut m = unpack(&bundle);
    let blobs = member(&mut m, BLOBS);
    let at22 = 2 * big + out;
    let first: Vec<u8> = blobs[..big].to_vec();
    blobs.copy_within(at22..at22 + big, 0);
    blobs[at22..at22 + big].copy_from_slice(&first);
    resign(&mut m, &log_signer());
    let mismatch = "blob /input/content: its content does not match the commitment its entry logs";
    assert_eq!(
        failures(&pack(&m), Some(&vkey())),
        [
            format!("blobs.bin: event at index 20: {mismatch}"),
            format!("blobs.bin: event at index 22: {mismatch}"),
        ]
    );
}

#[test]
fn blob_offsets_that_lie_fail() {
    let (log, bundle) = blob_bundle();
    let (big, out) = blob_sizes(&log);
    // 22's line points at 20's blob, which has the same length.
    let mut m = unpack(&bundle);
    edit_lines(&mut m, |lines| lines[4]["blobs"][0]["offset"] = 0.into());
    resign(&mut m, &log_signer());
    assert_eq!(
        failures(&pack(&m), Some(&vkey())),
        [format!("events.ndjson: event at index 22: \"blobs\": /input/content is at offset 0 of blobs.bin, but the blob before it ends at {}", 2 * big + out)]
    );
    // 20's and 22's lines swap their offsets.
    let mut m = unpack(&bundle);
    edit_lines(&mut m, |lines| {
        lines[2]["blobs"][0]["offset"] = (2 * big + out).into();
        lines[4]["blobs"][0]["offset"] = 0.into();
    });
    resign(&mut m, &log_signer());
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(
        &p,
        "events.ndjson: event at index 20: \"blobs\": /input/content is at offset",
    );
    assert_has(
        &p,
        "events.ndjson: event at index 22: \"blobs\": /input/content is at offset 0",
    );
    // A length that lies.
    let mut m = unpack(&bundle);
    edit_lines(&mut m, |lines| {
        lines[3]["blobs"][1]["bytes"] = (out + 1).into()
    });
    resign(&mut m, &log_signer());
    assert_has(
        &failures(&pack(&m), Some(&vkey())),
        &format!("events.ndjson: event at index 21: \"blobs\": /output of {} bytes, but the entry lists /output of {out} bytes there", out + 1),
    );
}

#[test]
fn blobs_belong_to_format_2_only_and_format_2_to_blobs() {
    let (_, bundle) = blob_bundle();
    let signer = log_signer();
    let retitle = |m: &mut Vec<(String, Vec<u8>)>, from: &str, to: &str| {
        let text = String::from_utf8(member(m, MANIFEST).clone()).unwrap();
        *member(m, MANIFEST) = text.replace(from, to).into_bytes();
    };
    // Blobs in a bundle that says it is format 1.
    let mut m = unpack(&bundle);
    retitle(&mut m, FORMAT_2, FORMAT);
    resign(&mut m, &signer);
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(
        &p,
        "blobs.bin: an extra file, not part of format aiaudit-bundle 1",
    );
    assert_has(&p, "events.ndjson: event at index 20: a \"blobs\" field, not part of format aiaudit-bundle 1 (4 line(s) have one)");
    assert_has(
        &p,
        "manifest.json: lists blobs.bin, which has no digest in this format",
    );

    // Format 2 without blobs.bin.
    let mut m = unpack(&bundle);
    m.remove(4);
    resign(&mut m, &signer);
    let p = failures(&pack(&m), Some(&vkey()));
    assert_has(&p, "blobs.bin: missing");

    // Format 2 without blobs: only format 1 is a bundle without blobs.
    let (_, plain) = good_bundle();
    let mut m = unpack(&plain);
    m.insert(4, (BLOBS.to_string(), vec![]));
    retitle(&mut m, FORMAT, FORMAT_2);
    resign(&mut m, &signer);
    assert_eq!(
        failures(&pack(&m), Some(&vkey())),
        ["events.ndjson: no line has blobs: a bundle without blobs is format aiaudit-bundle 1, without blobs.bin"]
    );

    // A "blobs" field where the entry has none, or no opening to salt them.
    for (bundle, line, index) in [(&plain, 0, 1), (&bundle, 7, 25)] {
        let mut m = unpack(bundle);
        edit_lines(&mut m, |lines| {
            lines[line]["blobs"] = json!([{"pointer": "/input/content", "offset": 0, "bytes": 0}])
        });
        resign(&mut m, &signer);
        assert_has(
            &failures(&pack(&m), Some(&vkey())),
            &format!("events.ndjson: event at index {index}: a \"blobs\" field for an entry without blobs, or without its opening"),
        );
    }
    // The entry's blobs left out of its line.
    let mut m = unpack(&bundle);
    edit_lines(&mut m, |lines| {
        lines[2].as_object_mut().unwrap().remove("blobs");
    });
    resign(&mut m, &signer);
    assert_has(
        &failures(&pack(&m), Some(&vkey())),
        "events.ndjson: event at index 20: the entry lists 1 blob(s) but the line has no \"blobs\" field",
    );
}

#[test]
fn the_writer_refuses_blobs_that_are_not_the_entrys() {
    let log = make_blob_log();
    let signer = log_signer();
    let cp = log.checkpoint(&signer);
    let write = |events: &[BundleEvent]| {
        write_bundle(Vec::new(), &signer, &cp, events, json!({}), "t")
            .unwrap_err()
            .to_string()
    };
    let e = || log.export(&[3, 20, 21], 26, true);
    let mut bad = e();
    bad[2].blobs.pop();
    assert_eq!(
        write(&bad),
        "event at index 21: the entry lists 2 blob(s), 1 given"
    );
    let mut bad = e();
    bad[1].blobs[0][100] ^= 1;
    assert_eq!(
        write(&bad),
        "event at index 20: blob \"/input/content\": the content given does not match the commitment the entry logs"
    );
    let mut bad = e();
    bad[1].blobs[0].push(b' ');
    let (big, _) = blob_sizes(&log);
    assert_eq!(
        write(&bad),
        format!(
            "event at index 20: blob \"/input/content\": {} bytes given, the entry logs {big}",
            big + 1
        )
    );
    let mut bad = e();
    bad[1].opening = None;
    assert!(write(&bad).contains("event at index 20: blob content without an opening"));
    let mut bad = e();
    bad[0].blobs = vec![b"1".to_vec()];
    assert!(write(&bad).contains("event at index 3: blob content without an opening"));
}

#[test]
fn hostile_blobs_are_refused() {
    let (log, bundle) = blob_bundle();
    let signer = log_signer();
    // Bytes after the last blob.
    let mut m = unpack(&bundle);
    member(&mut m, BLOBS).extend(b"extra");
    resign(&mut m, &signer);
    assert_eq!(
        failures(&pack(&m), Some(&vkey())),
        ["blobs.bin: 5 byte(s) after the last blob the events list"]
    );

    // A blobs.bin over its bound: refused from its header, unread.
    let m = unpack(&bundle);
    let mut raw = Vec::new();
    {
        let mut t = tar::Builder::new(&mut raw);
        for (name, data) in &m[..4] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            t.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        t.finish().unwrap();
    }
    raw.truncate(raw.len() - 1024); // the end-of-archive blocks
    let mut h = tar::Header::new_ustar();
    h.set_path(BLOBS).unwrap();
    h.set_size(MAX_BLOBS + 1);
    h.set_cksum();
    raw.extend_from_slice(h.as_bytes());
    raw.extend_from_slice(&[0; 4096]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    assert_has(
        &failures(&gz.finish().unwrap(), Some(&vkey())),
        &format!(
            "blobs.bin: {} bytes, more than the {MAX_BLOBS} this format allows",
            MAX_BLOBS + 1
        ),
    );

    // A signed entry claiming more blob content than the verifier holds to
    // check a signature: refused at its line, before blobs.bin.
    let mut log = log;
    let event = big_event(26);
    let sig = sign_events(std::slice::from_ref(&event)).remove(0);
    let checked = aiaudit_event::check(&event).unwrap();
    let mut rest = event.as_object().unwrap().clone();
    take_member(&mut rest, "/input/content").unwrap();
    let blob = SealedBlob {
        reference: BlobRef {
            pointer: "/input/content".into(),
            size: 1 << 40,
            commitment: [3; 32],
            stored: [0; 32],
        },
        salt: [4; 32],
    };
    let (entry, opening) = seal_v3(&rest, &checked, Some(&sig), &[blob], 26);
    log.push(entry.clone(), Some(opening.clone()));
    let events = log.export(&[22], 27, true);
    let b = write_bundle(
        Vec::new(),
        &signer,
        &log.checkpoint(&signer),
        &events,
        json!({}),
        "t",
    )
    .unwrap();
    let (big, _) = blob_sizes(&log);
    let mut m = unpack(&b);
    let proof: Vec<String> = prove_record(27, 26, &log)
        .unwrap()
        .iter()
        .map(|h| B64.encode(h))
        .collect();
    edit_lines(&mut m, |lines| {
        lines.push(json!({"index": 26, "entry": B64.encode(&entry),
            "leaf_hash": B64.encode(aiaudit_tlog::record_hash(&entry)),
            "inclusion_proof": proof, "opening": B64.encode(&opening),
            "blobs": [{"pointer": "/input/content", "offset": big, "bytes": 1u64 << 40}]}))
    });
    resign(&mut m, &signer);
    assert_eq!(
        failures(&pack(&m), Some(&vkey())),
        ["events.ndjson: event at index 26: an emitter-signed event with more than 67108864 bytes of blobs, the most this format holds to check a signature"]
    );
}

#[test]
fn what_waits_for_blobs_bin_is_bounded_alike_in_writer_and_verifier() {
    let log = make_blob_log();
    let signer = log_signer();
    let writer = || {
        BundleWriter::new(
            Vec::new(),
            std::io::Cursor::new(Vec::new()),
            std::io::Cursor::new(Vec::new()),
            &signer,
            &log.checkpoint(&signer),
            json!({}),
            "t",
        )
        .unwrap()
    };
    let mut w = writer();
    for e in blob_events(&log) {
        w.add(&e).unwrap();
    }
    let needed = w.pending;
    assert!(needed > 0);
    let bundle = w.finish().unwrap();
    // The verifier counts what it holds exactly as the writer did.
    assert!(verify::verify_within(bundle.as_slice(), Some(&vkey()), needed).is_ok());
    let p = verify::verify_within(bundle.as_slice(), Some(&vkey()), needed - 1).unwrap_err();
    assert_eq!(
        p.problems[0].to_string(),
        format!("events.ndjson: event at index 23: the events with blobs so far need more than the {} bytes this format allows to hold until blobs.bin", needed - 1)
    );
    // And the writer refuses the event that would pass the bound.
    let mut w = writer();
    w.max_pending = needed - 1;
    let events = blob_events(&log);
    for e in &events[..5] {
        w.add(e).unwrap();
    }
    let err = w.add(&events[5]).unwrap_err().to_string();
    assert!(
        err.starts_with("event at index 23: with it, the events with blobs would need more than"),
        "{err}"
    );
}

#[test]
fn a_signed_event_rebuilt_from_its_blobs_is_bounded_like_an_ingested_batch() {
    // Two blobs of 500,001 JSON values each: each within the bound alone,
    // over it together.
    let mut log = make_log();
    let mut e = event(20);
    let zeros = Value::Array(vec![json!(0); 500_000]);
    e["input"]["content"] = zeros.clone();
    e["output"] = json!({"content": zeros});
    let sig = sign_events(std::slice::from_ref(&e)).remove(0);
    let (entry, o, b) =
        sealed_with_blobs(&e, Some(&sig), &["/input/content", "/output/content"], 20);
    log.push_with_blobs(entry, Some(o), b);
    let signer = log_signer();
    let bundle = write_bundle(
        Vec::new(),
        &signer,
        &log.checkpoint(&signer),
        &log.export(&[20], 21, true),
        json!({}),
        "t",
    )
    .unwrap();
    assert_eq!(
        failures(&bundle, Some(&vkey())),
        ["blobs.bin: event at index 20: its blobs hold more than 1000000 JSON values in all"]
    );
}
