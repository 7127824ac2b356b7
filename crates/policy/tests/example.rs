//! Every rule of deploy/policies/example.toml fires on a matching event and
//! not on a near miss.

use aiaudit_policy::{Engine, Policies};
use serde_json::{json, Value};
use std::sync::Arc;

const EXAMPLE: &str = include_str!("../../../deploy/policies/example.toml");
const MIN: u64 = 60_000;

fn engine() -> Engine {
    Engine::new(Arc::new(
        Policies::parse(EXAMPLE).expect("example.toml loads"),
    ))
}

/// A benign event: breaks no rule of the example.
fn base(id: &str) -> Value {
    json!({"id": id, "time": "2026-11-27T09:14:03Z", "tenant": "acme",
           "source": {"name": "loan-assistant"}, "actor": {"id": "agent-7", "type": "agent"},
           "action": "model.invoke",
           "ai": {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x",
                  "gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 96,
                  "gen_ai.conversation.id": "conv-1"},
           "attributes": {"branch": "Ikeja"}})
}

fn with(mut event: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    event.pointer_mut(parent).unwrap()[key] = value;
    event
}

fn fired(engine: &mut Engine, event: &Value, now: u64) -> Vec<String> {
    engine
        .observe(event, 7, now)
        .into_iter()
        .map(|v| v.rule)
        .collect()
}

/// The rules that time alone broke at `now`.
fn ticked(engine: &mut Engine, now: u64) -> Vec<String> {
    engine.tick(now).into_iter().map(|v| v.rule).collect()
}

#[test]
fn the_benign_event_breaks_nothing() {
    let mut e = engine();
    assert!(fired(&mut e, &base("e1"), 0).is_empty());
    assert!(e.tick(365 * 24 * 60 * MIN).is_empty());
}

#[test]
fn disallowed_provider_or_model() {
    let mut e = engine();
    let v = with(base("e1"), "/ai/gen_ai.provider.name", json!("deepseek"));
    assert_eq!(fired(&mut e, &v, 0), ["disallowed-provider"]);
    let v = with(
        base("e2"),
        "/ai/gen_ai.request.model",
        json!("experimental-9"),
    );
    assert_eq!(fired(&mut e, &v, 0), ["disallowed-provider"]);
    // Near misses: an approved provider whose name contains a banned one, a
    // model that only mentions "experimental".
    let v = with(
        base("e3"),
        "/ai/gen_ai.provider.name",
        json!("deepseek-proxy"),
    );
    assert!(fired(&mut e, &v, 0).is_empty());
    let v = with(
        base("e4"),
        "/ai/gen_ai.request.model",
        json!("claude-experimental-9"),
    );
    assert!(fired(&mut e, &v, 0).is_empty());
}

fn decision(id: &str, risk: &str, conversation: &str) -> Value {
    let v = with(base(id), "/action", json!("agent.decision"));
    let v = with(v, "/risk_level", json!(risk));
    with(v, "/ai/gen_ai.conversation.id", json!(conversation))
}

fn review(id: &str, conversation: &str) -> Value {
    let v = with(base(id), "/action", json!("human.review"));
    with(v, "/ai/gen_ai.conversation.id", json!(conversation))
}

#[test]
fn high_risk_decision_without_review() {
    let mut e = engine();
    assert!(fired(&mut e, &decision("d1", "high", "conv-9"), 0).is_empty());
    assert!(e.tick(15 * MIN).is_empty(), "not before the deadline");
    let v = e.tick(15 * MIN + 1);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule, "unreviewed-high-risk-decision");
    assert_eq!(v[0].event_id.as_deref(), Some("d1"));
    assert_eq!(v[0].event_index, Some(7));
    assert!(v[0].detail.contains("conv-9"), "{}", v[0].detail);
    assert!(e.tick(60 * MIN).is_empty(), "fires once");

    // A review in another conversation does not count.
    fired(&mut e, &decision("d2", "critical", "conv-2"), 0);
    fired(&mut e, &review("r2", "conv-other"), 5 * MIN);
    let late = ticked(&mut e, 16 * MIN);
    assert!(
        late.iter().any(|r| r == "unreviewed-high-risk-decision"),
        "{late:?}"
    );
}

#[test]
fn reviewed_or_low_risk_decisions_are_fine() {
    let mut e = engine();
    fired(&mut e, &decision("d1", "high", "conv-1"), 0);
    fired(&mut e, &review("r1", "conv-1"), 14 * MIN);
    // Near miss: a medium-risk decision never opens a window.
    fired(&mut e, &decision("d2", "medium", "conv-2"), 0);
    assert_eq!(e.pending(), 0);
    let late: Vec<String> = ticked(&mut e, 60 * MIN);
    assert!(
        !late.iter().any(|r| r == "unreviewed-high-risk-decision"),
        "{late:?}"
    );
}

#[test]
fn token_budget() {
    let mut e = engine();
    let v = with(base("e1"), "/ai/gen_ai.usage.input_tokens", json!(90_000));
    let v = with(v, "/ai/gen_ai.usage.output_tokens", json!(10_001));
    assert_eq!(fired(&mut e, &v, 0), ["token-budget"]);
    // Near miss: exactly at the budget.
    let v = with(v, "/ai/gen_ai.usage.output_tokens", json!(10_000));
    assert!(fired(&mut e, &v, 0).is_empty());
    // One count alone can exceed it.
    let mut v = base("e3");
    v["ai"] = json!({"gen_ai.usage.output_tokens": 250_000});
    assert_eq!(fired(&mut e, &v, 0), ["token-budget"]);
}

#[test]
fn unredacted_email() {
    let mut e = engine();
    let v = with(base("e1"), "/attributes/email", json!("ada@example.com"));
    assert_eq!(fired(&mut e, &v, 0), ["unredacted-email"]);
    // Near miss: the field is there, replaced by its HMAC.
    let v = with(
        base("e2"),
        "/attributes/email",
        json!(format!("hmac-sha256:{}", "ab".repeat(32))),
    );
    assert!(fired(&mut e, &v, 0).is_empty());
}

#[test]
fn unregistered_source() {
    let mut e = engine();
    let v = with(base("e1"), "/source/name", json!("shadow-bot"));
    assert_eq!(fired(&mut e, &v, 0), ["unregistered-source"]);
    // Near miss: the same source once it is a registered emitter.
    e.set_registered_emitters(vec!["shadow-bot".into()]);
    assert!(fired(&mut e, &v, 0).is_empty());
}

#[test]
fn silent_source() {
    let mut e = engine();
    for i in 0..3 {
        fired(&mut e, &base(&format!("e{i}")), i * MIN);
    }
    // Near miss: quiet for exactly the heartbeat.
    assert!(e.tick(2 * MIN + 10 * MIN).is_empty());
    let v = e.tick(2 * MIN + 10 * MIN + 1000);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].rule, "silent-source");
    assert_eq!(v[0].source.as_deref(), Some("loan-assistant"));
    assert_eq!(v[0].tenant, "acme");
    assert!(e.tick(100 * MIN).is_empty(), "fires once per silence");
    // Heard again, then silent again: a new finding.
    fired(&mut e, &base("e9"), 200 * MIN);
    assert_eq!(e.tick(211 * MIN).len(), 1);
}

#[test]
fn a_source_that_never_emitted_regularly_is_not_silent() {
    let mut e = engine();
    fired(&mut e, &base("e1"), 0);
    fired(&mut e, &base("e2"), MIN);
    assert!(e.tick(100 * MIN).is_empty());
}
