//! Conditions: CEL expressions over one event.
//!
//! Variables every condition sees (see docs/policies.md):
//! - `event`: the whole event as stored (after redaction of sensitive fields)
//! - `action`, `tenant`, `risk_level`, `subject`: strings (`""` when absent)
//! - `source`, `actor`, `outcome`, `ai`, `attributes`, `input`, `output`,
//!   `human_oversight`, `resource`: maps (`{}` when absent)
//! - `registered_emitters`: names of the emitters registered with the ledger

use cel::{Context, Program, Value as Cel};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// A compiled CEL condition and its source text.
pub struct Condition {
    pub source: String,
    program: Arc<Program>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

const STRING_VARS: &[&str] = &["action", "tenant", "risk_level", "subject"];
const MAP_VARS: &[&str] = &[
    "source",
    "actor",
    "outcome",
    "ai",
    "attributes",
    "input",
    "output",
    "human_oversight",
    "resource",
];

impl Condition {
    pub fn compile(source: &str) -> Result<Condition, String> {
        if source.trim().is_empty() {
            return Err("empty expression".into());
        }
        // The parser reports errors over several lines; one line reads better in logs.
        let program = Program::compile(source).map_err(|e| {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })?;
        Ok(Condition {
            source: source.to_string(),
            program: Arc::new(program),
        })
    }

    /// True only when the expression evaluates to `true`. An evaluation
    /// error (a missing key, mismatched types) is not a match: a rule over
    /// an optional field should guard it with `has()` or `in`.
    pub fn matches(&self, vars: &Vars) -> bool {
        matches!(self.program.execute(&vars.context), Ok(Cel::Bool(true)))
    }
}

/// The variables of one event, built once and shared by every rule.
pub struct Vars {
    context: Context<'static, 'static>,
}

impl Vars {
    pub fn new(event: &Value, registered_emitters: &[String]) -> Vars {
        let mut context = Context::default();
        for name in STRING_VARS {
            let v = event.get(*name).and_then(Value::as_str).unwrap_or("");
            context.add_variable_from_value(*name, v);
        }
        for name in MAP_VARS {
            let v = match event.get(*name) {
                Some(v @ Value::Object(_)) => to_cel(v),
                _ => Cel::from(HashMap::<String, Cel>::new()),
            };
            context.add_variable_from_value(*name, v);
        }
        context.add_variable_from_value("event", to_cel(event));
        context.add_variable_from_value(
            "registered_emitters",
            registered_emitters
                .iter()
                .map(|s| Cel::from(s.as_str()))
                .collect::<Vec<_>>(),
        );
        Vars { context }
    }
}

/// JSON to CEL. Whole numbers become `int` (so `ai["gen_ai.usage.input_tokens"] + 1`
/// works), larger ones `uint`, the rest `double`.
pub fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::from(s.as_str()),
        Value::Array(items) => Cel::from(items.iter().map(to_cel).collect::<Vec<_>>()),
        Value::Object(m) => Cel::from(
            m.iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect::<HashMap<String, Cel>>(),
        ),
    }
}
