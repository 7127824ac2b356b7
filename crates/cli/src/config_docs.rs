//! docs/configuration.md cannot drift from the code: its table of `serve`
//! options is generated from the flags (clap) and the config file's keys,
//! every default it states is the one the ledger really applies, and every
//! environment variable the code reads is listed.
//!
//! After changing an option: `UPDATE_DOCS=1 cargo test -p aiaudit config_docs`.

use crate::serve::{merge, FileConfig, ServeArgs};
use clap::{Args, CommandFactory, Parser};
use std::collections::BTreeSet;
use std::path::PathBuf;

const BEGIN: &str =
    "<!-- serve-options:begin (generated: UPDATE_DOCS=1 cargo test -p aiaudit config_docs) -->";
const END: &str = "<!-- serve-options:end -->";

/// The config-file keys no flag sets, for docs/configuration.md: key,
/// default, meaning (the table there is generated from this and the flags).
const FILE_ONLY_KEYS: &[(&str, &str, &str)] = &[
    ("max_index_lag_events", "1000000", "Largest search index lag, in entries, before /readyz fails"),
    ("backup_keep_full", "30d", "How long full backups of the built-in schedule are kept"),
    ("backup_keep_incremental", "7d", "How long incremental backups of the built-in schedule are kept"),
    ("incidents", "", "`[incidents]` table: business hours, jurisdictions, webhooks, detections (docs/incidents.md)"),
    ("compliance", "", "`[compliance]` table: DPIA references, DPO, residency, per tenant (docs/reports.md)"),
];

/// Environment variables only tests set.
const TEST_ONLY_ENV: &[&str] = &["AIAUDIT_WRITE_VECTORS", "AIAUDIT_SPOOL_CRASH_CHILD_DIR"];

#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
}

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md")
}

/// The config file's keys, as serde lists them when refusing an unknown one.
fn file_keys() -> BTreeSet<String> {
    let err = toml::from_str::<FileConfig>("no_such_key_for_the_list = 1")
        .unwrap_err()
        .to_string();
    let list = err.split("expected one of").nth(1).expect(&err);
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// One option of `serve`: flag, environment variable, help split into
/// meaning and stated default.
struct Opt {
    id: String,
    flag: String,
    env: Option<String>,
    default: Option<String>,
    meaning: String,
}

fn serve_options() -> Vec<Opt> {
    let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let (meaning, default) = match help.split_once(" [default: ") {
            Some((m, rest)) => (
                m.to_string(),
                Some(rest[..rest.find(']').expect(&help)].to_string()),
            ),
            None => (help.clone(), None),
        };
        out.push(Opt {
            id: arg.get_id().to_string(),
            flag: format!("--{long}"),
            env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
            default,
            meaning: meaning.trim_end_matches('.').to_string(),
        });
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn code(s: &str) -> String {
    if s.is_empty() {
        "—".to_string()
    } else {
        format!("`{s}`")
    }
}

/// The table docs/configuration.md must hold between its markers.
fn generated_table() -> String {
    let keys = file_keys();
    let mut t = String::from(
        "| Flag | Environment | Config file key | Default | Meaning |\n|---|---|---|---|---|\n",
    );
    for o in serve_options() {
        let key = if keys.contains(&o.id) {
            o.id.as_str()
        } else {
            ""
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            code(&o.flag),
            code(o.env.as_deref().unwrap_or("")),
            code(key),
            code(o.default.as_deref().unwrap_or("")),
            cell(&o.meaning)
        ));
    }
    for (key, default, meaning) in FILE_ONLY_KEYS {
        t.push_str(&format!(
            "| — | — | {} | {} | {} |\n",
            code(key),
            code(default),
            cell(meaning)
        ));
    }
    t
}

#[test]
fn the_serve_table_is_generated_from_the_code() {
    let path = doc_path();
    let doc = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = doc
        .split_once(BEGIN)
        .expect("docs/configuration.md lacks the begin marker");
    let (current, tail) = rest
        .split_once(END)
        .expect("docs/configuration.md lacks the end marker");
    let want = format!("\n{}", generated_table());
    if current != want {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{head}{BEGIN}{want}{END}{tail}")).unwrap();
        } else {
            panic!("docs/configuration.md's table of serve options is out of date: run UPDATE_DOCS=1 cargo test -p aiaudit config_docs");
        }
    }
}

#[test]
fn every_config_file_key_is_a_flag_or_documented_as_file_only() {
    let flags: BTreeSet<String> = serve_options().into_iter().map(|o| o.id).collect();
    for key in file_keys() {
        assert!(
            flags.contains(&key) || FILE_ONLY_KEYS.iter().any(|(k, _, _)| *k == key),
            "config key {key} has no flag and is not in FILE_ONLY_KEYS"
        );
    }
    for (key, _, _) in FILE_ONLY_KEYS {
        assert!(
            file_keys().contains(*key),
            "FILE_ONLY_KEYS lists {key}, which the config file no longer takes"
        );
    }
}

/// A stated default is what the ledger applies: giving it explicitly
/// changes nothing. (Defaults stated in words are exempt.)
#[test]
fn every_stated_default_is_the_real_one() {
    let baseline = |extra: &[&str]| {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(extra);
        let parsed = Serve::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let (config, log_format) = merge(parsed.args).unwrap_or_else(|e| panic!("{argv:?}: {e:#}"));
        format!("{config:?} {log_format}")
    };
    let plain = baseline(&[]);
    let mut checked = 0;
    for o in serve_options() {
        let Some(default) = &o.default else { continue };
        // "1/16 of memory, 32..64 MiB", "16 MiB": words, not a value.
        let value = default.split_whitespace().next().unwrap();
        if o.id == "max_inflight_bytes" {
            continue;
        }
        // No origin keeps the data directory's; the default names a new log.
        if o.id == "origin" {
            assert_eq!(value, aiaudit_ledger::config::DEFAULT_ORIGIN);
            checked += 1;
            continue;
        }
        let value = if o.id == "max_event_bytes" {
            "16777216"
        } else {
            value
        };
        assert_eq!(
            baseline(&[o.flag.as_str(), value]),
            plain,
            "{} states [default: {default}], which is not what the ledger applies",
            o.flag
        );
        checked += 1;
    }
    for (key, default, _) in FILE_ONLY_KEYS.iter().filter(|(_, d, _)| !d.is_empty()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let value = if default.chars().all(|c| c.is_ascii_digit()) {
            default.to_string()
        } else {
            format!("{default:?}")
        };
        std::fs::write(&file, format!("{key} = {value}\n")).unwrap();
        assert_eq!(
            baseline(&["--config", file.to_str().unwrap()]),
            plain,
            "{key} states default {default}, which is not what the ledger applies"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} defaults checked");
}

/// The `AIAUDIT_*` names a text mentions after `quote` (`"` in code, a
/// backtick in markdown); a bare prefix (`AIAUDIT_*`) is not a name.
fn aiaudit_names(text: &str, quote: char) -> Vec<String> {
    text.match_indices(&format!("{quote}AIAUDIT_"))
        .map(|(at, _)| {
            text[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.ends_with('_'))
        .collect()
}

/// Every `AIAUDIT_*` variable: read through a flag of any command or by
/// the code directly.
fn env_vars_in_code() -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut stack = vec![crate::Cli::command()];
    while let Some(cmd) = stack.pop() {
        for arg in cmd.get_arguments() {
            if let Some(e) = arg.get_env() {
                vars.insert(e.to_string_lossy().into_owned());
            }
        }
        stack.extend(cmd.get_subcommands().cloned());
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                vars.extend(aiaudit_names(&text, '"'));
            }
        }
    }
    for t in TEST_ONLY_ENV {
        vars.remove(*t);
    }
    vars
}

#[test]
fn every_environment_variable_is_documented_and_no_other() {
    let doc = std::fs::read_to_string(doc_path()).unwrap();
    let in_code = env_vars_in_code();
    for v in &in_code {
        assert!(
            doc.contains(&format!("`{v}`")),
            "docs/configuration.md does not document {v}"
        );
    }
    let documented: BTreeSet<String> = aiaudit_names(&doc, '`').into_iter().collect();
    let stale: Vec<_> = documented.difference(&in_code).collect();
    assert!(
        stale.is_empty(),
        "docs/configuration.md documents variables no code reads: {stale:?}"
    );
}
