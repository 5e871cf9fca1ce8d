//! Autodetection against the emulated tenant (OpenID configuration, Autodiscover v2),
//! a local autoconfig server and fixed DNS answers; the checks (test receive / test
//! send) against real servers; the sign-in service against the emulated tenant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod check;
mod check_matrix;
mod signin;
mod store;
mod tls_check;

use mailbridge_accounts::autodetect::{DetectOptions, NoDns, SrvRecord, StaticDns, Step, detect};
use mailbridge_accounts::provider::{ProviderTable, TlsMode};
use mailbridge_testkit::model::{Tenant, TenantModel, User};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::config::{LoginFormat, Transport};

async fn tenant() -> EmulatorServer {
    let model = TenantModel::builder()
        .tenant(
            Tenant::new("Contoso", "contoso.example").with_user(User::new(
                "alice@contoso.example",
                "Alice",
                "pw",
            )),
        )
        .build()
        .unwrap();
    EmulatorServer::start(
        Emulator::new(model).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn options(server: &EmulatorServer, autoconfig: Vec<String>) -> DetectOptions {
    DetectOptions {
        authority_host: server.base_url(),
        autodiscover_url: format!("{}/autodiscover/autodiscover.json", server.base_url()),
        autoconfig_urls: autoconfig,
        ..DetectOptions::default()
    }
}

#[tokio::test]
async fn microsoft_365_by_mx_stops_there() {
    let server = tenant().await;
    let mut dns = StaticDns::default();
    dns.mx.insert(
        "contoso.example".into(),
        vec![(0, "contoso-example.mail.protection.outlook.com".into())],
    );
    let d = detect(
        "alice@contoso.example",
        &ProviderTable::default(),
        &dns,
        &options(&server, vec![]),
    )
    .await
    .unwrap();
    assert_eq!(d.provider.as_deref(), Some("microsoft365-graph"));
    assert_eq!(d.decided_by, Some(Step::Mx));
    // Decided: no sign-in host, no Autodiscover asked, and only the steps that ran.
    let steps: Vec<Step> = d.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, [Step::DomainTable, Step::Mx]);
    assert!(server.emulator.requests().is_empty());
    assert_eq!(d.tenant_id, None);
}

#[tokio::test]
async fn without_dns_no_mx_or_srv_step_runs_or_is_reported() {
    let server = tenant().await;
    let d = detect(
        "carol@example.net",
        &ProviderTable::default(),
        &NoDns,
        &options(&server, vec![]),
    )
    .await
    .unwrap();
    let steps: Vec<Step> = d.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        [
            Step::DomainTable,
            Step::OpenIdConfiguration,
            Step::AutodiscoverV2,
            Step::Autoconfig
        ]
    );
}

#[tokio::test]
async fn tenant_domain_without_mx_is_decided_by_openid_configuration() {
    let server = tenant().await;
    let d = detect(
        "alice@contoso.example",
        &ProviderTable::default(),
        &StaticDns::default(),
        &options(&server, vec![]),
    )
    .await
    .unwrap();
    assert_eq!(d.decided_by, Some(Step::OpenIdConfiguration));
    assert!(d.steps[1].outcome.contains("no MX"), "{:?}", d.steps);
}

async fn autoconfig_server(xml: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/mail/config-v1.1.xml",
        axum::routing::get(move || async move { ([("content-type", "text/xml")], xml) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (
        format!("http://{addr}/mail/config-v1.1.xml?emailaddress={{email}}"),
        task,
    )
}

#[tokio::test]
async fn other_domain_is_decided_by_autoconfig() {
    let server = tenant().await;
    let (url, _task) = autoconfig_server(
        r#"<clientConfig version="1.1"><emailProvider id="example.org">
        <incomingServer type="imap"><hostname>imap.example.org</hostname><port>993</port><socketType>SSL</socketType></incomingServer>
        <outgoingServer type="smtp"><hostname>smtp.example.org</hostname><port>587</port><socketType>STARTTLS</socketType></outgoingServer>
        </emailProvider></clientConfig>"#,
    )
    .await;
    let d = detect(
        "bob@example.org",
        &ProviderTable::default(),
        &StaticDns::default(),
        &options(&server, vec!["http://127.0.0.1:1/unreachable".into(), url]),
    )
    .await
    .unwrap();
    assert_eq!(d.decided_by, Some(Step::Autoconfig));
    assert_eq!(d.provider.as_deref(), Some("generic-imap"));
    assert_eq!(d.endpoints.len(), 2);
    assert_eq!(d.endpoints[0].host, "imap.example.org");
    let openid = d
        .steps
        .iter()
        .find(|s| s.step == Step::OpenIdConfiguration)
        .unwrap();
    assert!(
        openid.outcome.contains("not an Entra tenant (HTTP 400)"),
        "{}",
        openid.outcome
    );
}

#[tokio::test]
async fn autoconfig_placeholders_give_hosts_and_the_login_format() {
    let server = tenant().await;
    let (url, _task) = autoconfig_server(
        r#"<clientConfig version="1.1"><emailProvider id="%EMAILDOMAIN%">
        <incomingServer type="imap"><hostname>imap.%EMAILDOMAIN%</hostname><port>993</port><socketType>SSL</socketType><username>%EMAILLOCALPART%</username></incomingServer>
        <outgoingServer type="smtp"><hostname>smtp.%EMAILDOMAIN%</hostname><port>587</port><socketType>STARTTLS</socketType><username>%EMAILADDRESS%</username></outgoingServer>
        </emailProvider></clientConfig>"#,
    )
    .await;
    let table = ProviderTable::default();
    let d = detect(
        "bob@Example.org",
        &table,
        &StaticDns::default(),
        &options(&server, vec![url]),
    )
    .await
    .unwrap();
    assert_eq!(d.decided_by, Some(Step::Autoconfig));
    let hosts: Vec<&str> = d.endpoints.iter().map(|e| e.host.as_str()).collect();
    assert_eq!(hosts, ["imap.example.org", "smtp.example.org"]);
    assert_eq!(d.login_format, Some(LoginFormat::MailboxName));
    let account =
        mailbridge_accounts::account::from_detection("bob@Example.org", &d, &table).unwrap();
    assert_eq!(account.incoming.as_ref().unwrap().host, "imap.example.org");
    assert_eq!(account.login_format, Some(LoginFormat::MailboxName));
    assert_eq!(account.login_name(), "bob");

    // A fixed login (a domain account) is kept as a manual login.
    let (url, _task) = autoconfig_server(
        r#"<clientConfig version="1.1"><emailProvider id="x">
        <incomingServer type="pop3"><hostname>pop.%EMAILDOMAIN%</hostname><port>995</port><socketType>SSL</socketType><username>CORP\%EMAILLOCALPART%</username></incomingServer>
        </emailProvider></clientConfig>"#,
    )
    .await;
    let d = detect(
        "bob@example.org",
        &table,
        &StaticDns::default(),
        &options(&server, vec![url]),
    )
    .await
    .unwrap();
    let account =
        mailbridge_accounts::account::from_detection("bob@example.org", &d, &table).unwrap();
    assert_eq!(account.login_format, Some(LoginFormat::Manual));
    assert_eq!(account.login_name(), "CORP\\bob");
}

#[tokio::test]
async fn oversized_documents_are_not_read_and_the_step_says_so() {
    // A valid autoconfig document, padded past the bound with a comment, and
    // OpenID/Autodiscover JSON padded with spaces.
    let padding = " ".repeat(mailbridge_accounts::autodetect::MAX_DOCUMENT);
    let autoconfig = format!(
        r#"<clientConfig version="1.1"><!--{padding}--><emailProvider id="x"><incomingServer type="imap"><hostname>imap.example.org</hostname><port>993</port><socketType>SSL</socketType></incomingServer></emailProvider></clientConfig>"#
    );
    let json = format!(
        r#"{{"issuer":"https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0",{padding}"Url":"https://mail.example.org/EWS/Exchange.asmx"}}"#
    );
    let app = axum::Router::new()
        .route(
            "/mail/config-v1.1.xml",
            axum::routing::get(move || async move { autoconfig }),
        )
        .fallback(move || async move { ([("content-type", "application/json")], json) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base = format!("http://{addr}");
    let options = DetectOptions {
        authority_host: base.clone(),
        autodiscover_url: format!("{base}/autodiscover/autodiscover.json"),
        autoconfig_urls: vec![format!("{base}/mail/config-v1.1.xml")],
        ..DetectOptions::default()
    };
    let d = detect(
        "bob@example.org",
        &ProviderTable::default(),
        &StaticDns::default(),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(d.provider, None, "{:?}", d.steps);
    assert!(d.endpoints.is_empty());
    for step in [
        Step::OpenIdConfiguration,
        Step::AutodiscoverV2,
        Step::Autoconfig,
    ] {
        let outcome = &d.steps.iter().find(|s| s.step == step).unwrap().outcome;
        assert!(
            outcome.contains(&base) && outcome.contains("larger than 1048576 bytes"),
            "{step:?}: {outcome}"
        );
    }
}

#[tokio::test]
async fn srv_records_decide_when_nothing_else_does() {
    let server = tenant().await;
    let mut dns = StaticDns::default();
    dns.srv.insert(
        "_imaps._tcp.example.net".into(),
        vec![SrvRecord {
            priority: 0,
            port: 993,
            target: "mail.example.net".into(),
        }],
    );
    dns.srv.insert(
        "_submission._tcp.example.net".into(),
        vec![SrvRecord {
            priority: 0,
            port: 587,
            target: "mail.example.net".into(),
        }],
    );
    dns.srv.insert(
        "_pop3s._tcp.example.net".into(),
        vec![SrvRecord {
            priority: 0,
            port: 0,
            target: ".".into(),
        }],
    );
    let d = detect(
        "carol@example.net",
        &ProviderTable::default(),
        &dns,
        &options(&server, vec![]),
    )
    .await
    .unwrap();
    assert_eq!(d.decided_by, Some(Step::Srv));
    assert_eq!(d.endpoints.len(), 2, "POP3 not offered ('.' target)");
    assert_eq!(d.endpoints[0].transport, Transport::Imap);
    assert_eq!(d.endpoints[0].tls, TlsMode::Implicit);
    assert_eq!(d.endpoints[1].tls, TlsMode::StartTls);
}

#[tokio::test]
async fn domain_table_decides_first_and_bad_addresses_are_refused() {
    let server = tenant().await;
    let d = detect(
        "x@gmail.com",
        &ProviderTable::default(),
        &StaticDns::default(),
        &options(&server, vec![]),
    )
    .await
    .unwrap();
    assert_eq!(d.decided_by, Some(Step::DomainTable));
    assert_eq!(d.provider.as_deref(), Some("gmail"));
    // The table decided: nothing else ran, nothing was asked of anyone.
    assert_eq!(d.steps.len(), 1, "{:?}", d.steps);
    assert!(server.emulator.requests().is_empty());
    for bad in ["", "no-at-sign", "@example.com", "x@localhost"] {
        let err = detect(
            bad,
            &ProviderTable::default(),
            &StaticDns::default(),
            &options(&server, vec![]),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("not a mail address"), "{err}");
    }
}

#[tokio::test]
async fn autodiscover_v2_gives_the_ews_url_of_the_tenant() {
    let server = tenant().await;
    // The domain is mapped to Exchange on-premises: Autodiscover still runs, for the
    // EWS URL only it can tell.
    let mut table = ProviderTable::default();
    table
        .map_domain("contoso.example", "exchange-onpremises")
        .unwrap();
    let d = detect(
        "alice@contoso.example",
        &table,
        &StaticDns::default(),
        &options(&server, vec![]),
    )
    .await
    .unwrap();
    assert_eq!(d.decided_by, Some(Step::DomainTable));
    let steps: Vec<Step> = d.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, [Step::DomainTable, Step::AutodiscoverV2]);
    let ews = d
        .endpoints
        .iter()
        .find(|e| e.transport == Transport::Ews)
        .unwrap();
    assert_eq!(ews.host, format!("{}/EWS/Exchange.asmx", server.base_url()));
    let account =
        mailbridge_accounts::account::from_detection("alice@contoso.example", &d, &table).unwrap();
    assert_eq!(account.incoming.as_ref().unwrap().host, ews.host);
    assert_eq!(account.outgoing_side(), account.incoming.as_ref());
    // An address without a mailbox is redirected: no EWS endpoint.
    let d = detect(
        "nobody@contoso.example",
        &table,
        &StaticDns::default(),
        &options(&server, vec![]),
    )
    .await
    .unwrap();
    assert!(d.endpoints.is_empty());
    let step = d
        .steps
        .iter()
        .find(|s| s.step == Step::AutodiscoverV2)
        .unwrap();
    assert!(step.outcome.contains("redirected"), "{}", step.outcome);
}

#[tokio::test]
async fn an_autodiscover_answer_on_another_server_is_not_taken_and_urls_are_redacted() {
    // Autodiscover answers an EWS URL on another port over plain http: the account's
    // credentials would go there. The autoconfig URL carries the address in its query.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_addr = other.local_addr().unwrap();
    let answer =
        format!(r#"{{"Protocol":"EWS","Url":"http://{other_addr}/EWS/Exchange.asmx?x=SECRET"}}"#);
    let app = axum::Router::new()
        .route(
            "/autodiscover/autodiscover.json/v1.0/{email}",
            axum::routing::get(
                move || async move { ([("content-type", "application/json")], answer) },
            ),
        )
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base = format!("http://{addr}");
    let options = DetectOptions {
        authority_host: base.clone(),
        autodiscover_url: format!("{base}/autodiscover/autodiscover.json"),
        // Nothing listens there once `other` is dropped below: unreachable.
        autoconfig_urls: vec![format!(
            "http://{other_addr}/mail/config-v1.1.xml?emailaddress={{email}}"
        )],
        ..DetectOptions::default()
    };
    drop(other);
    let d = detect(
        "bob@example.org",
        &ProviderTable::default(),
        &StaticDns::default(),
        &options,
    )
    .await
    .unwrap();
    assert!(
        d.endpoints
            .iter()
            .all(|e| e.transport != mailbridge_types::config::Transport::Ews),
        "{:?}",
        d.endpoints
    );
    assert_ne!(d.decided_by, Some(Step::AutodiscoverV2));
    let outcome = &d
        .steps
        .iter()
        .find(|s| s.step == Step::AutodiscoverV2)
        .unwrap()
        .outcome;
    assert!(
        outcome.contains(&format!(
            "{base}/autodiscover/autodiscover.json/v1.0/bob@example.org"
        )) && outcome.contains(&format!("http://{other_addr}/EWS/Exchange.asmx"))
            && !outcome.contains("SECRET"),
        "{outcome}"
    );
    let all: String = d.steps.iter().map(|s| s.outcome.clone()).collect();
    assert!(
        !all.contains("Protocol=EWS") && !all.contains("SECRET"),
        "{all}"
    );
}
