//! `auth login` names the user the answer names, and says at once when that user is
//! not the account's mailbox.

use mailbridge_testkit::robot::Person;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};

use crate::{PASSWORD, fixture};

#[tokio::test]
async fn device_code_login_as_another_user_names_them_and_warns() {
    let f = fixture(365).await;
    let mut config = std::fs::read_to_string(f.config()).unwrap();
    config.push_str(
        r#"
[[account]]
name = "sales"
address = "sales@contoso.example"
sign_in = "delegated"
app = "docs"
transports = ["imap"]
"#,
    );
    std::fs::write(f.config(), config).unwrap();
    let mut child = f
        .cmd(&["auth", "login", "sales", "--device-code"])
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut message = String::new();
    stderr.read_line(&mut message).await.unwrap();
    let user_code = message
        .split_whitespace()
        .skip_while(|w| *w != "code")
        .nth(1)
        .unwrap()
        .to_owned();
    let uri = format!("{}/devicelogin", f.server.base_url());
    Person::new("alice@contoso.example", PASSWORD)
        .device_login(&uri, &user_code)
        .await
        .unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{rest}");
    // The user who signed in, not the account's address.
    assert!(
        stdout.contains("sales: signed in as alice@contoso.example."),
        "{stdout}"
    );
    assert!(!stdout.contains("signed in as sales@"), "{stdout}");
    assert!(
        rest.contains(
            "warning: alice@contoso.example signed in, but account sales is the mailbox sales@contoso.example"
        ),
        "{rest}"
    );
}
