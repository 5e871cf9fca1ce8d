//! Fuzz targets for the POP3 parsers (`mailbridge_pop3::response`): status lines,
//! `UIDL`/`LIST` listings, and multi-line messages (dot unstuffing, terminator, size
//! bound), each with explicit limits.

use mailbridge_pop3::response::{Body, ListEntry, Status, UidlEntry, decode_body, parse_listing};

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pop3_response",
        run: pop3_response,
    },
    Target {
        name: "pop3_listing",
        run: pop3_listing,
    },
    Target {
        name: "pop3_body",
        run: pop3_body,
    },
];

/// A status line (`+OK`, `-ERR`, `+ ` continuation): its code, meaning and size
/// hint; the text shown to people has no control characters.
fn pop3_response(data: &[u8]) {
    let line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Ok(status) = Status::parse_bytes(line) {
        let _ = (status.code(), status.meaning(), status.announced_size());
        let _ = status.meaning().fix();
        assert!(!status.text.chars().any(char::is_control));
    }
}

/// A multi-line listing: the first byte picks the entry bound (0-63); never more
/// entries than that, never more bytes used than given.
fn pop3_listing(data: &[u8]) {
    let (max, input) = match data.split_first() {
        Some((m, rest)) => (u64::from(*m & 63), rest),
        None => (0, data),
    };
    if let Ok((items, used)) = parse_listing::<UidlEntry>(input, max) {
        assert!(items.len() as u64 <= max && used <= input.len());
        assert!(items.iter().all(|e| !e.uid.is_empty() && e.uid.len() <= 70));
    }
    if let Ok((items, used)) = parse_listing::<ListEntry>(input, max) {
        assert!(items.len() as u64 <= max && used <= input.len());
    }
}

/// A message body: the first two bytes pick the size bound and a chunk size; the
/// output never passes the bound, and decoding in chunks gives what decoding at once
/// gives.
fn pop3_body(data: &[u8]) {
    let (max, chunk, input) = match data {
        [m, c, rest @ ..] => (u64::from(*m) * 16, usize::from(*c).max(1), rest),
        _ => (0, 1, data),
    };
    let whole = decode_body(input, max);
    let mut body = Body::new(max);
    let mut out = Vec::new();
    let mut at = 0;
    let chunked = loop {
        let Some(piece) = input.get(at..(at + chunk).min(input.len())) else {
            break Ok(at);
        };
        if piece.is_empty() || body.is_done() {
            break Ok(at);
        }
        let before = out.len();
        match body.decode(piece, &mut out) {
            Ok(used) => {
                assert!(used <= piece.len());
                assert!(out.len() - before <= 2 * used);
                at += used;
            }
            Err(e) => break Err(e),
        }
    };
    match (whole, chunked) {
        (Ok((w, used, done)), Ok(at)) => {
            assert!(w.len() as u64 <= max);
            assert_eq!(w, out);
            assert_eq!(used, at);
            assert_eq!(done, body.is_done());
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("whole {:?} and chunked {:?} differ", a.map(|_| ()), b),
    }
}
