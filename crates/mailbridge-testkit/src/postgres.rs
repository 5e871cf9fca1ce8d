//! A private PostgreSQL cluster for tests: initialised in a temporary directory, on a
//! free loopback port, started once per test process ([`shared`]) with a fresh
//! database for each test ([`fresh_database`]), and stopped (its directory removed)
//! when the process ends, however it ends.
//!
//! The binaries come from `MAILBRIDGE_POSTGRES_BIN` (a directory holding `initdb`,
//! `pg_ctl` and `createdb`), else the newest `/usr/lib/postgresql/<version>/bin`
//! (Debian's `postgresql` package, which `scripts/install-deps` installs), else
//! `PATH`. `initdb` refuses to run as root, so as root the server runs as the
//! `postgres` user.
//!
//! The end of the process is noticed by a watcher: a small shell that reads a pipe
//! from this process and, at end of file (the process exited, panicked or was
//! killed), stops the server and removes the directory. It runs in its own process
//! group so a test runner that kills the test's group does not take it along.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Environment variable naming the directory of the PostgreSQL binaries.
pub const POSTGRES_BIN_ENV: &str = "MAILBRIDGE_POSTGRES_BIN";

/// The user the cluster is initialised with (trust authentication on loopback).
pub const USER: &str = "mailbridge";

/// Error starting the cluster or creating a database.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    #[error(
        "PostgreSQL is not installed (no initdb in ${POSTGRES_BIN_ENV}, /usr/lib/postgresql/*/bin or PATH): run scripts/install-deps"
    )]
    NotInstalled,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
}

/// A running private cluster.
#[derive(Debug)]
pub struct PostgresCluster {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    /// Closing this pipe (at process exit) tells the watcher to stop the server.
    _watcher: Mutex<ChildStdin>,
}

static SHARED: OnceLock<Result<PostgresCluster, PostgresError>> = OnceLock::new();
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

/// The cluster of this test process, started on first use.
pub fn shared() -> Result<&'static PostgresCluster, PostgresError> {
    SHARED
        .get_or_init(PostgresCluster::start)
        .as_ref()
        .map_err(Clone::clone)
}

/// A new, empty database in the shared cluster; its `postgres://` URL.
pub fn fresh_database() -> Result<String, PostgresError> {
    shared()?.create_database()
}

impl PostgresCluster {
    fn start() -> Result<Self, PostgresError> {
        let bin = find_bin().ok_or(PostgresError::NotInstalled)?;
        let as_root = is_root()?;
        let dir = tempfile::Builder::new()
            .prefix("mailbridge-pg-")
            .tempdir()
            .map_err(|e| io_failure("creating the cluster directory", &e))?
            .keep();
        let data = dir.join("data");
        // The watcher first: from here on the directory goes away with the process.
        let watcher = spawn_watcher(&bin, &dir, &data, as_root)?;
        if as_root {
            run(
                Command::new("chown").arg("postgres:").arg(&dir),
                "chown of the cluster directory",
            )?;
        }
        run(
            server_command(&bin.join("initdb"), as_root)
                .arg("-D")
                .arg(&data)
                .args([
                    "-A",
                    "trust",
                    "-U",
                    USER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
            "initdb",
        )?;
        let mut last = None;
        // The port was free a moment ago; another process may take it first.
        for _ in 0..3 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                dir.display()
            );
            let started = run(
                server_command(&bin.join("pg_ctl"), as_root)
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(dir.join("log"))
                    .args(["-w", "-t", "60", "-o", &options, "start"]),
                "pg_ctl start",
            );
            match started {
                Ok(()) => {
                    return Ok(Self {
                        bin,
                        port,
                        dir,
                        _watcher: Mutex::new(watcher),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        Err(match last {
            Some(PostgresError::Command { what, detail }) => PostgresError::Command {
                what,
                detail: format!("{detail}\nserver log:\n{log}"),
            },
            Some(e) => e,
            None => PostgresError::NotInstalled,
        })
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data, log, socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of `database` in this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, empty database; its URL.
    pub fn create_database(&self) -> Result<String, PostgresError> {
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        run(
            Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
                .arg(&name),
            "createdb",
        )?;
        Ok(self.url(&name))
    }
}

/// The directory of the PostgreSQL binaries, if any.
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(POSTGRES_BIN_ENV) {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").is_file().then_some(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let entry = e.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = newest {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn is_root() -> Result<bool, PostgresError> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| io_failure("id -u", &e))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A command for a server binary: as the `postgres` user when running as root.
fn server_command(program: &Path, as_root: bool) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn spawn_watcher(
    bin: &Path,
    dir: &Path,
    data: &Path,
    as_root: bool,
) -> Result<ChildStdin, PostgresError> {
    let run_as: OsString = if as_root {
        "runuser -u postgres --".into()
    } else {
        OsString::new()
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            r#"cat >/dev/null; $RUN_AS "$PG_CTL" -D "$DATA" -m immediate -w stop >/dev/null 2>&1; rm -rf "$DIR""#,
        )
        .env("RUN_AS", run_as)
        .env("PG_CTL", bin.join("pg_ctl"))
        .env("DATA", data)
        .env("DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| io_failure("starting the cluster's watcher", &e))?;
    child.stdin.take().ok_or_else(|| PostgresError::Command {
        what: "starting the cluster's watcher".into(),
        detail: "no pipe to the watcher".into(),
    })
}

fn run(command: &mut Command, what: &str) -> Result<(), PostgresError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_failure(what, &e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(PostgresError::Command {
        what: what.to_owned(),
        detail: format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

fn io_failure(what: &str, e: &std::io::Error) -> PostgresError {
    PostgresError::Command {
        what: what.to_owned(),
        detail: e.to_string(),
    }
}

fn free_port() -> Result<u16, PostgresError> {
    let l = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| io_failure("finding a free port", &e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| io_failure("finding a free port", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_database_per_call_in_one_shared_cluster() {
        let first = fresh_database().unwrap();
        let second = fresh_database().unwrap();
        assert_ne!(first, second);
        let cluster = shared().unwrap();
        assert!(std::ptr::eq(cluster, shared().unwrap()), "started once");
        assert!(first.starts_with(&format!("postgres://{USER}@127.0.0.1:{}/", cluster.port())));
        // The server answers on the port.
        std::net::TcpStream::connect(("127.0.0.1", cluster.port())).unwrap();
    }

    #[test]
    fn the_cluster_is_stopped_and_removed_when_the_process_ends() {
        // The body runs in a child process; this parent sees its cluster go away.
        const CHILD: &str = "MAILBRIDGE_TEST_PG_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let cluster = shared().unwrap();
            println!("CLUSTER {} {}", cluster.port(), cluster.dir().display());
            return;
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "postgres::tests::the_cluster_is_stopped_and_removed_when_the_process_ends",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("CLUSTER "))
            .unwrap_or_else(|| panic!("the child printed no cluster: {text}"));
        let (port, dir) = line.split_once(' ').unwrap();
        let dir = PathBuf::from(dir);
        // The watcher works after the child exited: wait for it with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        while dir.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "cluster directory {} still there",
                dir.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let refused = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()));
        assert!(refused.is_err(), "the server still answers on {port}");
    }
}
