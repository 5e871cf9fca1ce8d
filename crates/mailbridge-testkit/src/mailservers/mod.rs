//! The real-server harness: private Dovecot (IMAP 143 + STARTTLS, IMAPS, POP3 + STLS,
//! POP3S, LMTP) and Postfix (submission with STARTTLS or implicit TLS and Dovecot SASL,
//! delivery over LMTP) on free loopback ports, with bearer tokens judged by the emulator.
//!
//! One [`MailServers`] per test: everything lives in a fresh temporary directory,
//! every port is picked free for this instance, and the processes are stopped by
//! [`MailServers::stop`] or on drop. Dovecot asks the emulator's judge
//! ([`crate::exchange`]) about every credential through a Lua passdb; Postfix
//! authenticates through Dovecot and asks [`milter`] about SendAs at the end of `DATA`.
//! Parts: [`config`] (the generated configuration), [`milter`] (the SendAs milter),
//! [`wire`] (a raw IMAP/POP/SMTP line client for tests).

pub mod config;
pub mod milter;
pub mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::crypto::TestCa;
use crate::emulator::Emulator;
use crate::mailstore::{MailStore, MailStoreConfig};
pub use config::Options;
use config::Ports;

/// How long the servers get to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts when a freshly picked port was taken by someone else in the meantime.
const START_ATTEMPTS: usize = 3;
/// How much of a log an error quotes.
const LOG_TAIL: usize = 4000;

/// Why the harness could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailServersError {
    #[error("{program} is not installed; run scripts/install-deps")]
    Missing { program: &'static str },
    #[error("system user {0} does not exist; run scripts/install-deps")]
    MissingUser(&'static str),
    #[error("the emulator has no base URL: start an EmulatorServer before the mail servers")]
    NoEmulatorUrl,
    #[error("this emulator already has mail servers attached; use one emulator per MailServers")]
    AlreadyAttached,
    #[error("failed to prepare the mail server directory {path}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to issue the mail servers' TLS certificate")]
    Certificate(#[from] crate::crypto::CryptoError),
    #[error("{server} did not start: {reason}\n--- {log} (last lines) ---\n{excerpt}")]
    Start {
        server: &'static str,
        reason: String,
        log: PathBuf,
        excerpt: String,
    },
}

/// A running Dovecot + Postfix pair for one test.
pub struct MailServers {
    emulator: Emulator,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    ports: Ports,
    dovecot: Option<Child>,
    postfix: Option<Child>,
    milter_stop: CancellationToken,
    milter_task: Option<JoinHandle<()>>,
    ca_pem: String,
    store: MailStore,
}

impl std::fmt::Debug for MailServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailServers")
            .field("root", &self.root)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

fn find_program(name: &'static str) -> Result<PathBuf, MailServersError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(MailServersError::Missing { program: name })
}

/// The uid and gid of a system user, from `/etc/passwd`.
fn system_user(name: &'static str) -> Result<(u32, u32), MailServersError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != name {
                return None;
            }
            let _password = f.next()?;
            let uid = f.next()?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or(MailServersError::MissingUser(name))
}

/// A port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn pick_ports(milter: u16) -> std::io::Result<Ports> {
    let mut seen = std::collections::BTreeSet::from([milter]);
    let mut next = || -> std::io::Result<u16> {
        loop {
            let p = free_port()?;
            if seen.insert(p) {
                return Ok(p);
            }
        }
    };
    Ok(Ports {
        imap: next()?,
        imaps: next()?,
        pop3: next()?,
        pop3s: next()?,
        lmtp: next()?,
        submission: next()?,
        submissions: next()?,
        delivery: next()?,
        milter,
    })
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The last `LOG_TAIL` bytes of the files, for error messages.
fn tail(paths: &[&Path]) -> String {
    let mut out = String::new();
    for p in paths {
        let text = std::fs::read(p).unwrap_or_default();
        let start = text.len().saturating_sub(LOG_TAIL);
        out.push_str(&String::from_utf8_lossy(
            text.get(start..).unwrap_or_default(),
        ));
    }
    out
}

/// Sends `signal` to a process group (negative pid) or process with `kill(1)`.
fn signal(target: &str, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

struct Layout {
    root: PathBuf,
}

impl Layout {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

fn prepare_err(path: &Path) -> impl FnOnce(std::io::Error) -> MailServersError + '_ {
    move |source| MailServersError::Prepare {
        path: path.to_owned(),
        source,
    }
}

fn mkdir(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), MailServersError> {
    std::fs::create_dir_all(path).map_err(prepare_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(prepare_err(path))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(prepare_err(path))?;
    }
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), MailServersError> {
    std::fs::write(path, text).map_err(prepare_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(prepare_err(path))
}

fn log_file(path: &Path) -> Result<std::fs::File, MailServersError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(prepare_err(path))
}

impl MailServers {
    /// Starts Dovecot and Postfix for `emulator` (whose HTTP server must be running),
    /// with TLS certificates from `ca`, and attaches the mail store to the emulator.
    ///
    /// Returns once every listener answers. A missing program or a server that fails
    /// to come up is an error quoting its log.
    pub async fn start(emulator: &Emulator, ca: &TestCa) -> Result<Self, MailServersError> {
        Self::start_with(emulator, ca, Options::default()).await
    }

    /// [`Self::start`] with `options` changed from the defaults (a small Postfix
    /// `message_size_limit`, for example).
    pub async fn start_with(
        emulator: &Emulator,
        ca: &TestCa,
        options: Options,
    ) -> Result<Self, MailServersError> {
        let dovecot_bin = find_program("dovecot")?;
        let postfix_bin = find_program("postfix")?;
        let curl = find_program("curl")?;
        let mktemp = find_program("mktemp")?;
        let vmail = system_user(config::VMAIL_USER)?;
        let postfix_user = system_user("postfix")?;
        let base_url = emulator.base_url();
        if base_url.is_empty() {
            return Err(MailServersError::NoEmulatorUrl);
        }
        if emulator.mail_store().is_some() {
            return Err(MailServersError::AlreadyAttached);
        }

        let dir = tempfile::Builder::new()
            .prefix("mailbridge-mail-")
            .tempdir()
            .map_err(prepare_err(Path::new("/tmp")))?;
        let layout = Layout {
            root: dir.path().to_owned(),
        };
        let root = layout.root.clone();
        mkdir(&root, 0o755, None)?;
        mkdir(&layout.path("state"), 0o755, None)?;
        mkdir(&layout.path("tls"), 0o755, None)?;
        mkdir(&layout.path("spool"), 0o700, None)?;
        mkdir(&layout.path("mail"), 0o750, Some(vmail))?;
        mkdir(&layout.path("postfix/queue"), 0o755, None)?;
        mkdir(&layout.path("postfix/data"), 0o700, Some(postfix_user))?;

        let cert = ca.issue(&["localhost", "127.0.0.1"])?;
        write(&layout.path("tls/cert.pem"), &cert.certificate_pem, 0o644)?;
        write(&layout.path("tls/key.pem"), &cert.key_pem, 0o600)?;
        write(
            &layout.path("judge.lua"),
            &config::judge_lua(
                &curl,
                &mktemp,
                &format!("{base_url}{}", crate::exchange::JUDGE_PATH),
                &layout.path("spool"),
            ),
            0o644,
        )?;
        write(&layout.path("deny.lua"), config::deny_lua(), 0o644)?;

        let milter_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(prepare_err(&root))?;
        let milter_port = milter_listener
            .local_addr()
            .map_err(prepare_err(&root))?
            .port();

        let domains: Vec<String> = emulator.read(|m| {
            m.tenants
                .iter()
                .flat_map(|t| t.domains.iter().map(|d| d.to_ascii_lowercase()))
                .collect()
        });

        // Postfix talks to the milter as soon as a client connects, readiness probes included.
        let milter_stop = CancellationToken::new();
        let milter_task = tokio::spawn(milter::serve(
            milter_listener,
            emulator.clone(),
            milter_stop.clone(),
        ));

        let mut attempt = 0;
        let (ports, dovecot, postfix) = loop {
            attempt += 1;
            let launched = match pick_ports(milter_port) {
                Ok(ports) => launch(
                    &layout,
                    &ports,
                    &domains,
                    &options,
                    &dovecot_bin,
                    &postfix_bin,
                )
                .await
                .map(|(d, p)| (ports, d, p)),
                Err(e) => Err(prepare_err(&root)(e)),
            };
            match launched {
                Ok(running) => break running,
                Err(e) => {
                    let collision = matches!(&e, MailServersError::Start { excerpt, .. }
                        if excerpt.contains("Address already in use") || excerpt.contains("address already in use"));
                    if !collision || attempt >= START_ATTEMPTS {
                        milter_stop.cancel();
                        let _ = milter_task.await;
                        return Err(e);
                    }
                    tracing::warn!(attempt, "mail server port collision, retrying");
                }
            }
        };

        let store = MailStore::new(MailStoreConfig {
            imap: loopback(ports.imap),
            smtp_delivery: loopback(ports.delivery),
            store_secret: crate::crypto::random_token(48),
            delivery_log: Some(layout.path("postfix.log")),
        });
        emulator.attach_mail_store(store.clone());

        Ok(Self {
            emulator: emulator.clone(),
            dir: Some(dir),
            root,
            ports,
            dovecot: Some(dovecot),
            postfix: Some(postfix),
            milter_stop,
            milter_task: Some(milter_task),
            ca_pem: ca.certificate_pem.clone(),
            store,
        })
    }

    /// IMAP with STARTTLS (port 143 semantics).
    pub fn imap(&self) -> SocketAddr {
        loopback(self.ports.imap)
    }

    /// IMAP over implicit TLS (993 semantics).
    pub fn imaps(&self) -> SocketAddr {
        loopback(self.ports.imaps)
    }

    /// POP3 with STLS (110 semantics).
    pub fn pop3(&self) -> SocketAddr {
        loopback(self.ports.pop3)
    }

    /// POP3 over implicit TLS (995 semantics).
    pub fn pop3s(&self) -> SocketAddr {
        loopback(self.ports.pop3s)
    }

    /// SMTP submission: STARTTLS required, then AUTH (587 semantics).
    pub fn submission(&self) -> SocketAddr {
        loopback(self.ports.submission)
    }

    /// SMTP submission over implicit TLS, then AUTH (465 semantics, RFC 8314).
    pub fn submissions(&self) -> SocketAddr {
        loopback(self.ports.submissions)
    }

    /// Dovecot LMTP.
    pub fn lmtp(&self) -> SocketAddr {
        loopback(self.ports.lmtp)
    }

    /// Postfix port that accepts mail from loopback without authentication.
    pub fn delivery(&self) -> SocketAddr {
        loopback(self.ports.delivery)
    }

    /// Every port of this instance.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The CA certificate (PEM) the servers' certificate chains to.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A rustls client configuration trusting only the test CA.
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        wire::tls_config(&self.ca_pem)
    }

    /// The host name the certificate is issued for.
    pub fn tls_name(&self) -> &'static str {
        "localhost"
    }

    /// The directory holding configuration, mail and logs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Dovecot's log.
    pub fn dovecot_log(&self) -> PathBuf {
        self.root.join("dovecot.log")
    }

    /// Postfix's log.
    pub fn postfix_log(&self) -> PathBuf {
        self.root.join("postfix.log")
    }

    /// Both logs' last lines, for assertion messages.
    pub fn logs(&self) -> String {
        format!(
            "--- dovecot ---\n{}\n--- postfix ---\n{}",
            tail(&[&self.dovecot_log(), &self.root.join("dovecot.stderr")]),
            tail(&[&self.postfix_log()])
        )
    }

    /// Fault: drops the open IMAP and POP3 sessions of `user` (every user when
    /// `None`), as Exchange does when it recycles a backend or throttles a client.
    /// Clients see the connection end (Dovecot sends `* BYE` first) and must reconnect
    /// with a fresh token. Returns how many sessions were dropped.
    pub async fn drop_sessions(&self, user: Option<&str>) -> Result<usize, MailServersError> {
        let doveadm = find_program("doveadm")?;
        let conf = self.root.join("dovecot.conf");
        let mut cmd = tokio::process::Command::new(&doveadm);
        cmd.arg("-c")
            .arg(&conf)
            .arg("kick")
            .arg(user.unwrap_or("*"));
        let out = cmd.output().await.map_err(|e| MailServersError::Start {
            server: "doveadm",
            reason: format!("cannot run {}: {e}", doveadm.display()),
            log: self.dovecot_log(),
            excerpt: String::new(),
        })?;
        // The store's own sessions of that user were among those dropped: the next
        // operation must not pick one up while Dovecot is still ending it.
        self.store.forget(user);
        let text = String::from_utf8_lossy(&out.stdout);
        // Dovecot 2.3 prints the kicked users and "kicked connections from the
        // following users:" (in either order); count the addresses.
        let count = text.split_whitespace().filter(|w| w.contains('@')).count();
        Ok(count)
    }

    /// The mail store over these servers (also attached to the emulator).
    pub fn mail_store(&self) -> MailStore {
        self.store.clone()
    }

    /// The emulator these servers judge with.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops both servers and the milter and waits for them.
    pub async fn stop(mut self) {
        self.milter_stop.cancel();
        if let Some(task) = self.milter_task.take() {
            let _ = task.await;
        }
        self.store.close().await;
        self.send_term();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for child in [self.dovecot.as_mut(), self.postfix.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = tokio::time::timeout_at(deadline, child.wait()).await;
        }
        self.send_kill();
        self.dovecot = None;
        self.postfix = None;
        self.dir.take();
    }

    fn postfix_master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.root.join("postfix/queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Asks both servers to stop. Postfix's master gets the signal, not the
    /// `postfix-script` shell we started: the shell waits for the master, reaps it and
    /// exits, so nothing is left as an orphan or a zombie.
    fn send_term(&self) {
        if let Some(pid) = self.dovecot.as_ref().and_then(Child::id) {
            signal(&format!("-{pid}"), "-TERM");
        }
        match self.postfix_master_pid() {
            Some(pid) => signal(&pid.to_string(), "-TERM"),
            None => {
                if let Some(pid) = self.postfix.as_ref().and_then(Child::id) {
                    signal(&format!("-{pid}"), "-TERM");
                }
            }
        }
    }

    fn send_kill(&mut self) {
        let master = self.postfix_master_pid();
        for child in [self.dovecot.as_mut(), self.postfix.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(pid) = child.id()
                && child.try_wait().ok().flatten().is_none()
            {
                signal(&format!("-{pid}"), "-KILL");
            }
        }
        if let Some(pid) = master {
            // The master runs in its own session; its group holds every Postfix daemon.
            signal(&format!("-{pid}"), "-KILL");
        }
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        if self.dovecot.is_none() && self.postfix.is_none() {
            return;
        }
        self.milter_stop.cancel();
        self.send_term();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let running = [self.dovecot.as_mut(), self.postfix.as_mut()]
                .into_iter()
                .flatten()
                .any(|c| c.try_wait().ok().flatten().is_none());
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.send_kill();
    }
}

/// Writes the configuration for `ports`, starts both servers, and waits until they answer.
async fn launch(
    layout: &Layout,
    ports: &Ports,
    domains: &[String],
    options: &Options,
    dovecot_bin: &Path,
    postfix_bin: &Path,
) -> Result<(Child, Child), MailServersError> {
    let conf = layout.path("dovecot.conf");
    write(&conf, &config::dovecot_conf(&layout.root, ports), 0o644)?;
    let pf = layout.path("postfix");
    write(
        &pf.join("main.cf"),
        &config::postfix_main_cf(&layout.root, ports, domains, options),
        0o644,
    )?;
    write(
        &pf.join("master.cf"),
        &config::postfix_master_cf(ports),
        0o644,
    )?;

    let dovecot_log = layout.path("dovecot.log");
    let dovecot_err = layout.path("dovecot.stderr");
    let mut dovecot = Command::new(dovecot_bin)
        .arg("-F")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log_file(&dovecot_err)?)
        .stderr(log_file(&dovecot_err)?)
        .process_group(0)
        .spawn()
        .map_err(|e| MailServersError::Start {
            server: "dovecot",
            reason: format!("cannot run {}: {e}", dovecot_bin.display()),
            log: dovecot_err.clone(),
            excerpt: String::new(),
        })?;
    let dovecot_failed = |reason: String| MailServersError::Start {
        server: "dovecot",
        reason,
        log: dovecot_log.clone(),
        excerpt: tail(&[&dovecot_err, &dovecot_log]),
    };
    if let Err(reason) = wait_ready(
        &mut dovecot,
        &[
            (loopback(ports.imap), Some("* OK")),
            (loopback(ports.pop3), Some("+OK")),
            (loopback(ports.lmtp), Some("220")),
            (loopback(ports.imaps), None),
            (loopback(ports.pop3s), None),
        ],
    )
    .await
    {
        stop_child(&mut dovecot, None).await;
        return Err(dovecot_failed(reason));
    }

    let postfix_log = layout.path("postfix.log");
    let mut postfix = match Command::new(postfix_bin)
        .arg("-c")
        .arg(&pf)
        .arg("start-fg")
        .stdin(Stdio::null())
        .stdout(log_file(&postfix_log)?)
        .stderr(log_file(&postfix_log)?)
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            stop_child(&mut dovecot, None).await;
            return Err(MailServersError::Start {
                server: "postfix",
                reason: format!("cannot run {}: {e}", postfix_bin.display()),
                log: postfix_log,
                excerpt: String::new(),
            });
        }
    };
    if let Err(reason) = wait_ready(
        &mut postfix,
        &[
            (loopback(ports.submission), Some("220")),
            (loopback(ports.delivery), Some("220")),
            (loopback(ports.submissions), None),
        ],
    )
    .await
    {
        let master = std::fs::read_to_string(pf.join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        stop_child(&mut postfix, master).await;
        stop_child(&mut dovecot, None).await;
        let mut excerpt = tail(&[&postfix_log]);
        if excerpt.contains("untrusted configuration directory") {
            excerpt.push_str(
                "\n(hint: postconf -e \"alternate_config_directories = <dir>\" in /etc/postfix/main.cf)",
            );
        }
        return Err(MailServersError::Start {
            server: "postfix",
            reason,
            log: postfix_log,
            excerpt,
        });
    }
    Ok((dovecot, postfix))
}

/// Stops a child that failed to come up: its group, and `extra` (a daemon's own group).
async fn stop_child(child: &mut Child, extra: Option<u32>) {
    if let Some(pid) = extra {
        signal(&format!("-{pid}"), "-TERM");
    }
    if let Some(pid) = child.id() {
        signal(&format!("-{pid}"), "-TERM");
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        if let Some(pid) = child.id() {
            signal(&format!("-{pid}"), "-KILL");
        }
        let _ = child.wait().await;
    }
    if let Some(pid) = extra {
        signal(&format!("-{pid}"), "-KILL");
    }
}

/// Waits until every address accepts a connection (and greets with the prefix, when
/// given), failing early when the process exits.
async fn wait_ready(
    child: &mut Child,
    checks: &[(SocketAddr, Option<&str>)],
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    for (addr, greeting) in checks {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the process exited ({status}) before {addr} answered"
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("{addr} did not answer within {START_TIMEOUT:?}"));
            }
            if probe(*addr, *greeting).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn probe(addr: SocketAddr, greeting: Option<&str>) -> bool {
    let Ok(Ok(mut client)) =
        tokio::time::timeout(Duration::from_secs(2), wire::LineClient::connect(addr)).await
    else {
        return false;
    };
    let Some(prefix) = greeting else {
        return true;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), client.read_line()).await,
        Ok(Ok(line)) if line.starts_with(prefix)
    )
}
