//! Text from a server, made safe to show on a terminal.
//!
//! A server's words (an SMTP reply, an IMAP `NO` text, a Graph error message, an
//! autodetection answer) reach a person's terminal inside reports and errors. Control
//! characters in them could move the cursor, retitle the window, clear the screen or
//! fake a line of mailbridge's own output. [`printable`] writes each one as a visible
//! escape instead: `\x1b` for C0, DEL and C1 characters, `\u{202e}` for the Unicode
//! bidirectional controls and line separators. A tab stays a tab; everything else is
//! kept as it is, so ordinary text is borrowed, not copied.

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for a character [`printable`] writes as an escape: C0 controls except tab,
/// DEL, C1 controls, bidirectional embeddings, overrides and isolates (which reorder
/// what follows them on screen), and the Unicode line and paragraph separators.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_into(out: &mut String, c: char) {
    let code = u32::from(c);
    if code < 0x100 {
        let _ = write!(out, "\\x{code:02x}");
    } else {
        let _ = write!(out, "\\u{{{code:x}}}");
    }
}

/// `text` with every control character (except tab) written as a visible escape
/// (`\x1b`, `\x07`, `\x0a`, `\u{202e}`, ...): safe to print on a terminal as one
/// line. Borrowed when there is nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A server's text with every character [`printable`] would escape dropped instead
/// (tabs made spaces), at most `max` characters: for server words the protocol crates
/// keep inside their errors and replies, where an escape would only be noise.
pub fn without_controls(text: &str, max: usize) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if needs_escape(c) => None,
            c => Some(c),
        })
        .take(max)
        .collect()
}

/// Like [`printable`], but line feeds stay line breaks (a `\r` before one is dropped):
/// for multi-line text of mailbridge's own (an error with a list of problems) that may
/// quote a server.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&printable(line.strip_suffix('\r').unwrap_or(line)));
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for t in [
            "",
            "535 5.7.3 Authentication unsuccessful",
            "Grüße, 日本語\tand a tab",
        ] {
            assert!(matches!(printable(t), Cow::Borrowed(s) if s == t));
            assert!(matches!(printable_lines(t), Cow::Borrowed(s) if s == t));
        }
    }

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            printable("NO \u{1b}[31mred\u{1b}]0;title\u{7} done"),
            "NO \\x1b[31mred\\x1b]0;title\\x07 done"
        );
        assert_eq!(printable("a\r\nb\0c\u{7f}"), "a\\x0d\\x0ab\\x00c\\x7f");
        assert_eq!(printable("\u{9b}2J"), "\\x9b2J");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(printable("x\u{2028}y"), "x\\u{2028}y");
    }

    #[test]
    fn printable_lines_keeps_line_breaks_only() {
        assert_eq!(
            printable_lines("not saved:\r\n  - host: \u{1b}[2J\n  - port"),
            "not saved:\n  - host: \\x1b[2J\n  - port"
        );
        assert_eq!(printable_lines("a\rb\n"), "a\\x0db\n");
    }

    #[test]
    fn the_result_never_holds_a_control_character() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!printable(&all).chars().any(needs_escape));
        assert!(
            !printable_lines(&all)
                .chars()
                .any(|c| c != '\n' && needs_escape(c))
        );
    }
}
