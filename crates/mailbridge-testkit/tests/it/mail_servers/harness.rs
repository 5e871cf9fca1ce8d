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
