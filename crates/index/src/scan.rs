//! A fast reader of an entry's clear fields, for the indexer's hot path.
//!
//! serde_json spent more time per event than all the SQLite work together
//! (every key decoded and matched, every string checked). Entries are
//! canonical JSON, so this walks the bytes once and borrows the few strings
//! it needs. It answers only what it fully checks: any escape in a key or a
//! returned field, a null or odd type where a field is expected, a duplicate
//! field, deep nesting or anything not JSON gives `None`, and serde_json then
//! decides. So where this gives `Some`, serde_json gives the same.

use super::{Ai, Clear, Named, Status};
use std::borrow::Cow;

/// Deeper nesting is left to serde_json (whose own limit is 128).
const MAX_DEPTH: u32 = 64;

/// The clear fields of `entry` (v1: its event; v2: its clear index).
pub(crate) fn clear_fields(entry: &[u8]) -> Option<Clear<'_>> {
    if entry.first() == Some(&aiaudit_event::sealed_v3::VERSION_BYTE) {
        // v3: the clear index is a canonical JSON object inside the binary header.
        let text = std::str::from_utf8(aiaudit_event::sealed_v3::index_bytes(entry)?).ok()?;
        let mut s = Scan { text, at: 0 };
        let clear = s.clear()?;
        s.ws();
        return (s.at == text.len()).then_some(clear);
    }
    let text = std::str::from_utf8(entry).ok()?;
    let mut s = Scan { text, at: 0 };
    let (mut v, mut event, mut index) = (None, None, None);
    s.object(0, |s, key| match key.as_bytes() {
        b"v" => set(&mut v, s.version()?),
        b"event" => set(&mut event, s.clear()?),
        b"index" => set(&mut index, s.clear()?),
        _ => s.skip(1),
    })?;
    s.ws();
    if s.at != text.len() {
        return None;
    }
    match v? {
        1 => event,
        2 => index,
        _ => None,
    }
}

/// Stores a field; a second one is serde's "duplicate field" error.
fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// The bytes that end a run of plain string content: quote, backslash and
/// control bytes (a table: one load per byte).
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The position of the first special byte at or after `i` (or the end).
fn plain_run(b: &[u8], i: usize) -> usize {
    let rest = &b[i.min(b.len())..];
    // Long strings (sealed ciphertext) skip 16 clean bytes at a time, with no
    // early exit inside a chunk so that it vectorises.
    let clean = if rest.len() > 64 && !rest[..16].iter().any(|&c| SPECIAL[c as usize]) {
        rest.chunks_exact(16)
            .take_while(|chunk| {
                !chunk
                    .iter()
                    .fold(false, |any, &c| any | SPECIAL[c as usize])
            })
            .count()
            * 16
    } else {
        0
    };
    let at = rest[clean..]
        .iter()
        .position(|&c| SPECIAL[c as usize])
        .map_or(rest.len(), |p| clean + p);
    i + at
}

struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not taken.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.at += 1)
    }

    /// A string without escapes, borrowed.
    fn plain(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = self.string_end(false)?;
        self.at = end + 1;
        // Quotes are ASCII, so both ends are character boundaries.
        Some(&self.text[start..end])
    }

    fn text(&mut self) -> Option<Cow<'a, str>> {
        self.plain().map(Cow::Borrowed)
    }

    /// The position of the quote closing the string the scan is inside of.
    /// Escapes are accepted (as JSON spells them) only when `escapes`.
    fn string_end(&self, escapes: bool) -> Option<usize> {
        let b = self.bytes();
        let mut i = self.at;
        loop {
            i = plain_run(b, i);
            match *b.get(i)? {
                b'"' => return Some(i),
                b'\\' if escapes => match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// Walks an object: `f` gets each key with the scan at its value, and
    /// must take the value.
    fn object(
        &mut self,
        depth: u32,
        mut f: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.plain()?;
            self.eat(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip(depth + 1)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Skips one value, checked against the JSON grammar.
    fn skip(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.at = self.string_end(true)? + 1;
                Some(())
            }
            b'{' => self.object(depth, |s, _| s.skip(depth + 1)),
            b'[' => self.array(depth),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    fn number(&mut self) -> Option<()> {
        let b = self.bytes();
        let mut i = self.at;
        let digits = |i: &mut usize| {
            let start = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > start
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        self.at = i;
        Some(())
    }

    /// The entry format version: exactly `1` or `2` (anything else, even
    /// `1.0`, is left to serde_json).
    fn version(&mut self) -> Option<u64> {
        let v = match self.peek()? {
            b'1' => 1,
            b'2' => 2,
            _ => return None,
        };
        self.at += 1;
        match self.bytes().get(self.at) {
            Some(b'0'..=b'9' | b'.' | b'e' | b'E') => None,
            _ => Some(v),
        }
    }

    fn clear(&mut self) -> Option<Clear<'a>> {
        let mut c = Clear::default();
        self.object(1, |s, key| match key.as_bytes() {
            b"id" => set(&mut c.id, s.text()?),
            b"time" => set(&mut c.time, s.text()?),
            b"tenant" => set(&mut c.tenant, s.text()?),
            b"action" => set(&mut c.action, s.text()?),
            b"risk_level" => set(&mut c.risk_level, s.text()?),
            b"subject" => set(&mut c.subject, s.text()?),
            b"trace_id" => set(&mut c.trace_id, s.text()?),
            b"actor" => set(&mut c.actor, s.named()?),
            b"source" => set(&mut c.source, s.named()?),
            b"outcome" => {
                let mut status = None;
                s.object(2, |s, key| match key.as_bytes() {
                    b"status" => set(&mut status, s.text()?),
                    _ => s.skip(3),
                })?;
                set(&mut c.outcome, Status { status })
            }
            b"ai" => {
                let (mut provider, mut request, mut response, mut conversation) =
                    (None, None, None, None);
                s.object(2, |s, key| match key.as_bytes() {
                    b"gen_ai.provider.name" => set(&mut provider, s.text()?),
                    b"gen_ai.request.model" => set(&mut request, s.text()?),
                    b"gen_ai.response.model" => set(&mut response, s.text()?),
                    b"gen_ai.conversation.id" => set(&mut conversation, s.text()?),
                    _ => s.skip(3),
                })?;
                let ai = Ai {
                    provider,
                    request_model: request,
                    response_model: response,
                    conversation,
                };
                set(&mut c.ai, ai)
            }
            _ => s.skip(2),
        })?;
        Some(c)
    }

    fn named(&mut self) -> Option<Named<'a>> {
        let (mut id, mut name) = (None, None);
        self.object(2, |s, key| match key.as_bytes() {
            b"id" => set(&mut id, s.text()?),
            b"name" => set(&mut name, s.text()?),
            _ => s.skip(3),
        })?;
        Some(Named { id, name })
    }
}
