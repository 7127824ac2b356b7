//! The post-incident review, written from the folded incident.
//!
//! Everything in it comes from the log: the incident's own events, the
//! events and policy violations it names, and the signed checkpoint with
//! inclusion proofs, so a reader can check each line against the log
//! offline. Both renderings (Markdown and one HTML page) are built from
//! the same list of blocks, so they cannot say different things.

use crate::breach::Clock;
use crate::time_fmt::{parse, rfc3339};
use crate::{Breach, Incident, Notified};
use serde_json::Value;
use std::collections::BTreeSet;

pub struct ReviewInput<'a> {
    pub incident: &'a Incident,
    /// Milliseconds since the epoch: when the review is written.
    pub now: u64,
    pub log_origin: &'a str,
    /// The signed checkpoint (C2SP signed note text) that covers every event below.
    pub checkpoint_note: &'a str,
    /// Inclusion proofs of the incident's own events in that checkpoint:
    /// `{index, leaf_hash (hex), proof: [hex...]}`.
    pub proofs: &'a [Value],
    /// Events related by trace / conversation id or index (summaries:
    /// `{index, time, action, actor, outcome, trace_id, conversation_id, ...}`).
    pub related_events: &'a [Value],
    /// Policy violations named in `incident.related.violation_ids` (their
    /// JSON records: id, rule, severity, status, time, ...).
    pub violations: &'a [Value],
}

/// The review as Markdown.
pub fn markdown(input: &ReviewInput) -> String {
    let mut out = String::new();
    for b in blocks(input) {
        b.markdown(&mut out);
    }
    out
}

/// The review as one self-contained HTML page: no scripts (and a policy
/// forbidding them), inline CSS, every value escaped.
pub fn html(input: &ReviewInput) -> String {
    let i = input.incident;
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>Post-incident review: {}</title><style>{CSS}</style></head><body>\n",
        escape_html(&i.title)
    );
    for b in blocks(input) {
        b.html(&mut out);
    }
    out.push_str("</body></html>\n");
    out
}

// ---- the document -----------------------------------------------------------

enum Inline {
    Text(String),
    Code(String),
    Strong(String),
    Em(Vec<Inline>),
}

enum Block {
    Heading(u8, String),
    Para(Vec<Inline>),
    List(Vec<Vec<Inline>>),
    Table(&'static [&'static str], Vec<Vec<String>>),
    Code(String),
}

fn t(s: impl Into<String>) -> Inline {
    Inline::Text(s.into())
}

fn para(s: impl Into<String>) -> Block {
    Block::Para(vec![t(s)])
}

/// A label in bold, then plain text.
fn item(label: &str, value: impl Into<String>) -> Vec<Inline> {
    vec![
        Inline::Strong(format!("{label}:")),
        t(format!(" {}", value.into())),
    ]
}

fn table(out: &mut Vec<Block>, head: &'static [&'static str], rows: Vec<Vec<String>>, empty: &str) {
    if rows.is_empty() {
        out.push(para(empty));
    } else {
        out.push(Block::Table(head, rows));
    }
}

impl Block {
    fn markdown(&self, out: &mut String) {
        match self {
            Block::Heading(level, s) => {
                out.push_str(&format!(
                    "{} {}\n\n",
                    "#".repeat(*level as usize),
                    md_escape(s)
                ));
            }
            Block::Para(inlines) => {
                out.push_str(&md_inlines(inlines));
                out.push_str("\n\n");
            }
            Block::List(items) => {
                for it in items {
                    out.push_str(&format!("- {}\n", md_inlines(it)));
                }
                out.push('\n');
            }
            Block::Table(head, rows) => {
                out.push_str(&format!(
                    "| {} |\n|{}\n",
                    head.join(" | "),
                    "---|".repeat(head.len())
                ));
                for row in rows {
                    let cells: Vec<String> = row.iter().map(|c| md_escape(c)).collect();
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
                out.push('\n');
            }
            Block::Code(s) => out.push_str(&md_code_block(s)),
        }
    }

    fn html(&self, out: &mut String) {
        match self {
            Block::Heading(level, s) => {
                out.push_str(&format!("<h{level}>{}</h{level}>\n", html_text(s)));
            }
            Block::Para(inlines) => out.push_str(&format!("<p>{}</p>\n", html_inlines(inlines))),
            Block::List(items) => {
                out.push_str("<ul>");
                for it in items {
                    out.push_str(&format!("<li>{}</li>", html_inlines(it)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table(head, rows) => {
                out.push_str("<table><thead><tr>");
                for h in head.iter() {
                    out.push_str(&format!("<th>{}</th>", escape_html(h)));
                }
                out.push_str("</tr></thead><tbody>");
                for row in rows {
                    out.push_str("<tr>");
                    for c in row {
                        out.push_str(&format!("<td>{}</td>", html_text(c)));
                    }
                    out.push_str("</tr>");
                }
                out.push_str("</tbody></table>\n");
            }
            Block::Code(s) => {
                out.push_str(&format!("<pre><code>{}</code></pre>\n", escape_html(s)))
            }
        }
    }
}

const CSS: &str = "\
    body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
    color:#222}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
    table{border-collapse:collapse;margin:.5em 0;width:100%}td,th{border:1px solid #ddd;\
    padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
    th{background:#f4f4f4}pre{background:#f8f8f8;padding:.5em;overflow-x:auto;\
    white-space:pre-wrap;word-break:break-all}";

// ---- escaping -----------------------------------------------------------------

/// Markdown text shown as written: markup characters (and `|`, so it is
/// safe in table cells) backslash-escaped, HTML characters as entities,
/// line breaks as `<br>` so a value stays on its line or in its cell.
pub(crate) fn md_escape(s: &str) -> String {
    // A leading list marker ("- ", "+ ", "1. ") would make the value a list.
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let marker = match s.as_bytes().get(digits) {
        Some(b'-' | b'+') if digits == 0 => Some(0),
        Some(b'.' | b')') if digits > 0 => Some(digits),
        _ => None,
    };
    let mut out = String::with_capacity(s.len());
    for (at, c) in s.char_indices() {
        if Some(at) == marker {
            out.push('\\');
        }
        match c {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("<br>"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// An inline code span whose fence no content can close.
pub(crate) fn md_code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    let fence = "`".repeat(longest_backtick_run(&s) + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A fenced block whose fence is longer than any backtick run inside.
pub(crate) fn md_code_block(s: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(s).max(2) + 1);
    format!("{fence}\n{}\n{fence}\n\n", s.trim_end_matches('\n'))
}

fn md_inlines(inlines: &[Inline]) -> String {
    inlines
        .iter()
        .map(|i| match i {
            Inline::Text(s) => md_escape(s),
            Inline::Code(s) => md_code(s),
            Inline::Strong(s) => format!("**{}**", md_escape(s)),
            Inline::Em(inner) => format!("_{}_", md_inlines(inner)),
        })
        .collect()
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text whose line breaks stay visible.
fn html_text(s: &str) -> String {
    escape_html(s).replace('\n', "<br>")
}

fn html_inlines(inlines: &[Inline]) -> String {
    inlines
        .iter()
        .map(|i| match i {
            Inline::Text(s) => html_text(s),
            Inline::Code(s) => format!("<code>{}</code>", escape_html(s)),
            Inline::Strong(s) => format!("<strong>{}</strong>", html_text(s)),
            Inline::Em(inner) => format!("<em>{}</em>", html_inlines(inner)),
        })
        .collect()
}

// ---- values -------------------------------------------------------------------

/// A duration for people: the two largest units, e.g. "4 min 10 s", "2 h 5 min".
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    if s == 0 {
        return if ms == 0 {
            "0 s".into()
        } else {
            "under 1 s".into()
        };
    }
    let units = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
    let first = units.iter().position(|(n, _)| s >= *n).unwrap_or(3);
    let (n, name) = units[first];
    let mut out = format!("{} {name}", s / n);
    if let Some((m, small)) = units.get(first + 1) {
        let rest = (s % n) / m;
        if rest > 0 {
            out.push_str(&format!(" {rest} {small}"));
        }
    }
    out
}

/// A JSON value as one line of text (strings without quotes).
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(", "),
        Value::Object(m) => {
            let pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}: {}", value_text(v)))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }
        v => v.to_string(),
    }
}

fn field<'v>(v: &'v Value, keys: &[&str]) -> Option<&'v Value> {
    keys.iter()
        .map(|k| &v[*k])
        .find(|x| !x.is_null() && x.as_str() != Some(""))
}

fn text_of(v: &Value, keys: &[&str]) -> String {
    field(v, keys).map(value_text).unwrap_or_default()
}

fn index_text(v: &Value) -> String {
    v["index"]
        .as_u64()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// The attributes of a logged step beyond its time, action, actor and index:
/// note and reason first, the rest by name.
fn attributes_text(step: &Value) -> String {
    const SHOWN: &[&str] = &["action", "time", "by", "event_id", "index", "incident_id"];
    const FIRST: &[&str] = &["note", "reason", "skipped_acknowledgement"];
    let Some(m) = step.as_object() else {
        return String::new();
    };
    let rank = |k: &str| FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len());
    let mut keys: Vec<&String> = m.keys().filter(|k| !SHOWN.contains(&k.as_str())).collect();
    keys.sort_by_key(|k| (rank(k), k.as_str()));
    keys.into_iter()
        .filter(|k| !is_empty(&m[k.as_str()]))
        .map(|k| {
            let v = &m[k.as_str()];
            // A breach's clocks are shown in full under Breach: here, their keys.
            let text = match (k.as_str(), v) {
                ("clocks", Value::Array(a)) => a
                    .iter()
                    .map(|c| value_text(&c["key"]))
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => value_text(v),
            };
            format!("{k}: {text}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---- breach clocks (shared with the pack) ----------------------------------------

pub(crate) enum ClockState<'a> {
    /// Notified; `late_by` when after the deadline.
    Notified {
        n: &'a Notified,
        late_by: Option<u64>,
    },
    /// Deadline passed, nobody notified.
    Overdue(u64),
    /// Time left before the deadline.
    Pending(u64),
    /// No figure in the law and nobody notified yet.
    NoDeadline,
}

pub(crate) fn clock_state<'a>(b: &'a Breach, c: &Clock, now: u64) -> ClockState<'a> {
    let deadline = c.deadline.as_deref().and_then(parse);
    match (b.notified(&c.key), deadline) {
        (Some(n), d) => ClockState::Notified {
            n,
            late_by: d.filter(|d| n.at > *d).map(|d| n.at - d),
        },
        (None, Some(d)) if now > d => ClockState::Overdue(now - d),
        (None, Some(d)) => ClockState::Pending(d - now),
        (None, None) => ClockState::NoDeadline,
    }
}

pub(crate) fn deadline_text(c: &Clock) -> String {
    match &c.deadline {
        Some(d) => format!("deadline {d}"),
        None => "as soon as reasonably possible".into(),
    }
}

/// One clock in a line: whom, under which provision, by when, and how it stands.
pub(crate) fn clock_line(b: &Breach, c: &Clock, now: u64) -> String {
    let state = match clock_state(b, c, now) {
        ClockState::Notified { n, late_by } => {
            let reference = n
                .reference
                .as_deref()
                .map(|r| format!(", reference {r}"))
                .unwrap_or_default();
            let verdict = match late_by {
                Some(l) => format!("late by {}", human_duration(l)),
                None => "on time".into(),
            };
            format!(
                "Notified {}{reference}, by {} (log index {}): {verdict}",
                rfc3339(n.at),
                n.by,
                n.index
            )
        }
        ClockState::Overdue(by) => format!("Not notified: overdue by {}", human_duration(by)),
        ClockState::Pending(left) => format!("Not notified yet: {} left", human_duration(left)),
        ClockState::NoDeadline => "Not notified yet".into(),
    };
    format!(
        "{}: tell {} ({}), {} ({}). {state}.",
        c.key,
        c.notify,
        c.reference,
        deadline_text(c),
        c.wording
    )
}

// ---- the review -------------------------------------------------------------------

const SECTIONS: [(&str, &str); 3] = [
    ("impact", "Impact"),
    ("root_cause", "Root cause"),
    ("actions", "Actions"),
];

fn blocks(input: &ReviewInput) -> Vec<Block> {
    let i = input.incident;
    let mut out = vec![
        Block::Heading(1, format!("Post-incident review: {}", i.title)),
        Block::Para(vec![
            t("Incident "),
            Inline::Code(i.id.clone()),
            t(" · tenant "),
            Inline::Code(i.tenant.clone()),
            t(" · severity "),
            Inline::Strong(i.severity.as_str().into()),
            t(" · status "),
            Inline::Strong(i.status.as_str().into()),
            t(format!(
                " · written {} from log {}",
                rfc3339(input.now),
                input.log_origin
            )),
        ]),
    ];
    summary(input, &mut out);
    timeline(i, &mut out);
    alerts(i, &mut out);
    if let Some(b) = &i.breach {
        breach(i, b, input.now, &mut out);
    }
    for (key, title) in SECTIONS {
        out.push(Block::Heading(2, title.into()));
        written_section(i, key, &mut out);
    }
    out.push(Block::Heading(2, "Comments".into()));
    match i.sections.get("comment").filter(|v| !v.is_empty()) {
        Some(entries) => out.push(section_entries(entries)),
        None => out.push(para("No comments.")),
    }
    related(input, &mut out);
    notifications(i, &mut out);
    anchoring(input, &mut out);
    out
}

/// When the current round began: the last reopening, else the opening.
fn round_start(i: &Incident) -> u64 {
    i.transitions
        .iter()
        .rev()
        .find(|s| s["action"] == crate::action::REOPENED)
        .and_then(|s| s["time"].as_str().and_then(parse))
        .unwrap_or(i.opened_at)
}

fn elapsed(from: u64, to: Option<u64>, missing: &str) -> String {
    match to {
        Some(t) => human_duration(t.saturating_sub(from)),
        None => missing.into(),
    }
}

fn summary(input: &ReviewInput, out: &mut Vec<Block>) {
    let (i, now) = (input.incident, input.now);
    let start = round_start(i);
    let mut list = vec![item(
        "Opened",
        format!("{} (log index {})", rfc3339(i.opened_at), i.index),
    )];
    list.push(item("Origin", i.origin.clone()));
    if let Some(g) = &i.group_key {
        list.push(item("Alertmanager group", g.clone()));
    }
    if let Some(d) = &i.description {
        list.push(item("Description", d.clone()));
    }
    if i.round > 0 {
        list.push(item(
            "Reopened",
            format!(
                "{} time(s); the deadlines and times below are of the current round, from {}",
                i.round,
                rfc3339(start)
            ),
        ));
    }

    let respond = match i.acknowledged_at {
        Some(a) if a <= i.respond_by => format!("met: acknowledged at {}", rfc3339(a)),
        Some(a) => format!(
            "missed: acknowledged at {}, {} late",
            rfc3339(a),
            human_duration(a - i.respond_by)
        ),
        None if i.status.unacknowledged() => match now.checked_sub(i.respond_by) {
            Some(late) if late > 0 => format!(
                "missed: not acknowledged, overdue by {}",
                human_duration(late)
            ),
            _ => format!("pending: {} left", human_duration(i.respond_by - now)),
        },
        None => {
            // Mitigated or resolved with `skipped_acknowledgement`.
            let reason = i
                .transitions
                .iter()
                .rev()
                .find_map(|s| s["skipped_acknowledgement"].as_str())
                .unwrap_or("no reason logged");
            let moved = i.mitigated_at.or(i.resolved_at).unwrap_or(start);
            let verdict = if moved <= i.respond_by {
                "met"
            } else {
                "missed"
            };
            format!(
                "{verdict}: acknowledgement skipped ({reason}), {} at {}",
                i.status.as_str(),
                rfc3339(moved)
            )
        }
    };
    list.push(item(
        "Respond by",
        format!("{} ({respond})", rfc3339(i.respond_by)),
    ));

    let contained = i.mitigated_at.or(i.resolved_at);
    let escalate = match contained {
        Some(m) if m < i.escalate_at => format!("met: mitigated at {}, before it", rfc3339(m)),
        Some(m) => format!(
            "reached: mitigated at {}, {} after it",
            rfc3339(m),
            human_duration(m - i.escalate_at)
        ),
        None if now >= i.escalate_at => "reached: not mitigated".into(),
        None => format!("pending: {} left", human_duration(i.escalate_at - now)),
    };
    list.push(item(
        "Escalate at",
        format!("{} ({escalate})", rfc3339(i.escalate_at)),
    ));

    list.push(item(
        "Time to acknowledge",
        elapsed(start, i.acknowledged_at, "not acknowledged"),
    ));
    let mitigate = match (i.mitigated_at, i.resolved_at) {
        (Some(m), _) => human_duration(m.saturating_sub(start)),
        (None, Some(_)) => "resolved without a separate mitigation".into(),
        (None, None) => "not mitigated".into(),
    };
    list.push(item("Time to mitigate", mitigate));
    list.push(item(
        "Time to resolve",
        elapsed(start, i.resolved_at, "not resolved"),
    ));
    if let Some(r) = i.reviewed_at {
        list.push(item("Reviewed", rfc3339(r)));
    }
    if i.escalations.is_empty() {
        list.push(item("Escalations", "none"));
    } else {
        let e: Vec<String> = i
            .escalations
            .iter()
            .map(|e| {
                format!(
                    "{} at {} (round {}, log index {})",
                    e.reason,
                    rfc3339(e.at),
                    e.round,
                    e.index
                )
            })
            .collect();
        list.push(item(
            "Escalations",
            format!("{}: {}", e.len(), e.join("; ")),
        ));
    }
    out.push(Block::Heading(2, "Summary".into()));
    out.push(Block::List(list));
}

fn timeline(i: &Incident, out: &mut Vec<Block>) {
    out.push(Block::Heading(2, "Timeline".into()));
    let rows = i
        .transitions
        .iter()
        .map(|s| {
            vec![
                text_of(s, &["time"]),
                text_of(s, &["action"]),
                text_of(s, &["by"]),
                attributes_text(s),
                index_text(s),
            ]
        })
        .collect();
    table(
        out,
        &["Time", "Action", "By", "Details", "Log index"],
        rows,
        "No events.",
    );
}

fn alerts(i: &Incident, out: &mut Vec<Block>) {
    out.push(Block::Heading(2, "Alerts".into()));
    let mut rows = Vec::new();
    for entry in &i.alerts {
        // The logged alert may be flat, under `alert`, or several under `alerts`.
        let list: Vec<&Value> = match (&entry["alerts"], &entry["alert"]) {
            (Value::Array(a), _) => a.iter().collect(),
            (_, a @ Value::Object(_)) => vec![a],
            _ => vec![entry],
        };
        for a in list {
            rows.push(vec![
                text_of(entry, &["time"]),
                text_of(a, &["status"]),
                value_text(&a["labels"]["alertname"]),
                text_of(&a["annotations"], &["summary", "description"]),
                text_of(a, &["startsAt", "starts_at"]),
                text_of(a, &["endsAt", "ends_at"]),
                index_text(entry),
            ]);
        }
    }
    table(
        out,
        &[
            "Logged",
            "Status",
            "Alert",
            "Summary",
            "Starts",
            "Ends",
            "Log index",
        ],
        rows,
        "No alerts.",
    );
}

fn breach(i: &Incident, b: &Breach, now: u64, out: &mut Vec<Block>) {
    out.push(Block::Heading(2, "Breach".into()));
    let marked = i
        .transitions
        .iter()
        .find(|s| s["action"] == crate::action::BREACH)
        .map(|s| format!(" (log index {})", index_text(s)))
        .unwrap_or_default();
    let mut list = vec![
        item("Aware at", rfc3339(b.aware_at)),
        item("Marked at", format!("{}{marked}", rfc3339(b.marked_at))),
        item("High risk", if b.high_risk { "yes" } else { "no" }),
        item("Jurisdictions", b.jurisdictions.join(", ")),
    ];
    for (k, v) in &b.details {
        list.push(item(k, value_text(v)));
    }
    if !b.missed.is_empty() {
        list.push(item("Deadlines missed (logged)", b.missed.join(", ")));
    }
    out.push(Block::List(list));
    out.push(para("Clocks:"));
    let clocks: Vec<Vec<Inline>> = b
        .clocks
        .iter()
        .map(|c| vec![t(clock_line(b, c, now))])
        .collect();
    if clocks.is_empty() {
        out.push(para("No clocks were started."));
    } else {
        out.push(Block::List(clocks));
    }
}

fn section_entries(entries: &[Value]) -> Block {
    Block::List(
        entries
            .iter()
            .map(|e| {
                vec![
                    t(text_of(e, &["text"])),
                    // Emphasis may not start with a space in Markdown.
                    t(" "),
                    Inline::Em(vec![t(format!(
                        "({}, {}, log index {})",
                        text_of(e, &["by"]),
                        text_of(e, &["time"]),
                        index_text(e)
                    ))]),
                ]
            })
            .collect(),
    )
}

fn written_section(i: &Incident, key: &str, out: &mut Vec<Block>) {
    match i.sections.get(key).filter(|v| !v.is_empty()) {
        Some(entries) => out.push(section_entries(entries)),
        None => out.push(Block::Para(vec![Inline::Em(vec![
            t("Not yet written: add with "),
            Inline::Code(format!(
                "aiaudit incident note {} --section {key} --text ...",
                i.id
            )),
        ])])),
    }
}

fn actor_text(v: &Value) -> String {
    match v {
        Value::Object(_) => text_of(v, &["id", "name"]),
        v => value_text(v),
    }
}

fn related(input: &ReviewInput, out: &mut Vec<Block>) {
    let i = input.incident;
    out.push(Block::Heading(2, "Related events".into()));
    let named: Vec<Vec<Inline>> = i
        .related
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| item(k, v.iter().map(value_text).collect::<Vec<_>>().join(", ")))
        .collect();
    if !named.is_empty() {
        out.push(Block::List(named));
    }
    let mut events: Vec<&Value> = input.related_events.iter().collect();
    events.sort_by_key(|e| e["index"].as_u64().unwrap_or(u64::MAX));
    let rows = events
        .iter()
        .map(|e| {
            vec![
                index_text(e),
                text_of(e, &["time"]),
                text_of(e, &["action"]),
                actor_text(&e["actor"]),
                text_of(e, &["outcome"]),
                text_of(e, &["trace_id"]),
                text_of(e, &["conversation_id"]),
            ]
        })
        .collect();
    table(
        out,
        &[
            "Log index",
            "Time",
            "Action",
            "Actor",
            "Outcome",
            "Trace id",
            "Conversation id",
        ],
        rows,
        "No related events.",
    );

    out.push(Block::Heading(2, "Related violations".into()));
    let rows = input
        .violations
        .iter()
        .map(|v| {
            vec![
                text_of(v, &["id"]),
                text_of(v, &["rule", "rule_id"]),
                text_of(v, &["severity"]),
                text_of(v, &["status"]),
                text_of(v, &["time"]),
            ]
        })
        .collect();
    table(
        out,
        &["Id", "Rule", "Severity", "Status", "Time"],
        rows,
        "No related violations.",
    );
    // Named by the incident but not supplied: say so rather than drop them.
    let supplied: BTreeSet<String> = input
        .violations
        .iter()
        .map(|v| text_of(v, &["id"]))
        .collect();
    let missing: Vec<String> = i
        .related
        .get("violation_ids")
        .into_iter()
        .flatten()
        .map(value_text)
        .filter(|id| !supplied.contains(id))
        .collect();
    if !missing.is_empty() {
        out.push(para(format!(
            "Named by the incident but not found: {}.",
            missing.join(", ")
        )));
    }
}

fn notifications(i: &Incident, out: &mut Vec<Block>) {
    const TARGET: &[&str] = &["target", "url", "webhook", "channel", "receiver"];
    const OUTCOME: &[&str] = &["outcome", "status", "result"];
    out.push(Block::Heading(2, "Notifications".into()));
    let rows = i
        .notifications
        .iter()
        .map(|n| {
            let mut rest = n.clone();
            if let Some(m) = rest.as_object_mut() {
                for k in TARGET.iter().chain(OUTCOME) {
                    m.remove(*k);
                }
            }
            vec![
                text_of(n, &["time"]),
                text_of(n, TARGET),
                text_of(n, OUTCOME),
                attributes_text(&rest),
                index_text(n),
            ]
        })
        .collect();
    table(
        out,
        &["Time", "Target", "Outcome", "Details", "Log index"],
        rows,
        "No notification attempts.",
    );
}

fn anchoring(input: &ReviewInput, out: &mut Vec<Block>) {
    let i = input.incident;
    out.push(Block::Heading(2, "Anchoring".into()));
    out.push(Block::Para(vec![
        t("Log origin: "),
        Inline::Code(input.log_origin.into()),
        t(". Every event above is in the log under the signed checkpoint below:"),
    ]));
    out.push(Block::Code(input.checkpoint_note.into()));
    // C2SP checkpoint body: origin, tree size, root hash.
    let mut lines = input.checkpoint_note.lines();
    let (origin, size) = (
        lines.next().unwrap_or(""),
        lines.next().and_then(|s| s.parse::<u64>().ok()),
    );
    if origin != input.log_origin {
        out.push(para(format!(
            "Warning: the checkpoint's origin line ({origin}) is not the log origin ({}).",
            input.log_origin
        )));
    }

    let mut proved = BTreeSet::new();
    let rows = input
        .proofs
        .iter()
        .map(|p| {
            if let Some(n) = p["index"].as_u64() {
                proved.insert(n);
            }
            vec![
                index_text(p),
                text_of(p, &["leaf_hash"]),
                value_text(&p["proof"]).replace(", ", " "),
            ]
        })
        .collect();
    table(
        out,
        &[
            "Log index",
            "Leaf hash",
            "Inclusion proof (hashes, leaf to root)",
        ],
        rows,
        "No inclusion proofs supplied.",
    );
    let own: BTreeSet<u64> = i
        .transitions
        .iter()
        .chain(&i.alerts)
        .chain(&i.notifications)
        .filter_map(|s| s["index"].as_u64())
        .collect();
    let unproved: Vec<String> = own.difference(&proved).map(u64::to_string).collect();
    if !unproved.is_empty() {
        out.push(para(format!(
            "No inclusion proof supplied for the incident's events at log index {}.",
            unproved.join(", ")
        )));
    }
    if let (Some(size), Some(last)) = (size, own.iter().next_back()) {
        if *last >= size {
            out.push(para(format!(
                "Warning: the checkpoint (tree size {size}) does not cover log index {last}."
            )));
        }
    }
    out.push(Block::Para(vec![
        t(
            "To check offline: fold each leaf hash with its inclusion proof (RFC 6962) up to \
           the root hash in the checkpoint above and verify the checkpoint's signature with the \
           log's public key; ",
        ),
        Inline::Code("aiaudit proof --index N".into()),
        t(" fetches one event's self-contained tlog-proof, and "),
        Inline::Code("aiaudit verify --proof FILE --policy FILE".into()),
        t(" checks it."),
    ]));
}

/// An incident folded from logged events, for the tests of this module and of the pack.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::breach::{builtin, clocks, Clock};
    use crate::time_fmt::{parse, rfc3339};
    use crate::{action, deadlines, BusinessHours, Incident, Incidents, Severity};
    use serde_json::{json, Value};

    pub const T0: &str = "2026-03-04T10:00:00Z";
    /// After every event below.
    pub const NOW: &str = "2026-03-08T00:00:00Z";
    pub const CHECKPOINT: &str = "aiaudit.example.org/log\n200\n\
        q2Vh0bQ2JcUAyk1HkpBQw5VqEo3k6PG4rT0nQ0Oe1xY=\n\n\
        — aiaudit.example.org/log Az3grlZ1U0z+fNQAaKJ1Z4hWiV6H5xOa2o5jVK0Xq0PjA7c0u5sPQdQ1Ai5sAfQ=\n";

    pub fn ms(s: &str) -> u64 {
        parse(s).unwrap()
    }

    fn ev(act: &str, time: &str, attrs: Value) -> Value {
        let mut a = attrs;
        a["incident_id"] = json!("i1");
        json!({"id": format!("e-{act}-{time}"), "time": time, "tenant": "acme", "action": act,
               "actor": {"id": "token:ops"}, "attributes": a})
    }

    /// How the breach is marked and notified.
    pub struct Shape<'a> {
        pub title: &'a str,
        pub jurisdictions: &'a [&'a str],
        pub high_risk: bool,
        pub processor: bool,
        pub details: Value,
        /// `ng:authority` notified at this time, if any.
        pub ng_notified: Option<&'a str>,
        pub breach: bool,
    }

    impl Default for Shape<'_> {
        fn default() -> Self {
            Shape {
                title: "Customer records exposed",
                jurisdictions: &["ng", "ke", "za", "eu"],
                high_risk: true,
                processor: false,
                details: json!({}),
                ng_notified: Some("2026-03-07T15:00:00Z"),
                breach: true,
            }
        }
    }

    /// Opened (high) at T0, escalated at 10:15, acknowledged at 10:19:10,
    /// an alert, a breach aware at T0, mitigated, ng notified (late by
    /// default), an impact note, a webhook attempt, resolved.
    pub fn incident(shape: &Shape) -> Incident {
        let s = Incidents::default();
        let d = deadlines(Severity::High, ms(T0), &BusinessHours::default());
        let opened = json!({"id": "i1", "time": T0, "tenant": "acme", "action": action::OPENED,
            "actor": {"id": "token:ops"},
            "attributes": {"title": shape.title, "severity": "high", "origin": "manual",
                           "description": "Bucket left public",
                           "respond_by": rfc3339(d.respond_by), "escalate_at": rfc3339(d.escalate_at),
                           "related": {"violation_ids": ["v-1", "v-9"], "trace_ids": ["tr-7"]}}});
        let mut events = vec![
            opened,
            ev(
                action::ESCALATED,
                "2026-03-04T10:15:00Z",
                json!({"reason": "response_deadline_missed", "round": 0}),
            ),
            ev(
                action::ACKNOWLEDGED,
                "2026-03-04T10:19:10Z",
                json!({"note": "on it"}),
            ),
            ev(
                action::ALERT,
                "2026-03-04T10:20:00Z",
                json!({"status": "firing",
                "labels": {"alertname": "PublicBucket", "severity": "high"},
                "annotations": {"summary": "bucket readable by anyone"}, "startsAt": "2026-03-04T09:58:00Z"}),
            ),
        ];
        if shape.breach {
            let all: Vec<Clock> = builtin()
                .iter()
                .filter(|j| shape.jurisdictions.contains(&j.code.as_str()))
                .flat_map(|j| clocks(j, ms(T0), shape.high_risk, shape.processor))
                .collect();
            events.push(ev(
                action::BREACH,
                "2026-03-04T12:00:00Z",
                json!({"aware_at": T0,
                "jurisdictions": shape.jurisdictions, "clocks": all, "high_risk": shape.high_risk,
                "details": shape.details}),
            ));
        }
        events.push(ev(
            action::MITIGATED,
            "2026-03-04T12:05:00Z",
            json!({"note": "bucket made private"}),
        ));
        if let Some(at) = shape.ng_notified {
            events.push(ev(
                action::NOTIFIED,
                at,
                json!({"clock": "ng:authority", "reference": "NDPC/2026/001"}),
            ));
        }
        events.push(ev(
            action::NOTE,
            "2026-03-07T16:00:00Z",
            json!({"section": "impact", "text": "1,200 customers' emails | phone numbers"}),
        ));
        events.push(ev(action::NOTIFICATION, "2026-03-04T10:00:01Z",
            json!({"url": "https://hooks.example/ops", "outcome": "failed", "error": "HTTP 502", "attempt": 1})));
        events.push(ev(
            action::RESOLVED,
            "2026-03-07T17:00:00Z",
            json!({"note": "access logs reviewed"}),
        ));
        for (n, e) in events.iter().enumerate() {
            let index = 100 + n as u64;
            if !s.apply(e, index) {
                panic!("event {n} ({}) not applied", e["action"]);
            }
        }
        s.get("i1").unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{incident, ms, Shape, CHECKPOINT, NOW};
    use super::*;
    use serde_json::json;

    fn input<'a>(
        i: &'a Incident,
        proofs: &'a [Value],
        related: &'a [Value],
        violations: &'a [Value],
    ) -> ReviewInput<'a> {
        ReviewInput {
            incident: i,
            now: ms(NOW),
            log_origin: "aiaudit.example.org/log",
            checkpoint_note: CHECKPOINT,
            proofs,
            related_events: related,
            violations,
        }
    }

    #[test]
    fn markdown_shows_values_as_written() {
        assert_eq!(md_escape("a | b"), "a \\| b");
        assert_eq!(
            md_escape("<b>*x*</b>\n# y"),
            "&lt;b&gt;\\*x\\*&lt;/b&gt;<br>\\# y"
        );
        assert_eq!(md_escape("- not a list"), "\\- not a list");
        assert_eq!(md_escape("12. nor this"), "12\\. nor this");
        assert_eq!(md_escape("2026-03-04 1.5"), "2026-03-04 1.5");
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code_block("x\n```\ny"), "````\nx\n```\ny\n````\n\n");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(250_000), "4 min 10 s");
        assert_eq!(human_duration(7_500_000), "2 h 5 min");
        assert_eq!(human_duration(7_200_000), "2 h");
        assert_eq!(human_duration(90_061_000), "1 d 1 h");
        assert_eq!(human_duration(45_000), "45 s");
        assert_eq!(human_duration(0), "0 s");
        assert_eq!(human_duration(400), "under 1 s");
    }

    #[test]
    fn the_markdown_review_tells_the_whole_log() {
        let i = incident(&Shape::default());
        let proofs = [json!({"index": 100, "leaf_hash": "ab12", "proof": ["cd34", "ef56"]})];
        let related = [
            json!({"index": 42, "time": "2026-03-04T09:59:00Z", "action": "model.response",
                              "actor": {"id": "svc|bot"}, "outcome": "success", "trace_id": "tr-7"}),
        ];
        let violations = [
            json!({"id": "v-1", "rule": "pii.egress", "severity": "high", "status": "open",
                                 "time": "2026-03-04T09:59:30Z"}),
        ];
        let md = markdown(&input(&i, &proofs, &related, &violations));

        // Every transition, in log order, with its index in the last column.
        assert_eq!(i.transitions.len(), 9, "{:#?}", i.transitions);
        let mut at = 0;
        for s in &i.transitions {
            let (act, index) = (s["action"].as_str().unwrap(), s["index"].as_u64().unwrap());
            let row = md[at..]
                .find(&format!("| {} |", md_escape(act)))
                .map(|p| at + p)
                .unwrap_or_else(|| panic!("{act} missing after byte {at}:\n{md}"));
            let line = md[row..].lines().next().unwrap();
            assert!(line.ends_with(&format!("| {index} |")), "{line}");
            at = row + line.len();
        }
        assert!(md.contains("on it"), "{md}");
        // Title line, summary, and the escalation.
        assert!(
            md.starts_with("# Post-incident review: Customer records exposed\n"),
            "{md}"
        );
        assert!(
            md.contains("tenant `acme` · severity **high** · status **resolved**"),
            "{md}"
        );
        assert!(
            md.contains("missed: acknowledged at 2026-03-04T10:19:10Z, 4 min 10 s late"),
            "{md}"
        );
        assert!(md.contains("**Time to acknowledge:** 19 min 10 s"), "{md}");
        assert!(md.contains("**Time to mitigate:** 2 h 5 min"), "{md}");
        assert!(md.contains("**Time to resolve:** 3 d 7 h"), "{md}");
        assert!(
            md.contains("**Escalations:** 1: response\\_deadline\\_missed at 2026-03-04T10:15:00Z (round 0, log index 101)"),
            "{md}"
        );
        // The breach clocks, each judged.
        assert!(md.contains(
            "ng:authority: tell Nigeria Data Protection Commission (NDPC) (NDPA 2023 s. 40(2)), deadline 2026-03-07T10:00:00Z"
        ), "{md}");
        assert!(
            md.contains("reference NDPC/2026/001, by token:ops (log index 106): late by 5 h."),
            "{md}"
        );
        assert!(
            md.contains("ke:authority: tell Office of the Data Protection Commissioner (ODPC)"),
            "{md}"
        );
        assert!(md.contains("Not notified: overdue by 14 h."), "{md}");
        assert!(md.contains("za:authority: tell Information Regulator (South Africa) (POPIA s. 22(1)-(2)), as soon as reasonably possible"), "{md}");
        assert!(md.contains("PublicBucket"), "{md}");
        // Written sections, and markers where nobody wrote.
        assert!(
            md.contains("1,200 customers' emails \\| phone numbers"),
            "{md}"
        );
        for section in ["root_cause", "actions"] {
            let marker = format!("_Not yet written: add with `aiaudit incident note i1 --section {section} --text ...`_");
            assert!(md.contains(&marker), "{section}: {md}");
        }
        assert!(!md.contains("--section impact"), "impact is written: {md}");
        // Related tables, a pipe escaped in a cell, a named violation not found.
        assert!(
            md.contains(
                "| 42 | 2026-03-04T09:59:00Z | model.response | svc\\|bot | success | tr-7 |"
            ),
            "{md}"
        );
        assert!(md.contains("| v-1 | pii.egress | high | open |"), "{md}");
        assert!(md.contains("not found: v-9"), "{md}");
        assert!(md.contains("https://hooks.example/ops | failed"), "{md}");
        // Anchoring: the checkpoint verbatim in a code block, the proofs, how to check.
        assert!(
            md.contains(&format!("```\n{}\n```", CHECKPOINT.trim_end())),
            "{md}"
        );
        assert!(md.contains("| 100 | ab12 | cd34 ef56 |"), "{md}");
        assert!(
            md.contains("for the incident's events at log index 101, 102"),
            "{md}"
        );
        assert!(md.contains("aiaudit verify --proof"), "{md}");
        assert!(!md.contains("does not cover"), "{md}");
        let order = [
            "## Summary",
            "## Timeline",
            "## Alerts",
            "## Breach",
            "## Impact",
            "## Root cause",
            "## Actions",
            "## Comments",
            "## Related events",
            "## Related violations",
            "## Notifications",
            "## Anchoring",
        ];
        let pos: Vec<usize> = order
            .iter()
            .map(|h| md.find(h).unwrap_or_else(|| panic!("{h}")))
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
    }

    #[test]
    fn an_open_incident_says_what_is_pending() {
        let s = crate::Incidents::default();
        let opened = json!({"id": "i2", "time": super::fixture::T0, "tenant": "acme",
            "action": crate::action::OPENED, "actor": {"id": "token:ops"},
            "attributes": {"title": "t", "severity": "medium",
                           "respond_by": "2026-03-04T11:00:00Z", "escalate_at": "2026-03-04T14:00:00Z"}});
        assert!(s.apply(&opened, 7));
        let i = s.get("i2").unwrap();
        let small = "aiaudit.example.org/log\n5\nroot=\n";
        let review = ReviewInput {
            now: ms("2026-03-04T10:50:00Z"),
            checkpoint_note: small,
            ..input(&i, &[], &[], &[])
        };
        let md = markdown(&review);
        assert!(
            md.contains("2026-03-04T11:00:00Z (pending: 10 min left)"),
            "{md}"
        );
        assert!(
            md.contains("2026-03-04T14:00:00Z (pending: 3 h 10 min left)"),
            "{md}"
        );
        assert!(
            md.contains("**Time to acknowledge:** not acknowledged"),
            "{md}"
        );
        assert!(md.contains("**Escalations:** none"), "{md}");
        assert!(md.contains("--section impact"), "{md}");
        assert!(!md.contains("## Breach"), "{md}");
        assert!(md.contains("No inclusion proofs supplied."), "{md}");
        assert!(
            md.contains("the checkpoint (tree size 5) does not cover log index 7"),
            "{md}"
        );
        let late = markdown(&ReviewInput {
            now: ms("2026-03-04T11:02:00Z"),
            ..review
        });
        assert!(
            late.contains("(missed: not acknowledged, overdue by 2 min)"),
            "{late}"
        );
    }

    #[test]
    fn html_escapes_every_value() {
        let title = "<script>alert('x')</script> & co";
        let i = incident(&Shape {
            title,
            ..Shape::default()
        });
        let related = [json!({"index": 1, "action": "<img src=x onerror=alert(1)>"})];
        let page = html(&input(&i, &[], &related, &[]));
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("<h1>Post-incident review: &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</h1>"), "{page}");
        assert!(
            page.contains("<title>Post-incident review: &lt;script&gt;"),
            "{page}"
        );
        assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
        assert!(page.contains("<em>Not yet written: add with <code>aiaudit incident note i1 --section actions --text ...</code></em>"), "{page}");
        // The Markdown escapes the same title as text.
        let md = markdown(&input(&i, &[], &related, &[]));
        assert!(
            md.starts_with(
                "# Post-incident review: &lt;script&gt;alert('x')&lt;/script&gt; &amp; co\n"
            ),
            "{md}"
        );
    }
}
