//! `aiaudit query` (search a running ledger) and `aiaudit reindex` (rebuild
//! the search index of a stopped ledger from its log alone).

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// The search filters, shared with `aiaudit export`.
#[derive(Args, Debug, Clone, Default)]
pub struct Filters {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub actor: Option<String>,
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    /// success, failure or denied.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Risk level (minimal … unacceptable).
    #[arg(long)]
    pub risk: Option<String>,
    #[arg(long)]
    pub trace_id: Option<String>,
    #[arg(long)]
    pub conversation_id: Option<String>,
    /// The emitting system (`source.name`).
    #[arg(long)]
    pub source: Option<String>,
    /// The data subject (as stored: its HMAC when the field is sensitive).
    #[arg(long)]
    pub subject: Option<String>,
    /// Event time from (RFC 3339, inclusive).
    #[arg(long)]
    pub from: Option<String>,
    /// Event time to (RFC 3339, exclusive).
    #[arg(long)]
    pub to: Option<String>,
}

impl Filters {
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("tenant", &self.tenant),
            ("actor", &self.actor),
            ("action", &self.action),
            ("model", &self.model),
            ("provider", &self.provider),
            ("outcome", &self.outcome),
            ("risk", &self.risk),
            ("trace_id", &self.trace_id),
            ("conversation_id", &self.conversation_id),
            ("source", &self.source),
            ("subject", &self.subject),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Base URL of the ledger.
    #[arg(long, env = "AIAUDIT_URL", default_value = "http://127.0.0.1:7381")]
    url: String,
    /// An auditor or admin token.
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: String,
    #[command(flatten)]
    filters: Filters,
    /// Most events to print (all pages are followed up to it).
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// asc (oldest first) or desc (newest first).
    #[arg(long, default_value = "desc")]
    order: String,
    /// Start after this cursor (printed at the end of a previous query).
    #[arg(long)]
    cursor: Option<String>,
    /// JSON lines (one event per line) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Columns as wide as their widest value (the index right-aligned), two
/// spaces apart; the id, last, unpadded.
fn print_table(rows: &[[String; 8]]) {
    let header = [
        "INDEX", "TIME", "TENANT", "ACTOR", "ACTION", "MODEL", "OUTCOME", "ID",
    ];
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, v) in width.iter_mut().zip(r) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |cells: [&str; 8]| {
        let mut out = format!("{:>w$}", cells[0], w = width[0]);
        for (i, c) in cells.iter().enumerate().skip(1).take(6) {
            out.push_str(&format!("  {:<w$}", c, w = width[i]));
        }
        out.push_str("  ");
        out.push_str(cells[7]);
        println!("{out}");
    };
    line(header);
    for r in rows {
        line(std::array::from_fn(|i| r[i].as_str()));
    }
}

pub fn run_query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let client = crate::blocking_client(None)?;
    let base = args.url.trim_end_matches('/');
    let mut cursor = args.cursor.clone();
    let mut printed = 0u64;
    // The table is printed once every page has arrived, so an error prints
    // no header and each column is as wide as its widest value.
    let mut rows: Vec<[String; 8]> = Vec::new();
    loop {
        let page_size = (args.limit - printed).min(1000);
        let mut params = args.filters.pairs();
        params.push(("limit", page_size.to_string()));
        params.push(("order", args.order.clone()));
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let body = events_page(&client, base, &args.token, &params)?;
        for e in body["events"].as_array().into_iter().flatten() {
            if args.json {
                println!("{e}");
            } else {
                let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
                rows.push([
                    e["index"].to_string(),
                    s("time"),
                    s("tenant"),
                    s("actor"),
                    s("action"),
                    s("model"),
                    s("outcome"),
                    s("id"),
                ]);
            }
            printed += 1;
        }
        cursor = body["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() || printed >= args.limit {
            break;
        }
    }
    if !args.json {
        print_table(&rows);
    }
    if let (Some(c), false) = (&cursor, args.json) {
        eprintln!("more results: --cursor {c}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ReindexArgs {
    /// The data directory of a stopped ledger.
    #[arg(long)]
    data_dir: PathBuf,
}

/// Deletes the search index and rebuilds it from the log alone.
pub fn run_reindex(args: ReindexArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = aiaudit_store::FsStore::open(&args.data_dir)
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    use aiaudit_store::Storage;
    let size = store.size();
    let path = args.data_dir.join(aiaudit_index::INDEX_FILE);
    aiaudit_ledger::search::remove_index_files(&path)?;
    let index = aiaudit_index::SearchIndex::open(&path)?;
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "indexing {bar:40} {pos}/{len} entries ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut at = 0;
    while at < size {
        let n = (size - at).min(16_384);
        let bundle = store.read_entry_bundle(at, n)?;
        let entries = aiaudit_tlog::decode_entry_bundle(&bundle)
            .with_context(|| format!("entries {at}..{}", at + n))?;
        index.add(at, &entries)?;
        at += n;
        bar.set_position(at);
    }
    bar.finish_and_clear();
    eprintln!(
        "indexed {size} entries in {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Base URL of the ledger.
    #[arg(long, env = "AIAUDIT_URL", default_value = "http://127.0.0.1:7381")]
    url: String,
    /// An auditor or admin token.
    #[arg(long, env = "AIAUDIT_TOKEN")]
    token: String,
    #[command(flatten)]
    filters: Filters,
    /// Where to write the bundle (.tar.gz).
    #[arg(long)]
    out: PathBuf,
}

/// Downloads an export bundle, checks it before keeping it, and writes it.
pub fn run_export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let client = crate::blocking_client(None)?;
    let base = args.url.trim_end_matches('/');
    let resp = client
        .get(format!("{base}/v1/export"))
        .bearer_auth(&args.token)
        .query(&args.filters.pairs())
        .send()
        .with_context(|| format!("GET {base}/v1/export"))?;
    let status = resp.status();
    if !status.is_success() {
        let body: Value = resp.json().unwrap_or(Value::Null);
        bail!("HTTP {status}: {}", body["detail"].as_str().unwrap_or(""));
    }
    let bytes = resp.bytes().context("downloading the bundle")?;
    // Never hand on a bundle that does not verify (the key is the one inside:
    // the recipient checks it against a key they trust).
    let report = aiaudit_bundle::verify_bundle(&bytes[..], None)
        .map_err(|e| anyhow::anyhow!("the ledger sent a bundle that does not verify: {e}"))?;
    let tmp = args.out.with_extension("partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &args.out)?;
    eprintln!(
        "wrote {} ({} events, proofs against checkpoint size {}, log {}); check it with: aiaudit verify --bundle {} --vkey <trusted key>",
        args.out.display(),
        report.events,
        report.checkpoint_size,
        report.origin,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// One page of `GET /v1/events` with these parameters.
pub fn events_page(
    client: &reqwest::blocking::Client,
    base: &str,
    token: &str,
    params: &[(&str, String)],
) -> anyhow::Result<Value> {
    let resp = client
        .get(format!("{base}/v1/events"))
        .bearer_auth(token)
        .query(params)
        .send()
        .with_context(|| format!("GET {base}/v1/events"))?;
    let status = resp.status();
    let body: Value = resp.json().unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("HTTP {status}: {}", body["detail"].as_str().unwrap_or(""));
    }
    Ok(body)
}
