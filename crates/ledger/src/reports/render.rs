//! A report as Markdown or as one self-contained HTML page: the same
//! sections and tables, plus two inline SVG charts in HTML (drawn with
//! plotters; no script, no external resource).
//!
//! Strings from events (system names, rule ids, actions) and from the
//! request (the tenant) are escaped for where they land: HTML text, SVG text
//! (plotters escapes what it draws), Markdown table cells.

use super::{date, Report};
use aiaudit_index::DAY_MS;
use plotters::prelude::*;

/// Lines drawn in the daily chart; smaller systems are summed into one.
const MAX_LINES: usize = 10;
/// Longest axis label, in characters.
const MAX_LABEL: usize = 24;

struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

#[derive(Clone, Copy)]
enum Chart {
    Daily,
    Rules,
}

struct Section {
    title: String,
    note: String,
    table: Table,
    chart: Option<Chart>,
    /// Preformatted blocks: command lines, the signed checkpoint.
    code: Vec<String>,
}

fn kv(pairs: Vec<(&str, String)>) -> Table {
    Table {
        headers: vec!["", ""],
        rows: pairs
            .into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
    }
}

fn opt<T: ToString>(v: &Option<T>, none: &str) -> String {
    v.as_ref().map_or(none.to_string(), T::to_string)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn system_name(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "(unnamed)".to_string())
}

/// What the report is titled after: the framework's law.
fn framework_title(r: &Report) -> String {
    match &r.privacy {
        Some(p) => format!("Compliance report ({})", p.law.name),
        None => "Compliance report".to_string(),
    }
}

/// The sections of a data-protection framework (NDPA, POPIA, Kenya DPA),
/// each titled with the provision it serves.
fn privacy_sections(r: &Report, p: &super::privacy::Privacy) -> Vec<Section> {
    let law = &p.law;
    let e = &p.erasure;
    let section = |title: String, note: String, table: Table| Section {
        title,
        note,
        table,
        chart: None,
        code: vec![],
    };
    let mut out = vec![
        section(
            format!("Controller and data protection officer ({})", law.dpo),
            format!("Supervisory authority: {}.", law.authority),
            kv(vec![
                ("Organisation", opt(&p.organisation, "not configured")),
                ("Data protection officer", opt(&p.dpo_contact, "not configured")),
                ("Registration", opt(&p.registration, "not configured")),
            ]),
        ),
        section(
            format!("Records of processing by AI systems ({})", law.processing),
            "Each AI system (source.name) that logged events in the period, from the log; DPIA references from [compliance] in the configuration.".into(),
            Table {
                headers: vec!["System", "Events", "First", "Last", "Actions", "DPIA"],
                rows: p
                    .processing
                    .iter()
                    .map(|s| {
                        vec![
                            system_name(&s.system),
                            s.events.to_string(),
                            s.first.clone(),
                            s.last.clone(),
                            s.actions
                                .iter()
                                .map(|(a, n)| format!("{a}: {n}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                            opt(&s.dpia, "none recorded"),
                        ]
                    })
                    .collect(),
            },
        ),
        section(
            format!("Erasure requests ({})", law.erasure),
            format!(
                "{} requests ({}) in the period: {} completed, {} pending; {} erasure records (data.erasure) logged; median {} h, longest {} h; {} beyond the {}-day target.",
                e.requests,
                super::privacy::ERASURE_REQUEST,
                e.completed,
                e.pending,
                e.erasures_logged,
                opt(&e.median_hours, "-"),
                opt(&e.max_hours, "-"),
                e.over_target,
                e.target_days
            ),
            Table {
                headers: vec!["Subject tag", "Requested", "Completed", "Hours", "Log indexes"],
                rows: e
                    .rows
                    .iter()
                    .map(|x| {
                        vec![
                            x.subject_tag.clone(),
                            x.requested_at.clone(),
                            opt(&x.completed_at, "pending"),
                            opt(&x.hours, "-"),
                            format!(
                                "{}{}",
                                x.request_index,
                                x.erasure_index.map(|i| format!(", {i}")).unwrap_or_default()
                            ),
                        ]
                    })
                    .collect(),
            },
        ),
        section(
            format!("Personal-data breaches and notifications ({})", law.breaches),
            format!(
                "{} breaches marked on incidents with awareness in the period; each clock judged from the log.",
                p.breaches.len()
            ),
            Table {
                headers: vec!["Incident", "Aware", "Notify", "Provision", "Deadline", "Notified", "Outcome"],
                rows: p
                    .breaches
                    .iter()
                    .flat_map(|b| {
                        b.clocks.iter().map(move |c| {
                            vec![
                                format!("{} ({}, {})", b.title, b.severity, b.incident_id),
                                b.aware_at.clone(),
                                c.notify.clone(),
                                c.reference.clone(),
                                opt(&c.deadline, "as soon as reasonably possible"),
                                match (&c.notified_at, &c.notification_reference) {
                                    (Some(at), Some(r)) => format!("{at} (ref. {r})"),
                                    (Some(at), None) => at.clone(),
                                    _ => "not yet".into(),
                                },
                                c.outcome.to_string(),
                            ]
                        })
                    })
                    .collect(),
            },
        ),
        section(
            format!("Cross-border transfers and residency ({})", law.transfers),
            "Statements from [compliance] in the configuration: the log does not know where copies travel.".into(),
            kv(vec![
                ("Data residency", opt(&p.data_residency, "not stated")),
                ("Cross-border transfers", opt(&p.cross_border_transfers, "not stated")),
            ]),
        ),
    ];
    if p.framework == "ndpa" {
        let late = p
            .breaches
            .iter()
            .flat_map(|b| &b.clocks)
            .filter(|c| matches!(c.outcome, "late" | "overdue"))
            .count();
        out.push(section(
            "Annex: figures for the NDPC annual Compliance Audit Return".into(),
            "Drawn from the sections above, for the period of this report; anchored to the checkpoint under Integrity.".into(),
            kv(vec![
                ("Organisation", opt(&p.organisation, "not configured")),
                ("NDPC registration", opt(&p.registration, "not configured")),
                ("Data protection officer", opt(&p.dpo_contact, "not configured")),
                ("AI systems processing personal data (logged)", p.processing.len().to_string()),
                ("AI systems with a DPIA reference", p.processing.iter().filter(|s| s.dpia.is_some()).count().to_string()),
                ("Events logged by those systems", p.processing.iter().map(|s| s.events).sum::<u64>().to_string()),
                ("Erasure requests / completed / pending", format!("{} / {} / {}", e.requests, e.completed, e.pending)),
                ("Personal-data breaches", p.breaches.len().to_string()),
                ("Breach notifications late or overdue", late.to_string()),
                ("Retention configured", r.art19_26_retention.configured.clone()),
                ("Checkpoint (size, root)", format!("{}, {}", r.integrity.checkpoint_size, r.integrity.checkpoint_root)),
            ]),
        ));
    }
    out
}

fn sections(r: &Report) -> Vec<Section> {
    let all = eu_sections(r);
    let Some(p) = &r.privacy else { return all };
    // Findings first, then the law's own sections, then retention and
    // integrity from the common report.
    let mut it = all.into_iter();
    let findings = it.next();
    let rest: Vec<Section> = it.collect();
    let retention_title = format!("Retention of records ({})", p.law.retention);
    let mut out: Vec<Section> = findings.into_iter().collect();
    out.extend(privacy_sections(r, p));
    for mut s in rest {
        if s.title.starts_with("Art. 19") {
            // These laws limit storage to what the purpose needs: the
            // figures, not the AI Act's six-month minimum.
            s.title = retention_title.clone();
            s.note = "Retention configured and the oldest record held; compare them with the retention schedule of each purpose.".into();
            s.table.rows.retain(|row| {
                row[0] == "Configured retention"
                    || row[0] == "Oldest record held"
                    || row[0] == "Actual retention"
            });
            out.push(s);
        } else if s.title == "Integrity" || s.title == ACCESS_TITLE {
            out.push(s);
        }
    }
    out
}

fn eu_sections(r: &Report) -> Vec<Section> {
    let ret = &r.art19_26_retention;
    let o = &r.art14_oversight;
    let i = &r.integrity;
    vec![
        Section {
            title: "Findings".into(),
            note: if r.findings.is_empty() {
                "Nothing to act on.".into()
            } else {
                String::new()
            },
            table: Table {
                headers: vec!["Severity", "Section", "Finding"],
                rows: r
                    .findings
                    .iter()
                    .map(|f| vec![f.severity.to_string(), f.section.to_string(), f.text.clone()])
                    .collect(),
            },
            chart: None,
            code: vec![],
        },
        Section {
            title: "Art. 12: automatic logging per AI system".into(),
            note: format!(
                "{} events from {} systems (source.name) over {} days.{}",
                r.art12.total_events,
                r.art12.systems.len(),
                r.period.days,
                ledger_records_note(&r.art12.ledger_records)
            ),
            table: Table {
                headers: vec!["System", "Events", "First", "Last", "Days with events", "Actions"],
                rows: r
                    .art12
                    .systems
                    .iter()
                    .map(|s| {
                        vec![
                            system_name(&s.system),
                            s.events.to_string(),
                            s.first.clone(),
                            s.last.clone(),
                            format!("{} / {}", s.days_with_events, s.days_in_period),
                            s.actions
                                .iter()
                                .map(|(a, n)| format!("{a}: {n}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                        ]
                    })
                    .collect(),
            },
            chart: Some(Chart::Daily),
            code: vec![],
        },
        Section {
            title: "Art. 19 and 26: retention of logs (at least six months)".into(),
            note: ret.findings.join(" "),
            table: kv(vec![
                ("Configured retention", format!("{} (set by: {})", ret.configured, ret.configured_by)),
                ("Required", format!("{} days", ret.required_days)),
                ("Configured retention meets it", yes_no(ret.configured_ok)),
                ("Oldest record held", opt(&ret.oldest_record, "none")),
                ("Actual retention", opt(&ret.actual_days.map(|d| format!("{d} days")), "none")),
                ("Actual retention meets it", ret.actual_status.to_string()),
            ]),
            chart: None,
            code: vec![],
        },
        Section {
            title: "Art. 14: human oversight".into(),
            note: "Review ratio: human reviews and overrides per high-risk event.".into(),
            table: kv(vec![
                ("Human reviews (human.review)", o.reviews.to_string()),
                ("Human overrides (human.override)", o.overrides.to_string()),
                ("High-risk events (risk high or critical)", o.high_risk_events.to_string()),
                ("Agent decisions (agent.decision)", o.agent_decisions.to_string()),
                ("High-risk agent decisions", o.high_risk_agent_decisions.to_string()),
                ("Review ratio", opt(&o.review_ratio.map(|x| format!("{x:.2}")), "n/a")),
            ]),
            chart: None,
            code: vec![],
        },
        Section {
            title: "Integrity".into(),
            note: "The log is an RFC 6962 Merkle tree; the checkpoint below is signed. Check it independently:".into(),
            table: kv(vec![
                ("Checkpoint size", i.checkpoint_size.to_string()),
                ("Root hash", i.checkpoint_root.clone()),
                ("Checkpoint age", format!("{:.1} s", i.checkpoint_age_seconds)),
                ("Integrity checks failed since start", i.verification_failures_since_start.to_string()),
                ("Index lag", format!("{} entries", i.index_lag_events)),
                ("Verifier key", r.log.verifier_key.clone()),
                (
                    "Witnesses that cosigned",
                    if r.log.witnesses.is_empty() {
                        "none (no witness policy, or no cosignature yet)".to_string()
                    } else {
                        r.log.witnesses.join(", ")
                    },
                ),
            ]),
            chart: None,
            code: i.verify.iter().cloned().chain([r.log.checkpoint.clone()]).collect(),
        },
        Section {
            title: "Policy violations".into(),
            note: format!(
                "{} violations in the period; {} resolutions logged.",
                r.violations.total, r.violations.resolutions_logged
            ),
            table: Table {
                headers: vec!["Rule", "Severity", "Violations", "Resolved", "Unresolved"],
                rows: r
                    .violations
                    .rules
                    .iter()
                    .map(|v| {
                        vec![
                            v.rule.clone(),
                            v.severity.clone(),
                            v.count.to_string(),
                            v.resolved.to_string(),
                            v.unresolved.to_string(),
                        ]
                    })
                    .collect(),
            },
            chart: Some(Chart::Rules),
            code: vec![],
        },
        Section {
            title: "Data protection".into(),
            note: "Erasures are crypto-shredding: the subject's keys are destroyed, the entries stay in the log.".into(),
            table: kv(vec![
                ("Erasures (data.erasure)", r.data_protection.erasures.to_string()),
                ("Keys destroyed", opt(&r.data_protection.keys_destroyed, "unknown")),
            ]),
            chart: None,
            code: vec![],
        },
        access_section(r),
    ]
}

/// Who read the tenant's records: the ledger's own `trail.access` records.
fn access_section(r: &Report) -> Section {
    Section {
        title: ACCESS_TITLE.into(),
        note: format!(
            "{} access records in the period (trail.access, logged by the ledger for every read of content, search, export, report and incident document by a token; each merges up to a second of one reader's accesses).",
            r.access.records
        ),
        table: Table {
            headers: vec!["Reader", "Access records"],
            rows: r
                .access
                .readers
                .iter()
                .map(|a| vec![a.reader.clone(), a.records.to_string()])
                .collect(),
        },
        chart: None,
        code: vec![],
    }
}

const ACCESS_TITLE: &str = "Access to the trail";

// ---- Markdown ---------------------------------------------------------------

/// A table cell: no line breaks, pipes or markup from the data.
fn md_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn md_table(t: &Table) -> String {
    if t.rows.is_empty() {
        return String::new();
    }
    let mut out = format!("| {} |\n", t.headers.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(t.headers.len())));
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

pub fn markdown(r: &Report) -> String {
    let mut out = format!(
        "# {}: {}\n\nPeriod {} to {} ({} days), generated {} by log {} (checkpoint size {}).\n\n",
        md_cell(&framework_title(r)),
        md_cell(&r.tenant),
        r.period.from,
        r.period.to,
        r.period.days,
        r.generated_at,
        md_cell(&r.log.origin),
        r.log.checkpoint_size
    );
    for s in sections(r) {
        out.push_str(&format!("## {}\n\n", s.title));
        if !s.note.is_empty() {
            out.push_str(&format!("{}\n\n", md_cell(&s.note)));
        }
        let table = md_table(&s.table);
        if !table.is_empty() {
            out.push_str(&table);
            out.push('\n');
        }
        // Indented code: every line indented, so no content can end the block.
        for block in &s.code {
            for line in block.lines() {
                out.push_str(&format!("    {line}\n"));
            }
            out.push('\n');
        }
    }
    out
}

// ---- HTML -------------------------------------------------------------------

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

fn html_table(t: &Table) -> String {
    if t.rows.is_empty() {
        return String::new();
    }
    // The wrapper scrolls a table too wide for a phone, not the page; it
    // takes the keyboard focus so that it can be scrolled without a mouse.
    let mut out = String::from("<div class=\"table\" tabindex=\"0\"><table>");
    if t.headers.iter().any(|h| !h.is_empty()) {
        out.push_str("<thead><tr>");
        for h in &t.headers {
            out.push_str(&format!("<th>{}</th>", escape_html(h)));
        }
        out.push_str("</tr></thead>");
    }
    out.push_str("<tbody>");
    for row in &t.rows {
        out.push_str("<tr>");
        for c in row {
            out.push_str(&format!("<td>{}</td>", escape_html(c)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222;overflow-wrap:anywhere}\
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
.table{overflow-x:auto}table{border-collapse:collapse;margin:.5em 0;width:100%}\
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f4f4f4;overflow-wrap:normal}pre{background:#f8f8f8;padding:.5em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}\
.meta{color:#555}figure{margin:1em 0}svg{width:100%;height:auto}\
@media (max-width:600px){body{margin:1em auto;padding:0 .5em}h1{font-size:1.3em}td,th{padding:3px 4px;font-size:.85em}}";

pub fn html(r: &Report) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}: {tenant}</title><style>{CSS}</style></head><body>\
         <h1>{title}: {tenant}</h1><p class=\"meta\">Period {from} to {to} ({days} days). \
         Generated {at} by log {origin} (checkpoint size {size}).</p>",
        title = escape_html(&framework_title(r)),
        tenant = escape_html(&r.tenant),
        from = escape_html(&r.period.from),
        to = escape_html(&r.period.to),
        days = r.period.days,
        at = escape_html(&r.generated_at),
        origin = escape_html(&r.log.origin),
        size = r.log.checkpoint_size,
    );
    for s in sections(r) {
        out.push_str(&format!("<section><h2>{}</h2>", escape_html(&s.title)));
        if !s.note.is_empty() {
            out.push_str(&format!("<p>{}</p>", escape_html(&s.note)));
        }
        if let Some(chart) = s.chart {
            out.push_str("<figure>");
            out.push_str(&chart_svg(r, chart));
            out.push_str("</figure>");
        }
        out.push_str(&html_table(&s.table));
        for block in &s.code {
            out.push_str(&format!("<pre>{}</pre>", escape_html(block)));
        }
        out.push_str("</section>");
    }
    out.push_str(
        "<footer><p class=\"meta\">Numbers come from the ledger's search index and its latest signed \
         checkpoint. What this report can and cannot attest: docs/reports.md.</p></footer></body></html>\n",
    );
    out
}

// ---- charts -----------------------------------------------------------------

fn label(s: &str) -> String {
    if s.chars().count() <= MAX_LABEL {
        s.to_string()
    } else {
        s.chars().take(MAX_LABEL - 1).chain(['…']).collect()
    }
}

/// The lines of the daily chart: the largest systems, the rest summed.
fn daily_lines(r: &Report) -> Vec<(String, Vec<u64>)> {
    let mut systems: Vec<_> = r.art12.systems.iter().collect();
    systems.sort_by(|a, b| b.events.cmp(&a.events).then(a.system.cmp(&b.system)));
    let mut lines: Vec<(String, Vec<u64>)> = systems
        .iter()
        .take(MAX_LINES)
        .map(|s| (label(&system_name(&s.system)), s.per_day.clone()))
        .collect();
    let rest = &systems[systems.len().min(MAX_LINES)..];
    if !rest.is_empty() {
        let mut sum = vec![0u64; r.period.days as usize];
        for s in rest {
            for (slot, n) in sum.iter_mut().zip(&s.per_day) {
                *slot += n;
            }
        }
        lines.push((format!("{} other systems", rest.len()), sum));
    }
    lines
}

/// A chart as inline SVG, or a note when there is nothing to draw (or
/// drawing failed: the report still comes out).
fn chart_svg(r: &Report, chart: Chart) -> String {
    let drawn = match chart {
        Chart::Daily if r.art12.total_events > 0 => daily_svg(r),
        Chart::Rules if r.violations.total > 0 => rules_svg(r),
        _ => return "<p class=\"meta\">(nothing to chart)</p>".to_string(),
    };
    drawn.unwrap_or_else(|e| {
        format!(
            "<p class=\"meta\">(chart unavailable: {})</p>",
            escape_html(&e)
        )
    })
}

/// The days the daily chart spans: from the first day any system logged to
/// the end of the period, at least two days wide. Drawing the whole period
/// would squeeze a young log's lines into the right-hand corner.
pub(super) fn charted_days(lines: &[(String, Vec<u64>)], days: u64) -> (u32, u32) {
    let last = u32::try_from(days.max(2) - 1).unwrap_or(u32::MAX);
    let first = lines
        .iter()
        .filter_map(|(_, v)| v.iter().position(|n| *n > 0))
        .min()
        .unwrap_or(0);
    (u32::try_from(first).unwrap_or(0).min(last - 1), last)
}

fn daily_svg(r: &Report) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let lines = daily_lines(r);
    let (first_day, last_day) = charted_days(&lines, r.period.days);
    let max = lines
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let from_ms = r.period.from_ms;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Events per day per AI system", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(first_day..last_day, 0u64..max + max / 10 + 1)
            .map_err(|e| err(&e))?;
        let day_label = |d: &u32| {
            let s = date(from_ms.saturating_add(i64::from(*d) * DAY_MS));
            s.get(5..).unwrap_or(&s).to_string()
        };
        let x_desc = if first_day > 0 {
            format!("day (UTC); no events before {}", day_label(&first_day))
        } else {
            "day (UTC)".to_string()
        };
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("events")
            .x_label_formatter(&day_label)
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (name, values)) in lines.iter().enumerate() {
            let color = Palette99::pick(i);
            let points = || {
                values
                    .iter()
                    .enumerate()
                    .skip(first_day as usize)
                    .map(|(d, n)| (d as u32, *n))
            };
            // Dots as well as lines: a system seen on one day only has no line.
            chart
                .draw_series(points().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(LineSeries::new(points(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + 16, y)],
                        Palette99::pick(i).stroke_width(2),
                    )
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

fn rules_svg(r: &Report) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let rules = &r.violations.rules;
    let names: Vec<String> = rules.iter().map(|v| label(&v.rule)).collect();
    let n = rules.len() as u32;
    let max = rules.iter().map(|v| v.count).max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Violations per rule", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((0u32..n).into_segmented(), 0u64..max + max / 10 + 1)
            .map_err(|e| err(&e))?;
        let rule_label = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(*i as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(rules.len())
            .x_label_formatter(&rule_label)
            .y_desc("violations")
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(rules.iter().enumerate().map(|(i, v)| {
                let i = i as u32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0),
                        (SegmentValue::Exact(i + 1), v.count),
                    ],
                    Palette99::pick(i as usize).filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// The ledger's own records, named apart from the AI systems.
fn ledger_records_note(records: &std::collections::BTreeMap<String, u64>) -> String {
    if records.is_empty() {
        return String::new();
    }
    let list: Vec<String> = records.iter().map(|(s, n)| format!("{s} {n}")).collect();
    format!(
        " Besides them, the ledger's own records (not AI systems): {}.",
        list.join(", ")
    )
}
