//! Policy rule files (TOML with CEL conditions, docs/policies.md), as the
//! server loads and reloads them, then evaluated on a few events.
//!
//! Properties: no panic, neither loading a rule file nor running its rules.
#![no_main]

use aiaudit_policy::{Engine, Policies};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

fn events() -> &'static [Value] {
    static EVENTS: OnceLock<Vec<Value>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        vec![
            json!({"id": "e1", "time": "2026-11-27T09:14:03.120Z", "tenant": "acme",
                "source": {"name": "loan-assistant", "version": "3.2.0"},
                "actor": {"id": "agent-7", "type": "agent"}, "action": "agent.decision",
                "outcome": {"status": "success"}, "risk_level": "high", "subject": "customer-5521",
                "ai": {"gen_ai.provider.name": "deepseek", "gen_ai.request.model": "claude-x",
                       "gen_ai.usage.input_tokens": 9223372036854775807_i64,
                       "gen_ai.conversation.id": "conv-31", "gen_ai.response.finish_reasons": ["stop"]},
                "input": {"content": "mail me at a@example.com"}, "attributes": {"ratio": 0.5}}),
            json!({"id": "e2", "time": "2026-11-27T09:15:00Z", "tenant": "acme",
                "source": {"name": "loan-assistant"}, "actor": {"id": "officer-12", "type": "user"},
                "action": "human.review", "ai": {"gen_ai.conversation.id": "conv-31"},
                "human_oversight": {"reviewer": "officer-12", "decision": "confirmed"}}),
            json!({"id": "e3", "time": "2026-11-27T09:16:00Z", "tenant": "globex",
                "source": {"name": "batch"}, "actor": {"id": "svc", "type": "service"},
                "action": "tool.call", "attributes": {"n": 18446744073709551615_u64, "x": -1}}),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policies) = Policies::parse(text) else {
        return;
    };
    let mut engine = Engine::new(Arc::new(policies));
    engine.set_registered_emitters(vec!["loan-assistant".into()]);
    let mut now = 1_795_770_843_120_u64;
    for (i, event) in events().iter().enumerate() {
        let _ = engine.observe(event, i as u64, now);
        now += 60_000;
    }
    // Past every follow-up window and heartbeat a rule can set.
    let _ = engine.tick(now);
    let _ = engine.tick(now + 400 * 86_400_000);
});
