//! The CLI against a scripted IMAP server that misbehaves: a message cut off in the
//! middle (the error names why, not only "failed to read new messages"), and a refusal
//! carrying terminal escape sequences (printed as visible escapes, never raw).

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

use super::{PASSWORD, fixture};

/// How the scripted server answers `LOGIN`.
#[derive(Clone, Copy)]
enum Script {
    /// Accepts the login; the first `UID FETCH` gets a message cut off after 100 of
    /// its announced 5000 bytes, then the connection closes.
    CutOffMessage,
    /// Refuses the login with a text full of escape sequences.
    EscapesInRefusal,
}

const HOSTILE_NO: &str =
    "NO [AUTHENTICATIONFAILED] \x1b]0;pwned\x07\x1b[2J\x1b[31mInvalid credentials\x1b[0m \u{9b}2J";

/// A plain-text IMAP server on 127.0.0.1 answering every connection with `script`.
async fn imap_server(script: Script) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"* OK scripted IMAP ready\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut words = line.split_whitespace();
                    let tag = words.next().unwrap_or("*").to_owned();
                    let command: Vec<String> = words.take(2).map(str::to_ascii_uppercase).collect();
                    let first = command.first().map_or("", String::as_str);
                    let second = command.get(1).map_or("", String::as_str);
                    let answer = match (first, second) {
                        ("CAPABILITY", _) => {
                            format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n")
                        }
                        ("LOGIN", _) => match script {
                            Script::CutOffMessage => format!("{tag} OK logged in\r\n"),
                            Script::EscapesInRefusal => format!("{tag} {HOSTILE_NO}\r\n"),
                        },
                        ("SELECT" | "EXAMINE", _) => format!(
                            "* 3 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 4] ok\r\n{tag} OK [READ-WRITE] done\r\n"
                        ),
                        ("UID", "SEARCH") => format!("* SEARCH 1 2 3\r\n{tag} OK done\r\n"),
                        ("UID", "FETCH") => {
                            let mut cut = b"* 1 FETCH (UID 1 BODY[] {5000}\r\n".to_vec();
                            cut.extend_from_slice(&[b'x'; 100]);
                            let _ = write.write_all(&cut).await;
                            return;
                        }
                        ("LOGOUT", _) => format!("* BYE bye\r\n{tag} OK done\r\n"),
                        _ => format!("{tag} OK done\r\n"),
                    };
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

async fn add_account(f: &super::Fixture, port: u16) {
    let (ok, out, err) = f
        .run(
            &[
                "account",
                "add",
                "ops@example.org",
                "--name",
                "ops",
                "--incoming",
                &format!("imap://127.0.0.1:{port}"),
                "--sign-in",
                "password",
                "--send",
                "false",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    assert!(ok, "{out}{err}");
}

#[tokio::test]
async fn a_cut_off_message_is_reported_with_its_cause() {
    let f = fixture(365).await;
    let port = imap_server(Script::CutOffMessage).await;
    add_account(&f, port).await;
    let out = f.dir.path().join("maildir");
    let (ok, stdout, err) = f
        .run(
            &["fetch", "--account", "ops", "--out", out.to_str().unwrap()],
            None,
        )
        .await;
    assert!(!ok, "{stdout}");
    // Not only the outer words: what went wrong, from the IMAP client down.
    let outer = "failed to read new messages from the mailbox";
    let at = err.find(outer).unwrap_or_else(|| panic!("{err}"));
    let rest = &err[at + outer.len()..];
    let cause = rest
        .strip_prefix(": ")
        .and_then(|r| r.split("; what was written").next())
        .unwrap_or_default();
    assert!(cause.len() > 10, "no cause after {outer:?}: {err}");
}

#[tokio::test]
async fn escape_sequences_from_a_server_are_never_printed_raw() {
    let f = fixture(365).await;
    let port = imap_server(Script::EscapesInRefusal).await;
    add_account(&f, port).await;
    let raw = |text: &str| {
        text.chars()
            .any(|c| matches!(c, '\x1b' | '\x07' | '\u{9b}'))
    };

    // The check's report quotes the server's refusal.
    let (ok, out, err) = f.run(&["test", "receive", "ops"], None).await;
    assert!(!ok, "{out}");
    assert!(out.contains("✗"), "{out}");
    assert!(out.contains("Invalid credentials"), "{out}");
    assert!(!raw(&out) && !raw(&err), "{out:?}{err:?}");
    // The JSON report escapes them its own way.
    let (_, out, _) = f.run(&["test", "receive", "ops", "--json"], None).await;
    assert!(!raw(&out), "{out:?}");
    serde_json::from_str::<serde_json::Value>(&out).unwrap();

    // An error on standard error quotes it too.
    let maildir = f.dir.path().join("maildir");
    let (ok, _, err) = f
        .run(
            &[
                "fetch",
                "--account",
                "ops",
                "--out",
                maildir.to_str().unwrap(),
            ],
            None,
        )
        .await;
    assert!(!ok);
    assert!(err.contains("Invalid credentials"), "{err}");
    assert!(!raw(&err), "{err:?}");
}
