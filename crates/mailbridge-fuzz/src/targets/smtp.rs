//! Fuzz targets for the SMTP parsers (`mailbridge_smtp::reply`): replies (multi-line,
//! enhanced status codes, what they mean) and EHLO capabilities, with explicit limits.

use mailbridge_smtp::reply::{Capabilities, EnhancedCode, ReplyLimits, parse};

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "smtp_reply",
        run: smtp_reply,
    },
    Target {
        name: "smtp_ehlo",
        run: smtp_ehlo,
    },
];

/// Small bounds, so that the fuzzer reaches them.
const LIMITS: ReplyLimits = ReplyLimits {
    max_line: 512,
    max_lines: 16,
    max_bytes: 2048,
};

/// One reply: within the bounds, never more bytes used than given, text printable,
/// and its meaning and enhanced codes computed.
fn smtp_reply(data: &[u8]) {
    if let Ok(Some((reply, used))) = parse(data, &LIMITS) {
        assert!(used <= data.len());
        assert!(!reply.lines.is_empty() && reply.lines.len() <= LIMITS.max_lines);
        assert!((100..600).contains(&reply.code));
        assert!(reply.lines.iter().all(|l| !l.chars().any(char::is_control)));
        for code in reply.enhanced() {
            assert_eq!(EnhancedCode::parse(&code.to_string()), Some(code));
        }
        let meaning = reply.meaning();
        let _ = (meaning.class(), meaning.fix(), meaning.password_fix());
    }
}

/// An EHLO reply's capabilities: keywords, AUTH mechanisms, SIZE.
fn smtp_ehlo(data: &[u8]) {
    if let Ok(Some((reply, _))) = parse(data, &LIMITS) {
        let caps = Capabilities::parse(&reply.lines);
        assert!(caps.entries.len() < reply.lines.len().max(1));
        let _ = (
            caps.has("PIPELINING"),
            caps.auth_mechanisms(),
            caps.max_size(),
        );
    }
}
