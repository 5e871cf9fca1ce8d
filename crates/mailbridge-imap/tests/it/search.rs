//! A folder larger than one response line can list: `uids_after` searches it in
//! windows up to `UIDNEXT`, then the rest, against a scripted server holding 20,000
//! messages (UIDs 1..=20000).

use std::time::Duration;

use mailbridge_imap::{Credentials, ImapClient, ImapConfig, TlsMode};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

const MESSAGES: u32 = 20_000;

fn parse_set(set: &str) -> (u32, u32) {
    let (a, b) = set.split_once(':').unwrap();
    (
        a.parse().unwrap(),
        if b == "*" {
            MESSAGES
        } else {
            b.parse().unwrap()
        },
    )
}

#[tokio::test]
async fn a_folder_of_20000_messages_is_listed_in_windows() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let searches = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = searches.clone();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (reader, mut w) = socket.into_split();
        let mut r = BufReader::new(reader);
        w.write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
            .await
            .unwrap();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let (tag, command) = line.trim_end().split_once(' ').unwrap();
            let upper = command.to_ascii_uppercase();
            let answer = if upper.starts_with("SELECT") {
                format!(
                    "* {MESSAGES} EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT {}] n\r\n{tag} OK [READ-WRITE] done\r\n",
                    MESSAGES + 1
                )
            } else if let Some(set) = upper.strip_prefix("UID SEARCH UID ") {
                seen.lock().unwrap().push(set.to_owned());
                let (a, b) = parse_set(set);
                // `n:*` with n above the highest UID names the highest message.
                let (a, b) = if a > MESSAGES {
                    (MESSAGES, MESSAGES)
                } else {
                    (a, b)
                };
                let list: Vec<String> = (a..=b).map(|u| u.to_string()).collect();
                format!("* SEARCH {}\r\n{tag} OK done\r\n", list.join(" "))
            } else if upper.starts_with("LOGOUT") {
                format!("* BYE\r\n{tag} OK bye\r\n")
            } else {
                format!("{tag} OK done\r\n")
            };
            w.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    let mut config = ImapConfig::new("127.0.0.1", addr.port(), TlsMode::None);
    config.timeout = Duration::from_secs(5);
    let mut client = ImapClient::connect(&config).await.unwrap();
    client
        .authenticate(&Credentials::Login {
            user: "u".into(),
            password: SecretString::from("p"),
        })
        .await
        .unwrap();
    let folder = client.select("INBOX").await.unwrap();
    assert_eq!(folder.uid_next, MESSAGES + 1);
    let uids = client.uids_after(0).await.unwrap();
    assert_eq!(uids.len(), MESSAGES as usize);
    assert_eq!(uids.first(), Some(&1));
    assert_eq!(uids.last(), Some(&MESSAGES));
    assert_eq!(
        *searches.lock().unwrap(),
        vec!["1:5000", "5001:10000", "10001:15000", "15001:*"]
    );
    // From a checkpoint near the end: one search, nothing at or below the checkpoint.
    let uids = client.uids_after(MESSAGES).await.unwrap();
    assert!(uids.is_empty(), "{uids:?}");
}
