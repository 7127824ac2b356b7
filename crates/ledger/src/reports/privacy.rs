//! Data-protection frameworks beside the EU AI Act: Nigeria's NDPA 2023
//! (with the NDPC's GAID 2025), South Africa's POPIA and Kenya's Data
//! Protection Act 2019. Every figure comes from the log (the search index,
//! the ledger's own erasure records, incidents folded from the log) or, for
//! what the log cannot know (DPIA references, DPO, residency statements),
//! from `[compliance]` in the configuration, and says so.

use super::{rfc3339, Report, System};
use crate::Ledger;
use aiaudit_index::Period;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// `framework=` of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framework {
    EuAiAct,
    Ndpa,
    Popia,
    KenyaDpa,
}

impl Framework {
    pub const ALL: [Framework; 4] = [
        Framework::EuAiAct,
        Framework::Ndpa,
        Framework::Popia,
        Framework::KenyaDpa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Framework::EuAiAct => "eu-ai-act",
            Framework::Ndpa => "ndpa",
            Framework::Popia => "popia",
            Framework::KenyaDpa => "kenya-dpa",
        }
    }

    pub fn parse(s: &str) -> Option<Framework> {
        Framework::ALL.into_iter().find(|f| f.as_str() == s)
    }

    #[cfg(test)]
    pub(crate) fn law_for_tests(self) -> Law {
        self.law()
    }

    /// The breach-clock jurisdiction whose notifications this framework judges.
    fn jurisdiction(self) -> Option<&'static str> {
        match self {
            Framework::Ndpa => Some("ng"),
            Framework::Popia => Some("za"),
            Framework::KenyaDpa => Some("ke"),
            Framework::EuAiAct => None,
        }
    }

    /// The law, its authority, and the provision each section serves.
    fn law(self) -> Law {
        match self {
            Framework::Ndpa => Law {
                name: "Nigeria Data Protection Act 2023 (NDPA) and the NDPC's General Application and Implementation Directive (GAID) 2025",
                authority: "Nigeria Data Protection Commission (NDPC)",
                processing: "NDPA 2023 s. 24 (principles: accountability) and s. 28 (data privacy impact assessment)",
                erasure: "NDPA 2023 s. 34 (rights of the data subject, erasure)",
                breaches: "NDPA 2023 s. 40 (notification of breaches)",
                retention: "NDPA 2023 s. 24(1) (storage limitation)",
                transfers: "NDPA 2023 ss. 41-43 (cross-border transfers)",
                dpo: "NDPA 2023 s. 32 (data protection officer)",
            },
            Framework::Popia => Law {
                name: "Protection of Personal Information Act 4 of 2013 (POPIA)",
                authority: "Information Regulator (South Africa)",
                processing: "POPIA s. 17 (documentation of processing operations) and the Regulations' personal information impact assessment",
                erasure: "POPIA s. 24 (correction and deletion of personal information)",
                breaches: "POPIA s. 22 (notification of security compromises)",
                retention: "POPIA s. 14 (retention and restriction of records)",
                transfers: "POPIA s. 72 (transfers of personal information outside the Republic)",
                dpo: "POPIA s. 55 (information officer)",
            },
            Framework::KenyaDpa => Law {
                name: "Data Protection Act 2019 (Kenya)",
                authority: "Office of the Data Protection Commissioner (ODPC)",
                processing: "Data Protection Act 2019 s. 31 (data protection impact assessment) and s. 41 (data protection by design)",
                erasure: "Data Protection Act 2019 s. 40 (rectification and erasure)",
                breaches: "Data Protection Act 2019 s. 43 (notification of breaches)",
                retention: "Data Protection Act 2019 s. 39 (limitation of retention)",
                transfers: "Data Protection Act 2019 ss. 48-50 (transfers out of Kenya, processing in Kenya)",
                dpo: "Data Protection Act 2019 s. 24 (data protection officer)",
            },
            Framework::EuAiAct => Law {
                name: "",
                authority: "",
                processing: "",
                erasure: "",
                breaches: "",
                retention: "",
                transfers: "",
                dpo: "",
            },
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Law {
    pub name: &'static str,
    pub authority: &'static str,
    pub processing: &'static str,
    pub erasure: &'static str,
    pub breaches: &'static str,
    pub retention: &'static str,
    pub transfers: &'static str,
    pub dpo: &'static str,
}

/// `[compliance]`: what the log cannot know.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceConfig {
    /// An erasure request older than this is flagged.
    pub erasure_target_days: u32,
    /// How often each tenant's compliance is checked and the result logged
    /// (`compliance.check`), e.g. "1d"; "0s" turns the checks off.
    pub check_every: String,
    /// The frameworks each scheduled check reports on.
    pub check_frameworks: Vec<String>,
    /// How often the full reports (JSON and HTML) are archived to the
    /// backup locations as evidence (`compliance.archived`); "0s": never.
    pub archive_every: String,
    pub tenants: BTreeMap<String, TenantCompliance>,
}

impl Default for ComplianceConfig {
    fn default() -> Self {
        ComplianceConfig {
            erasure_target_days: 30,
            check_every: "1d".into(),
            check_frameworks: vec![Framework::EuAiAct.as_str().into()],
            archive_every: "30d".into(),
            tenants: BTreeMap::new(),
        }
    }
}

impl ComplianceConfig {
    /// The schedule, checked at start (a misspelt framework or duration
    /// stops the server rather than silently never checking).
    pub fn schedule(&self) -> std::result::Result<Schedule, String> {
        let secs = |name: &str, v: &str| {
            crate::auth::parse_duration_secs(v).ok_or_else(|| {
                format!("compliance.{name}: {v:?} is not a duration such as 1d or 12h")
            })
        };
        let frameworks = self
            .check_frameworks
            .iter()
            .map(|f| {
                Framework::parse(f).ok_or_else(|| {
                    format!("compliance.check_frameworks: {f:?} is not eu-ai-act, ndpa, popia or kenya-dpa")
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Schedule {
            check_every_secs: secs("check_every", &self.check_every)?,
            archive_every_secs: secs("archive_every", &self.archive_every)?,
            frameworks,
        })
    }
}

/// When scheduled compliance checks run (0: off).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub check_every_secs: u64,
    pub archive_every_secs: u64,
    pub frameworks: Vec<Framework>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCompliance {
    pub organisation: Option<String>,
    pub dpo_contact: Option<String>,
    /// Registration with the authority (NDPC registration number, ...).
    pub registration: Option<String>,
    /// AI system (`source.name`) → its DPIA reference.
    #[serde(default)]
    pub dpias: BTreeMap<String, String>,
    pub data_residency: Option<String>,
    pub cross_border_transfers: Option<String>,
}

/// The action an application logs when a data subject asks for erasure,
/// with the subject in `subject`; the ledger's `data.erasure` record with
/// the same subject tag completes it.
pub const ERASURE_REQUEST: &str = "data_subject.erasure_requested";

#[derive(Debug, Clone, Serialize)]
pub struct Privacy {
    pub framework: &'static str,
    pub law: Law,
    pub organisation: Option<String>,
    pub dpo_contact: Option<String>,
    pub registration: Option<String>,
    pub processing: Vec<Processing>,
    pub erasure: Erasure,
    pub breaches: Vec<BreachRow>,
    pub data_residency: Option<String>,
    pub cross_border_transfers: Option<String>,
}

/// One AI system's processing in the period.
#[derive(Debug, Clone, Serialize)]
pub struct Processing {
    pub system: Option<String>,
    pub events: u64,
    pub first: String,
    pub last: String,
    pub actions: BTreeMap<String, u64>,
    pub dpia: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Erasure {
    /// `data_subject.erasure_requested` events in the period.
    pub requests: u64,
    pub completed: u64,
    pub pending: u64,
    /// The ledger's `data.erasure` records in the period (also those with no logged request).
    pub erasures_logged: u64,
    pub target_days: u32,
    pub over_target: u64,
    pub median_hours: Option<f64>,
    pub max_hours: Option<f64>,
    pub rows: Vec<ErasureRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErasureRow {
    pub subject_tag: String,
    pub requested_at: String,
    pub completed_at: Option<String>,
    pub hours: Option<f64>,
    /// Log indexes of the request and of the erasure record.
    pub request_index: u64,
    pub erasure_index: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreachRow {
    pub incident_id: String,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub aware_at: String,
    pub clocks: Vec<ClockRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClockRow {
    pub key: String,
    pub notify: String,
    pub reference: String,
    pub deadline: Option<String>,
    pub notified_at: Option<String>,
    pub notification_reference: Option<String>,
    /// "on time", "late", "overdue", "pending", or "notified" (no fixed deadline).
    pub outcome: &'static str,
}

fn hours(ms: i64) -> f64 {
    (ms as f64 / 3_600_000.0 * 10.0).round() / 10.0
}

/// Matches erasure requests to the ledger's erasure records by subject tag.
fn erasure(
    ledger: &Ledger,
    p: &Period,
    target_days: u32,
    now_ms: i64,
) -> Result<Erasure, aiaudit_index::Error> {
    let rows_of =
        |action: &str, from_ms: i64| -> Result<Vec<aiaudit_index::Row>, aiaudit_index::Error> {
            let mut q = aiaudit_index::Query {
                tenant: Some(p.tenant.clone()),
                action: Some(action.to_string()),
                from_ms: Some(from_ms),
                limit: aiaudit_index::MAX_LIMIT,
                order: aiaudit_index::Order::Asc,
                ..Default::default()
            };
            let mut out = Vec::new();
            loop {
                let page = ledger.index.query(&q)?;
                out.extend(page.rows);
                match page.next {
                    Some(n) if out.len() < 100_000 => q.after = Some(n),
                    _ => return Ok(out),
                }
            }
        };
    let requests: Vec<_> = rows_of(ERASURE_REQUEST, p.from_ms)?
        .into_iter()
        .filter(|r| r.time_ms.is_some_and(|t| t < p.to_ms))
        .collect();
    // Erasure records from the period's start on (a request of the period
    // may be completed after it), each read for its subject tag.
    let mut done: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
    let mut erasures_logged = 0;
    for row in rows_of("data.erasure", p.from_ms)? {
        let t = row.time_ms.unwrap_or(0);
        if t < p.to_ms {
            erasures_logged += 1;
        }
        let tag = ledger
            .store
            .read_entry(row.index)
            .ok()
            .and_then(|entry| {
                crate::sealing::open_entry(
                    &ledger.keyring,
                    &*ledger.store,
                    &entry,
                    crate::sealing::BlobMode::Omit,
                )
                .ok()
            })
            .filter(|r| r.stored.appended_by.as_deref() == Some(aiaudit_event::LEDGER_PRINCIPAL))
            .and_then(|r| r.event)
            .and_then(|e| {
                e.get("attributes")?
                    .get("subject_tag")?
                    .as_str()
                    .map(str::to_string)
            });
        if let Some(tag) = tag {
            done.entry(tag).or_default().push((t, row.index));
        }
    }
    let mut e = Erasure {
        requests: requests.len() as u64,
        erasures_logged,
        target_days,
        ..Default::default()
    };
    let target_ms = target_days as i64 * 86_400_000;
    let mut durations = Vec::new();
    for r in requests {
        let asked = r.time_ms.unwrap_or(0);
        let tag = r.subject.clone().unwrap_or_default();
        let completion = done
            .get(&tag)
            .and_then(|list| list.iter().find(|(t, _)| *t >= asked).copied());
        let took = completion.map(|(t, _)| t - asked);
        match took {
            Some(ms) => {
                e.completed += 1;
                durations.push(ms);
                if ms > target_ms {
                    e.over_target += 1;
                }
            }
            None => {
                e.pending += 1;
                if now_ms - asked > target_ms {
                    e.over_target += 1;
                }
            }
        }
        e.rows.push(ErasureRow {
            subject_tag: tag,
            requested_at: rfc3339(asked),
            completed_at: completion.map(|(t, _)| rfc3339(t)),
            hours: took.map(hours),
            request_index: r.index,
            erasure_index: completion.map(|(_, i)| i),
        });
    }
    durations.sort_unstable();
    if !durations.is_empty() {
        e.median_hours = Some(hours(durations[durations.len() / 2]));
        e.max_hours = durations.last().map(|&d| hours(d));
    }
    Ok(e)
}

/// The tenant's breaches known at `now_ms` whose awareness falls in the
/// period, with this framework's clocks judged.
fn breaches(ledger: &Ledger, p: &Period, code: &str, now_ms: i64) -> Vec<BreachRow> {
    let mut out = Vec::new();
    for i in ledger.incidents_of(&p.tenant) {
        let Some(b) = &i.breach else { continue };
        let aware = b.aware_at as i64;
        if aware < p.from_ms || aware >= p.to_ms {
            continue;
        }
        let clocks: Vec<ClockRow> = b
            .clocks
            .iter()
            .filter(|c| c.jurisdiction == code)
            .map(|c| {
                let deadline = c
                    .deadline
                    .as_deref()
                    .and_then(aiaudit_incident::time_fmt::parse);
                let notified = b.notified(&c.key);
                let outcome = match (notified, deadline) {
                    (Some(n), Some(d)) if n.at <= d => "on time",
                    (Some(_), Some(_)) => "late",
                    (Some(_), None) => "notified",
                    (None, Some(d)) if now_ms as u64 > d => "overdue",
                    (None, _) => "pending",
                };
                ClockRow {
                    key: c.key.clone(),
                    notify: c.notify.clone(),
                    reference: c.reference.clone(),
                    deadline: c.deadline.clone(),
                    notified_at: notified.map(|n| aiaudit_incident::time_fmt::rfc3339(n.at)),
                    notification_reference: notified.and_then(|n| n.reference.clone()),
                    outcome,
                }
            })
            .collect();
        if clocks.is_empty() {
            continue;
        }
        out.push(BreachRow {
            incident_id: i.id.clone(),
            title: i.title.clone(),
            severity: i.severity.as_str().into(),
            status: i.status.as_str().into(),
            aware_at: aiaudit_incident::time_fmt::rfc3339(b.aware_at),
            clocks,
        });
    }
    out.sort_by(|a, b| a.aware_at.cmp(&b.aware_at));
    out
}

/// The privacy section of a report under `framework` (none for the AI Act).
pub fn gather(
    ledger: &Ledger,
    framework: Framework,
    p: &Period,
    systems: &[System],
    now_ms: i64,
) -> Result<Option<Privacy>, aiaudit_index::Error> {
    let Some(code) = framework.jurisdiction() else {
        return Ok(None);
    };
    let config = &ledger.config.compliance;
    let tc = config.tenants.get(&p.tenant).cloned().unwrap_or_default();
    let incidents = ledger.incident_tenant_config(&p.tenant);
    let own = [
        "aiaudit",
        crate::policies::SOURCE_NAME,
        aiaudit_incident::SOURCE_NAME,
    ];
    // Applications that only log data-subject requests process nothing.
    let processing = systems
        .iter()
        .filter(|s| !own.contains(&s.system.as_deref().unwrap_or("")))
        .filter(|s| !s.actions.keys().all(|a| a.starts_with("data_subject.")))
        .map(|s| Processing {
            system: s.system.clone(),
            events: s.events,
            first: s.first.clone(),
            last: s.last.clone(),
            actions: s.actions.clone(),
            dpia: s.system.as_ref().and_then(|n| tc.dpias.get(n).cloned()),
        })
        .collect();
    Ok(Some(Privacy {
        framework: framework.as_str(),
        law: framework.law(),
        organisation: tc.organisation.clone().or(incidents.organisation),
        dpo_contact: tc.dpo_contact.clone().or(incidents.dpo_contact),
        registration: tc.registration.clone(),
        processing,
        erasure: erasure(ledger, p, config.erasure_target_days, now_ms)?,
        breaches: breaches(ledger, p, code, now_ms),
        data_residency: tc.data_residency.clone(),
        cross_border_transfers: tc.cross_border_transfers.clone(),
    }))
}

/// Findings of the privacy section.
pub fn findings(r: &Report, add: &mut dyn FnMut(&'static str, &'static str, String)) {
    let Some(p) = &r.privacy else { return };
    for s in p.processing.iter().filter(|s| s.dpia.is_none()) {
        add(
            "medium",
            "privacy.processing",
            format!(
                "AI system {} has no DPIA reference in [compliance.tenants.{}.dpias]",
                s.system.as_deref().unwrap_or("(unnamed)"),
                r.tenant
            ),
        );
    }
    if p.dpo_contact.is_none() {
        add(
            "medium",
            "privacy",
            format!(
                "no data protection officer contact configured ({})",
                p.law.dpo
            ),
        );
    }
    if p.erasure.over_target > 0 {
        add(
            "high",
            "privacy.erasure",
            format!(
                "{} erasure requests took, or have waited, longer than {} days",
                p.erasure.over_target, p.erasure.target_days
            ),
        );
    }
    for b in &p.breaches {
        for c in b
            .clocks
            .iter()
            .filter(|c| matches!(c.outcome, "late" | "overdue"))
        {
            add(
                "high",
                "privacy.breaches",
                format!(
                    "breach {} ({}): the notification to {} ({}) is {}",
                    b.incident_id, b.title, c.notify, c.reference, c.outcome
                ),
            );
        }
    }
    if p.data_residency.is_none() && p.cross_border_transfers.is_none() {
        add(
            "info",
            "privacy.transfers",
            "no residency or cross-border transfer statement configured".to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frameworks_parse_and_name_their_law() {
        for f in Framework::ALL {
            assert_eq!(Framework::parse(f.as_str()), Some(f));
        }
        assert_eq!(Framework::parse("gdpr"), None);
        assert!(Framework::Ndpa.law().breaches.contains("s. 40"));
        assert!(Framework::Popia.law().breaches.contains("s. 22"));
        assert!(Framework::KenyaDpa.law().breaches.contains("s. 43"));
        assert_eq!(Framework::KenyaDpa.jurisdiction(), Some("ke"));
        assert_eq!(hours(90 * 60_000), 1.5);
    }
}
