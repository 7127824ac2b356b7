//! Conformance with the reference vectors in testdata/ (generated with Go's
//! golang.org/x/mod/sumdb/tlog and note; see testdata/README.md).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use aiaudit_tlog::{
    audit_log, check_record, check_tree, encode_entry_bundle, encode_hash_tile, open_note,
    prove_record, prove_tree, record_hash, sign_note, tiles_for_size, tree_hash, Checkpoint, Error,
    Hash, NodeReader, Signer, Tile, TileKind, TileReader, TreeBuilder, Verifier,
};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(testdata().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hash(v: &Value) -> Hash {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hash).collect()
}

fn entry(i: u64) -> Vec<u8> {
    format!("entry {i}").into_bytes()
}

/// Every complete node of the tree of "entry i" for i < size, kept by level.
/// Asking for anything else is an error, which checks that the provers only
/// read complete subtrees within the tree.
struct Nodes(Vec<Vec<Hash>>);

impl Nodes {
    fn new(size: u64) -> Nodes {
        let mut levels: Vec<Vec<Hash>> = Vec::new();
        let mut b = TreeBuilder::new();
        for i in 0..size {
            b.push(record_hash(&entry(i)), |l, _, h| {
                if levels.len() <= l as usize {
                    levels.push(Vec::new());
                }
                levels[l as usize].push(*h);
            });
        }
        Nodes(levels)
    }
}

impl NodeReader for Nodes {
    fn read_node(&self, level: u32, index: u64) -> aiaudit_tlog::Result<Hash> {
        self.0
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or_else(|| Error::InvalidArgument(format!("node ({level}, {index}) not stored")))
    }
}

#[test]
fn roots() {
    let v = load("roots.json");
    assert_eq!(
        hash(&v["empty_tree_root_hex"]),
        aiaudit_tlog::empty_tree_hash()
    );
    let nodes = Nodes::new(1000);
    for t in v["trees"].as_array().unwrap() {
        let size = t["size"].as_u64().unwrap();
        let want = hash(&t["root_hex"]);
        assert_eq!(tree_hash(size, &nodes).unwrap(), want, "size {size}");
        let mut b = TreeBuilder::new();
        for i in 0..size {
            b.push(record_hash(&entry(i)), |_, _, _| {});
        }
        assert_eq!(b.root(), want, "size {size}");
        let b64 = t["root_base64"].as_str().unwrap();
        let cp = Checkpoint {
            origin: "o".into(),
            size,
            root: want,
            extensions: vec![],
        };
        assert_eq!(cp.body(), format!("o\n{size}\n{b64}\n"));
    }
    for leaf in v["sample_leaves"].as_array().unwrap() {
        let i = leaf["index"].as_u64().unwrap();
        let bytes = hex::decode(leaf["entry_hex"].as_str().unwrap()).unwrap();
        assert_eq!(bytes, entry(i));
        assert_eq!(leaf["entry"].as_str().unwrap().as_bytes(), entry(i));
        assert_eq!(record_hash(&bytes), hash(&leaf["leaf_hash_hex"]));
    }
}

#[test]
fn inclusion_proofs() {
    let v = load("inclusion_proofs.json");
    let vectors = v["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 48);
    for t in vectors {
        let index = t["leaf_index"].as_u64().unwrap();
        let size = t["tree_size"].as_u64().unwrap();
        let leaf = hash(&t["leaf_hash_hex"]);
        let root = hash(&t["root_hex"]);
        let want = hashes(&t["proof"]);
        assert_eq!(t["entry"].as_str().unwrap().as_bytes(), entry(index));
        assert_eq!(record_hash(&entry(index)), leaf);
        // A store holding exactly this tree: no node beyond `size` exists.
        let nodes = Nodes::new(size);
        assert_eq!(tree_hash(size, &nodes).unwrap(), root);
        let proof = prove_record(size, index, &nodes).unwrap();
        assert_eq!(proof, want, "index {index} size {size}");
        check_record(&want, size, &root, index, &leaf).unwrap();
        if !want.is_empty() {
            let mut bad = want.clone();
            bad[0][0] ^= 1;
            assert!(matches!(
                check_record(&bad, size, &root, index, &leaf),
                Err(Error::InvalidProof)
            ));
        }
    }
}

#[test]
fn consistency_proofs() {
    let v = load("consistency_proofs.json");
    let vectors = v["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 32);
    for t in vectors {
        let old = t["old_size"].as_u64().unwrap();
        let size = t["new_size"].as_u64().unwrap();
        let old_root = hash(&t["old_root_hex"]);
        let root = hash(&t["new_root_hex"]);
        let want = hashes(&t["proof"]);
        let nodes = Nodes::new(size);
        assert_eq!(tree_hash(old, &nodes).unwrap(), old_root);
        assert_eq!(tree_hash(size, &nodes).unwrap(), root);
        let proof = prove_tree(size, old, &nodes).unwrap();
        assert_eq!(proof, want, "{old} -> {size}");
        check_tree(&want, size, &root, old, &old_root).unwrap();
        if !want.is_empty() {
            let mut bad = want.clone();
            let last = bad.len() - 1;
            bad[last][31] ^= 1;
            assert!(matches!(
                check_tree(&bad, size, &root, old, &old_root),
                Err(Error::InvalidProof)
            ));
        }
    }
}

#[test]
fn signed_checkpoint() {
    let v = load("checkpoint-1000.json");
    let body = v["body"].as_str().unwrap();
    let signed = v["signed_note"].as_str().unwrap();
    let skey = v["skey"].as_str().unwrap();
    let vkey = v["vkey"].as_str().unwrap();
    let name = v["key_name"].as_str().unwrap();

    let file =
        std::fs::read_to_string(testdata().join(v["signed_note_file"].as_str().unwrap())).unwrap();
    assert_eq!(file, signed);

    let signer = Signer::parse(skey).unwrap();
    assert_eq!(signer.name(), name);
    assert_eq!(signer.to_skey(), skey);
    assert_eq!(signer.verifier().to_vkey(), vkey);
    assert_eq!(sign_note(body, &signer).unwrap(), signed);

    // The seed derivation described in the vectors.
    // (Integration tests may use the library's own dependencies.)
    let seed: [u8; 32] = Sha256::digest(b"tlogverify gen seed\nc2sp conformance vectors").into();
    let from_seed = Signer::from_seed(name, seed).unwrap();
    assert_eq!(from_seed.to_skey(), skey);

    let verifier = Verifier::parse(vkey).unwrap();
    assert_eq!(verifier.to_vkey(), vkey);
    assert_eq!(verifier.name(), name);
    assert_eq!(verifier.key_id(), 0xd55b6dd2);
    assert_eq!(verifier, signer.verifier());
    assert_eq!(open_note(signed, &verifier).unwrap(), body);

    let cp = Checkpoint::parse_body(body).unwrap();
    assert_eq!(cp.origin, v["origin"].as_str().unwrap());
    assert_eq!(cp.size, v["tree_size"].as_u64().unwrap());
    assert_eq!(cp.size, 1000);
    assert_eq!(cp.body(), body);
    assert_eq!(cp.root, tree_hash(1000, &Nodes::new(1000)).unwrap());
    assert_eq!(STANDARD.encode(cp.root), v["root_base64"].as_str().unwrap());
}

/// Lists the files under `dir`, as '/'-separated paths relative to it.
fn list_files(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if e.file_type().unwrap().is_dir() {
            list_files(&e.path(), &path, out);
        } else {
            out.insert(path);
        }
    }
}

/// Builds every tile of the log of "entry i", i < size, with this crate.
fn build_tiles(size: u64) -> HashMap<String, Vec<u8>> {
    let mut by_level: Vec<Vec<Hash>> = Vec::new();
    let mut b = TreeBuilder::new();
    for i in 0..size {
        b.push(record_hash(&entry(i)), |level, index, h| {
            if let Some(t) = (level % 8 == 0).then_some((level / 8) as usize) {
                if by_level.len() <= t {
                    by_level.push(Vec::new());
                }
                assert_eq!(by_level[t].len() as u64, index);
                by_level[t].push(*h);
            }
        });
    }
    let mut files = HashMap::new();
    for tile in tiles_for_size(size) {
        let lo = tile.index * 256;
        let hi = lo + u64::from(tile.width);
        let bytes = match tile.kind {
            TileKind::Hash { level } => {
                encode_hash_tile(&by_level[level as usize][lo as usize..hi as usize])
            }
            TileKind::Entries => {
                let entries: Vec<Vec<u8>> = (lo..hi).map(entry).collect();
                encode_entry_bundle(entries.iter().map(Vec::as_slice)).unwrap()
            }
        };
        assert_eq!(Tile::parse_path(&tile.path()).unwrap(), tile);
        files.insert(tile.path(), bytes);
    }
    files
}

#[test]
fn tiles_are_byte_identical() {
    let v = load("checkpoint-1000.json");
    let dir = testdata().join("log-1000");
    let mut on_disk = BTreeSet::new();
    list_files(&dir, "", &mut on_disk);
    assert!(on_disk.remove("checkpoint"));

    let listed: BTreeSet<String> = v["tile_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, on_disk);

    let paths: Vec<String> = tiles_for_size(1000).iter().map(Tile::path).collect();
    let want: Vec<&str> = v["tile_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(paths, want);
    assert!(paths.contains(&"tile/0/003.p/232".to_string()));

    let built = build_tiles(1000);
    assert_eq!(built.keys().cloned().collect::<BTreeSet<_>>(), on_disk);
    for (path, bytes) in &built {
        let disk = std::fs::read(dir.join(path)).unwrap();
        assert!(disk == *bytes, "{path} differs");
    }
}

/// Reads tiles from a directory in the tlog-tiles layout.
struct DirReader {
    dir: PathBuf,
    overrides: HashMap<String, Option<Vec<u8>>>,
}

impl TileReader for DirReader {
    fn read_tile(&mut self, tile: &Tile) -> aiaudit_tlog::Result<Vec<u8>> {
        let path = tile.path();
        match self.overrides.get(&path) {
            Some(Some(bytes)) => return Ok(bytes.clone()),
            Some(None) => return Err(Error::Read(format!("{path}: gone").into())),
            None => {}
        }
        std::fs::read(self.dir.join(&path)).map_err(|e| Error::Read(Box::new(e)))
    }
}

fn dir_reader() -> DirReader {
    DirReader {
        dir: testdata().join("log-1000"),
        overrides: HashMap::new(),
    }
}

fn checkpoint_1000() -> Checkpoint {
    let v = load("checkpoint-1000.json");
    let verifier = Verifier::parse(v["vkey"].as_str().unwrap()).unwrap();
    let note = std::fs::read_to_string(testdata().join("log-1000/checkpoint")).unwrap();
    Checkpoint::parse_body(open_note(&note, &verifier).unwrap()).unwrap()
}

#[test]
fn audit_reference_log() {
    let cp = checkpoint_1000();
    let roots = load("roots.json");
    let root_at = |n: u64| {
        roots["trees"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["size"].as_u64() == Some(n))
            .map(|t| hash(&t["root_hex"]))
            .unwrap()
    };
    let mut progress = Vec::new();
    let r = audit_log(
        cp.size,
        &cp.root,
        &mut dir_reader(),
        Some((257, root_at(257))),
        |n| progress.push(n),
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.entries_checked, 1000);
    assert_eq!(r.tiles_checked, 9);
    assert_eq!(r.old_root_ok, Some(true));
    assert_eq!(progress, [256, 512, 768, 1000]);

    let r = audit_log(
        cp.size,
        &cp.root,
        &mut dir_reader(),
        Some((257, root_at(256))),
        |_| {},
    );
    assert!(r.problems.is_empty());
    assert_eq!(r.old_root_ok, Some(false));
}

#[test]
fn audit_detects_tampering() {
    let cp = checkpoint_1000();
    let dir = testdata().join("log-1000");

    // One flipped bit in entry 600 ("entry 600" starts 2 bytes in, after its length).
    let mut bundle = std::fs::read(dir.join("tile/entries/002")).unwrap();
    let offset = (600 - 512) * (2 + "entry 600".len()) + 2 + 6;
    assert_eq!(bundle[offset], b'6');
    bundle[offset] ^= 1;
    let mut reader = dir_reader();
    reader
        .overrides
        .insert("tile/entries/002".into(), Some(bundle));
    let r = audit_log(cp.size, &cp.root, &mut reader, None, |_| {});
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].index, 600);

    // A missing level-1 tile is a problem at its first leaf.
    let mut reader = dir_reader();
    reader.overrides.insert("tile/1/000.p/3".into(), None);
    let r = audit_log(cp.size, &cp.root, &mut reader, None, |_| {});
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].index, 0);

    // A wrong leaf hash in the partial level-0 tile.
    let mut tile = std::fs::read(dir.join("tile/0/003.p/232")).unwrap();
    tile[32 * 100] ^= 0x80;
    let mut reader = dir_reader();
    reader
        .overrides
        .insert("tile/0/003.p/232".into(), Some(tile));
    let r = audit_log(cp.size, &cp.root, &mut reader, None, |_| {});
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].index, 868);

    // A checkpoint for a different tree.
    let mut root = cp.root;
    root[5] ^= 4;
    let r = audit_log(cp.size, &root, &mut dir_reader(), None, |_| {});
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].index, 1000);
    assert_eq!(r.problems[0].what, "root mismatch");
}

// ---- witness/: tlog-cosignature, tlog-witness bodies, tlog-policy ----

fn witness_file(name: &str) -> String {
    std::fs::read_to_string(testdata().join("witness").join(name)).unwrap()
}

fn witness_signers() -> Vec<aiaudit_tlog::CosignatureSigner> {
    let v = load("witness/cosignatures-1000.json");
    v["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let seed: [u8; 32] = hex::decode(w["seed_hex"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            aiaudit_tlog::CosignatureSigner::from_seed(w["name"].as_str().unwrap(), seed).unwrap()
        })
        .collect()
}

#[test]
fn cosignature_lines_are_byte_identical() {
    let v = load("witness/cosignatures-1000.json");
    let body = v["checkpoint_body"].as_str().unwrap();
    let mut note = load("checkpoint-1000.json")["signed_note"]
        .as_str()
        .unwrap()
        .to_string();
    for (w, want) in witness_signers()
        .iter()
        .zip(v["witnesses"].as_array().unwrap())
    {
        assert_eq!(w.verifier().to_vkey(), want["vkey"].as_str().unwrap());
        let t = want["timestamp"].as_u64().unwrap();
        assert_eq!(
            aiaudit_tlog::cosigned_message(body, t),
            want["signed_message"].as_str().unwrap()
        );
        let line = w.cosign(body, t);
        assert_eq!(line, want["cosignature_line"].as_str().unwrap());
        note.push_str(&line);
    }
    assert_eq!(note, v["cosigned_note"].as_str().unwrap());
    assert_eq!(note, witness_file("checkpoint-1000.cosigned"));
    // A verifier that knows only the log key still accepts the cosigned note.
    let log = Verifier::parse(v["log_vkey"].as_str().unwrap()).unwrap();
    assert_eq!(open_note(&note, &log).unwrap(), body);
}

#[test]
fn add_checkpoint_bodies_are_byte_identical() {
    let nodes = Nodes::new(1000);
    let note = load("checkpoint-1000.json")["signed_note"]
        .as_str()
        .unwrap()
        .to_string();
    for (old, file) in [
        (0u64, "add-checkpoint-0-1000.txt"),
        (500, "add-checkpoint-500-1000.txt"),
    ] {
        let proof = if old == 0 {
            Vec::new()
        } else {
            prove_tree(1000, old, &nodes).unwrap()
        };
        let req = aiaudit_tlog::AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: note.clone(),
        };
        let want = witness_file(file);
        assert_eq!(req.format(), want);
        assert_eq!(aiaudit_tlog::AddCheckpoint::parse(&want).unwrap(), req);
    }
}

#[test]
fn the_reference_policy_accepts_two_of_three() {
    let policy = aiaudit_tlog::Policy::parse(&witness_file("policy-2of3.txt")).unwrap();
    let full = witness_file("checkpoint-1000.cosigned");
    let check = policy.verify_checkpoint(&full).unwrap();
    assert_eq!(check.checkpoint.size, 1000);
    assert_eq!(check.cosigned.len(), 3);
    // Drop two cosignature lines: one is not a quorum, and the error says who is missing.
    let lines: Vec<&str> = full.lines().collect();
    let two = format!("{}\n", lines[..lines.len() - 1].join("\n"));
    assert!(policy.verify_checkpoint(&two).is_ok());
    let one = format!("{}\n", lines[..lines.len() - 2].join("\n"));
    let err = policy.verify_checkpoint(&one).unwrap_err().to_string();
    assert!(err.contains("missing w2, w3"), "{err}");
}
