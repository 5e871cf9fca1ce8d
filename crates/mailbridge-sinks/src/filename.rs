//! Safe, unique file names for attachments.
//!
//! An attachment's name is chosen by whoever sent the mail, so it may be `../../x`,
//! `C:\Windows\x`, a reserved device name (`CON`), contain control or bidirectional
//! characters (`invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`), be empty, or be
//! thousands of bytes long. [`safe_name`] keeps what a person would recognise and
//! drops the rest; [`UniqueNames`] numbers collisions (`report.pdf`,
//! `report (2).pdf`), comparing without case as case-insensitive file systems do.

use std::collections::HashSet;

/// The longest name written, in bytes (file systems allow 255).
pub const MAX_NAME_BYTES: usize = 120;
/// The longest extension kept, in bytes, dot included.
const MAX_EXTENSION_BYTES: usize = 16;
/// The name of an attachment that has none (or nothing usable).
pub const FALLBACK: &str = "attachment";

/// `original` made safe as one file name in a directory: no path separators, no
/// `.`/`..`, no control, bidirectional or Windows-forbidden characters, no leading or
/// trailing dots and spaces, not a Windows device name, at most [`MAX_NAME_BYTES`]
/// bytes with the extension kept. Never empty.
pub fn safe_name(original: Option<&str>) -> String {
    let original = original.unwrap_or("");
    // Only the last path component: "a/b\\c.pdf" -> "c.pdf".
    let last = original.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last
        .chars()
        .filter(|&c| !is_dropped(c))
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    // Runs of spaces collapse; dots and spaces leave the ends (".." and ". ." vanish,
    // and "name." is not "name" on Windows).
    while name.contains("  ") {
        name = name.replace("  ", " ");
    }
    let name = name.trim_matches(|c: char| c == '.' || c == ' ').to_owned();
    if name.is_empty() {
        return FALLBACK.to_owned();
    }
    let name = if is_device_name(&name) {
        format!("_{name}")
    } else {
        name
    };
    shorten(&name, MAX_NAME_BYTES)
}

fn is_dropped(c: char) -> bool {
    c.is_control()
        || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*' | '/' | '\\')
        // Bidirectional controls and invisible format characters.
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Windows device names, which no file may be called (with any extension).
fn is_device_name(name: &str) -> bool {
    let stem = name
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end()
        .to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem
                .as_bytes()
                .get(3)
                .is_some_and(|b| (b'1'..=b'9').contains(b)))
}

/// `name` cut to at most `max` bytes on a character boundary, keeping a short
/// extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    let ext = if ext.len() <= MAX_EXTENSION_BYTES {
        ext
    } else {
        ""
    };
    let room = max - ext.len();
    let mut cut = room.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem = stem[..cut].trim_end_matches([' ', '.']);
    let stem = if stem.is_empty() { FALLBACK } else { stem };
    format!("{stem}{ext}")
}

/// ("report", ".pdf"); a name without a dot (or only a leading one) has no extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    }
}

/// Names already used in one directory; hands out unique ones.
#[derive(Debug, Default)]
pub struct UniqueNames {
    taken: HashSet<String>,
}

impl UniqueNames {
    /// Names in `reserved` are never handed out (e.g. the sidecar's own name).
    pub fn with_reserved(reserved: &[&str]) -> Self {
        Self {
            taken: reserved.iter().map(|n| n.to_lowercase()).collect(),
        }
    }

    /// A safe name for `original` that differs (ignoring case) from every name handed
    /// out before: `name`, `name (2)`, `name (3)`, ... before the extension.
    pub fn next(&mut self, original: Option<&str>) -> String {
        let base = safe_name(original);
        if self.taken.insert(base.to_lowercase()) {
            return base;
        }
        let (stem, ext) = split_extension(&base);
        for n in 2u64.. {
            let suffix = format!(" ({n}){ext}");
            let candidate = format!("{}{suffix}", shorten(stem, MAX_NAME_BYTES - suffix.len()));
            if self.taken.insert(candidate.to_lowercase()) {
                return candidate;
            }
        }
        unreachable!("u64 numbers run out only after more names than memory holds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names_become_plain_names() {
        for (given, safe) in [
            ("../../etc/passwd", "passwd"),
            ("..\\..\\boot.ini", "boot.ini"),
            ("C:\\Windows\\system32\\cmd.exe", "cmd.exe"),
            ("..", FALLBACK),
            (".", FALLBACK),
            ("", FALLBACK),
            ("   ", FALLBACK),
            (".bashrc", "bashrc"),
            ("invoice\u{202e}fdp.exe", "invoicefdp.exe"),
            ("bell\u{7}\r\nname.txt", "bellname.txt"),
            ("CON", "_CON"),
            ("con.txt", "_con.txt"),
            ("LPT1.pdf", "_LPT1.pdf"),
            ("COM10.pdf", "COM10.pdf"),
            ("a<b>c:d\"e|f?g*h.doc", "abcdefgh.doc"),
            ("Zażółć gęślą jaźń.pdf", "Zażółć gęślą jaźń.pdf"),
            ("Отчёт  за   май.xlsx", "Отчёт за май.xlsx"),
            ("name.", "name"),
        ] {
            assert_eq!(safe_name(Some(given)), safe, "{given:?}");
        }
        assert_eq!(safe_name(None), FALLBACK);
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.pdf", "ä".repeat(300));
        let safe = safe_name(Some(&long));
        assert!(safe.len() <= MAX_NAME_BYTES, "{}", safe.len());
        assert_eq!(
            std::path::Path::new(&safe).extension(),
            Some("pdf".as_ref())
        );
        assert!(safe.starts_with('ä'));
    }

    #[test]
    fn collisions_are_numbered_ignoring_case() {
        let mut names = UniqueNames::with_reserved(&["message.json"]);
        assert_eq!(names.next(Some("report.pdf")), "report.pdf");
        assert_eq!(names.next(Some("Report.PDF")), "Report (2).PDF");
        assert_eq!(names.next(Some("a/report.pdf")), "report (3).pdf");
        assert_eq!(names.next(Some("message.json")), "message (2).json");
        assert_eq!(names.next(None), FALLBACK);
        assert_eq!(names.next(Some("..")), "attachment (2)");
    }

    #[test]
    fn numbered_long_names_stay_within_the_bound() {
        let mut names = UniqueNames::default();
        let long = format!("{}.pdf", "x".repeat(400));
        let first = names.next(Some(&long));
        let second = names.next(Some(&long));
        assert_ne!(first, second);
        assert!(second.len() <= MAX_NAME_BYTES);
        assert!(second.ends_with(" (2).pdf"));
    }

    proptest! {
        #[test]
        fn any_name_is_safe(given in "\\PC{0,300}") {
            let safe = safe_name(Some(&given));
            prop_assert!(!safe.is_empty());
            prop_assert!(safe.len() <= MAX_NAME_BYTES);
            prop_assert!(safe != "." && safe != "..");
            prop_assert!(!safe.contains('/') && !safe.contains('\\'));
            prop_assert!(!safe.chars().any(|c| c.is_control() || is_dropped(c)));
            prop_assert!(!safe.starts_with('.') && !safe.ends_with('.'));
            prop_assert!(!is_device_name(&safe));
        }

        #[test]
        fn unique_names_are_unique(given in proptest::collection::vec("[a-cA-C./]{0,4}", 1..40)) {
            let mut names = UniqueNames::default();
            let mut seen = HashSet::new();
            for g in &given {
                let n = names.next(Some(g));
                prop_assert!(seen.insert(n.to_lowercase()), "{} twice", n);
            }
        }
    }
}
