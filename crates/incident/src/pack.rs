//! A regulator's notification draft for one breach, in one jurisdiction.
//!
//! Each field the authority asks for is a `## <title>` heading followed by
//! `<!-- field: <id> -->` (so tools can find and fill it), then what the
//! log knows, or `**[TO BE COMPLETED: ...]**` where it knows nothing. It
//! is a draft: a person reviews, completes and files it.

use crate::breach::{Clock, Jurisdiction, Recipient};
use crate::review::{
    clock_line, clock_state, deadline_text, md_code, md_code_block, md_escape, value_text,
    ClockState,
};
use crate::time_fmt::rfc3339;
use crate::{Breach, Incident};
use serde_json::Value;

pub struct Organisation<'a> {
    pub name: Option<&'a str>,
    pub dpo_contact: Option<&'a str>,
    /// "controller" or "processor".
    pub role: &'a str,
}

pub struct PackInput<'a> {
    pub incident: &'a Incident,
    pub jurisdiction: &'a Jurisdiction,
    pub organisation: Organisation<'a>,
    /// Milliseconds since the epoch: when the draft is generated.
    pub now: u64,
    /// The signed checkpoint covering the incident's events.
    pub checkpoint_note: &'a str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    #[error("the incident has no breach marked: mark one first (aiaudit incident breach ID)")]
    NoBreach,
    #[error(
        "the breach started no clocks in jurisdiction {0}: \
         it was not marked for it, or none of its obligations apply"
    )]
    NotMarkedFor(String),
}

const COMMON: &[&str] = &[
    "controller",
    "dpo_contact",
    "nature",
    "data_subject_categories",
    "data_subjects_approx",
    "record_categories",
    "records_approx",
    "consequences",
    "measures",
    "timeline",
    "notification_timing",
    "delay_reasons",
];

/// Kenya adds what the data subjects can do (Data Protection Act 2019 s. 43).
const KE: &[&str] = &[
    "controller",
    "dpo_contact",
    "nature",
    "data_subject_categories",
    "data_subjects_approx",
    "record_categories",
    "records_approx",
    "consequences",
    "measures",
    "recommendations",
    "timeline",
    "notification_timing",
    "delay_reasons",
];

/// South Africa adds POPIA s. 22(5)(c) and (d).
const ZA: &[&str] = &[
    "controller",
    "dpo_contact",
    "nature",
    "data_subject_categories",
    "data_subjects_approx",
    "record_categories",
    "records_approx",
    "consequences",
    "measures",
    "recommendations",
    "unauthorised_party",
    "timeline",
    "notification_timing",
    "delay_reasons",
];

/// The field ids the authority of `code` asks for, in the order of the
/// pack; jurisdictions not built in get the common fields.
pub fn required_fields(code: &str) -> &'static [&'static str] {
    match code {
        "ke" => KE,
        "za" => ZA,
        // ng (NDPA 2023 s. 40, GAID 2025) and eu (GDPR Art. 33(3)) ask for the common fields.
        _ => COMMON,
    }
}

/// The `incident.breach.details` keys a pack reads; any other is listed at the end.
const KNOWN_DETAILS: &[&str] = &[
    "nature",
    "data_subject_categories",
    "data_subjects_approx",
    "record_categories",
    "records_approx",
    "consequences",
    "measures",
    "dpo_contact",
    "delay_reasons",
    "recommendations",
    "unauthorised_party",
    "occurred_at",
    "controller",
];

fn title(code: &str, id: &str) -> &'static str {
    match id {
        "controller" if code == "za" => "Responsible party: identity and contact details",
        "controller" => "Controller: identity and contact details",
        "dpo_contact" => "Data protection officer or other contact point",
        "nature" => "Nature of the breach",
        "data_subject_categories" => "Categories of data subjects",
        "data_subjects_approx" => "Approximate number of data subjects",
        "record_categories" => "Categories of personal data records",
        "records_approx" => "Approximate number of personal data records",
        "consequences" => "Likely consequences",
        "measures" => "Measures taken or proposed",
        "recommendations" => "Recommendations to the data subjects",
        "unauthorised_party" => "Identity of the unauthorised party",
        "timeline" => "Timeline",
        "notification_timing" => "Notification timing",
        "delay_reasons" => "Reasons for delay",
        "data_subject_communication" => "Communication to the data subjects",
        "controller_notification" => "Notification of the controller",
        _ => "Other",
    }
}

/// The provision behind a field, where the law names it field by field.
fn basis(code: &str, id: &str) -> Option<&'static str> {
    Some(match (code, id) {
        (
            "eu",
            "nature"
            | "data_subject_categories"
            | "data_subjects_approx"
            | "record_categories"
            | "records_approx",
        ) => "GDPR Art. 33(3)(a)",
        ("eu", "dpo_contact") => "GDPR Art. 33(3)(b)",
        ("eu", "consequences") => "GDPR Art. 33(3)(c)",
        ("eu", "measures") => "GDPR Art. 33(3)(d)",
        ("eu", "delay_reasons") => "GDPR Art. 33(1)",
        ("za", "consequences") => "POPIA s. 22(5)(a)",
        ("za", "measures") => "POPIA s. 22(5)(b)",
        ("za", "recommendations") => "POPIA s. 22(5)(c)",
        ("za", "unauthorised_party") => "POPIA s. 22(5)(d)",
        _ => return None,
    })
}

/// What a person must write where the log knows nothing of a field.
fn ask(id: &str) -> &'static str {
    match id {
        "dpo_contact" => {
            "name and contact details of the data protection officer or other contact point"
        }
        "nature" => {
            "what happened: how personal data was breached (confidentiality, integrity or \
             availability), how it was discovered, and when"
        }
        "data_subject_categories" => {
            "the categories of data subjects concerned (customers, employees, children, ...)"
        }
        "data_subjects_approx" => "the approximate number of data subjects concerned",
        "record_categories" => "the categories of personal data records concerned",
        "records_approx" => "the approximate number of personal data records concerned",
        "consequences" => "the likely consequences of the breach for the data subjects",
        "measures" => {
            "the measures taken or proposed to address the breach, including measures to \
             mitigate its possible adverse effects"
        }
        "recommendations" => {
            "the measures the data subjects can take to mitigate possible adverse effects"
        }
        "unauthorised_party" => {
            "the identity of the unauthorised person who may have accessed or acquired the \
             personal information, or that it is not known"
        }
        "occurred_at" => "when the breach occurred or began, if known",
        _ => "this field",
    }
}

fn todo(what: &str) -> String {
    format!("**[TO BE COMPLETED: {what}]**")
}

/// A detail the log holds, escaped; none when absent or empty.
fn detail(b: &Breach, key: &str) -> Option<String> {
    b.details
        .get(key)
        .map(value_text)
        .filter(|s| !s.trim().is_empty())
        .map(|s| md_escape(&s))
}

fn detail_or(b: &Breach, key: &str) -> String {
    detail(b, key).unwrap_or_else(|| todo(ask(key)))
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("- {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A logged step in one line: time, action, actor, and the attributes a
/// reader of the timeline needs.
fn step_line(s: &Value) -> String {
    const SHOWN: &[&str] = &[
        "note",
        "reason",
        "skipped_acknowledgement",
        "clock",
        "reference",
        "from",
        "to",
        "section",
    ];
    let attrs: Vec<String> = SHOWN
        .iter()
        .filter_map(|k| {
            s.get(*k)
                .map(value_text)
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}: {v}"))
        })
        .collect();
    let attrs = if attrs.is_empty() {
        String::new()
    } else {
        format!(" ({})", attrs.join("; "))
    };
    md_escape(&format!(
        "{}: {} by {}{attrs}, log index {}",
        value_text(&s["time"]),
        value_text(&s["action"]),
        value_text(&s["by"]),
        value_text(&s["index"])
    ))
}

/// The notification draft for `input.jurisdiction`.
pub fn markdown(input: &PackInput) -> Result<String, PackError> {
    let (i, j) = (input.incident, input.jurisdiction);
    let b = i.breach.as_ref().ok_or(PackError::NoBreach)?;
    let clocks: Vec<&Clock> = b
        .clocks
        .iter()
        .filter(|c| c.jurisdiction == j.code)
        .collect();
    if clocks.is_empty() {
        return Err(PackError::NotMarkedFor(j.code.clone()));
    }
    let has = |r: Recipient| clocks.iter().any(|c| c.recipient == r);

    let mut fields: Vec<(&str, String)> = required_fields(&j.code)
        .iter()
        .map(|id| (*id, field(input, b, &clocks, id)))
        .collect();
    if b.high_risk || has(Recipient::DataSubjects) {
        let body = subject_communication(input, b, &clocks);
        fields.push(("data_subject_communication", body));
    }
    if input.organisation.role == "processor" || has(Recipient::Controller) {
        let body = controller_notification(input, b, &clocks);
        fields.push(("controller_notification", body));
    }

    let mut out = header(input, b, &clocks);
    for (id, body) in fields {
        out.push_str(&format!(
            "## {}\n<!-- field: {id} -->\n\n",
            title(&j.code, id)
        ));
        if let Some(basis) = basis(&j.code, id) {
            out.push_str(&format!("_Basis: {basis}_\n\n"));
        }
        out.push_str(body.trim_end());
        out.push_str("\n\n");
    }
    let others: Vec<String> = b
        .details
        .iter()
        .filter(|(k, v)| !KNOWN_DETAILS.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| format!("{}: {}", md_escape(k), md_escape(&value_text(v))))
        .collect();
    if !others.is_empty() {
        out.push_str(&format!(
            "## Other recorded details\n\n{}\n\n",
            bullets(&others)
        ));
    }
    out.push_str(&anchoring(
        i.transitions.iter().filter_map(|s| s["index"].as_u64()),
        input.checkpoint_note,
    ));
    out.push_str(&md_code_block(input.checkpoint_note));
    Ok(out)
}

/// The anchoring paragraph: which of the incident's events the checkpoint
/// covers, and which were logged after it (a pack asked for right after a
/// change must not claim a checkpoint covers what it does not).
fn anchoring(indexes: impl Iterator<Item = u64>, checkpoint_note: &str) -> String {
    let size = checkpoint_note
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let (covered, later): (Vec<u64>, Vec<u64>) = indexes.partition(|&n| n < size);
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let mut text = format!(
        "## Anchoring\n\nEvery figure above is taken from the audit log: the incident's \
         events at log index {} are covered by this signed checkpoint (size {size}).",
        list(&covered)
    );
    if !later.is_empty() {
        text.push_str(&format!(
            " Those at index {} were logged after it: draw the pack again once a newer \
             checkpoint covers them.",
            list(&later)
        ));
    }
    text.push_str("\n\n");
    text
}

fn header(input: &PackInput, b: &Breach, clocks: &[&Clock]) -> String {
    let (i, j) = (input.incident, input.jurisdiction);
    let authority: Vec<String> = j
        .obligations
        .iter()
        .filter(|o| o.recipient == Recipient::Authority)
        .map(|o| format!("{} ({}: {})", o.notify, o.reference, o.wording))
        .collect();
    let authority = match authority.is_empty() {
        true => "none configured".to_string(),
        false => md_escape(&authority.join("; ")),
    };
    let deadlines: Vec<String> = clocks
        .iter()
        .map(|c| {
            let (key, notify) = (md_code(&c.key), md_escape(&c.notify));
            format!("  - {key} ({notify}): {}", md_escape(&deadline_text(c)))
        })
        .collect();
    let mut meta = vec![
        format!(
            "Jurisdiction: {} ({})",
            md_escape(&j.name),
            md_code(&j.code)
        ),
        format!("Law: {}", md_escape(&j.law)),
        format!("Authority: {authority}"),
        format!(
            "Deadlines (from awareness at {}):\n{}",
            rfc3339(b.aware_at),
            deadlines.join("\n")
        ),
        format!("Incident: {} ({})", md_code(&i.id), md_escape(&i.title)),
        format!("Tenant: {}", md_code(&i.tenant)),
        format!("Role: {}", md_escape(input.organisation.role)),
        format!("Generated: {}", rfc3339(input.now)),
    ];
    if j.code == "za" {
        meta.push(
            "Form: file on the Information Regulator's prescribed security compromise \
             notification form; this pack gives the content for it."
                .into(),
        );
    }
    if input.organisation.role == "processor" {
        meta.push(
            "As processor, tell the controller first (see Notification of the controller); \
             the authority is normally notified by the controller."
                .into(),
        );
    }
    format!(
        "# Personal data breach notification: {} (DRAFT)\n\n\
         **DRAFT prepared from the audit log. A person must review it, complete every \
         `[TO BE COMPLETED]` marker and check every prefilled value before it is sent. \
         It has not been filed.**\n\n{}\n\n",
        md_escape(&j.name),
        bullets(&meta)
    )
}

fn field(input: &PackInput, b: &Breach, clocks: &[&Clock], id: &str) -> String {
    let i = input.incident;
    match id {
        "controller" => controller(input, b),
        "dpo_contact" => detail(b, id)
            .or_else(|| input.organisation.dpo_contact.map(md_escape))
            .unwrap_or_else(|| todo(ask(id))),
        "nature" => {
            let mut s = format!(
                "Recorded in the log: incident \"{}\" ({}), severity {}, opened {}; \
                 aware of the breach at {}.",
                md_escape(&i.title),
                md_code(&i.id),
                i.severity.as_str(),
                rfc3339(i.opened_at),
                rfc3339(b.aware_at)
            );
            if let Some(d) = &i.description {
                s.push_str(&format!(" Description: {}", md_escape(d)));
            }
            format!("{s}\n\n{}", detail_or(b, id))
        }
        "measures" => measures(i, b),
        "timeline" => timeline(input, b),
        "notification_timing" => {
            let mut lines = vec![format!(
                "Deadlines run from awareness at {}.",
                rfc3339(b.aware_at)
            )];
            lines.extend(
                clocks
                    .iter()
                    .map(|c| md_escape(&clock_line(b, c, input.now))),
            );
            bullets(&lines)
        }
        "delay_reasons" => delay_reasons(input, b, clocks),
        // Categories, numbers, consequences, recommendations, unauthorised party.
        _ => detail_or(b, id),
    }
}

fn controller(input: &PackInput, b: &Breach) -> String {
    let org = &input.organisation;
    let who = match input.jurisdiction.code.as_str() {
        "za" => "responsible party",
        _ => "controller",
    };
    let given = |key: &str, what: &str| detail(b, key).unwrap_or_else(|| todo(what));
    let name = |what: &str| org.name.map(md_escape).unwrap_or_else(|| todo(what));
    let mut lines = if org.role == "processor" {
        vec![
            format!(
                "We act as processor. The {who}: {}",
                given(
                    "controller",
                    &format!("the {who}'s name, address and contact details")
                )
            ),
            format!("Processor: {}", name("the processor's legal name")),
        ]
    } else {
        vec![
            format!("Name: {}", name(&format!("the {who}'s legal name"))),
            format!(
                "Address and contact for this notification: {}",
                given(
                    "controller",
                    "postal address, and the name, e-mail and telephone of the person to contact"
                )
            ),
        ]
    };
    lines.push(format!(
        "Tenant in the audit log: {}",
        md_code(&input.incident.tenant)
    ));
    bullets(&lines)
}

fn measures(i: &Incident, b: &Breach) -> String {
    let mut lines: Vec<String> = detail(b, "measures").into_iter().collect();
    for e in i.sections.get("actions").into_iter().flatten() {
        lines.push(md_escape(&format!(
            "{} (action recorded {}, log index {})",
            value_text(&e["text"]),
            value_text(&e["time"]),
            value_text(&e["index"])
        )));
    }
    for s in &i.transitions {
        let what = match s["action"].as_str() {
            Some(crate::action::MITIGATED) => "Mitigated",
            Some(crate::action::RESOLVED) => "Resolved",
            _ => continue,
        };
        if let Some(note) = s["note"].as_str().filter(|n| !n.is_empty()) {
            lines.push(md_escape(&format!(
                "{what} {}: {note} (log index {})",
                value_text(&s["time"]),
                value_text(&s["index"])
            )));
        }
    }
    if lines.is_empty() {
        todo(ask("measures"))
    } else {
        bullets(&lines)
    }
}

fn timeline(input: &PackInput, b: &Breach) -> String {
    let i = input.incident;
    let contained = match i.mitigated_at.or(i.resolved_at) {
        Some(t) => rfc3339(t),
        None => format!(
            "not yet contained at {} (incident {})",
            rfc3339(input.now),
            i.status.as_str()
        ),
    };
    let mut lines = vec![
        format!("Occurred: {}", detail_or(b, "occurred_at")),
        format!(
            "Incident opened: {} (log index {})",
            rfc3339(i.opened_at),
            i.index
        ),
        format!("Aware of the breach: {}", rfc3339(b.aware_at)),
        format!("Breach recorded in the log: {}", rfc3339(b.marked_at)),
        format!("Contained (mitigated): {contained}"),
    ];
    if let Some(r) = i.resolved_at {
        lines.push(format!("Resolved: {}", rfc3339(r)));
    }
    lines.push("Every logged step:".into());
    let mut out = bullets(&lines);
    for s in &i.transitions {
        out.push_str(&format!("\n  - {}", step_line(s)));
    }
    out
}

/// Required text once an authority deadline has passed without a timely
/// notification; "not applicable" otherwise.
fn delay_reasons(input: &PackInput, b: &Breach, clocks: &[&Clock]) -> String {
    let authority: Vec<&Clock> = clocks
        .iter()
        .copied()
        .filter(|c| c.recipient == Recipient::Authority)
        .collect();
    let state = |c: &Clock| clock_state(b, c, input.now);
    let late = authority.iter().find(|c| {
        matches!(
            state(c),
            ClockState::Notified {
                late_by: Some(_),
                ..
            } | ClockState::Overdue(_)
        )
    });
    let pending = authority
        .iter()
        .find(|c| matches!(state(c), ClockState::Pending(_)));
    let recorded = detail(b, "delay_reasons");
    if let Some(c) = late {
        let what = format!(
            "the reasons the authority was not notified by the {} deadline ({})",
            c.deadline.as_deref().unwrap_or(""),
            c.reference
        );
        return recorded.unwrap_or_else(|| todo(&what));
    }
    let mut s = match pending {
        Some(c) => format!(
            "Not applicable if this notification is sent by {} ({}); if it will be later, \
             state the reasons for the delay.",
            c.deadline.as_deref().unwrap_or(""),
            c.reference
        ),
        None if authority.iter().all(|c| c.deadline.is_none()) => {
            "Not applicable: the law sets no fixed period; if notification was not made as \
             soon as reasonably possible, explain why."
                .into()
        }
        None => "Not applicable: the authority was notified on time.".into(),
    };
    if let Some(r) = recorded {
        s.push_str(&format!("\n\nRecorded: {r}"));
    }
    s
}

fn subject_communication(input: &PackInput, b: &Breach, clocks: &[&Clock]) -> String {
    let mut lines: Vec<String> = clocks
        .iter()
        .filter(|c| c.recipient == Recipient::DataSubjects)
        .map(|c| md_escape(&clock_line(b, c, input.now)))
        .collect();
    if lines.is_empty() {
        lines.push(
            "The breach is marked high risk, but no data-subject clock was started in this \
             jurisdiction."
                .into(),
        );
    }
    lines.push(format!(
        "Message to the data subjects, in plain and clear language, and how it is sent: {}",
        todo("the text sent to them, the channel (e-mail, letter, public notice) and when")
    ));
    lines.push(format!(
        "Advice to the data subjects: {}",
        detail(b, "recommendations")
            .unwrap_or_else(|| todo("what the data subjects can do to protect themselves"))
    ));
    bullets(&lines)
}

fn controller_notification(input: &PackInput, b: &Breach, clocks: &[&Clock]) -> String {
    let logged: Vec<String> = clocks
        .iter()
        .filter(|c| c.recipient == Recipient::Controller)
        .map(|c| md_escape(&clock_line(b, c, input.now)))
        .collect();
    if !logged.is_empty() {
        return bullets(&logged);
    }
    // Marked as the tenant's own breach: still say what the law asks of a
    // processor, counted from the logged awareness.
    let computed = crate::breach::clocks(input.jurisdiction, b.aware_at, b.high_risk, true);
    let mut lines: Vec<String> = computed
        .iter()
        .filter(|c| c.recipient == Recipient::Controller)
        .map(|c| {
            md_escape(&format!(
                "Computed from awareness (the breach was not marked as processed for a \
                 controller, so the log holds no such clock): {}",
                clock_line(b, c, input.now)
            ))
        })
        .collect();
    lines.push(format!(
        "When and how the controller was told: {}",
        todo("the time, the channel and the person told at the controller")
    ));
    bullets(&lines)
}

#[cfg(test)]
mod tests {
    #[test]
    fn anchoring_names_the_events_a_checkpoint_does_not_cover() {
        let note = "aiaudit.local/log\n4\nROOT=\n\n\u{2014} aiaudit.local/log SIG\n";
        let text = super::anchoring([1u64, 3, 4, 8].into_iter(), note);
        assert!(
            text.contains("at log index 1, 3 are covered by this signed checkpoint (size 4)."),
            "{text}"
        );
        assert!(
            text.contains("Those at index 4, 8 were logged after it"),
            "{text}"
        );
        let all = super::anchoring([0u64, 2].into_iter(), note);
        assert!(!all.contains("after it"), "{all}");
    }

    use super::*;
    use crate::breach::builtin;
    use crate::review::fixture::{incident, ms, Shape, CHECKPOINT, NOW};
    use serde_json::json;

    fn jurisdiction(code: &str) -> Jurisdiction {
        builtin().into_iter().find(|j| j.code == code).unwrap()
    }

    fn pack(i: &Incident, j: &Jurisdiction, role: &str) -> Result<String, PackError> {
        markdown(&PackInput {
            incident: i,
            jurisdiction: j,
            organisation: Organisation {
                name: Some("Acme Ltd"),
                dpo_contact: Some("dpo@acme.example"),
                role,
            },
            now: ms(NOW),
            checkpoint_note: CHECKPOINT,
        })
    }

    /// The value of field `id`: after its marker (and basis line), to the next heading.
    fn body<'a>(md: &'a str, id: &str) -> &'a str {
        let marker = format!("<!-- field: {id} -->");
        let start = md
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {id}:\n{md}"));
        let mut rest = &md[start + marker.len()..];
        if let Some(after) = rest.strip_prefix("\n\n_Basis: ") {
            rest = &after[after.find('\n').unwrap()..];
        }
        &rest[..rest.find("\n## ").unwrap_or(rest.len())]
    }

    fn details() -> serde_json::Value {
        json!({
            "nature": "Storage bucket with customer records readable by anyone",
            "data_subject_categories": ["customers", "prospects"],
            "data_subjects_approx": 1200,
            "record_categories": "names, e-mail addresses",
            "records_approx": 1500,
            "measures": "Bucket made private; access keys rotated",
            "ticket": "SEC-42",
        })
    }

    #[test]
    fn every_field_each_authority_asks_for_is_there() {
        let i = incident(&Shape {
            details: details(),
            ..Shape::default()
        });
        for code in ["ng", "ke", "za", "eu"] {
            let md = pack(&i, &jurisdiction(code), "controller").unwrap();
            let ids = required_fields(code);
            for id in ids {
                let marker = format!("## {}\n<!-- field: {id} -->\n", title(code, id));
                assert!(md.contains(&marker), "{code}: {id}\n{md}");
            }
            // Prefilled where the details say, marked where they do not.
            assert!(
                body(&md, "nature")
                    .contains("Storage bucket with customer records readable by anyone"),
                "{md}"
            );
            assert!(
                body(&md, "nature").contains("aware of the breach at 2026-03-04T10:00:00Z"),
                "{md}"
            );
            assert_eq!(
                body(&md, "data_subject_categories").trim(),
                "customers, prospects"
            );
            assert_eq!(body(&md, "data_subjects_approx").trim(), "1200");
            assert_eq!(
                body(&md, "record_categories").trim(),
                "names, e-mail addresses"
            );
            assert_eq!(body(&md, "records_approx").trim(), "1500");
            assert_eq!(body(&md, "dpo_contact").trim(), "dpo@acme.example");
            assert!(body(&md, "controller").contains("Name: Acme Ltd"), "{md}");
            assert!(
                body(&md, "controller").contains("**[TO BE COMPLETED: postal address"),
                "{md}"
            );
            assert!(
                body(&md, "consequences").trim_end().ends_with(
                    "\n\n**[TO BE COMPLETED: the likely consequences of the breach for the data subjects]**"
                ),
                "{md}"
            );
            let measures = body(&md, "measures");
            assert!(
                measures.contains("- Bucket made private; access keys rotated"),
                "{md}"
            );
            assert!(
                measures.contains(
                    "Mitigated 2026-03-04T12:05:00Z: bucket made private (log index 105)"
                ),
                "{md}"
            );
            let timeline = body(&md, "timeline");
            assert!(
                timeline.contains("Occurred: **[TO BE COMPLETED: when the breach occurred"),
                "{md}"
            );
            assert!(
                timeline.contains("Contained (mitigated): 2026-03-04T12:05:00Z"),
                "{md}"
            );
            assert!(
                timeline
                    .contains("incident.acknowledged by token:ops (note: on it), log index 102"),
                "{md}"
            );
            assert!(
                body(&md, "notification_timing").contains(&format!("{code}:authority: tell")),
                "{md}"
            );
            // High risk: the data subjects are told too.
            assert!(
                body(&md, "data_subject_communication")
                    .contains(&format!("{code}:data\\_subjects")),
                "{md}"
            );
            assert!(
                md.contains("## Other recorded details\n\n- ticket: SEC-42"),
                "{md}"
            );
            assert!(
                !md.contains("<!-- field: controller_notification -->"),
                "a controller: {md}"
            );
            // Header: draft notice, authority, deadlines; footer: the checkpoint.
            assert!(
                md.contains("**DRAFT prepared from the audit log. A person must review it"),
                "{md}"
            );
            assert!(
                md.contains("- Incident: `i1` (Customer records exposed)\n- Tenant: `acme`"),
                "{md}"
            );
            assert!(
                md.contains(&format!("```\n{}\n```", CHECKPOINT.trim_end())),
                "{md}"
            );
        }
        let ng = pack(&i, &jurisdiction("ng"), "controller").unwrap();
        assert!(ng.contains("- Authority: Nigeria Data Protection Commission (NDPC) (NDPA 2023 s. 40(2): within 72 hours"), "{ng}");
        assert!(ng.contains("  - `ng:authority` (Nigeria Data Protection Commission (NDPC)): deadline 2026-03-07T10:00:00Z"), "{ng}");
        assert!(
            body(&ng, "data_subject_communication").contains("NDPA 2023 s. 40(3)"),
            "{ng}"
        );
        let za = pack(&i, &jurisdiction("za"), "controller").unwrap();
        assert!(
            za.contains("prescribed security compromise notification form"),
            "{za}"
        );
        assert!(za.contains("as soon as reasonably possible"), "{za}");
        assert!(
            body(&za, "unauthorised_party")
                .contains("**[TO BE COMPLETED: the identity of the unauthorised person"),
            "{za}"
        );
        assert!(
            body(&za, "recommendations")
                .contains("**[TO BE COMPLETED: the measures the data subjects can take"),
            "{za}"
        );
        assert!(
            za.contains("<!-- field: recommendations -->\n\n_Basis: POPIA s. 22(5)(c)_\n"),
            "{za}"
        );
        assert!(body(&za, "controller").contains("Name: Acme Ltd"), "{za}");
        assert!(
            za.contains("## Responsible party: identity and contact details"),
            "{za}"
        );
        let eu = pack(&i, &jurisdiction("eu"), "controller").unwrap();
        assert!(
            eu.contains("<!-- field: consequences -->\n\n_Basis: GDPR Art. 33(3)(c)_\n"),
            "{eu}"
        );
        assert!(!eu.contains("<!-- field: recommendations -->"), "{eu}");
    }

    #[test]
    fn details_fill_the_fields_the_authority_adds() {
        let mut d = details();
        d["recommendations"] = json!("Change passwords; watch for phishing");
        d["unauthorised_party"] = json!("Not known");
        d["consequences"] = json!("Phishing | spam");
        d["dpo_contact"] = json!("Ada Obi, privacy@acme.example");
        let i = incident(&Shape {
            details: d,
            ..Shape::default()
        });
        let za = pack(&i, &jurisdiction("za"), "controller").unwrap();
        assert!(
            body(&za, "recommendations").contains("Change passwords; watch for phishing"),
            "{za}"
        );
        assert!(
            body(&za, "unauthorised_party").contains("Not known"),
            "{za}"
        );
        assert!(
            body(&za, "consequences").contains("Phishing \\| spam"),
            "{za}"
        );
        assert_eq!(
            body(&za, "dpo_contact").trim(),
            "Ada Obi, privacy@acme.example"
        );
        let ke = pack(&i, &jurisdiction("ke"), "controller").unwrap();
        assert!(
            body(&ke, "recommendations").contains("Change passwords"),
            "{ke}"
        );
        assert!(
            !ke.contains("TO BE COMPLETED: the likely consequences"),
            "{ke}"
        );
    }

    #[test]
    fn a_late_notification_needs_reasons() {
        // ng notified 5 h late; ke and eu not notified past their deadline.
        let i = incident(&Shape::default());
        for code in ["ng", "ke", "eu"] {
            let md = pack(&i, &jurisdiction(code), "controller").unwrap();
            let reasons = body(&md, "delay_reasons");
            assert!(reasons.contains("**[TO BE COMPLETED: the reasons the authority was not notified by the 2026-03-07T10:00:00Z deadline"), "{code}: {md}");
        }
        let ng = pack(&i, &jurisdiction("ng"), "controller").unwrap();
        assert!(
            body(&ng, "notification_timing").contains("late by 5 h"),
            "{ng}"
        );
        // Reasons logged: used as they are.
        let i = incident(&Shape {
            details: json!({"delay_reasons": "Forensics needed first"}),
            ..Shape::default()
        });
        let ng = pack(&i, &jurisdiction("ng"), "controller").unwrap();
        assert_eq!(body(&ng, "delay_reasons").trim(), "Forensics needed first");
        // On time: not applicable.
        let i = incident(&Shape {
            ng_notified: Some("2026-03-05T09:00:00Z"),
            ..Shape::default()
        });
        let ng = pack(&i, &jurisdiction("ng"), "controller").unwrap();
        assert_eq!(
            body(&ng, "delay_reasons").trim(),
            "Not applicable: the authority was notified on time."
        );
        assert!(body(&ng, "notification_timing").contains("on time"), "{ng}");
        // South Africa sets no figure.
        let za = pack(&i, &jurisdiction("za"), "controller").unwrap();
        assert!(
            body(&za, "delay_reasons")
                .starts_with("\n\nNot applicable: the law sets no fixed period"),
            "{za}"
        );
    }

    #[test]
    fn a_pending_deadline_is_not_yet_late() {
        let i = incident(&Shape {
            ng_notified: None,
            ..Shape::default()
        });
        let md = markdown(&PackInput {
            incident: &i,
            jurisdiction: &jurisdiction("ng"),
            organisation: Organisation {
                name: None,
                dpo_contact: None,
                role: "controller",
            },
            now: ms("2026-03-06T10:00:00Z"),
            checkpoint_note: CHECKPOINT,
        })
        .unwrap();
        assert!(
            body(&md, "delay_reasons")
                .contains("Not applicable if this notification is sent by 2026-03-07T10:00:00Z"),
            "{md}"
        );
        assert!(
            body(&md, "notification_timing").contains("Not notified yet: 1 d left"),
            "{md}"
        );
        assert!(
            body(&md, "controller")
                .contains("Name: **[TO BE COMPLETED: the controller's legal name]**"),
            "{md}"
        );
        assert!(
            body(&md, "dpo_contact").contains(
                "**[TO BE COMPLETED: name and contact details of the data protection officer"
            ),
            "{md}"
        );
        assert!(
            body(&md, "nature").contains("**[TO BE COMPLETED: what happened"),
            "{md}"
        );
        assert!(
            body(&md, "data_subjects_approx").contains("**[TO BE COMPLETED:"),
            "{md}"
        );
    }

    #[test]
    fn a_processor_tells_the_controller() {
        let i = incident(&Shape {
            processor: true,
            high_risk: false,
            ..Shape::default()
        });
        let ke = pack(&i, &jurisdiction("ke"), "processor").unwrap();
        let c = body(&ke, "controller_notification");
        assert!(c.contains("ke:controller: tell the data controller (Data Protection Act 2019 s. 43(2)), deadline 2026-03-06T10:00:00Z"), "{ke}");
        assert!(c.contains("within 48 hours"), "{ke}");
        assert!(
            body(&ke, "controller")
                .contains("We act as processor. The controller: **[TO BE COMPLETED:"),
            "{ke}"
        );
        assert!(
            ke.contains("As processor, tell the controller first"),
            "{ke}"
        );
        // Marked without the processor clock: the law's deadline, computed.
        let i = incident(&Shape {
            high_risk: false,
            ..Shape::default()
        });
        let ke = pack(&i, &jurisdiction("ke"), "processor").unwrap();
        let c = body(&ke, "controller_notification");
        assert!(c.contains("deadline 2026-03-06T10:00:00Z"), "{ke}");
        assert!(
            c.contains("Computed from awareness (the breach was not marked"),
            "{ke}"
        );
        assert!(
            c.contains("**[TO BE COMPLETED: the time, the channel"),
            "{ke}"
        );
        // Not high risk: no data-subject section in Kenya.
        assert!(
            !ke.contains("<!-- field: data_subject_communication -->"),
            "{ke}"
        );
    }

    #[test]
    fn only_a_breach_marked_for_the_jurisdiction_has_a_pack() {
        let i = incident(&Shape {
            jurisdictions: &["ng"],
            ..Shape::default()
        });
        assert_eq!(
            pack(&i, &jurisdiction("ke"), "controller"),
            Err(PackError::NotMarkedFor("ke".into()))
        );
        assert!(pack(&i, &jurisdiction("ng"), "controller").is_ok());
        let i = incident(&Shape {
            breach: false,
            ng_notified: None,
            ..Shape::default()
        });
        assert_eq!(
            pack(&i, &jurisdiction("ng"), "controller"),
            Err(PackError::NoBreach)
        );
    }

    #[test]
    fn a_configured_jurisdiction_gets_the_common_fields() {
        let gh: Jurisdiction = serde_json::from_value(json!({
            "code": "gh", "name": "Ghana", "law": "Data Protection Act 2012 (Act 843)",
            "obligations": [{"recipient": "authority", "notify": "Data Protection Commission",
                             "within_hours": 72, "reference": "s. 31", "wording": "as soon as reasonably practicable"}]
        }))
        .unwrap();
        let mut i = incident(&Shape::default());
        assert_eq!(
            pack(&i, &gh, "controller"),
            Err(PackError::NotMarkedFor("gh".into()))
        );
        // Marked for it (clocks as the ledger logs them).
        let b = i.breach.as_mut().unwrap();
        b.clocks
            .extend(crate::breach::clocks(&gh, b.aware_at, false, false));
        let md = pack(&i, &gh, "controller").unwrap();
        assert_eq!(required_fields("gh"), COMMON);
        for id in COMMON {
            assert!(md.contains(&format!("<!-- field: {id} -->")), "{id}: {md}");
        }
        assert!(
            md.contains("- Authority: Data Protection Commission (s. 31"),
            "{md}"
        );
        assert!(
            body(&md, "delay_reasons").contains("[TO BE COMPLETED"),
            "{md}"
        );
    }
}
