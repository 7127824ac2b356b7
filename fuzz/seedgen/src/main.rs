//! Writes the seeds that the fuzz targets cannot reach from scratch, because
//! they need valid signatures, seals, commitments or proofs: log entries of
//! every kind, an entry bundle of them, and export bundles (raw and split
//! into members as fuzz_targets/export_bundle.rs reads them).
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/seedgen/Cargo.toml`.

use aiaudit_bundle::{write_bundle, BundleEvent};
use aiaudit_event::envelope::{decode_stored, seal, DataKey, SEAL_RANDOM_LEN};
use aiaudit_event::sealed_v3::SealInput;
use aiaudit_event::signature::{sign_batch, verify_batch, SignatureFormat};
use aiaudit_tlog::{
    encode_entry_bundle, prove_record, record_hash, sign_note, Checkpoint, Error, Hash, NodeReader,
    Signer, TreeBuilder,
};
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

/// The C2SP conformance vectors' key, which the fuzz targets also hold.
const LOG_SKEY: &str =
    "PRIVATE+KEY+example.test/log+d55b6dd2+AQjzF0WRPB94l86Wpj2mqsXJEPEZ5i4MdWNE8Ch33fx0";
/// The data key entry_decode opens sealed entries with (key id 1).
const DATA_KEY: [u8; 32] = [7; 32];
/// Must match SEPARATOR in fuzz_targets/export_bundle.rs.
const SEPARATOR: &[u8] = b"\n~~~~ member ~~~~\n";

struct Tree {
    levels: Vec<Vec<Hash>>,
    builder: TreeBuilder,
}

impl NodeReader for Tree {
    fn read_node(&self, level: u32, index: u64) -> aiaudit_tlog::Result<Hash> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or_else(|| Error::InvalidArgument(format!("no node ({level}, {index})")))
    }
}

fn event(i: u32, tenant: &str) -> Value {
    json!({"id": format!("seed-{i}"), "time": "2026-11-27T09:14:03.120Z", "tenant": tenant,
        "source": {"name": "loan-assistant", "version": "3.2.0"},
        "actor": {"id": "agent-7", "type": "agent"}, "action": "model.invoke",
        "subject": "customer-5521", "risk_level": "high",
        "ai": {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x",
               "gen_ai.usage.input_tokens": 812, "gen_ai.conversation.id": "conv-31"},
        "input": {"content": format!("question {i}")}, "outcome": {"status": "success"}})
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

/// The members of a bundle, in order, joined as export_bundle splits them.
fn members(bundle: &[u8]) -> Vec<u8> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bundle));
    let mut parts = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut data = Vec::new();
        entry.unwrap().read_to_end(&mut data).unwrap();
        parts.push(data);
    }
    parts.join(SEPARATOR)
}

fn main() {
    let corpus = Path::new("fuzz/corpus");
    let log = Signer::parse(LOG_SKEY).unwrap();
    let emitter = Signer::from_seed("emitter-1", [9; 32]).unwrap();

    // Entry 0: plain. Entries 1 and 2: one emitter-signed batch. Entry 3: sealed.
    let mut entries = vec![aiaudit_event::prepare(event(0, "acme")).unwrap().entry];
    let batch: Vec<Value> = [1, 2].iter().map(|&i| event(i, "acme")).collect();
    let canonical: Vec<Vec<u8>> = batch.iter().map(aiaudit_event::canonical_event).collect();
    let sig = sign_batch(&emitter, SignatureFormat::V1, &canonical);
    let sigs = verify_batch(&emitter.verifier(), SignatureFormat::V1, &canonical, &sig).unwrap();
    for (e, s) in batch.iter().zip(&sigs) {
        let c = aiaudit_event::check(e).unwrap();
        entries.push(aiaudit_event::finish(e, c, Some(s), None).unwrap().entry);
    }
    let sealed_event = event(3, "globex");
    let checked = aiaudit_event::check(&sealed_event).unwrap();
    let key = DataKey {
        id: 1,
        key: &DATA_KEY,
    };
    let redacted = ["input.content".to_string()];
    let input = SealInput {
        redacted: &redacted,
        subject_tag: Some("hmac-sha256:c2VlZA"),
        ..SealInput::new(sealed_event.as_object().unwrap(), &checked)
    };
    let sealed = seal(&input, key, &[5; SEAL_RANDOM_LEN]).unwrap();
    entries.push(sealed.entry);
    let opening = decode_stored(&entries[3])
        .unwrap()
        .sealed
        .unwrap()
        .open(&DATA_KEY)
        .unwrap()
        .opening;

    let names = ["plain_v1", "signed_v1_a", "signed_v1_b", "sealed_v2"];
    for (name, entry) in names.iter().zip(&entries) {
        write(&corpus.join("entry_decode"), name, entry);
    }
    write(&corpus.join("entry_decode"), "opening", &opening);
    let bundle = encode_entry_bundle(entries.iter().map(Vec::as_slice)).unwrap();
    write(&corpus.join("tiles"), "bundle_events", &bundle);

    let mut tree = Tree {
        levels: vec![Vec::new(); 64],
        builder: TreeBuilder::new(),
    };
    for e in &entries {
        let levels = &mut tree.levels;
        tree.builder
            .push(record_hash(e), |l, _, h| levels[l as usize].push(*h));
    }
    let checkpoint = Checkpoint {
        origin: log.name().to_string(),
        size: tree.builder.size(),
        root: tree.builder.root(),
        extensions: vec![],
    };
    let note = sign_note(&checkpoint.body(), &log).unwrap();
    write(&corpus.join("signed_note"), "checkpoint_4", note.as_bytes());

    let export = |indexes: &[u64], with_opening: bool| -> Vec<u8> {
        let events: Vec<BundleEvent> = indexes
            .iter()
            .map(|&i| BundleEvent {
                index: i,
                entry: entries[i as usize].clone(),
                inclusion_proof: prove_record(checkpoint.size, i, &tree).unwrap(),
                blobs: Vec::new(),
                opening: (with_opening && i == 3).then(|| opening.clone()),
            })
            .collect();
        write_bundle(
            Vec::new(),
            &log,
            &note,
            &events,
            json!({"tenant": "acme", "from": "2026-11-01T00:00:00Z"}),
            "2026-11-27T10:00:00Z",
        )
        .unwrap()
    };
    let dir = corpus.join("export_bundle");
    // First byte: bit 0 split into members, bit 1 re-sign the checkpoint,
    // bit 2 re-sign the manifest, bit 3 pass the trusted key.
    for (name, bundle) in [
        ("all", export(&[0, 1, 2, 3], true)),
        ("sealed_without_opening", export(&[1, 3], false)),
        ("empty", export(&[], false)),
    ] {
        write(
            &dir,
            &format!("{name}_raw"),
            &[&[0x08][..], &bundle].concat(),
        );
        write(
            &dir,
            &format!("{name}_raw_own_key"),
            &[&[0x00][..], &bundle].concat(),
        );
        let split = members(&bundle);
        write(
            &dir,
            &format!("{name}_members"),
            &[&[0x09][..], &split].concat(),
        );
        write(
            &dir,
            &format!("{name}_members_resigned"),
            &[&[0x07][..], &split].concat(),
        );
        if name == "all" {
            // manifest.sig: a signed note of another body.
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bundle.as_slice()));
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                if entry.path().unwrap().to_str() == Some(aiaudit_bundle::MANIFEST_SIG) {
                    let mut sig = Vec::new();
                    entry.read_to_end(&mut sig).unwrap();
                    write(&corpus.join("signed_note"), "manifest_sig", &sig);
                }
            }
        }
    }
}
