//! Compliance reports over HTTP (docs/reports.md); built by the engine.

use crate::extract::require;
use crate::problem::Problem;
use aiaudit_ledger::reports::{date, now_ms, parse_request, render, Format};
use aiaudit_ledger::Ledger;
use axum::extract::{Query as UrlQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

type ApiResult<T> = Result<T, Problem>;

/// Only characters safe in a file name and a header survive.
fn filename_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// A document built from logged data (reports, incident reviews, packs):
/// never sniffed into another type, never running script in the ledger's
/// origin (inline styles and `data:` images only).
pub fn document(body: String, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    );
    resp
}

/// `GET /v1/reports/compliance?tenant=&from=&to=&format=json|html|md`:
/// for auditors and admins of the tenant.
pub async fn compliance(
    State(ledger): State<Arc<Ledger>>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = require(&ledger, &headers)?;
    let now = now_ms();
    let req = parse_request(&params, now)?;
    let report = ledger.report(&who, req.clone(), now).await?;
    let (body, content_type) = match req.format {
        Format::Json => (
            serde_json::to_string_pretty(&report).map_err(|e| Problem::internal(e.to_string()))?,
            "application/json",
        ),
        Format::Markdown => (render::markdown(&report), "text/markdown; charset=utf-8"),
        Format::Html => (render::html(&report), "text/html; charset=utf-8"),
    };
    let mut resp = document(body, content_type);
    let h = resp.headers_mut();
    if req.format == Format::Html {
        let name = format!(
            "attachment; filename=\"aiaudit-compliance-{}{}-{}-{}.html\"",
            // The AI Act report keeps the name it always had.
            match req.framework {
                aiaudit_ledger::reports::privacy::Framework::EuAiAct => String::new(),
                f => format!("{}-", f.as_str()),
            },
            filename_part(&req.tenant),
            date(req.from_ms),
            date(req.to_ms)
        );
        if let Ok(v) = HeaderValue::from_str(&name) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_keep_only_safe_characters() {
        assert_eq!(filename_part("acme"), "acme");
        assert_eq!(filename_part("a\"b\r\n/c"), "a_b___c");
    }
}
