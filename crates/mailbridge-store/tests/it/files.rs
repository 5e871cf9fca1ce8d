//! File modes under umask 022: the data directory 0700, the database, its `-wal` and
//! `-shm` and `master.salt` 0600. Each test runs its body in a child process whose
//! umask is 022 (the umask is per process).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use mailbridge_store::{MasterKey, SecretKind, Store};
use secrecy::SecretString;

const CHILD: &str = "MAILBRIDGE_TEST_UMASK_CHILD";

/// In the parent: runs this test again in a child under `umask 022` and returns false.
/// In the child: checks the umask and returns true (run the body).
fn in_child_with_umask_022(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status.lines().any(|l| l == "Umask:\t0022"), "{status}");
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran no test: {text}");
    false
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn data_directory_database_and_its_journals_are_private_under_umask_022() {
    if !in_child_with_umask_022(
        "files::data_directory_database_and_its_journals_are_private_under_umask_022",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("share/mailbridge");
    let db = data.join("mailbridge.db");
    let store = Store::open(&db, &MasterKey::generate().unwrap())
        .await
        .unwrap();
    store
        .put_secret(
            "s",
            SecretKind::Password,
            &SecretString::from("pw"),
            None,
            store.now(),
        )
        .await
        .unwrap();
    assert_eq!(mode(&dir.path().join("share")), 0o700);
    assert_eq!(mode(&data), 0o700);
    for name in [
        "mailbridge.db",
        "mailbridge.db-wal",
        "mailbridge.db-shm",
        "mailbridge.db.lock",
    ] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    store.close().await;

    // A database an older version left readable is tightened when opened.
    let old = dir.path().join("old.db");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::open(&old, &MasterKey::generate().unwrap())
        .await
        .unwrap();
    assert_eq!(mode(&old), 0o600);
    store.close().await;
}

#[test]
fn passphrase_salt_is_private_under_umask_022() {
    if !in_child_with_umask_022("files::passphrase_salt_is_private_under_umask_022") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/master.salt");
    let salt = MasterKey::load_or_create_salt(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(MasterKey::load_or_create_salt(&path).unwrap(), salt);
    // An existing readable salt is tightened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(MasterKey::load_or_create_salt(&path).unwrap(), salt);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_data_directory_an_older_version_left_open_is_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mailbridge");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    mailbridge_store::files::make_private_dir(&data).unwrap();
    assert_eq!(mode(&data), 0o700);
}
