//! `packaging/`: the systemd unit passes `systemd-analyze verify` (with its ExecStart
//! pointed at the binary just built) and its sysusers file makes the user it runs as.
//! Any warning counts as a failure: `verify` ignores a line it cannot parse and still
//! exits 0.

use std::path::{Path, PathBuf};
use std::process::Command;

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging")
}

/// `verify` on `unit` (written as `mailbridge.service` in a temporary directory):
/// `Ok` when it exits 0 and says nothing, else what it said.
fn verify(unit: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbridge.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze is needed (Debian package systemd; scripts/install-deps)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{:?}: {said}", out.status))
    }
}

/// The unit as installed, with the binary built for this test in place of
/// /usr/bin/mailbridge (verify checks that ExecStart's program exists).
fn unit_for_test() -> String {
    let unit = std::fs::read_to_string(packaging().join("mailbridge.service")).unwrap();
    let exec: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(
        exec,
        ["ExecStart=/usr/bin/mailbridge serve --log-format json"]
    );
    unit.replace("/usr/bin/mailbridge", env!("CARGO_BIN_EXE_mailbridge"))
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = unit_for_test();
    verify(&unit).unwrap_or_else(|e| panic!("packaging/mailbridge.service: {e}"));
    for needed in [
        "User=mailbridge",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StateDirectory=mailbridge",
        "ReadWritePaths=/var/lib/mailbridge",
        "Environment=MAILBRIDGE_DATA_DIR=/var/lib/mailbridge",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == needed), "missing {needed}");
    }
    // The check catches a broken unit: a bad value, an unknown key, a missing binary.
    for broken in [
        unit.replace("Restart=on-failure", "Restart=sometimes"),
        unit.replace("ProtectSystem=strict", "ProtectSytem=strict"),
        unit.replace(env!("CARGO_BIN_EXE_mailbridge"), "/nonexistent/mailbridge"),
    ] {
        assert!(verify(&broken).is_err(), "{broken}");
    }
}

#[test]
fn the_sysusers_file_makes_the_service_user() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(packaging().join("mailbridge.sysusers.conf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("mailbridge:"))
        .unwrap_or_else(|| panic!("{passwd}"));
    assert!(
        user.ends_with(":/var/lib/mailbridge:/usr/sbin/nologin"),
        "{user}"
    );
}
