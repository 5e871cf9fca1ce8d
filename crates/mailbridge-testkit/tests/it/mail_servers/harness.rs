//! Starting and stopping the servers.

use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::{MailServers, MailServersError};
use mailbridge_testkit::model::TenantModel;
use mailbridge_testkit::{Emulator, EmulatorServer};

use super::fixture::{World, world};

fn pid_in(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Whether the process exists (a zombie counts: nobody reaped it).
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn stop_leaves_no_processes_and_no_files() {
    let w = world().await;
    let root = w.mail.root().to_owned();
    let dovecot = pid_in(&root.join("run/master.pid"));
    let postfix = pid_in(&root.join("postfix/queue/pid/master.pid"));
    assert!(alive(dovecot) && alive(postfix));
    let World { mail, .. } = w;
    mail.stop().await;
    assert!(!alive(dovecot), "dovecot {dovecot} still running");
    assert!(!alive(postfix), "postfix {postfix} still running");
    assert!(!root.exists(), "{} left behind", root.display());
}

#[tokio::test]
async fn drop_stops_the_servers_too() {
    let w = world().await;
    let root = w.mail.root().to_owned();
    let dovecot = pid_in(&root.join("run/master.pid"));
    let postfix = pid_in(&root.join("postfix/queue/pid/master.pid"));
    drop(w);
    assert!(!alive(dovecot), "dovecot {dovecot} still running");
    assert!(!alive(postfix), "postfix {postfix} still running");
}

#[tokio::test]
async fn the_emulator_must_be_serving_first() {
    let emulator = Emulator::new(TenantModel::default()).unwrap();
    let ca = TestCa::generate().unwrap();
    let err = MailServers::start(&emulator, &ca).await.unwrap_err();
    assert!(matches!(err, MailServersError::NoEmulatorUrl), "{err}");
}

#[tokio::test]
async fn one_mail_server_pair_per_emulator() {
    let w = world().await;
    let ca = TestCa::generate().unwrap();
    let err = MailServers::start(w.emulator(), &ca).await.unwrap_err();
    assert!(matches!(err, MailServersError::AlreadyAttached), "{err}");
    // A second emulator gets its own instance, side by side.
    let other = Emulator::new(TenantModel::default()).unwrap();
    let server = EmulatorServer::start(other.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let second = MailServers::start(&other, &ca).await.unwrap();
    assert_ne!(second.imaps(), w.mail.imaps());
    assert_ne!(second.root(), w.mail.root());
    second.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_judge_route_answers_in_plain_text_and_keeps_credentials_out_of_the_log() {
    let app = super::fixture::connector_app();
    let model = TenantModel::builder()
        .tenant(super::fixture::contoso(&app))
        .build()
        .unwrap();
    let emulator = Emulator::new(model).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let post = |form: Vec<(&'static str, &'static str)>| {
        client
            .post(format!("{}/_testkit/judge", server.base_url()))
            .form(&form)
            .send()
    };
    let text = post(vec![
        ("user", super::fixture::ALICE),
        ("service", "smtp"),
        ("mechanism", "PLAIN"),
        ("credential", "s3cret-password"),
    ])
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("deny"));
    assert_eq!(
        lines.next(),
        Some(
            "5.7.139 Authentication unsuccessful, basic authentication is disabled. [SN4PR0501CA0123.namprd05.prod.outlook.com]"
        )
    );
    assert!(lines.next().unwrap().contains("Basic authentication"));

    let text = post(vec![
        ("user", super::fixture::ALICE),
        ("service", "imap"),
        ("mechanism", "XOAUTH2"),
        ("credential", "not-a-token"),
    ])
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(text.starts_with("deny\nAUTHENTICATE failed.\n"), "{text}");

    let requests = emulator.requests();
    let surfaces: Vec<&str> = requests.iter().map(|r| r.surface.as_str()).collect();
    assert_eq!(surfaces, ["smtp-judge", "imap-judge"]);
    assert_eq!(requests[1].header("x-reason"), Some("token-invalid"));
    for r in &requests {
        let text = format!("{r:?}");
        assert!(
            !text.contains("s3cret-password") && !text.contains("not-a-token"),
            "{text}"
        );
    }
    server.stop().await;
}
