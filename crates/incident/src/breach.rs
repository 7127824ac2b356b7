//! Breach clocks: who must be told of a personal-data breach, by when,
//! under which law. Each jurisdiction lists its obligations; marking a
//! breach at the time of awareness turns them into [`Clock`]s, and the
//! deadlines are logged with the breach (a later change of configuration
//! does not move a clock already started).
//!
//! Built in: `ng` (Nigeria, NDPA 2023 s. 40), `ke` (Kenya, Data
//! Protection Act 2019 s. 43), `za` (South Africa, POPIA s. 22), `eu`
//! (GDPR Art. 33 and 34). More come from configuration in the same shape.

use serde::{Deserialize, Serialize};

/// Who is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// The supervisory authority (NDPC, ODPC, Information Regulator, ...).
    Authority,
    /// The people whose data it is.
    DataSubjects,
    /// The controller, when the tenant processes on someone else's behalf.
    Controller,
}

impl Recipient {
    pub fn as_str(self) -> &'static str {
        match self {
            Recipient::Authority => "authority",
            Recipient::DataSubjects => "data_subjects",
            Recipient::Controller => "controller",
        }
    }
}

/// When an obligation applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Every breach marked.
    #[default]
    Always,
    /// When the breach is likely to be a high risk to the people concerned.
    HighRisk,
    /// When the tenant is a processor for the breach's controller.
    Processor,
}

/// One duty to notify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Obligation {
    pub recipient: Recipient,
    /// Whom, by name ("Nigeria Data Protection Commission (NDPC)").
    pub notify: String,
    /// Hours from awareness; none where the law says "as soon as
    /// reasonably possible" or "without undue delay" with no figure.
    #[serde(default)]
    pub within_hours: Option<u32>,
    #[serde(default)]
    pub when: Condition,
    /// The provision ("NDPA 2023 s. 40(2)").
    pub reference: String,
    /// What the law asks, in a few words.
    pub wording: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jurisdiction {
    /// Short code (`ng`), lower case.
    pub code: String,
    pub name: String,
    pub law: String,
    pub obligations: Vec<Obligation>,
}

fn ob(
    recipient: Recipient,
    notify: &str,
    within_hours: Option<u32>,
    when: Condition,
    reference: &str,
    wording: &str,
) -> Obligation {
    Obligation {
        recipient,
        notify: notify.into(),
        within_hours,
        when,
        reference: reference.into(),
        wording: wording.into(),
    }
}

/// The jurisdictions this build knows.
pub fn builtin() -> Vec<Jurisdiction> {
    use Condition::*;
    use Recipient::*;
    vec![
        Jurisdiction {
            code: "ng".into(),
            name: "Nigeria".into(),
            law: "Nigeria Data Protection Act 2023 (NDPA) and the NDPC's General Application and Implementation Directive (GAID) 2025".into(),
            obligations: vec![
                ob(Authority, "Nigeria Data Protection Commission (NDPC)", Some(72), Always,
                   "NDPA 2023 s. 40(2)", "within 72 hours of becoming aware of the breach"),
                ob(DataSubjects, "the data subjects concerned", None, HighRisk,
                   "NDPA 2023 s. 40(3)", "immediately, in plain and clear language, when the breach is likely to result in a high risk to their rights and freedoms"),
                ob(Controller, "the data controller", None, Processor,
                   "NDPA 2023 s. 40(1)", "a data processor tells the controller without undue delay"),
            ],
        },
        Jurisdiction {
            code: "ke".into(),
            name: "Kenya".into(),
            law: "Data Protection Act 2019 (Kenya)".into(),
            obligations: vec![
                ob(Authority, "Office of the Data Protection Commissioner (ODPC)", Some(72), Always,
                   "Data Protection Act 2019 s. 43(1)(a)", "without delay, within 72 hours of becoming aware of the breach"),
                ob(DataSubjects, "the data subjects concerned", None, HighRisk,
                   "Data Protection Act 2019 s. 43(1)(b)", "in writing within a reasonably practical period, unless their identity cannot be established"),
                ob(Controller, "the data controller", Some(48), Processor,
                   "Data Protection Act 2019 s. 43(2)", "a data processor tells the controller without delay and, where reasonably practicable, within 48 hours of becoming aware"),
            ],
        },
        Jurisdiction {
            code: "za".into(),
            name: "South Africa".into(),
            law: "Protection of Personal Information Act 4 of 2013 (POPIA)".into(),
            obligations: vec![
                ob(Authority, "Information Regulator (South Africa)", None, Always,
                   "POPIA s. 22(1)-(2)", "as soon as reasonably possible after discovery, on the form the Regulator prescribes"),
                ob(DataSubjects, "the data subjects concerned", None, Always,
                   "POPIA s. 22(1), (4)-(5)", "as soon as reasonably possible after discovery, in writing, with enough information to protect themselves, unless their identity cannot be established"),
                ob(Controller, "the responsible party", None, Processor,
                   "POPIA s. 21(2)", "an operator tells the responsible party immediately"),
            ],
        },
        Jurisdiction {
            code: "eu".into(),
            name: "European Union".into(),
            law: "General Data Protection Regulation (EU) 2016/679 (GDPR)".into(),
            obligations: vec![
                ob(Authority, "the competent supervisory authority", Some(72), Always,
                   "GDPR Art. 33(1)", "without undue delay and, where feasible, not later than 72 hours after becoming aware; reasons for any delay"),
                ob(DataSubjects, "the data subjects concerned", None, HighRisk,
                   "GDPR Art. 34(1)", "without undue delay when the breach is likely to result in a high risk to their rights and freedoms"),
                ob(Controller, "the controller", None, Processor,
                   "GDPR Art. 33(2)", "a processor tells the controller without undue delay"),
            ],
        },
    ]
}

/// A running clock: one obligation of one jurisdiction, for one breach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// `<jurisdiction>:<recipient>`, e.g. `ng:authority`.
    pub key: String,
    pub jurisdiction: String,
    pub recipient: Recipient,
    pub notify: String,
    /// RFC 3339; none for "as soon as reasonably possible".
    pub deadline: Option<String>,
    pub reference: String,
    pub wording: String,
}

/// The clocks a breach starts in `j`, known at `aware_ms`.
pub fn clocks(j: &Jurisdiction, aware_ms: u64, high_risk: bool, processor: bool) -> Vec<Clock> {
    j.obligations
        .iter()
        .filter(|o| match o.when {
            Condition::Always => true,
            Condition::HighRisk => high_risk,
            Condition::Processor => processor,
        })
        .map(|o| Clock {
            key: format!("{}:{}", j.code, o.recipient.as_str()),
            jurisdiction: j.code.clone(),
            recipient: o.recipient,
            notify: o.notify.clone(),
            deadline: o
                .within_hours
                .map(|h| crate::time_fmt::rfc3339(aware_ms + h as u64 * 3_600_000)),
            reference: o.reference.clone(),
            wording: o.wording.clone(),
        })
        .collect()
}

/// Checks a configured jurisdiction: a code of 2 to 16 lower-case letters,
/// digits or `-`, at least one obligation, hours from 1 to 8760.
pub fn validate(j: &Jurisdiction) -> Result<(), String> {
    let code_ok = (2..=16).contains(&j.code.len())
        && j.code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !code_ok {
        return Err(format!(
            "jurisdiction code {:?}: 2 to 16 lower-case letters, digits or '-'",
            j.code
        ));
    }
    if j.obligations.is_empty() {
        return Err(format!("jurisdiction {}: no obligations", j.code));
    }
    for o in &j.obligations {
        if o.within_hours.is_some_and(|h| h == 0 || h > 8760) {
            return Err(format!(
                "jurisdiction {}: within_hours must be 1 to 8760",
                j.code
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time_fmt::parse;

    fn get(code: &str) -> Jurisdiction {
        builtin().into_iter().find(|j| j.code == code).unwrap()
    }

    #[test]
    fn a_breach_marked_at_a_known_time_has_each_jurisdictions_deadline() {
        let aware = parse("2026-05-04T16:20:00Z").unwrap();
        let ng = clocks(&get("ng"), aware, false, false);
        assert_eq!(ng.len(), 1);
        assert_eq!(ng[0].key, "ng:authority");
        assert_eq!(ng[0].deadline.as_deref(), Some("2026-05-07T16:20:00Z"));
        assert_eq!(ng[0].reference, "NDPA 2023 s. 40(2)");
        // High risk adds the data subjects (no figure: "immediately").
        let ng = clocks(&get("ng"), aware, true, false);
        assert_eq!(ng[1].key, "ng:data_subjects");
        assert_eq!(ng[1].deadline, None);
        // Kenya: ODPC in 72 h; a processor tells the controller in 48 h.
        let ke = clocks(&get("ke"), aware, false, true);
        let keys: Vec<_> = ke
            .iter()
            .map(|c| (c.key.as_str(), c.deadline.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                ("ke:authority", Some("2026-05-07T16:20:00Z")),
                ("ke:controller", Some("2026-05-06T16:20:00Z"))
            ]
        );
        // South Africa: as soon as reasonably possible, regulator and subjects.
        let za = clocks(&get("za"), aware, false, false);
        assert_eq!(za.len(), 2);
        assert!(za.iter().all(|c| c.deadline.is_none()));
        let eu = clocks(&get("eu"), aware, false, false);
        assert_eq!(eu[0].deadline.as_deref(), Some("2026-05-07T16:20:00Z"));
        assert_eq!(eu[0].reference, "GDPR Art. 33(1)");
    }

    #[test]
    fn configured_jurisdictions_are_checked() {
        for j in builtin() {
            validate(&j).unwrap();
        }
        let gh: Jurisdiction = serde_json::from_value(serde_json::json!({
            "code": "gh", "name": "Ghana", "law": "Data Protection Act 2012 (Act 843)",
            "obligations": [{"recipient": "authority", "notify": "Data Protection Commission",
                             "within_hours": 72, "reference": "s. 31", "wording": "as soon as reasonably practicable"}]
        }))
        .unwrap();
        validate(&gh).unwrap();
        assert_eq!(gh.obligations[0].when, Condition::Always);
        // A misspelt key is refused, not read as "no deadline".
        let typo = serde_json::json!({"code": "gh", "name": "Ghana", "law": "Act 843",
            "obligations": [{"recipient": "authority", "notify": "DPC", "within_hour": 72,
                             "reference": "s. 31", "wording": "promptly"}]});
        assert!(serde_json::from_value::<Jurisdiction>(typo).is_err());
        let mut bad = gh.clone();
        bad.code = "GH".into();
        assert!(validate(&bad).is_err());
        let mut bad = gh;
        bad.obligations[0].within_hours = Some(0);
        assert!(validate(&bad).is_err());
    }
}
