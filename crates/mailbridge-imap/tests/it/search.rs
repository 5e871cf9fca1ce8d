//! Listing a folder costs round trips by its number of messages, not by its UID space:
//! against a scripted server that holds a list of UIDs, answers `UID SEARCH` over
//! message sequence numbers and UIDs (and `RETURN (ALL)` when it offers `ESEARCH`),
//! and counts the searches.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailbridge_imap::{Credentials, ImapClient, ImapConfig, ImapError, TlsMode};
use mailbridge_testkit::hostile::imap::{ImapAnswer, serve};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Limits;
use secrecy::SecretString;

/// `a:b`, `a:*` or `a` over `1..=highest`, as an inclusive range.
fn range(set: &str, highest: u32) -> (u32, u32) {
    let num = |s: &str| {
        if s == "*" {
            highest
        } else {
            s.parse().unwrap()
        }
    };
    let (a, b) = set.split_once(':').unwrap_or((set, set));
    let (a, b) = (num(a), num(b));
    (a.min(b), a.max(b))
}

/// `uids` as a sequence set (`1:3,7`).
fn sequence_set(uids: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let mut j = i;
        while j + 1 < uids.len() && uids[j + 1] == uids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            uids[i].to_string()
        } else {
            format!("{}:{}", uids[i], uids[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Answers a `UID SEARCH` over `uids` (message `n` has `uids[n - 1]`).
fn answer_search(criteria: &str, uids: &[u32], tag: &str) -> String {
    let mut words = criteria.split(' ').peekable();
    let esearch = words.peek() == Some(&"RETURN");
    if esearch {
        assert_eq!(words.next(), Some("RETURN"));
        assert_eq!(words.next(), Some("(ALL)"));
    }
    let (mut seq, mut uid) = ((1, u32::MAX), (1, u32::MAX));
    while let Some(w) = words.next() {
        match w {
            "UID" => {
                let highest = uids.last().copied().unwrap_or(0);
                uid = range(words.next().unwrap(), highest);
            }
            "SINCE" => {
                words.next();
            }
            set => seq = range(set, u32::try_from(uids.len()).unwrap()),
        }
    }
    let hits: Vec<u32> = uids
        .iter()
        .enumerate()
        .filter(|(i, u)| {
            let n = u32::try_from(*i).unwrap() + 1;
            (seq.0..=seq.1).contains(&n) && (uid.0..=uid.1).contains(*u)
        })
        .map(|(_, u)| *u)
        .collect();
    if esearch {
        // An answer to another command comes first: it is not part of the listing.
        let other = "* ESEARCH (TAG \"x9\") UID ALL 77777:77779\r\n";
        if hits.is_empty() {
            format!("{other}* ESEARCH (TAG \"{tag}\") UID\r\n")
        } else {
            format!(
                "{other}* ESEARCH (TAG \"{tag}\") UID ALL {}\r\n",
                sequence_set(&hits)
            )
        }
    } else {
        let list: Vec<String> = hits.iter().map(u32::to_string).collect();
        format!("* SEARCH {}\r\n", list.join(" ")).replace(" \r\n", "\r\n")
    }
}

/// A scripted server holding `uids` (ascending) with `UIDNEXT` `uid_next`, offering
/// `ESEARCH` when `esearch`; every `UID SEARCH`'s criteria are recorded.
struct Folder {
    searches: Arc<Mutex<Vec<String>>>,
    port: u16,
}

async fn folder(uids: Vec<u32>, uid_next: u32, esearch: bool) -> Folder {
    let searches = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = searches.clone();
    let (port, _) = serve(move |tag, command| {
        let upper = command.to_ascii_uppercase();
        ImapAnswer::text(if upper.starts_with("CAPABILITY") {
            let extra = if esearch { " ESEARCH" } else { "" };
            format!("* CAPABILITY IMAP4rev1{extra}\r\n{tag} OK done\r\n")
        } else if upper.starts_with("SELECT") {
            format!(
                "* {} EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT {uid_next}] n\r\n{tag} OK [READ-WRITE] done\r\n",
                uids.len()
            )
        } else if let Some(criteria) = upper.strip_prefix("UID SEARCH ") {
            seen.lock().unwrap().push(criteria.to_owned());
            format!("{}{tag} OK done\r\n", answer_search(criteria, &uids, tag))
        } else {
            format!("{tag} OK done\r\n")
        })
    })
    .await;
    Folder { searches, port }
}

impl Folder {
    async fn client(&self, limits: Limits) -> ImapClient {
        let mut config = ImapConfig::new("127.0.0.1", self.port, TlsMode::None);
        config.timeout = Duration::from_secs(5);
        config.limits = limits;
        let mut client = ImapClient::connect(&config).await.unwrap();
        client
            .authenticate(&Credentials::Login {
                user: "u".into(),
                password: SecretString::from("p"),
            })
            .await
            .unwrap();
        client.select("INBOX").await.unwrap();
        client
    }

    fn searches(&self) -> Vec<String> {
        std::mem::take(&mut *self.searches.lock().unwrap())
    }
}

#[tokio::test]
async fn a_large_folder_is_listed_in_windows_of_sequence_numbers_from_the_top() {
    let f = folder((1..=50_000).collect(), 50_001, false).await;
    let mut client = f.client(Limits::default()).await;
    let uids = client.uids_after(0).await.unwrap();
    assert_eq!(uids, (1..=50_000).collect::<Vec<u32>>());
    assert_eq!(
        f.searches(),
        ["30001:* UID 1:*", "10001:30000 UID 1:*", "1:10000 UID 1:*"]
    );
    // From a checkpoint near the end: one search, nothing at or below the checkpoint.
    let uids = client.uids_after(49_990).await.unwrap();
    assert_eq!(uids, (49_991..=50_000).collect::<Vec<u32>>());
    assert_eq!(f.searches(), ["30001:* UID 49991:*"]);
    assert!(client.uids_after(50_000).await.unwrap().is_empty());
    assert_eq!(f.searches(), ["30001:* UID 50001:*"]);
    // By date: every window, from the bottom.
    let day = time::macros::date!(2026 - 12 - 01);
    assert_eq!(client.uids_received_since(day).await.unwrap().len(), 50_000);
    assert_eq!(
        f.searches(),
        [
            "1:10000 SINCE 1-DEC-2026",
            "10001:30000 SINCE 1-DEC-2026",
            "30001:* SINCE 1-DEC-2026"
        ]
    );
}

#[tokio::test]
async fn uidnext_4294967295_costs_one_search_not_840000() {
    for esearch in [false, true] {
        let f = folder(vec![1, 2, 4_294_967_294], 4_294_967_295, esearch).await;
        let mut client = f.client(Limits::default()).await;
        let uids = tokio::time::timeout(Duration::from_secs(20), client.uids_after(0))
            .await
            .expect("listing three messages took more than 20 s")
            .unwrap();
        assert_eq!(uids, [1, 2, 4_294_967_294]);
        assert_eq!(client.uids_after(2).await.unwrap(), [4_294_967_294]);
        let day = time::macros::date!(2026 - 12 - 01);
        assert_eq!(client.uids_received_since(day).await.unwrap().len(), 3);
        let searches = f.searches();
        assert_eq!(searches.len(), 3, "esearch {esearch}: {searches:?}");
        if esearch {
            assert!(
                searches.iter().all(|s| s.starts_with("RETURN (ALL) ")),
                "{searches:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_esearch_answer_longer_than_a_line_is_read_whole() {
    // Every other UID: no ranges, about 340 KB of sequence set in one line.
    let uids: Vec<u32> = (1..=60_000).map(|u| u * 2).collect();
    let f = folder(uids.clone(), 120_001, true).await;
    let mut client = f.client(Limits::default()).await;
    assert_eq!(client.uids_after(0).await.unwrap(), uids);
    assert_eq!(f.searches(), ["RETURN (ALL) UID 1:*"]);
}

#[tokio::test]
async fn a_listing_longer_than_max_list_items_is_an_error_naming_the_setting() {
    for esearch in [false, true] {
        let f = folder((1..=150).collect(), 151, esearch).await;
        let limits = Limits {
            max_list_items: 100,
            ..Limits::default()
        };
        let mut client = f.client(limits).await;
        let err = client.uids_after(0).await.unwrap_err();
        assert!(
            matches!(err, ImapError::LimitExceeded { bound: 100, .. }),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::LimitExceeded);
        let text = err.to_string();
        assert!(
            text.contains("limits.max_list_items") && text.contains("100"),
            "{text}"
        );
    }
}
