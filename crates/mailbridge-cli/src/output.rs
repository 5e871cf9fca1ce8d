//! JSON for standard output that is safe on a terminal too: `serde_json` writes C0
//! control characters as `\u00XX` but leaves C1 controls (such as U+009B, a CSI) and
//! the Unicode bidirectional controls raw. They can only occur inside JSON strings, so
//! writing them as `\uXXXX` escapes keeps every value exactly as it was.

use std::fmt::Write as _;

use serde::Serialize;

/// True for what must not reach a terminal raw, beyond what serde_json escapes.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `value` as pretty JSON with every control character written as an escape.
pub fn json_pretty<T: Serialize>(value: &T) -> serde_json::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c != '\n' && needs_escape(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c1_and_bidi_controls_are_escaped_and_the_value_is_kept() {
        let v = serde_json::json!({ "detail": "a\u{1b}[2J b\u{9b}2J c\u{202e}d\te" });
        let text = json_pretty(&v).unwrap();
        assert!(
            !text.chars().any(|c| c != '\n' && needs_escape(c)),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
    }
}
