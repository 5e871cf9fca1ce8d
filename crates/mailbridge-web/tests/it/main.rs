//! The pages over HTTP, against a real SQLite store: the setup link, sign-in and its
//! rate limit, CSRF refusals, cookies and headers, languages, who sees which
//! accounts, and people and API tokens changed on `/users` (an administrator's form
//! with its token only, each change in the audit log). (The same flows in a real
//! browser: `mailbridge-cli`'s `web` and `web_admin` tests.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use mailbridge_connector::watcher::{WatcherEvent, WatcherState};
use mailbridge_store::{MasterKey, NewUser, Store};
use mailbridge_types::access::Role;
use mailbridge_web::session::sha256_hex;
use mailbridge_web::{CONTENT_SECURITY_POLICY, WebConfig, router};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

const CONFIG: &str = r#"
[[account]]
name = "ops_1"
address = "ops@example.org"
sign_in = "password"
incoming = { transport = "imap", host = "imap.example.org", port = 993, tls = "implicit" }

[[account]]
name = "helpdesk"
address = "helpdesk@example.org"
sign_in = "password"
incoming = { transport = "imap", host = "imap.example.org", port = 993, tls = "implicit" }

[[account]]
name = "notices"
address = "notices@example.org"
sign_in = "password"
download = false
outgoing = { transport = "smtp", host = "smtp.example.org", port = 587, tls = "starttls" }
"#;

const PASSWORD: &str = "correct horse battery";

struct Site {
    base: String,
    store: Store,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), &MasterKey::generate().unwrap())
        .await
        .unwrap();
    let config_file = dir.path().join("mailbridge.toml");
    std::fs::write(&config_file, CONFIG).unwrap();
    let watchers = Arc::new(|| {
        vec![WatcherEvent {
            account: "ops_1".into(),
            state: WatcherState::NeedsSignIn {
                reason: "AUTHENTICATE failed".into(),
            },
            at: time::OffsetDateTime::UNIX_EPOCH,
        }]
    });
    let app = router(WebConfig {
        store: store.clone(),
        config_file,
        watchers,
        secure_cookies: false,
        daemon: None,
        data_dir: None,
        sign_in: Arc::new(mailbridge_accounts::signin::SignIn::new(store.clone())),
        public_url: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    Site {
        base: format!("http://{addr}"),
        store,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

/// The `name=value` of cookie `name` set by a response, and the whole header.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let pair = v.split(';').next().unwrap().to_owned();
            (pair, v.to_owned())
        })
}

/// The value of hidden field `csrf` in a page.
fn csrf_field(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect(html);
    html[at + 19..].split('"').next().unwrap().to_owned()
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn add_user(&self, name: &str, role: Role, language: Option<&str>) {
        let hash = mailbridge_web::password::hash(PASSWORD.into())
            .await
            .unwrap();
        self.store
            .add_user(NewUser {
                name,
                role,
                password: &hash,
                language,
            })
            .await
            .unwrap();
    }

    /// The sign-in form's cookie and token.
    async fn form(&self) -> (String, String) {
        let r = self.http.get(self.url("/signin")).send().await.unwrap();
        let (cookie, _) = set_cookie(r.headers(), "mb_form").unwrap();
        let html = r.text().await.unwrap();
        (cookie, csrf_field(&html))
    }

    async fn post_signin(&self, name: &str, password: &str) -> reqwest::Response {
        let (cookie, csrf) = self.form().await;
        self.http
            .post(self.url("/signin"))
            .header(header::COOKIE, cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("name", name),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }

    /// Signs in; the session cookie (`mb_session=...`).
    async fn sign_in(&self, name: &str) -> String {
        let r = self.post_signin(name, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        set_cookie(r.headers(), "mb_session").unwrap().0
    }

    async fn get(&self, path: &str, cookie: &str, lang: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(self.url(path))
            .header(header::COOKIE, cookie)
            .header(header::ACCEPT_LANGUAGE, lang)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }
}

#[tokio::test]
async fn every_response_has_the_security_headers_and_pages_have_no_inline_code() {
    let site = site().await;
    for path in ["/signin", "/setup?token=nope", "/assets/style.css", "/"] {
        let r = site.http.get(site.url(path)).send().await.unwrap();
        let h = r.headers().clone();
        assert_eq!(
            h[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{path}");
        let body = r.text().await.unwrap();
        for inline in ["<script", "<style", "style=", "onclick", "javascript:"] {
            assert!(!body.contains(inline), "{path} has {inline}");
        }
    }
    assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
}

#[tokio::test]
async fn the_setup_link_makes_the_first_administrator_once_and_signs_them_in() {
    let site = site().await;
    let token = "setup-token-0123456789";
    site.store
        .put_setup_token(
            &sha256_hex(token),
            site.store.now() + std::time::Duration::from_mins(10),
        )
        .await
        .unwrap();
    // No one can sign in yet: the sign-in page says how to begin.
    let (_, html) = site.get("/signin", "", "en").await;
    assert!(html.contains("one-time setup link"), "{html}");

    let r = site
        .http
        .get(site.url(&format!("/setup?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (form_cookie, _) = set_cookie(r.headers(), "mb_form").unwrap();
    let csrf = csrf_field(&r.text().await.unwrap());
    let post = |password2: &'static str| {
        site.http
            .post(site.url("/setup"))
            .header(header::COOKIE, form_cookie.clone())
            .form(&[
                ("csrf", csrf.as_str()),
                ("token", token),
                ("name", "root"),
                ("password", PASSWORD),
                ("password2", password2),
            ])
            .send()
    };
    // Two different passwords: refused next to the form, the link still valid.
    let r = post("something else entirely").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("The two passwords differ"));

    let r = post(PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/");
    let (session, whole) = set_cookie(r.headers(), "mb_session").unwrap();
    assert!(whole.contains("; HttpOnly"), "{whole}");
    assert!(whole.contains("; SameSite=Strict"), "{whole}");
    assert!(whole.contains("; Path=/"), "{whole}");
    assert!(!whole.contains("Secure"), "{whole}");
    let users = site.store.users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].role, Role::Administrator);

    // Signed in: the dashboard lists every account with its watcher's state.
    let (status, html) = site.get("/", &session, "en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Signed in as root (administrator)"), "{html}");
    assert!(html.contains("ops@example.org"), "{html}");
    assert!(html.contains("Needs sign-in"), "{html}");
    assert!(html.contains("AUTHENTICATE failed"), "{html}");
    assert!(html.contains("helpdesk@example.org"), "{html}");
    assert!(html.contains("Not watched"), "{html}");

    // The link works once.
    let (status, html) = site.get(&format!("/setup?token={token}"), "", "en").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("used already or has expired"), "{html}");
    let r = post(PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(site.store.user_count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_repeated_failures_must_wait() {
    let site = site().await;
    site.add_user("alice", Role::Administrator, None).await;
    let r = site.post_signin("alice", "wrong password!").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(r.headers(), "mb_session").is_none());
    assert!(r.text().await.unwrap().contains("Wrong name or password."));
    // An unknown name gets the same answer.
    let r = site.post_signin("mallory", "wrong password!").await;
    assert!(r.text().await.unwrap().contains("Wrong name or password."));

    for _ in 0..4 {
        site.post_signin("alice", "wrong password!").await;
    }
    // Now even the right password waits, and the page says how long.
    let r = site.post_signin("alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[header::RETRY_AFTER], "30");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Too many failed sign-ins. Try again in 30 s."),
        "{html}"
    );
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused() {
    let site = site().await;
    site.add_user("alice", Role::Administrator, None).await;
    // Sign-in without the token, or with another's.
    let (cookie, _) = site.form().await;
    for form in [
        vec![("name", "alice"), ("password", PASSWORD)],
        vec![
            ("csrf", "forged"),
            ("name", "alice"),
            ("password", PASSWORD),
        ],
    ] {
        let r = site
            .http
            .post(site.url("/signin"))
            .header(header::COOKIE, cookie.clone())
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.text().await.unwrap().contains("security token"));
    }
    // Sign-out without the session's token: refused, the session lives on.
    let session = site.sign_in("alice").await;
    let r = site
        .http
        .post(site.url("/signout"))
        .header(header::COOKIE, session.clone())
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (status, html) = site.get("/", &session, "en").await;
    assert_eq!(status, StatusCode::OK);
    // With it: signed out, the old cookie opens nothing.
    let r = site
        .http
        .post(site.url("/signout"))
        .header(header::COOKIE, session.clone())
        .form(&[("csrf", csrf_field(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookie(r.headers(), "mb_session")
            .unwrap()
            .1
            .contains("Max-Age=0")
    );
    let (status, _) = site.get("/", &session, "en").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn pages_speak_the_users_language_else_the_browsers() {
    let site = site().await;
    let (_, html) = site.get("/signin", "", "pl-PL,pl;q=0.9,en;q=0.5").await;
    assert!(html.contains(r#"<html lang="pl">"#), "{html}");
    assert!(html.contains("Logowanie"), "{html}");
    let (_, html) = site.get("/signin", "", "ru").await;
    assert!(html.contains("Вход"), "{html}");
    let (_, html) = site.get("/signin", "", "es").await;
    assert!(html.contains("Sign in"), "{html}");

    site.add_user("hans", Role::Auditor, Some("de")).await;
    let session = site.sign_in("hans").await;
    let (_, html) = site.get("/", &session, "pl").await;
    assert!(html.contains(r#"<html lang="de">"#), "{html}");
    assert!(html.contains("Angemeldet als hans (Prüfer)"), "{html}");
    assert!(html.contains("Anmeldung erforderlich"), "{html}");
}

#[tokio::test]
async fn auditors_see_every_account_and_users_their_own() {
    let site = site().await;
    site.add_user("carol", Role::Auditor, None).await;
    site.add_user("dave", Role::User, None).await;
    let (_, html) = site.get("/", &site.sign_in("carol").await, "en").await;
    assert!(html.contains("ops@example.org"), "{html}");
    assert!(html.contains("helpdesk@example.org"), "{html}");
    let dave = site.sign_in("dave").await;
    let (_, html) = site.get("/", &dave, "en").await;
    assert!(!html.contains("ops@example.org"), "{html}");
    assert!(html.contains("No accounts of yours yet."), "{html}");
    // Given the helpdesk account, Dave sees it and nothing else.
    let helpdesk = site.store.account_id("helpdesk").await.unwrap().unwrap();
    assert!(
        site.store
            .set_account_owner(helpdesk, Some("dave"))
            .await
            .unwrap()
    );
    let (_, html) = site.get("/", &dave, "en").await;
    assert!(html.contains("helpdesk@example.org"), "{html}");
    assert!(!html.contains("ops@example.org"), "{html}");
    assert!(!html.contains("No accounts of yours yet."), "{html}");
    // A disabled user cannot sign in, even with the right password.
    site.store.set_user_disabled("dave", true).await.unwrap();
    let r = site.post_signin("dave", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("This user is disabled"));
}

#[tokio::test]
async fn serve_makes_a_setup_token_only_while_no_one_exists() {
    use secrecy::ExposeSecret as _;
    let site = site().await;
    let first = mailbridge_web::setup_token(&site.store)
        .await
        .unwrap()
        .unwrap();
    let second = mailbridge_web::setup_token(&site.store)
        .await
        .unwrap()
        .unwrap();
    // Only the newest link works.
    let (status, _) = site
        .get(&format!("/setup?token={}", first.expose_secret()), "", "en")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, html) = site
        .get(
            &format!("/setup?token={}", second.expose_secret()),
            "",
            "en",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Create the first administrator"), "{html}");
    site.add_user("alice", Role::Administrator, None).await;
    assert!(
        mailbridge_web::setup_token(&site.store)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn failures_from_one_address_make_it_wait_whatever_the_name() {
    let site = site().await;
    site.add_user("alice", Role::Administrator, None).await;
    for i in 0..5 {
        let r = site
            .post_signin(&format!("guess-{i}"), "wrong password!")
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Alice's name never failed, but this address did.
    let r = site.post_signin("alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // A name far over the limit is refused like any wrong name.
    let r = site.post_signin(&"x".repeat(100_000), PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn people_and_tokens_change_only_through_an_administrators_form_with_its_token() {
    let site = site().await;
    site.add_user("alice", Role::Administrator, None).await;
    site.add_user("carol", Role::Auditor, None).await;
    site.add_user("dave", Role::User, None).await;
    let alice = site.sign_in("alice").await;
    let (status, html) = site.get("/users", &alice, "en").await;
    assert_eq!(status, StatusCode::OK);
    let token = csrf_field(&html);
    let post = |path: &str, cookie: &str, form: Vec<(&str, &str)>| {
        let request = site
            .http
            .post(site.url(path))
            .header(header::COOKIE, cookie.to_owned())
            .form(&form);
        async move {
            let r = request.send().await.unwrap();
            let status = r.status();
            let location = r
                .headers()
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned());
            (status, location, r.text().await.unwrap())
        }
    };
    let erin = vec![
        ("name", "erin"),
        ("role", "user"),
        ("language", "pl"),
        ("password", PASSWORD),
    ];

    // Without the session's token: refused, nobody added.
    let (status, _, html) = post("/users", &alice, erin.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("security token"), "{html}");
    // A short password: refused next to its field.
    let (status, _, html) = post(
        "/users",
        &alice,
        vec![
            ("csrf", &token),
            ("name", "erin"),
            ("role", "user"),
            ("password", "short"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains(r#"<p class="error" id="new-password-error">The password is too short"#),
        "{html}"
    );
    assert!(html.contains(r#"value="erin""#), "the name is kept: {html}");
    let mut with_token = erin.clone();
    with_token.push(("csrf", &token));
    let (status, location, _) = post("/users", &alice, with_token.clone()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/users?done=added"));
    let added = site.store.users().await.unwrap();
    let erin_user = added.iter().find(|u| u.name == "erin").unwrap();
    assert_eq!(erin_user.role, Role::User);
    assert_eq!(erin_user.language.as_deref(), Some("pl"));
    let (status, _, html) = post("/users", &alice, with_token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("A person named erin exists already"),
        "{html}"
    );
    // Nobody disables themselves.
    let (status, _, html) = post("/users/alice/disable", &alice, vec![("csrf", &token)]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("cannot disable yourself"), "{html}");
    let (status, _, _) = post(
        "/users/erin/role",
        &alice,
        vec![("csrf", &token), ("role", "auditor")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // A token shown once, then listed without its value, then revoked.
    let (status, _, html) = post(
        "/tokens",
        &alice,
        vec![
            ("csrf", &token),
            ("name", "portal"),
            ("role", "user"),
            ("user", "dave"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let at = html.find(r#"<code id="new-token">"#).expect(&html);
    let value: String = html[at + 21..].chars().take_while(|c| *c != '<').collect();
    assert!(value.starts_with("mbt_"), "{value}");
    let (_, html) = site.get("/users", &alice, "en").await;
    assert!(!html.contains(&value));
    let stored = site.store.api_tokens().await.unwrap();
    let portal = stored.iter().find(|t| t.name == "portal").unwrap();
    assert_eq!(portal.user.as_deref(), Some("dave"));
    let (status, _, _) = post(
        &format!("/tokens/{}/revoke", portal.id),
        &alice,
        vec![("csrf", &token)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        site.store.api_tokens().await.unwrap()[0]
            .revoked_at
            .is_some()
    );

    // Each change in the audit log: alice, a person, from this client.
    let log = site.store.audit_list(None, 100).await.unwrap();
    let what: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.object_kind.as_str()))
        .collect();
    assert_eq!(
        what,
        [
            ("revoke", "token"),
            ("create", "token"),
            ("set-role", "user"),
            ("create", "user"),
        ]
    );
    assert!(log.iter().all(|e| e.actor == "alice"
        && e.actor_kind == mailbridge_store::Actor::Person
        && e.client == "127.0.0.1"));

    // An auditor reads the lists without a form, and a form posted anyway is refused.
    let carol = site.sign_in("carol").await;
    let (status, html) = site.get("/users", &carol, "en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("erin"), "{html}");
    assert!(!html.contains(r#"action="/users""#), "{html}");
    let carol_token = csrf_field(&html);
    let (status, _, _) = post(
        "/users",
        &carol,
        vec![
            ("csrf", &carol_token),
            ("name", "mallory"),
            ("role", "administrator"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, html) = site.get("/audit", &carol, "en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(r#"<td class="audit-action" data-action="revoke">revoked</td>"#),
        "{html}"
    );
    assert!(html.contains("alice"), "{html}");
    // A user may not open either.
    let dave = site.sign_in("dave").await;
    for page in ["/users", "/audit", "/apps", "/providers", "/settings"] {
        let (status, html) = site.get(page, &dave, "en").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
        assert!(html.contains("may not open this page"), "{page}: {html}");
        assert!(!html.contains(r#"href="/users""#), "{page}: {html}");
    }
    assert!(
        site.store
            .users()
            .await
            .unwrap()
            .iter()
            .all(|u| u.name != "mallory")
    );
}

#[tokio::test]
async fn settings_name_the_notifying_account_and_the_default_language() {
    let site = site().await;
    site.add_user("alice", Role::Administrator, None).await;
    site.add_user("carol", Role::Auditor, None).await;
    let alice = site.sign_in("alice").await;
    let (status, html) = site.get("/settings", &alice, "en").await;
    assert_eq!(status, StatusCode::OK);
    let token = csrf_field(&html);
    // Only the account that sends is offered.
    assert!(html.contains(">notices</option>"), "{html}");
    assert!(!html.contains(">ops_1</option>"), "{html}");
    let notices = site
        .store
        .account_id("notices")
        .await
        .unwrap()
        .unwrap()
        .to_string();
    let ops = site
        .store
        .account_id("ops_1")
        .await
        .unwrap()
        .unwrap()
        .to_string();
    let save = |account: String, language: &'static str| {
        let request = site
            .http
            .post(site.url("/settings"))
            .header(header::COOKIE, alice.clone())
            .form(&[
                ("csrf", token.clone()),
                ("notification_account", account),
                ("default_language", language.to_owned()),
            ]);
        async move {
            let r = request.send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    // An account that does not send, and a language there is not: refused next to
    // their fields, nothing kept.
    let (status, html) = save(ops, "es").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains(r#"id="notification-account-error">Choose one of the listed accounts."#),
        "{html}"
    );
    assert!(
        html.contains(r#"id="default-language-error">Choose one of the listed languages."#),
        "{html}"
    );
    assert_eq!(
        site.store.setting("notifications.account").await.unwrap(),
        None
    );
    let (status, _) = save(notices.clone(), "pl").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        site.store.setting("notifications.account").await.unwrap(),
        Some(notices.clone())
    );
    assert_eq!(
        site.store
            .setting("default_language")
            .await
            .unwrap()
            .as_deref(),
        Some("pl")
    );
    // The default language is preselected for a new person.
    let (_, html) = site.get("/users", &alice, "en").await;
    assert!(html.contains(r#"<option value="pl" selected>"#), "{html}");
    let log = site.store.audit_list(None, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|e| e.action == "update" && e.object_kind == "setting")
    );
    assert!(
        log.iter()
            .any(|e| e.object_name.as_deref() == Some("notices"))
    );
    // Saving the same again changes nothing and records nothing.
    let (status, _) = save(notices, "pl").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(site.store.audit_list(None, 10).await.unwrap().len(), 2);
    // An auditor sees the settings, without a form.
    let carol = site.sign_in("carol").await;
    let (status, html) = site.get("/settings", &carol, "en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(">notices</option>"), "{html}");
    assert!(
        !html.contains("<form method=\"post\" action=\"/settings\""),
        "{html}"
    );
}
