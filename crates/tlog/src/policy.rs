//! C2SP tlog-policy files: which log keys and witnesses a client trusts,
//! and which witnesses must have cosigned a checkpoint (the quorum).
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> <k|any|all> <member>...
//! quorum <name|none>
//! ```
//!
//! Blank lines and `#` comments are ignored. Witness and group names share
//! one namespace; a group's members must be defined before it; exactly one
//! `quorum` line. A log's `witness` URLs are the witnesses' submission
//! prefixes, so the same file configures the log and its clients.

use std::collections::{BTreeMap, BTreeSet};

use crate::checkpoint::Checkpoint;
use crate::cosignature::CosignatureVerifier;
use crate::hash::{Error, Result};
use crate::note::{split_note, Verifier};

/// A witness a policy names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    /// The policy's short name for it (the `witness <name>` field).
    pub name: String,
    /// Its cosignature key.
    pub verifier: CosignatureVerifier,
    /// Its submission prefix, when given.
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

/// A parsed tlog-policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<(Verifier, Option<String>)>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Option<Member>,
}

/// What [`Policy::verify_checkpoint`] found in a checkpoint that passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyCheck {
    /// The checkpoint body, parsed.
    pub checkpoint: Checkpoint,
    /// The name of the log key that signed it.
    pub log: String,
    /// The policy's witnesses that validly cosigned it, by policy name,
    /// with the time each cosigned (seconds since the Unix epoch).
    pub cosigned: BTreeMap<String, u64>,
}

fn bad(line: usize, detail: impl std::fmt::Display) -> Error {
    Error::Malformed {
        what: "tlog-policy",
        detail: format!("line {line}: {detail}"),
    }
}

impl Policy {
    /// Parses a policy file.
    ///
    /// Errors: [`Error::Malformed`] with what = "tlog-policy" and the line.
    pub fn parse(text: &str) -> Result<Policy> {
        let mut logs: Vec<(Verifier, Option<String>)> = Vec::new();
        let mut witnesses: Vec<PolicyWitness> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut names: BTreeMap<String, Member> = BTreeMap::new();
        let mut quorum: Option<Option<Member>> = None;
        for (n, raw) in text.lines().enumerate() {
            let n = n + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let url = |f: Option<&&str>| -> Result<Option<String>> {
                match f {
                    None => Ok(None),
                    Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                        Ok(Some(u.trim_end_matches('/').to_string()))
                    }
                    Some(u) => Err(bad(n, format!("{u:?} is not an http(s) URL"))),
                }
            };
            match fields[0] {
                "log" => {
                    if !(2..=3).contains(&fields.len()) {
                        return Err(bad(n, "expected: log <vkey> [<url>]"));
                    }
                    let v = Verifier::parse(fields[1]).map_err(|e| bad(n, e))?;
                    if logs.iter().any(|(l, _)| *l == v) {
                        return Err(bad(n, "duplicate log key"));
                    }
                    logs.push((v, url(fields.get(2))?));
                }
                "witness" => {
                    if !(3..=4).contains(&fields.len()) {
                        return Err(bad(n, "expected: witness <name> <vkey> [<url>]"));
                    }
                    let name = fields[1];
                    if names.contains_key(name) || name == "none" {
                        return Err(bad(n, format!("name {name:?} is already defined")));
                    }
                    let verifier = CosignatureVerifier::parse(fields[2]).map_err(|e| bad(n, e))?;
                    names.insert(name.to_string(), Member::Witness(witnesses.len()));
                    witnesses.push(PolicyWitness {
                        name: name.to_string(),
                        verifier,
                        url: url(fields.get(3))?,
                    });
                }
                "group" => {
                    if fields.len() < 4 {
                        return Err(bad(n, "expected: group <name> <k|any|all> <member>..."));
                    }
                    let name = fields[1];
                    if names.contains_key(name) || name == "none" {
                        return Err(bad(n, format!("name {name:?} is already defined")));
                    }
                    let mut members = Vec::new();
                    let mut seen = BTreeSet::new();
                    for m in &fields[3..] {
                        let member = names
                            .get(*m)
                            .ok_or_else(|| bad(n, format!("{m:?} is not defined above")))?;
                        if !seen.insert(*m) {
                            return Err(bad(n, format!("{m:?} is listed twice")));
                        }
                        members.push(member.clone());
                    }
                    let threshold = match fields[2] {
                        "any" => 1,
                        "all" => members.len(),
                        k => match k.parse::<usize>() {
                            Ok(k) if (1..=members.len()).contains(&k) => k,
                            _ => {
                                return Err(bad(
                                    n,
                                    format!(
                                        "threshold {k:?} is not any, all or 1..={}",
                                        members.len()
                                    ),
                                ))
                            }
                        },
                    };
                    names.insert(name.to_string(), Member::Group(groups.len()));
                    groups.push(Group {
                        name: name.to_string(),
                        threshold,
                        members,
                    });
                }
                "quorum" => {
                    if fields.len() != 2 {
                        return Err(bad(n, "expected: quorum <name|none>"));
                    }
                    if quorum.is_some() {
                        return Err(bad(n, "a second quorum line"));
                    }
                    quorum = Some(match fields[1] {
                        "none" => None,
                        q => Some(
                            names
                                .get(q)
                                .cloned()
                                .ok_or_else(|| bad(n, format!("{q:?} is not defined above")))?,
                        ),
                    });
                }
                other => return Err(bad(n, format!("unknown keyword {other:?}"))),
            }
        }
        let quorum = quorum.ok_or_else(|| bad(0, "no quorum line"))?;
        Ok(Policy {
            logs,
            witnesses,
            groups,
            quorum,
        })
    }

    /// The log keys the policy trusts.
    pub fn logs(&self) -> impl Iterator<Item = &Verifier> {
        self.logs.iter().map(|(v, _)| v)
    }

    /// The witnesses the policy names.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Whether the quorum is `none` (no cosignature needed).
    pub fn needs_no_witness(&self) -> bool {
        self.quorum.is_none()
    }

    fn satisfied(&self, m: &Member, cosigned: &BTreeSet<usize>) -> bool {
        match m {
            Member::Witness(i) => cosigned.contains(i),
            Member::Group(g) => {
                let g = &self.groups[*g];
                g.members
                    .iter()
                    .filter(|m| self.satisfied(m, cosigned))
                    .count()
                    >= g.threshold
            }
        }
    }

    fn collect(&self, m: &Member, out: &mut BTreeSet<usize>) {
        match m {
            Member::Witness(i) => {
                out.insert(*i);
            }
            Member::Group(g) => {
                for m in &self.groups[*g].members {
                    self.collect(m, out);
                }
            }
        }
    }

    /// Whether the witnesses named (policy names) satisfy the quorum.
    pub fn quorum_met<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> bool {
        let names: BTreeSet<&str> = names.into_iter().collect();
        let set = self
            .witnesses
            .iter()
            .enumerate()
            .filter(|(_, w)| names.contains(w.name.as_str()))
            .map(|(i, _)| i)
            .collect();
        self.quorum.as_ref().is_none_or(|q| self.satisfied(q, &set))
    }

    /// The policy witnesses whose valid cosignature `note` carries over
    /// `body`, with their timestamps. Other lines are ignored.
    pub fn cosigners(&self, body: &str, note: &str) -> BTreeMap<String, u64> {
        let Ok((_, sigs)) = split_note(note) else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for w in &self.witnesses {
            if let Some(t) = sigs.iter().find_map(|s| w.verifier.verify(body, s)) {
                out.insert(w.name.clone(), t);
            }
        }
        out
    }

    /// Checks a checkpoint note: signed by one of the policy's log keys
    /// (whose name must be the checkpoint's origin), and cosigned by enough
    /// of its witnesses to satisfy the quorum. Unknown signatures are ignored.
    ///
    /// Errors: [`Error::Malformed`] for a bad note or body,
    /// [`Error::BadSignature`] when no trusted log key signed it, and
    /// [`Error::Quorum`] naming the witnesses whose cosignature is missing.
    pub fn verify_checkpoint(&self, note: &str) -> Result<PolicyCheck> {
        let mut log = None;
        let mut last_err = Error::BadSignature("the policy lists no log key".into());
        for (v, _) in &self.logs {
            match crate::note::open_note(note, v) {
                Ok(_) => {
                    log = Some(v);
                    break;
                }
                Err(e @ Error::Malformed { .. }) => return Err(e),
                Err(e) => last_err = e,
            }
        }
        let Some(log) = log else {
            return Err(Error::BadSignature(format!(
                "no signature by a log key of the policy ({last_err})"
            )));
        };
        let (body, _) = split_note(note)?;
        let checkpoint = Checkpoint::parse_body(body)?;
        if checkpoint.origin != log.name() {
            return Err(Error::BadSignature(format!(
                "checkpoint origin {:?} is not the name of its log key {:?}",
                checkpoint.origin,
                log.name()
            )));
        }
        let cosigned = self.cosigners(body, note);
        if let Some(q) = &self.quorum {
            let set: BTreeSet<usize> = self
                .witnesses
                .iter()
                .enumerate()
                .filter(|(_, w)| cosigned.contains_key(&w.name))
                .map(|(i, _)| i)
                .collect();
            if !self.satisfied(q, &set) {
                let mut wanted = BTreeSet::new();
                self.collect(q, &mut wanted);
                let missing: Vec<&str> = wanted
                    .iter()
                    .filter(|i| !set.contains(i))
                    .map(|i| self.witnesses[*i].name.as_str())
                    .collect();
                let name = match q {
                    Member::Witness(i) => &self.witnesses[*i].name,
                    Member::Group(g) => &self.groups[*g].name,
                };
                let have: Vec<&str> = cosigned.keys().map(String::as_str).collect();
                return Err(Error::Quorum(format!(
                    "checkpoint of size {} is not cosigned by the quorum {name:?}: missing {}; cosigned by {}",
                    checkpoint.size,
                    missing.join(", "),
                    if have.is_empty() { "none".to_string() } else { have.join(", ") },
                )));
            }
        }
        Ok(PolicyCheck {
            checkpoint,
            log: log.name().to_string(),
            cosigned,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::CosignatureSigner;
    use crate::note::{sign_note, Signer};

    fn setup() -> (Signer, Vec<CosignatureSigner>, String) {
        let log = Signer::from_seed("example.test/log", [1; 32]).unwrap();
        let ws: Vec<_> = (0..3u8)
            .map(|i| CosignatureSigner::from_seed(&format!("w.example/{i}"), [10 + i; 32]).unwrap())
            .collect();
        let mut text = format!("# test\nlog {}\n", log.verifier().to_vkey());
        for (i, w) in ws.iter().enumerate() {
            text.push_str(&format!(
                "witness w{i} {} https://w{i}.example/\n",
                w.verifier().to_vkey()
            ));
        }
        text.push_str("group two 2 w0 w1 w2\ngroup both all two w0\nquorum both\n");
        (log, ws, text)
    }

    #[test]
    fn the_quorum_decides_and_the_error_names_the_missing() {
        let (log, ws, text) = setup();
        let policy = Policy::parse(&text).unwrap();
        assert_eq!(
            policy.witnesses()[0].url.as_deref(),
            Some("https://w0.example")
        );
        let body = "example.test/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let note = sign_note(body, &log).unwrap();
        let with = |idx: &[usize]| {
            let mut n = note.clone();
            for i in idx {
                n.push_str(&ws[*i].cosign(body, 1000 + *i as u64));
            }
            n
        };
        // Needs w0 and two of three.
        let ok = policy.verify_checkpoint(&with(&[0, 2])).unwrap();
        assert_eq!(ok.cosigned.len(), 2);
        assert_eq!(ok.cosigned["w2"], 1002);
        let err = policy
            .verify_checkpoint(&with(&[1, 2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing w0"), "{err}");
        let err = policy
            .verify_checkpoint(&with(&[0]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing w1, w2"), "{err}");
        assert!(policy.verify_checkpoint(&note).is_err());
        // A cosignature over another body does not count.
        let mut forged = note.clone();
        forged.push_str(&ws[1].cosign(&body.replace('3', "4"), 5));
        forged.push_str(&ws[0].cosign(body, 5));
        assert!(policy.verify_checkpoint(&forged).is_err());
        // Another log's key is refused.
        let other = Signer::from_seed("example.test/log", [2; 32]).unwrap();
        let mut n = sign_note(body, &other).unwrap();
        n.push_str(&ws[0].cosign(body, 1));
        n.push_str(&ws[1].cosign(body, 1));
        assert!(matches!(
            policy.verify_checkpoint(&n),
            Err(Error::BadSignature(_))
        ));
        assert!(policy.quorum_met(["w0", "w1"]));
        assert!(!policy.quorum_met(["w1", "w2"]));
    }

    #[test]
    fn bad_policies_are_refused_with_their_line() {
        let (_, _, text) = setup();
        for (edit, want) in [
            (text.replace("quorum both\n", ""), "no quorum"),
            (format!("{text}quorum none\n"), "second quorum"),
            (text.replace("group two 2", "group two 4"), "threshold"),
            (text.replace("group two 2", "group two 0"), "threshold"),
            (text.replace("w0 w1 w2", "w0 w1 w9"), "not defined"),
            (text.replace("w0 w1 w2", "w0 w0 w2"), "twice"),
            (text.replace("witness w1", "witness w0"), "already defined"),
            (format!("{text}frob x\n"), "unknown keyword"),
            (text.replace("https://w0.example/", "ftp://x"), "URL"),
        ] {
            let err = Policy::parse(&edit).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        assert!(Policy::parse("quorum none\n").unwrap().needs_no_witness());
    }
}
