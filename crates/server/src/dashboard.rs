//! The auditor dashboard (docs/dashboard.md): the files of `web/`, embedded
//! in the binary and served at `/`. They hold no data and need no token;
//! every datum the app shows comes from the API with the token the user
//! signs in with.

use crate::Ledger;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::{Arc, OnceLock};

/// No inline script or style, nothing from another origin: the shell can
/// only run the code shipped in this binary and talk to this server.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; connect-src 'self'; manifest-src 'self'; worker-src 'self'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    body: &'static [u8],
    kind: &'static str,
}

macro_rules! asset {
    ($path:literal, $file:literal, $kind:expr) => {
        Asset {
            path: $path,
            body: include_bytes!(concat!("../../../web/", $file)),
            kind: $kind,
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/app.js", "app.js", JS),
    asset!("/app.css", "app.css", CSS),
    asset!("/sw.js", "sw.js", JS),
    asset!(
        "/manifest.webmanifest",
        "manifest.webmanifest",
        "application/manifest+json"
    ),
    asset!("/icon.svg", "icon.svg", "image/svg+xml"),
    asset!("/icon-192.png", "icon-192.png", "image/png"),
    asset!("/icon-512.png", "icon-512.png", "image/png"),
    asset!("/js/api.js", "js/api.js", JS),
    asset!("/js/ui.js", "js/ui.js", JS),
    asset!("/js/verify.js", "js/verify.js", JS),
    asset!("/js/signin.js", "js/signin.js", JS),
    asset!("/js/overview.js", "js/overview.js", JS),
    asset!("/js/chart.js", "js/chart.js", JS),
    asset!("/js/events.js", "js/events.js", JS),
    asset!("/js/event.js", "js/event.js", JS),
    asset!("/js/sections.js", "js/sections.js", JS),
    asset!("/js/incidents.js", "js/incidents.js", JS),
    asset!("/js/violations.js", "js/violations.js", JS),
    asset!("/js/admin.js", "js/admin.js", JS),
    asset!(
        "/vendor/uplot/uPlot.iife.min.js",
        "vendor/uplot/uPlot.iife.min.js",
        JS
    ),
    asset!(
        "/vendor/uplot/uPlot.min.css",
        "vendor/uplot/uPlot.min.css",
        CSS
    ),
    asset!(
        "/vendor/uplot/LICENSE",
        "vendor/uplot/LICENSE",
        "text/plain; charset=utf-8"
    ),
];

/// An asset's gzip form and ETag, made once on first use.
struct Prepared {
    gzip: Option<Vec<u8>>,
    etag: String,
}

fn prepared(i: usize) -> &'static Prepared {
    static ALL: OnceLock<Vec<Prepared>> = OnceLock::new();
    &ALL.get_or_init(|| ASSETS.iter().map(prepare).collect())[i]
}

fn prepare(a: &Asset) -> Prepared {
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12]));
    // PNGs are compressed already.
    let gzip = (!a.kind.starts_with("image/png")).then(|| gzip(a.body));
    Prepared { gzip, etag }
}

/// Gzip at the best level (done once per asset, so the cost does not matter).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// The dashboard's routes, merged into the API router before its fallback.
pub fn routes() -> Router<Arc<Ledger>> {
    let mut r = Router::new();
    for (i, a) in ASSETS.iter().enumerate() {
        r = r.route(a.path, get(move |h: HeaderMap| async move { serve(i, &h) }));
    }
    r
}

fn accepts_gzip(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.trim().split(';');
            parts.next() == Some("gzip") && parts.all(|p| p.trim() != "q=0")
        })
}

fn serve(i: usize, h: &HeaderMap) -> Response {
    let a = &ASSETS[i];
    let p = prepared(i);
    let not_modified = h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == p.etag));
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match (&p.gzip, accepts_gzip(h)) {
            (Some(z), true) => {
                let mut r = z.clone().into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => a.body.into_response(),
        }
    };
    let hs = resp.headers_mut();
    hs.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.kind));
    // Always revalidated (cheap with the ETag): a new binary's assets are
    // picked up at once, and the service worker script must never be stale.
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    hs.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&p.etag) {
        hs.insert(header::ETAG, v);
    }
    hs.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    hs.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    hs.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    hs.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// The shell's files and their sizes, raw and gzip'd (for the size test).
pub fn asset_sizes() -> Vec<(&'static str, usize, usize)> {
    ASSETS
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let z = prepared(i).gzip.as_ref().map_or(a.body.len(), Vec::len);
            (a.path, a.body.len(), z)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_negotiated() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "br, gzip;q=0.8".parse().unwrap());
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "gzip;q=0".parse().unwrap());
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn every_asset_has_a_unique_path() {
        let mut paths: Vec<_> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
    }
}
