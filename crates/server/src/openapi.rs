//! The OpenAPI 3.1 description of the HTTP API, served at `/v1/openapi.json`.
//!
//! Built from [`ROUTES`], a table next to the code; a test reads the router
//! in `api.rs` and fails when a route is missing here or listed here but not
//! routed, so the description cannot drift from what the server answers.

use serde_json::{json, Map, Value};

/// Who may call a route.
#[derive(Clone, Copy)]
pub enum Access {
    /// No token (health).
    Open,
    /// No token unless `public_reads = false`.
    PublicRead,
    /// Emitter or admin token (appends).
    Append,
    /// Auditor or admin token of the tenant.
    Read,
    /// Admin token, acting within its own tenants.
    Admin,
    /// Admin token of every tenant (`*`): what all tenants share.
    GlobalAdmin,
}

impl Access {
    /// Who may call, for people (the `x-aiaudit-access` extension).
    fn describe(self) -> &'static str {
        match self {
            Access::Open => "anyone",
            Access::PublicRead => "anyone, unless public reads are off (then any valid token)",
            Access::Append => "emitter or admin tokens of the events' tenants",
            Access::Read => "auditor or admin tokens of the tenant",
            Access::Admin => "admin tokens, within their own tenants",
            Access::GlobalAdmin => "admin tokens of every tenant (\"*\")",
        }
    }
}

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// Query parameters: (name, description).
    pub query: &'static [(&'static str, &'static str)],
    /// JSON request body description, if any.
    pub body: Option<&'static str>,
    /// Success status and what it returns.
    pub ok: (u16, &'static str),
    /// Content type of the success answer.
    pub produces: &'static str,
}

const JSON: &str = "application/json";
/// Search filters, then the paging parameters (the last three).
const PAGING: &[(&str, &str)] = &[
    ("tenant", "exact tenant"),
    ("actor", "actor.id"),
    ("action", "action, e.g. agent.decision"),
    ("model", "gen_ai.request.model"),
    ("provider", "gen_ai.provider.name"),
    ("outcome", "outcome.status"),
    ("risk", "risk_level"),
    ("trace_id", "W3C trace id"),
    ("conversation_id", "gen_ai.conversation.id"),
    ("source", "source.name"),
    ("subject", "subject tag (hmac-sha256:…, see POST /v1/hash)"),
    ("from", "event time from (RFC 3339, inclusive)"),
    ("to", "event time to (RFC 3339, exclusive)"),
    (
        "count",
        "true: the answer says how many events match in all (total)",
    ),
    ("limit", "page size, 1..1000 (default 100)"),
    ("cursor", "next_cursor of the previous page"),
    ("order", "desc (default, newest first) or asc"),
];
/// The search filters alone (exports take every match, no paging or count).
const FILTERS: &[(&str, &str)] = PAGING.split_at(PAGING.len() - 4).0;

pub const ROUTES: &[Route] = &[
    Route { method: "post", path: "/v1/events", summary: "Append a batch of events (all or nothing); acknowledged once fsync'd", access: Access::Append,
        query: &[("wait", "\"checkpoint\": answer once a signed checkpoint covers the batch, with inclusion proofs"), ("acks", "\"summary\": only the counts acknowledged and duplicates, not an entry per event (metered links)")],
        body: Some("a JSON array of events (schema at /v1/schema/event), or NDJSON; Content-Encoding zstd or gzip accepted"), ok: (200, "per event: id, index, leaf_hash, duplicate (acks=summary: acknowledged, duplicates)"), produces: JSON },
    Route { method: "get", path: "/v1/events", summary: "Search events (cursor pagination)", access: Access::Read, query: PAGING, body: None, ok: (200, "events, next_cursor, total (with count=true)"), produces: JSON },
    Route { method: "get", path: "/v1/events/{index}", summary: "One event by log index, decrypted for readers of its tenant", access: Access::Read,
        query: &[("proof", "true: add the inclusion proof, checkpoint and opening"), ("blobs", "include (default: large members read and checked against their commitments) or omit (listed in blobs)")], body: None, ok: (200, "index, leaf_hash, entry, content, event, blobs, proof"), produces: JSON },
    Route { method: "get", path: "/v1/events/{index}/blobs/{n}", summary: "An event's out-of-line member n (its canonical JSON), whole or one Range: bytes=a-b", access: Access::Read,
        query: &[], body: None, ok: (200, "the member's canonical JSON (206 for a range)"), produces: JSON },
    Route { method: "get", path: "/v1/events/{index}/access", summary: "Who accessed the event: the ledger's trail.access records that list it (reads of its content, search pages, exports), newest first", access: Access::Read, query: &[], body: None, ok: (200, "index, tenant, accesses, scanned, complete"), produces: JSON },
    Route { method: "get", path: "/v1/events/{index}/tlog-proof", summary: "A C2SP tlog-proof of one event (entry as extra data, inclusion proof, the cosigned checkpoint), verifiable offline", access: Access::Read,
        query: &[], body: None, ok: (200, "c2sp.org/tlog-proof@v1"), produces: "text/plain" },
    Route { method: "get", path: "/v1/export", summary: "Export matching events with proofs as a bundle that verifies offline", access: Access::Read, query: FILTERS, body: None, ok: (200, "aiaudit-bundle 1, or 2 with blobs (tar.gz)"), produces: "application/gzip" },
    Route { method: "post", path: "/v1/logs", summary: "OpenTelemetry OTLP/HTTP logs (protobuf or JSON), partial success", access: Access::Append, query: &[], body: Some("ExportLogsServiceRequest"), ok: (200, "ExportLogsServiceResponse"), produces: "application/x-protobuf" },
    Route { method: "get", path: "/checkpoint", summary: "The latest signed checkpoint (C2SP tlog-checkpoint, signed note)", access: Access::PublicRead, query: &[], body: None, ok: (200, "signed note"), produces: "text/plain" },
    Route { method: "get", path: "/tile/{path}", summary: "C2SP tlog-tiles: hash tiles (public) and entry bundles (readers of every tenant in them)", access: Access::PublicRead, query: &[], body: None, ok: (200, "tile bytes"), produces: "application/octet-stream" },
    Route { method: "get", path: "/v1/info", summary: "Log identity, size, root, checkpoint age, index and backup status", access: Access::PublicRead, query: &[], body: None, ok: (200, "info"), produces: JSON },
    Route { method: "get", path: "/v1/schema/event", summary: "JSON Schema of events (version 1)", access: Access::Open, query: &[], body: None, ok: (200, "JSON Schema"), produces: JSON },
    Route { method: "get", path: "/v1/proof/inclusion", summary: "RFC 6962 inclusion proof", access: Access::PublicRead, query: &[("index", "leaf index"), ("size", "tree size (default: latest checkpoint)")], body: None, ok: (200, "index, size, leaf_hash, proof"), produces: JSON },
    Route { method: "get", path: "/v1/proof/consistency", summary: "RFC 6962 consistency proof", access: Access::PublicRead, query: &[("old", "older size"), ("size", "newer size (default: latest checkpoint)")], body: None, ok: (200, "old, size, proof"), produces: JSON },
    Route { method: "get", path: "/v1/tokens", summary: "List tokens (never secrets)", access: Access::Admin, query: &[], body: None, ok: (200, "tokens"), produces: JSON },
    Route { method: "post", path: "/v1/tokens", summary: "Create a token; the secret is shown once", access: Access::Admin, query: &[], body: Some("{role, tenants, expires}"), ok: (201, "id, token, role, tenants, expires_unix"), produces: JSON },
    Route { method: "delete", path: "/v1/tokens/{id}", summary: "Revoke a token at once", access: Access::Admin, query: &[], body: None, ok: (200, "id, revoked"), produces: JSON },
    Route { method: "get", path: "/v1/emitters", summary: "Registered emitters", access: Access::Admin, query: &[], body: None, ok: (200, "emitters"), produces: JSON },
    Route { method: "post", path: "/v1/emitters", summary: "Register an emitter's public key (and tenants for mutual TLS)", access: Access::Admin, query: &[], body: Some("{name, public_key, tenants}"), ok: (201, "emitter"), produces: JSON },
    Route { method: "get", path: "/v1/keys", summary: "Key counts (never key material)", access: Access::GlobalAdmin, query: &[], body: None, ok: (200, "encryption, keys"), produces: JSON },
    Route { method: "post", path: "/v1/keys/rotate", summary: "New data keys for every tenant and subject", access: Access::GlobalAdmin, query: &[], body: None, ok: (200, "rotated"), produces: JSON },
    Route { method: "post", path: "/v1/keys/rotate-master", summary: "New master key; every data key re-wrapped", access: Access::GlobalAdmin, query: &[], body: None, ok: (200, "rewrapped"), produces: JSON },
    Route { method: "get", path: "/v1/keys/keyring", summary: "The keyring file (wrapped keys) for backups, whole or one Range: bytes=a-b", access: Access::GlobalAdmin, query: &[], body: None, ok: (200, "keyring bytes"), produces: "application/octet-stream" },
    Route { method: "get", path: "/v1/blobs/{id}", summary: "A blob's stored (sealed) bytes by id, for backups; nothing decrypted", access: Access::GlobalAdmin, query: &[], body: None, ok: (200, "stored blob bytes"), produces: "application/octet-stream" },
    Route { method: "post", path: "/v1/erase", summary: "Crypto-shred a data subject; the erasure is logged", access: Access::Admin, query: &[], body: Some("{tenant, subject}"), ok: (200, "keys_destroyed, subject_tag, erasure_event"), produces: JSON },
    Route { method: "post", path: "/v1/erase/preview", summary: "What an erasure would destroy: the subject's live and destroyed keys; changes and logs nothing", access: Access::Admin, query: &[], body: Some("{tenant, subject}"), ok: (200, "tenant, live_keys, destroyed_keys"), produces: JSON },
    Route { method: "post", path: "/v1/hash", summary: "HMAC of a known value under the tenant's salt", access: Access::Read, query: &[], body: Some("{tenant, value}"), ok: (200, "hmac"), produces: JSON },
    Route { method: "get", path: "/v1/stats", summary: "Counts over time for charts: events, failures, denials and violations by severity per bucket, with totals per tenant and per source", access: Access::Read, query: &[("from", "window start (RFC 3339, inclusive; default: an hour before to)"), ("to", "window end (RFC 3339, exclusive; default: now)"), ("step", "bucket length: seconds or 30s, 5m, 1h, 1d (default: at most 120 buckets); at most 1440 buckets"), ("tenant", "one tenant"), ("source", "one source.name")], body: None, ok: (200, "buckets, totals, tenants, sources"), produces: JSON },
    Route { method: "get", path: "/v1/violations", summary: "Policy violations with their status", access: Access::Read, query: &[("tenant", "tenant"), ("status", "open, acknowledged or resolved"), ("rule", "rule id"), ("severity", "info, low, medium, high or critical"), ("source", "the violating event's source.name"), ("limit", "most to return (1-1000, default 100)"), ("cursor", "next_cursor of the previous page")], body: None, ok: (200, "violations, total, next_cursor, counts (status, severity)"), produces: JSON },
    Route { method: "get", path: "/v1/violations/{id}", summary: "One violation", access: Access::Read, query: &[], body: None, ok: (200, "violation"), produces: JSON },
    Route { method: "post", path: "/v1/violations/{id}", summary: "Acknowledge or resolve a violation (logged)", access: Access::Read, query: &[], body: Some("{status: acknowledged|resolved, note}"), ok: (200, "violation"), produces: JSON },
    Route { method: "get", path: "/v1/incidents", summary: "Incidents with their status, deadlines and breach clocks", access: Access::Read, query: &[("tenant", "tenant"), ("status", "open, acknowledged, mitigated, resolved, reviewed or reopened"), ("severity", "critical, high, medium or low"), ("limit", "most to return (1-1000, default 100)"), ("cursor", "next_cursor of the previous page")], body: None, ok: (200, "incidents, total, next_cursor"), produces: JSON },
    Route { method: "post", path: "/v1/incidents", summary: "Open an incident by hand (logged)", access: Access::Read, query: &[], body: Some("{tenant, title, severity, description, related, breach}"), ok: (201, "incident"), produces: JSON },
    Route { method: "post", path: "/v1/incidents/alertmanager", summary: "Alertmanager webhook (version 4): firing alerts open or update the incident of their group, resolved ones mitigate it", access: Access::Read, query: &[], body: Some("Alertmanager webhook body"), ok: (200, "result, incident"), produces: JSON },
    Route { method: "get", path: "/v1/incidents/{id}", summary: "One incident with its transitions", access: Access::Read, query: &[], body: None, ok: (200, "incident"), produces: JSON },
    Route { method: "post", path: "/v1/incidents/{id}", summary: "Move an incident through its lifecycle or change its severity (logged)", access: Access::Read, query: &[], body: Some("{status, severity, note, skipped_acknowledgement}"), ok: (200, "incident"), produces: JSON },
    Route { method: "post", path: "/v1/incidents/{id}/breach", summary: "Mark a personal-data breach: the jurisdictions' clocks start (logged)", access: Access::Read, query: &[], body: Some("{aware_at, jurisdictions, high_risk, details}"), ok: (200, "incident"), produces: JSON },
    Route { method: "post", path: "/v1/incidents/{id}/notified", summary: "Record that an authority, the data subjects or the controller were notified (logged)", access: Access::Read, query: &[], body: Some("{clock, notified_at, reference}"), ok: (200, "incident"), produces: JSON },
    Route { method: "post", path: "/v1/incidents/{id}/notes", summary: "Add to the review: impact, root cause, actions, comments, related ids (logged)", access: Access::Read, query: &[], body: Some("{section, text, related}"), ok: (200, "incident"), produces: JSON },
    Route { method: "get", path: "/v1/incidents/{id}/review", summary: "The post-incident review from the log, anchored to a checkpoint", access: Access::Read, query: &[("format", "md (default) or html")], body: None, ok: (200, "review"), produces: "text/markdown" },
    Route { method: "get", path: "/v1/incidents/{id}/pack", summary: "A regulator's breach notification draft, prefilled from the log", access: Access::Read, query: &[("jurisdiction", "ng, ke, za, eu or a configured code")], body: None, ok: (200, "notification draft"), produces: "text/markdown" },
    Route { method: "get", path: "/v1/holds", summary: "Legal holds in force", access: Access::Read, query: &[], body: None, ok: (200, "holds"), produces: JSON },
    Route { method: "post", path: "/v1/holds", summary: "Place a legal hold: retention expiry stops for the tenant (logged)", access: Access::Admin, query: &[], body: Some("{tenant (or *), reason}"), ok: (201, "hold"), produces: JSON },
    Route { method: "delete", path: "/v1/holds/{id}", summary: "Release a legal hold (logged)", access: Access::Admin, query: &[], body: None, ok: (200, "id, released"), produces: JSON },
    Route { method: "get", path: "/v1/reports/compliance", summary: "Compliance report of one tenant over a period: EU AI Act (Art. 12, 14, 19/26), or NDPA, POPIA, Kenya DPA (processing records, erasures, breach notifications); integrity", access: Access::Read,
        query: &[("framework", "eu-ai-act (default), ndpa, popia or kenya-dpa"), ("tenant", "required: the tenant"), ("from", "period start (RFC 3339, inclusive; default: 30 days before to)"), ("to", "period end (RFC 3339, exclusive; default: now)"), ("format", "json (default), html (self-contained, with charts) or md")],
        body: None, ok: (200, "the report (docs/reports.md)"), produces: JSON },
    Route { method: "get", path: "/v1/openapi.json", summary: "This description", access: Access::Open, query: &[], body: None, ok: (200, "OpenAPI 3.1"), produces: JSON },
    Route { method: "get", path: "/metrics", summary: "Prometheus metrics", access: Access::PublicRead, query: &[], body: None, ok: (200, "text exposition format"), produces: "text/plain" },
    Route { method: "options", path: "/v1/events", summary: "The request codings POST /v1/events decodes, in Accept-Encoding (RFC 7694): an emitter asks before its first compressed batch", access: Access::Open, query: &[], body: None, ok: (200, "no body; Accept-Encoding: zstd, gzip"), produces: JSON },
    Route { method: "get", path: "/healthz", summary: "Alive: 503 once the log's writer stopped and only a restart helps", access: Access::Open, query: &[], body: None, ok: (200, "status"), produces: JSON },
    Route { method: "get", path: "/readyz", summary: "Ready: storage writable, checkpoints and index keep up (503 with the failing check)", access: Access::Open, query: &[], body: None, ok: (200, "status, checks"), produces: JSON },
];

fn operation(r: &Route) -> Value {
    let mut params: Vec<Value> = r
        .query
        .iter()
        .map(|(name, desc)| json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": "string"}}))
        .collect();
    let mut rest = r.path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        params.push(json!({"name": &rest[start + 1..end], "in": "path", "required": true, "schema": {"type": "string"}}));
        rest = &rest[end..];
    }
    let problem = |d: &str| json!({"description": d, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
    let mut responses = Map::new();
    responses.insert(
        r.ok.0.to_string(),
        json!({"description": r.ok.1, "content": {r.produces: {}}}),
    );
    responses.insert(
        "400".into(),
        problem("bad request: the parameter or field at fault is named"),
    );
    let security = match r.access {
        Access::Open => json!([]),
        Access::PublicRead => json!([{}, {"bearer": []}]),
        _ => {
            responses.insert(
                "401".into(),
                problem("missing, unknown, expired or revoked token"),
            );
            responses.insert(
                "403".into(),
                problem("the token's role or tenants do not allow this"),
            );
            json!([{"bearer": []}])
        }
    };
    if matches!(r.access, Access::Append) {
        responses.insert("413".into(), problem("body too large"));
        responses.insert("429".into(), problem("rate limited (Retry-After)"));
        responses.insert(
            "503".into(),
            problem("storage unavailable: nothing acknowledged"),
        );
    }
    let mut op = json!({
        "summary": r.summary,
        "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.', '-'], "_")),
        "parameters": params,
        "responses": responses,
        "security": security,
        "x-aiaudit-access": r.access.describe(),
    });
    if let Some(body) = r.body {
        op["requestBody"] =
            json!({"description": body, "required": true, "content": {JSON: {"schema": {}}}});
    }
    op
}

/// The OpenAPI document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let item = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        item[r.method] = operation(r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "AI Audit Emitter ledger", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Tamper-evident audit ledger for AI systems. See docs/api.md."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": {"type": "object", "description": "RFC 9457 problem details",
                "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                               "detail": {"type": "string"}, "parameter": {"type": "string"},
                               "errors": {"type": "array", "items": {"type": "object",
                                   "properties": {"pointer": {"type": "string"}, "path": {"type": "string"}, "detail": {"type": "string"}}}}},
                "required": ["type", "title", "status", "detail"]}}
        }
    })
}

pub async fn serve() -> axum::Json<Value> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// (method, path) of every `.route(...)` in api.rs, paths in OpenAPI form.
    fn routed() -> BTreeSet<(String, String)> {
        let src = include_str!("api.rs");
        let mut out = BTreeSet::new();
        for chunk in src.split(".route(").skip(1) {
            let mut depth = 1;
            let end = chunk
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(chunk.len(), |(i, _)| i);
            let call = &chunk[..end];
            let path = call.split('"').nth(1).unwrap().replace("{*", "{");
            for m in ["get", "post", "delete", "put", "patch", "options"] {
                let called = call.match_indices(&format!("{m}(")).any(|(i, _)| {
                    i == 0
                        || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && call.as_bytes()[i - 1] != b'_'
                });
                if called {
                    out.insert((m.to_string(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_described_and_every_description_is_routed() {
        let described: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        let routed = routed();
        let missing: Vec<_> = routed.difference(&described).collect();
        let extra: Vec<_> = described.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routed but not in the OpenAPI table: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "in the OpenAPI table but not routed: {extra:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_path() {
        let d = document();
        assert_eq!(d["openapi"], "3.1.0");
        assert!(d["paths"]["/v1/events"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "cursor"));
        let params = d["paths"]["/v1/events/{index}"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let index = params.iter().find(|p| p["name"] == "index").unwrap();
        assert_eq!(index["in"], "path");
    }
}
