//! Request content codings (`Content-Encoding`) on the ingest routes:
//! `zstd` and `gzip` besides identity, decoded within the body limit while
//! decoding (a small body that inflates past it is refused without ever
//! holding more than the limit), and advertised on every answer of those
//! routes with `Accept-Encoding` (RFC 7694, section 3), so that an emitter
//! learns from its first answer that it may compress the next request.

use crate::problem::Problem;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use std::io::Read;

/// What `Accept-Encoding` says on the ingest routes' answers, and what
/// `/v1/info` lists as `content_encodings`, best first.
pub const ACCEPTED: &str = "zstd, gzip";
/// [`ACCEPTED`] as a list.
pub const ACCEPTED_LIST: [&str; 2] = ["zstd", "gzip"];

/// The largest zstd window a request may use: the smallest power of two
/// that holds `limit` bytes, at least 8 MiB (`2^23`, the window RFC 8878
/// asks every decoder to support). No body within the limit needs more (a
/// one-shot frame's window is its content size); a frame that declares more
/// is refused instead of making the ledger allocate it.
fn zstd_window_log_max(limit: usize) -> u32 {
    let bits = usize::BITS - limit.saturating_sub(1).leading_zeros();
    bits.clamp(23, 31)
}

/// A request body's content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Zstd,
}

impl Coding {
    /// The request's `Content-Encoding`: identity without one, 415 (naming
    /// what is accepted) for a coding the ledger does not decode. One
    /// coding only: a stack of codings (`gzip, zstd`) is refused.
    pub fn of(headers: &HeaderMap) -> Result<Coding, Problem> {
        let Some(v) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Coding::Identity);
        };
        let coding = v.to_str().unwrap_or("?").trim().to_ascii_lowercase();
        match coding.as_str() {
            "" | "identity" => Ok(Coding::Identity),
            "gzip" | "x-gzip" => Ok(Coding::Gzip),
            "zstd" => Ok(Coding::Zstd),
            _ => Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-content-encoding",
                "Unsupported content encoding",
                format!("Content-Encoding {coding:?}: send zstd, gzip or identity"),
            )),
        }
    }

    pub fn is_compressed(self) -> bool {
        self != Coding::Identity
    }

    /// The decoded body, at most `limit` bytes: 413 when it would be more
    /// (found while decoding), 400 when the bytes are not in the coding.
    pub fn decode(
        self,
        body: axum::body::Bytes,
        limit: usize,
    ) -> Result<axum::body::Bytes, Problem> {
        let decoded = match self {
            Coding::Identity => return Ok(body),
            Coding::Gzip => read_within(flate2::read::MultiGzDecoder::new(&body[..]), limit),
            Coding::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(&body[..])
                    .map_err(|e| unreadable("zstd", &e))?;
                decoder
                    .window_log_max(zstd_window_log_max(limit))
                    .map_err(|e| unreadable("zstd", &e))?;
                read_within(decoder, limit)
            }
        };
        match decoded {
            Ok(Some(bytes)) => Ok(bytes.into()),
            Ok(None) => Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the body decodes to more than {limit} bytes; send smaller batches"),
            )),
            Err(e) => Err(unreadable(self.name(), &e)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }
}

/// Everything `reader` yields if it is at most `limit` bytes, else `None`
/// (having read at most one byte past the limit).
fn read_within(reader: impl Read, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out)?;
    Ok((out.len() <= limit).then_some(out))
}

fn unreadable(coding: &str, e: &dyn std::fmt::Display) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "unreadable-body",
        "Unreadable body",
        format!("the body is not valid {coding} (Content-Encoding): {e}"),
    )
}

/// Adds `Accept-Encoding: zstd, gzip` to an ingest route's answer.
pub async fn advertise(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::ACCEPT_ENCODING, HeaderValue::from_static(ACCEPTED));
    response
}

/// `OPTIONS /v1/events`: no body, `Accept-Encoding` only; no credential
/// needed (it says nothing about the log). An emitter asks once before it
/// compresses, so that an older server that would not decode a compressed
/// body is never sent one (RFC 7694, section 3).
pub async fn options() -> Response {
    use axum::response::IntoResponse;
    (
        StatusCode::OK,
        [
            (header::ACCEPT_ENCODING, ACCEPTED),
            (header::ALLOW, "GET, POST, OPTIONS"),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(coding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, coding.parse().unwrap());
        h
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn codings_are_read_from_content_encoding() {
        assert_eq!(Coding::of(&HeaderMap::new()).unwrap(), Coding::Identity);
        assert_eq!(Coding::of(&headers("identity")).unwrap(), Coding::Identity);
        assert_eq!(Coding::of(&headers("GZIP")).unwrap(), Coding::Gzip);
        assert_eq!(Coding::of(&headers("x-gzip")).unwrap(), Coding::Gzip);
        assert_eq!(Coding::of(&headers(" zstd ")).unwrap(), Coding::Zstd);
        for refused in ["br", "deflate", "gzip, zstd"] {
            let p = Coding::of(&headers(refused)).unwrap_err();
            assert_eq!(p.status(), 415, "{refused}");
            assert!(p.detail.contains("zstd, gzip"), "{}", p.detail);
        }
    }

    #[test]
    fn both_codings_decode_to_the_body() {
        let body = b"{\"a\":1}\n".repeat(1000);
        let z = zstd::bulk::compress(&body, 3).unwrap();
        assert_eq!(
            &Coding::Zstd.decode(z.into(), 1 << 20).unwrap()[..],
            &body[..]
        );
        let g = gzip(&body);
        assert_eq!(
            &Coding::Gzip.decode(g.into(), 1 << 20).unwrap()[..],
            &body[..]
        );
        // Concatenated frames (members) decode to the concatenation.
        let mut two = zstd::bulk::compress(b"one\n", 1).unwrap();
        two.extend(zstd::bulk::compress(b"two\n", 1).unwrap());
        assert_eq!(
            &Coding::Zstd.decode(two.into(), 100).unwrap()[..],
            b"one\ntwo\n"
        );
    }

    #[test]
    fn a_body_that_decodes_past_the_limit_is_refused_while_decoding() {
        // 64 MiB of zeros compress to a few kilobytes.
        let zeros = vec![0u8; 64 << 20];
        for (coding, bytes) in [
            (Coding::Zstd, zstd::bulk::compress(&zeros, 3).unwrap()),
            (Coding::Gzip, gzip(&zeros)),
        ] {
            assert!(bytes.len() < 1 << 20);
            let p = coding.decode(bytes.into(), 1 << 20).unwrap_err();
            assert_eq!(p.status(), 413);
            assert!(p.detail.contains("1048576"), "{}", p.detail);
        }
        // Exactly at the limit is fine.
        let at = zstd::bulk::compress(&zeros[..1000], 3).unwrap();
        assert_eq!(Coding::Zstd.decode(at.into(), 1000).unwrap().len(), 1000);
    }

    #[test]
    fn bytes_not_in_the_coding_are_a_bad_request() {
        for coding in [Coding::Zstd, Coding::Gzip] {
            let p = coding
                .decode(b"{\"plain\": true}".to_vec().into(), 1000)
                .unwrap_err();
            assert_eq!(p.status(), 400);
            assert!(p.detail.contains(coding.name()), "{}", p.detail);
        }
        // A truncated frame too.
        let z = zstd::bulk::compress(&b"x".repeat(10_000), 3).unwrap();
        let p = Coding::Zstd.decode(z[..z.len() / 2].to_vec().into(), 1 << 20);
        assert_eq!(p.unwrap_err().status(), 400);
    }

    #[test]
    fn a_frame_asking_for_a_huge_window_is_refused() {
        // Long-distance matching with a 2^27 window: the frame header
        // declares a window no request needs.
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(27))
            .unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::EnableLongDistanceMatching(
            true,
        ))
        .unwrap();
        let mut big = vec![0u8; 1 << 20];
        getrandom::getrandom(&mut big).unwrap();
        let body = [&big[..], &vec![7u8; 40 << 20][..], &big[..]].concat();
        let frame = c.compress(&body).unwrap();
        // A 32 MiB limit allows a 2^25 window, not 2^26.
        assert_eq!(zstd_window_log_max(32 << 20), 25);
        assert_eq!(zstd_window_log_max(1000), 23);
        let p = Coding::Zstd.decode(frame.into(), 32 << 20).unwrap_err();
        assert_eq!(p.status(), 400, "{}", p.detail);
    }
}
