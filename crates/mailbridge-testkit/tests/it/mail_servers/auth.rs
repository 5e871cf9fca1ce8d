//! SASL at the real servers: XOAUTH2 in every form Exchange accepts, over STARTTLS
//! and implicit TLS, delegated and app-only; OAUTHBEARER; passwords.

use mailbridge_testkit::mailservers::wire;
use time::Duration;

use super::fixture::{
    ALICE, BOB, PASSWORD, SHARED, World, imap_xoauth2, pop_xoauth2, smtp_xoauth2, world, world_with,
};

const IMAP_ALL: &[&str] = &["IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"];

async fn assert_imap_session_works(c: &mut wire::LineClient) {
    let r = c.imap_command("a2", "SELECT INBOX").await.unwrap();
    assert!(r.last().unwrap().starts_with("a2 OK"), "{}", c.transcript());
}

#[tokio::test]
async fn imaps_xoauth2_sasl_ir_app_only() {
    let w = world().await;
    let mut c = w.imaps().await;
    let token = w.app_token(IMAP_ALL);
    let line = format!("a1 AUTHENTICATE XOAUTH2 {}", wire::xoauth2(ALICE, &token));
    assert!(
        line.len() > 1024,
        "a real-size token ({} bytes)",
        line.len()
    );
    let reply = imap_xoauth2(&mut c, ALICE, &token).await;
    assert!(reply.starts_with("a1 OK"), "{}", c.transcript());
    assert_imap_session_works(&mut c).await;
    assert_eq!(w.last_reason("imap"), "ok");
}

#[tokio::test]
async fn imap_starttls_xoauth2_continuation_delegated() {
    let w = world().await;
    let mut c = w.imap_starttls().await;
    let token = w.user_token(ALICE, &["IMAP.AccessAsUser.All"]);
    c.send_line("a1 AUTHENTICATE XOAUTH2").await.unwrap();
    let cont = c.read_line().await.unwrap();
    assert!(cont.starts_with('+'), "{cont}");
    c.send_line(&wire::xoauth2(ALICE, &token)).await.unwrap();
    let r = c.read_imap_until_tagged("a1").await.unwrap();
    assert!(r.last().unwrap().starts_with("a1 OK"), "{}", c.transcript());
    assert_imap_session_works(&mut c).await;
}

#[tokio::test]
async fn plain_imap_port_offers_starttls_and_xoauth2() {
    // The plain IMAP port greets with STARTTLS (143 semantics); the store uses it
    // without TLS on loopback, so plaintext AUTH is not refused there.
    let w = world().await;
    let mut c = wire::LineClient::connect(w.mail.imap()).await.unwrap();
    let greeting = c.read_line().await.unwrap();
    assert!(
        greeting.contains("STARTTLS") && greeting.contains("AUTH=XOAUTH2"),
        "{greeting}"
    );
}

#[tokio::test]
async fn pop3s_xoauth2_two_step_app_only() {
    let w = world().await;
    let mut c = w.pop3s().await;
    let reply = pop_xoauth2(&mut c, ALICE, &w.app_token(IMAP_ALL)).await;
    assert!(reply.starts_with("+OK"), "{}", c.transcript());
    assert!(c.pop_command("STAT").await.unwrap().starts_with("+OK 0 "));
}

#[tokio::test]
async fn pop3_stls_xoauth2_delegated() {
    let w = world().await;
    let mut c = w.pop3_stls().await;
    let reply = pop_xoauth2(
        &mut c,
        ALICE,
        &w.user_token(ALICE, &["POP.AccessAsUser.All"]),
    )
    .await;
    assert!(reply.starts_with("+OK"), "{}", c.transcript());
}

#[tokio::test]
async fn smtp_xoauth2_initial_response_app_only_and_delegated() {
    let w = world().await;
    let (mut c, ehlo) = w.submission().await;
    assert!(
        ehlo.lines
            .iter()
            .any(|l| l.contains("AUTH") && l.contains("XOAUTH2")),
        "{ehlo}"
    );
    let reply = smtp_xoauth2(&mut c, ALICE, &w.app_token(IMAP_ALL)).await;
    assert_eq!(
        reply.last(),
        "235 2.7.0 Authentication successful",
        "{}",
        c.transcript()
    );

    let (mut c, _) = w.submission().await;
    let reply = smtp_xoauth2(&mut c, ALICE, &w.user_token(ALICE, &["SMTP.Send"])).await;
    assert_eq!(reply.code, 235, "{}", c.transcript());
}

#[tokio::test]
async fn smtp_xoauth2_continuation_form() {
    let w = world().await;
    let (mut c, _) = w.submission().await;
    let r = c.smtp_command("AUTH XOAUTH2").await.unwrap();
    assert_eq!(r.code, 334, "{r}");
    let r = c
        .smtp_command(&wire::xoauth2(ALICE, &w.app_token(IMAP_ALL)))
        .await
        .unwrap();
    assert_eq!(r.code, 235, "{}", c.transcript());
}

async fn oauthbearer_imap(w: &World, token: &str) -> String {
    let mut c = w.imaps().await;
    let port = w.mail.imaps().port();
    let r = c
        .imap_command(
            "a1",
            &format!(
                "AUTHENTICATE OAUTHBEARER {}",
                wire::oauthbearer(ALICE, "localhost", port, token)
            ),
        )
        .await
        .unwrap();
    r.last().unwrap().clone()
}

async fn oauthbearer_smtp(w: &World, token: &str) -> wire::SmtpReply {
    let (mut c, _) = w.submission().await;
    let port = w.mail.submission().port();
    c.smtp_command(&format!(
        "AUTH OAUTHBEARER {}",
        wire::oauthbearer(ALICE, "localhost", port, token)
    ))
    .await
    .unwrap()
}

#[tokio::test]
async fn oauthbearer_is_refused_by_exchange_online() {
    let w = world().await;
    let token = w.user_token(ALICE, &["IMAP.AccessAsUser.All", "SMTP.Send"]);
    assert_eq!(
        oauthbearer_imap(&w, &token).await,
        "a1 NO [CONTACTADMIN] AUTHENTICATE failed."
    );
    assert_eq!(w.last_reason("imap"), "unsupported-mechanism");
    assert_eq!(
        oauthbearer_smtp(&w, &token).await.last(),
        "535 5.7.8 Error: authentication failed: 5.7.3 Authentication unsuccessful [SN4PR0501CA0123.namprd05.prod.outlook.com]"
    );
}

#[tokio::test]
async fn oauthbearer_works_for_a_generic_server() {
    let w = world_with(|t, _| t.basic_auth_enabled = true).await;
    let token = w.user_token(ALICE, &["IMAP.AccessAsUser.All", "SMTP.Send"]);
    let reply = oauthbearer_imap(&w, &token).await;
    assert!(reply.starts_with("a1 OK"), "{reply}");
    assert_eq!(oauthbearer_smtp(&w, &token).await.code, 235);
}

#[tokio::test]
async fn delegated_token_opens_a_shared_mailbox_only_with_full_access() {
    let w = world_with(|t, _| {
        t.mailbox_permissions
            .push(mailbridge_testkit::model::MailboxPermission {
                mailbox: SHARED.into(),
                trustee: ALICE.into(),
                right: mailbridge_testkit::model::MailboxRight::FullAccess,
                added_at: None,
            });
    })
    .await;
    let token = w.user_token(ALICE, &["IMAP.AccessAsUser.All"]);
    let mut c = w.imaps().await;
    assert!(
        imap_xoauth2(&mut c, SHARED, &token)
            .await
            .starts_with("a1 OK"),
        "{}",
        c.transcript()
    );
    let mut c = w.imaps().await;
    assert_eq!(
        imap_xoauth2(&mut c, BOB, &token).await,
        "a1 NO [CONTACTADMIN] AUTHENTICATE failed."
    );
    assert_eq!(w.last_reason("imap"), "no-full-access");
}

#[tokio::test]
async fn passwords_work_when_the_tenant_allows_basic_auth() {
    let w = world_with(|t, _| t.basic_auth_enabled = true).await;
    let mut c = w.imaps().await;
    let r = c
        .imap_command("a1", &format!("LOGIN {ALICE} \"{PASSWORD}\""))
        .await
        .unwrap();
    assert!(r.last().unwrap().starts_with("a1 OK"), "{}", c.transcript());

    let mut c = w.pop3s().await;
    assert!(
        c.pop_command(&format!("USER {ALICE}"))
            .await
            .unwrap()
            .starts_with("+OK")
    );
    let r = c.pop_command(&format!("PASS {PASSWORD}")).await.unwrap();
    assert!(r.starts_with("+OK"), "{}", c.transcript());

    let (mut c, _) = w.submission().await;
    let r = c
        .smtp_command(&format!("AUTH PLAIN {}", wire::plain(ALICE, PASSWORD)))
        .await
        .unwrap();
    assert_eq!(r.code, 235, "{}", c.transcript());

    let mut c = w.imaps().await;
    let r = c
        .imap_command("a1", &format!("LOGIN {ALICE} wrong"))
        .await
        .unwrap();
    assert_eq!(r.last().unwrap(), "a1 NO [CONTACTADMIN] LOGIN failed.");
    assert_eq!(w.last_reason("imap"), "bad-password");
}

#[tokio::test]
async fn passwords_are_refused_by_exchange_online() {
    let w = world().await;
    let mut c = w.imaps().await;
    let r = c
        .imap_command("a1", &format!("LOGIN {ALICE} \"{PASSWORD}\""))
        .await
        .unwrap();
    assert_eq!(r.last().unwrap(), "a1 NO [CONTACTADMIN] LOGIN failed.");
    assert_eq!(w.last_reason("imap"), "basic-auth-disabled");

    let mut c = w.pop3s().await;
    c.pop_command(&format!("USER {ALICE}")).await.unwrap();
    assert_eq!(
        c.pop_command(&format!("PASS {PASSWORD}")).await.unwrap(),
        "-ERR [AUTH] Authentication failure: unknown user name or bad password."
    );

    let (mut c, _) = w.submission().await;
    let r = c
        .smtp_command(&format!("AUTH PLAIN {}", wire::plain(ALICE, PASSWORD)))
        .await
        .unwrap();
    assert_eq!(
        r.last(),
        "535 5.7.8 Error: authentication failed: 5.7.139 Authentication unsuccessful, basic authentication is disabled. [SN4PR0501CA0123.namprd05.prod.outlook.com]"
    );
}

#[tokio::test]
async fn an_expired_token_fails() {
    let w = world().await;
    let token = w.app_token(IMAP_ALL);
    w.clock.advance(Duration::hours(2));
    let mut c = w.imaps().await;
    assert_eq!(
        imap_xoauth2(&mut c, ALICE, &token).await,
        "a1 NO [CONTACTADMIN] AUTHENTICATE failed."
    );
    assert_eq!(w.last_reason("imap"), "token-expired");
    // Like Exchange, the failure comes straight back: no XOAUTH2 error challenge (334).
    let (mut c, _) = w.submission().await;
    let r = c
        .smtp_command(&format!("AUTH XOAUTH2 {}", wire::xoauth2(ALICE, &token)))
        .await
        .unwrap();
    assert_eq!(
        r.last(),
        "535 5.7.8 Error: authentication failed: 5.7.3 Authentication unsuccessful [SN4PR0501CA0123.namprd05.prod.outlook.com]"
    );
}

#[tokio::test]
async fn a_graph_token_fails_at_imap() {
    let w = world().await;
    let token = w.graph_app_token(&["Mail.ReadWrite", "IMAP.AccessAsApp"]);
    let mut c = w.imaps().await;
    assert_eq!(
        imap_xoauth2(&mut c, ALICE, &token).await,
        "a1 NO [CONTACTADMIN] AUTHENTICATE failed."
    );
    assert_eq!(w.last_reason("imap"), "wrong-audience");
}

#[tokio::test]
async fn judgements_never_record_the_token() {
    let w: World = world().await;
    let token = w.app_token(IMAP_ALL);
    let mut c = w.imaps().await;
    imap_xoauth2(&mut c, ALICE, &token).await;
    let requests = w.emulator().requests();
    assert!(requests.iter().any(|r| r.surface == "imap-judge"));
    for r in requests {
        assert!(!format!("{r:?}").contains(&token), "token recorded: {r:?}");
    }
}

#[tokio::test]
async fn smtp_offers_auth_only_after_starttls() {
    let w = world().await;
    let mut c = wire::LineClient::connect(w.mail.submission())
        .await
        .unwrap();
    assert_eq!(c.read_smtp_reply().await.unwrap().code, 220);
    let ehlo = c.smtp_command("EHLO client.example").await.unwrap();
    assert!(
        ehlo.has_keyword("STARTTLS") && !ehlo.has_keyword("AUTH"),
        "{ehlo}"
    );
    assert!(
        ehlo.lines.iter().any(|l| l == "250-SIZE 157286400"),
        "{ehlo}"
    );
    let r = c
        .smtp_command(&format!("AUTH XOAUTH2 {}", wire::xoauth2(ALICE, "x")))
        .await
        .unwrap();
    assert_eq!(r.last(), "530 5.7.0 Must issue a STARTTLS command first");
    assert!(
        w.judge_reasons("smtp").is_empty(),
        "nothing reached the judge"
    );
}

#[tokio::test]
async fn imap_capability_after_login_is_exchanges() {
    let w = world().await;
    let mut c = w.imaps().await;
    assert!(
        imap_xoauth2(&mut c, ALICE, &w.app_token(IMAP_ALL))
            .await
            .starts_with("a1 OK")
    );
    let r = c.imap_command("a2", "CAPABILITY").await.unwrap();
    assert_eq!(
        r.first().unwrap(),
        "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CLIENTACCESSRULES CLIENTNETWORKPRESENCELOCATION BACKENDAUTHENTICATE CHILDREN IDLE NAMESPACE LITERAL+"
    );
}

#[tokio::test]
async fn smtp_ehlo_after_starttls_lists_what_exchange_lists() {
    let w = world().await;
    let (_, ehlo) = w.submission().await;
    for keyword in [
        "SIZE",
        "PIPELINING",
        "DSN",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "CHUNKING",
        "AUTH",
    ] {
        assert!(ehlo.has_keyword(keyword), "{keyword} missing: {ehlo}");
    }
    for keyword in ["VRFY", "ETRN", "STARTTLS"] {
        assert!(!ehlo.has_keyword(keyword), "{keyword} offered: {ehlo}");
    }
}

#[tokio::test]
async fn personal_account_with_an_opaque_token() {
    let w = super::fixture::world_with_personal().await;
    let token = w.personal_token(
        super::fixture::PERSONAL,
        &["IMAP.AccessAsUser.All", "SMTP.Send"],
    );
    assert!(token.starts_with("EwB"), "{token}");
    let mut c = w.imaps().await;
    let reply = imap_xoauth2(&mut c, super::fixture::PERSONAL, &token).await;
    assert!(reply.starts_with("a1 OK"), "{}", c.transcript());
    let (mut c, _) = w.submission().await;
    assert_eq!(
        smtp_xoauth2(&mut c, super::fixture::PERSONAL, &token)
            .await
            .code,
        235
    );
    // The same token cannot open a work mailbox.
    let mut c = w.imaps().await;
    assert_eq!(
        imap_xoauth2(&mut c, ALICE, &token).await,
        "a1 NO [CONTACTADMIN] AUTHENTICATE failed."
    );
    assert_eq!(w.last_reason("imap"), "mailbox-not-found");
}

#[tokio::test]
async fn dropped_sessions_end_and_a_new_login_works() {
    let w = world().await;
    let mut c = w.imaps().await;
    let token = w.app_token(IMAP_ALL);
    assert!(
        imap_xoauth2(&mut c, ALICE, &token)
            .await
            .starts_with("a1 OK")
    );
    assert_imap_session_works(&mut c).await;
    let dropped = w.mail.drop_sessions(Some(ALICE)).await.unwrap();
    assert!(dropped >= 1, "dropped {dropped}");
    // The session ends: Dovecot's process gets the signal and closes the connection
    // (with `* BYE`), shortly after the kick; poll with NOOP until it does (bounded).
    let mut ended = false;
    for n in 0..100 {
        match c.imap_command(&format!("n{n}"), "NOOP").await {
            Ok(lines) if lines.iter().any(|l| l.starts_with(&format!("n{n} OK"))) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            _ => {
                ended = true;
                break;
            }
        }
    }
    assert!(
        ended,
        "session still alive after the kick\n{}",
        c.transcript()
    );
    // A new connection with a fresh token works.
    let mut again = w.imaps().await;
    assert!(
        imap_xoauth2(&mut again, ALICE, &w.app_token(IMAP_ALL))
            .await
            .starts_with("a1 OK")
    );
    assert_imap_session_works(&mut again).await;
}
