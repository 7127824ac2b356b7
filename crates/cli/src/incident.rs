//! `aiaudit incident open|list|show|ack|mitigate|resolve|review|reopen|
//! severity|breach|notified|note|pack`: incidents from the command line
//! (auditor or admin token). Every change is an event in the log.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct IncidentArgs {
    /// Base URL of the ledger.
    #[arg(
        long,
        env = "AIAUDIT_URL",
        global = true,
        default_value = "http://127.0.0.1:7381"
    )]
    url: String,
    /// An auditor or admin token.
    #[arg(long, env = "AIAUDIT_TOKEN", global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: IncidentCommand,
}

#[derive(Subcommand, Debug)]
enum IncidentCommand {
    /// Open an incident (printed as JSON).
    Open {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        title: String,
        /// critical, high, medium or low.
        #[arg(long)]
        severity: String,
        #[arg(long)]
        description: Option<String>,
        /// Related trace ids (repeatable).
        #[arg(long = "trace-id")]
        trace_ids: Vec<String>,
        /// Related conversation ids (repeatable).
        #[arg(long = "conversation-id")]
        conversation_ids: Vec<String>,
        /// Related violation ids (repeatable).
        #[arg(long = "violation-id")]
        violation_ids: Vec<String>,
        /// A personal-data breach: start the regulators' clocks now.
        #[arg(long)]
        breach: bool,
        /// When the breach became known (RFC 3339; default: now).
        #[arg(long, requires = "breach")]
        aware_at: Option<String>,
        /// Jurisdictions (ng, ke, za, eu, ...); default: the tenant's.
        #[arg(long = "jurisdiction", requires = "breach")]
        jurisdictions: Vec<String>,
        /// The breach is likely a high risk to the people concerned.
        #[arg(long, requires = "breach")]
        high_risk: bool,
    },
    /// List incidents (a table, or JSON lines with --json).
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// One incident, as JSON.
    Show { id: String },
    /// Acknowledge (stops the response clock).
    Ack {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Mark mitigated.
    Mitigate {
        id: String,
        #[arg(long)]
        note: Option<String>,
        /// Why it was never acknowledged (required when it was not).
        #[arg(long)]
        skipped_acknowledgement: Option<String>,
    },
    /// Resolve, saying how.
    Resolve {
        id: String,
        #[arg(long)]
        note: String,
        #[arg(long)]
        skipped_acknowledgement: Option<String>,
    },
    /// Reopen a mitigated, resolved or reviewed incident.
    Reopen {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Change the severity (deadlines move; logged).
    Severity {
        id: String,
        severity: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Mark a personal-data breach: the jurisdictions' clocks start.
    Breach {
        id: String,
        #[arg(long)]
        aware_at: Option<String>,
        #[arg(long = "jurisdiction")]
        jurisdictions: Vec<String>,
        #[arg(long)]
        high_risk: bool,
        /// What is known, KEY=VALUE (nature, data_subject_categories,
        /// data_subjects_approx, record_categories, records_approx,
        /// consequences, measures, dpo_contact, ...); repeatable.
        #[arg(long = "detail")]
        details: Vec<String>,
    },
    /// Record a notification (which clock, when, reference number).
    Notified {
        id: String,
        /// The clock, e.g. ng:authority.
        #[arg(long)]
        clock: String,
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        reference: Option<String>,
    },
    /// Add to a review section (impact, root_cause, actions, comment).
    Note {
        id: String,
        #[arg(long, default_value = "comment")]
        section: String,
        #[arg(long)]
        text: String,
    },
    /// Write the post-incident review; with --out, as it ends (.md or .html);
    /// `--done` also marks the incident reviewed (logged).
    Review {
        id: String,
        #[arg(long)]
        out: Option<PathBuf>,
        /// md or html (default: from --out, else md).
        #[arg(long)]
        format: Option<String>,
        /// Mark the incident reviewed after writing it.
        #[arg(long)]
        done: bool,
    },
    /// Write a regulator's notification draft.
    Pack {
        id: String,
        #[arg(long)]
        jurisdiction: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

struct Api {
    client: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl Api {
    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("{what} {}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().unwrap_or(Value::Null);
            let fields: Vec<String> = body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["path"].as_str().map(str::to_string))
                .collect();
            bail!(
                "HTTP {status}: {}{}",
                body["detail"].as_str().unwrap_or(""),
                if fields.is_empty() {
                    String::new()
                } else {
                    format!(" (field: {})", fields.join(", "))
                }
            );
        }
        Ok(resp)
    }

    fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let url = format!("{}{path}", self.base);
        self.send(self.client.get(&url).query(query), &format!("GET {path}"))
    }

    fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        Ok(self
            .send(self.client.post(&url).json(&body), &format!("POST {path}"))?
            .json()?)
    }
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn related(traces: Vec<String>, conversations: Vec<String>, violations: Vec<String>) -> Value {
    let mut m = Map::new();
    for (k, v) in [
        ("trace_ids", traces),
        ("conversation_ids", conversations),
        ("violation_ids", violations),
    ] {
        if !v.is_empty() {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

fn breach_body(
    aware_at: Option<String>,
    jurisdictions: Vec<String>,
    high_risk: bool,
    details: Vec<String>,
) -> anyhow::Result<Value> {
    let mut d = Map::new();
    for kv in details {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--detail {kv:?}: expected KEY=VALUE"))?;
        let value = v
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| json!(v));
        d.insert(k.to_string(), value);
    }
    // Only what was given: `details` alone adds to a breach already marked.
    let mut b = json!({"details": d});
    if high_risk {
        b["high_risk"] = json!(true);
    }
    if let Some(a) = aware_at {
        b["aware_at"] = json!(a);
    }
    if !jurisdictions.is_empty() {
        b["jurisdictions"] = json!(jurisdictions);
    }
    Ok(b)
}

fn write_or_print(out: Option<&PathBuf>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

pub fn run(args: IncidentArgs) -> anyhow::Result<ExitCode> {
    let api = Api {
        client: crate::blocking_client(None)?,
        base: args.url.trim_end_matches('/').to_string(),
        token: args
            .token
            .context("a token is required (--token or AIAUDIT_TOKEN)")?,
    };
    let change = |id: &str, body: Value| api.post(&format!("/v1/incidents/{id}"), body);
    match args.command {
        IncidentCommand::Open {
            tenant,
            title,
            severity,
            description,
            trace_ids,
            conversation_ids,
            violation_ids,
            breach,
            aware_at,
            jurisdictions,
            high_risk,
        } => {
            let mut body = json!({"tenant": tenant, "title": title, "severity": severity,
                                  "description": description,
                                  "related": related(trace_ids, conversation_ids, violation_ids)});
            if breach {
                body["breach"] = breach_body(aware_at, jurisdictions, high_risk, vec![])?;
            }
            print(&api.post("/v1/incidents", body)?);
        }
        IncidentCommand::List {
            tenant,
            status,
            severity,
            limit,
            json,
        } => {
            let mut q: Vec<(&str, String)> = [
                ("tenant", tenant),
                ("status", status),
                ("severity", severity),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            q.push(("limit", limit.clamp(1, 1000).to_string()));
            let body: Value = api.get("/v1/incidents", &q)?.json()?;
            let items = body["incidents"].as_array().cloned().unwrap_or_default();
            if json {
                for i in &items {
                    println!("{i}");
                }
            } else {
                eprintln!("{} of {} incidents", items.len(), body["total"]);
                println!(
                    "{:<38} {:<10} {:<9} {:<13} {:<22} TITLE",
                    "ID", "TENANT", "SEVERITY", "STATUS", "RESPOND BY"
                );
                for i in &items {
                    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
                    let late = if i["response_overdue"] == true {
                        " (overdue)"
                    } else {
                        ""
                    };
                    println!(
                        "{:<38} {:<10} {:<9} {:<13} {:<22} {}{late}",
                        s(&i["id"]),
                        s(&i["tenant"]),
                        s(&i["severity"]),
                        s(&i["status"]),
                        s(&i["respond_by"]),
                        s(&i["title"])
                    );
                }
            }
        }
        IncidentCommand::Show { id } => {
            let body: Value = api.get(&format!("/v1/incidents/{id}"), &[])?.json()?;
            print(&body);
        }
        IncidentCommand::Ack { id, note } => print(&change(
            &id,
            json!({"status": "acknowledged", "note": note}),
        )?),
        IncidentCommand::Mitigate {
            id,
            note,
            skipped_acknowledgement,
        } => print(&change(
            &id,
            json!({"status": "mitigated", "note": note, "skipped_acknowledgement": skipped_acknowledgement}),
        )?),
        IncidentCommand::Resolve {
            id,
            note,
            skipped_acknowledgement,
        } => print(&change(
            &id,
            json!({"status": "resolved", "note": note, "skipped_acknowledgement": skipped_acknowledgement}),
        )?),
        IncidentCommand::Reopen { id, note } => {
            print(&change(&id, json!({"status": "reopened", "note": note}))?)
        }
        IncidentCommand::Severity { id, severity, note } => {
            print(&change(&id, json!({"severity": severity, "note": note}))?)
        }
        IncidentCommand::Breach {
            id,
            aware_at,
            jurisdictions,
            high_risk,
            details,
        } => print(&api.post(
            &format!("/v1/incidents/{id}/breach"),
            breach_body(aware_at, jurisdictions, high_risk, details)?,
        )?),
        IncidentCommand::Notified {
            id,
            clock,
            at,
            reference,
        } => print(&api.post(
            &format!("/v1/incidents/{id}/notified"),
            json!({"clock": clock, "notified_at": at, "reference": reference}),
        )?),
        IncidentCommand::Note { id, section, text } => print(&api.post(
            &format!("/v1/incidents/{id}/notes"),
            json!({"section": section, "text": text}),
        )?),
        IncidentCommand::Review {
            id,
            out,
            format,
            done,
        } => {
            let format = match (
                format.as_deref(),
                out.as_ref()
                    .and_then(|p| p.extension())
                    .and_then(|e| e.to_str()),
            ) {
                (Some(f), _) => f.to_string(),
                (None, Some("html" | "htm")) => "html".into(),
                _ => "md".into(),
            };
            if format != "md" && format != "html" {
                bail!("--format {format:?}: md or html");
            }
            let text = api
                .get(&format!("/v1/incidents/{id}/review"), &[("format", format)])?
                .text()?;
            write_or_print(out.as_ref(), &text)?;
            if done {
                change(
                    &id,
                    json!({"status": "reviewed", "note": "post-incident review written"}),
                )?;
                eprintln!("incident {id} marked reviewed");
            }
        }
        IncidentCommand::Pack {
            id,
            jurisdiction,
            out,
        } => {
            let text = api
                .get(
                    &format!("/v1/incidents/{id}/pack"),
                    &[("jurisdiction", jurisdiction)],
                )?
                .text()?;
            write_or_print(out.as_ref(), &text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
