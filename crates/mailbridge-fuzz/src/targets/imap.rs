//! Fuzz targets for the IMAP response parsers (`mailbridge_imap::response`): whole
//! answers split into lines and literals as the client reads them, FETCH responses
//! with their literals, and SEARCH/ESEARCH listings, each within explicit limits.

use mailbridge_imap::response::{self, FetchItems, LiteralItem, MAX_LINE, SelectData};

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "imap_response",
        run: imap_response,
    },
    Target {
        name: "imap_fetch",
        run: imap_fetch,
    },
    Target {
        name: "imap_search",
        run: imap_search,
    },
];

/// Most items a listing may hold here (the client uses `limits.max_list_items`).
const MAX_ITEMS: u64 = 10_000;

/// The lines of `data` as the client reads them: each line, and the literal it
/// announces skipped (or the input ends). Calls `each` with every line.
fn lines(mut data: &[u8], mut each: impl FnMut(&[u8])) {
    loop {
        let Ok(Some((line, used))) = response::split_line(data, MAX_LINE) else {
            return;
        };
        assert!(
            used <= data.len(),
            "split_line consumed more than it was given"
        );
        assert!(line.len() <= MAX_LINE);
        each(line);
        let skip = response::literal(line).map_or(0, |l| l.size);
        let rest = data.get(used..).unwrap_or_default();
        let skip = usize::try_from(skip).unwrap_or(usize::MAX).min(rest.len());
        data = rest.get(skip..).unwrap_or_default();
    }
}

/// Every line parser over every line of an answer.
fn imap_response(data: &[u8]) {
    let mut select = SelectData::default();
    lines(data, |line| {
        let _ = response::completion(line, b"m1");
        let _ = response::is_continuation(line);
        let _ = response::is_bye(line);
        let _ = response::greeting(line);
        if let Some(caps) = response::capabilities(line) {
            assert!(caps.len() <= response::MAX_CAPABILITIES);
        }
        let _ = response::untagged_number(line, b"EXISTS");
        let _ = response::response_code(line, b"APPENDUID");
        select.update(line);
        let before = response::before_literal(line);
        assert!(before.len() <= line.len());
        let shown = response::printable(line);
        assert!(!shown.chars().any(char::is_control));
        assert!(shown.chars().count() <= response::MAX_SHOWN_TEXT + 1);
    });
}

/// A `UID FETCH` answer read as the client reads it: each FETCH response's segments
/// fed to [`FetchItems`], the literal after each one skipped.
fn imap_fetch(data: &[u8]) {
    let mut items: Option<FetchItems> = None;
    let mut in_response = false;
    lines(data, |segment| {
        if !in_response {
            items = FetchItems::start(segment);
        }
        let fed = items
            .as_mut()
            .map(|i| i.feed(response::before_literal(segment), MAX_LINE));
        let item = if let Some(Ok(item)) = fed {
            item
        } else {
            // Not a FETCH response, or one the client gives up on.
            items = None;
            LiteralItem::Other
        };
        if let LiteralItem::Body(section) = &item {
            assert!(section.len() <= 64);
        }
        in_response = response::literal(segment).is_some();
    });
}

/// SEARCH and ESEARCH answers (and bare sequence sets), never more than the bound.
fn imap_search(data: &[u8]) {
    let mut out = Vec::new();
    lines(data, |line| {
        let _ = response::search(line, MAX_ITEMS, &mut out);
        assert!(out.len() as u64 <= MAX_ITEMS);
        let _ = response::esearch(line, MAX_ITEMS, &mut out);
        assert!(out.len() as u64 <= MAX_ITEMS);
        let mut set = Vec::new();
        let _ = response::sequence_set(line, MAX_ITEMS, &mut set);
        assert!(set.len() as u64 <= MAX_ITEMS);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_realistic_and_broken_answers() {
        for data in [
            b"* OK [CAPABILITY IMAP4rev1 ESEARCH] ready\r\n* 3 EXISTS\r\nm1 OK done\r\n".as_slice(),
            b"* 1 FETCH (UID 7 BODY[] {5}\r\nhello)\r\nm1 OK\r\n",
            b"* ESEARCH (TAG \"m1\") UID ALL 1:3,5\r\n* SEARCH 1 2\r\n",
            b"* 1 FETCH (BODY[] {18446744073709551615}\r\nx",
            b"",
            b"\n\n\r\n{",
        ] {
            for t in TARGETS {
                (t.run)(data);
            }
        }
    }
}
