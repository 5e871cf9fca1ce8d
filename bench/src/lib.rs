//! mailbridge benchmarks. Each binary in `src/bin/` measures one path of mailbridge
//! and the same path in a peer, in the same run, and prints both with their ratio.
//! Run them with `bench/run <name>` (release build); see `bench/README.md`.
//!
//! Parts shared by the mail benchmarks:
//! - [`MailWorld`]: the emulated tenant (Basic auth on, so the peers can log in with
//!   a password) with the testkit's Dovecot and Postfix, TLS under its test CA.
//! - [`corpus`]: realistic messages, generated deterministically.
//! - [`peak`]: a child process's wall time and peak memory (VmHWM).
//! - [`peer_user`]: the unprivileged user the peers run as; [`peers`]: their files
//!   and mbsync.
//! - [`fill`]: an INBOX filled with the corpus.
//! - [`daemon`]: `mailbridge serve` as a child process, set up through its API.

use std::path::Path;

use anyhow::Context as _;
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{Tenant, TenantModel, User};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_tls::TlsSettings;

/// The mailbox every mail benchmark uses.
pub const USER: &str = "alice@contoso.example";
/// Its password (the tenant allows Basic auth, as a generic IMAP server would).
pub const PASSWORD: &str = "bench-Passw0rd";

/// The address of the extra mailbox `i` of [`MailWorld::start_with_users`].
pub fn user_address(i: u32) -> String {
    format!("user{i}@contoso.example")
}

/// An emulated tenant with Dovecot and Postfix in front of it.
#[derive(Debug)]
pub struct MailWorld {
    pub server: EmulatorServer,
    pub emulator: Emulator,
    pub mail: MailServers,
}

impl MailWorld {
    /// Starts the tenant and the mail servers.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_users(0).await
    }

    /// [`Self::start`] with `users` more mailboxes, [`user_address`]`(0..users)`, each
    /// with [`PASSWORD`].
    pub async fn start_with_users(users: u32) -> anyhow::Result<Self> {
        let mut tenant =
            Tenant::new("Contoso", "contoso.example").with_user(User::new(USER, "Alice", PASSWORD));
        for i in 0..users {
            tenant = tenant.with_user(User::new(&user_address(i), &format!("User {i}"), PASSWORD));
        }
        tenant.basic_auth_enabled = true;
        let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build()?)?;
        let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse()?).await?;
        let mail = MailServers::start(&emulator, &TestCa::generate()?)
            .await
            .context("failed to start Dovecot and Postfix (run scripts/install-deps)")?;
        Ok(Self {
            server,
            emulator,
            mail,
        })
    }

    /// Trust for the test CA and the certificate's name.
    pub fn trust(&self) -> TlsSettings {
        TlsSettings {
            extra_ca_pem: Some(self.mail.ca_pem().to_owned()),
            server_name: Some(self.mail.tls_name().to_owned()),
            pin: None,
        }
    }

    /// Writes the CA certificate where the peers can read it.
    pub fn write_ca(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.mail.ca_pem())?;
        Ok(())
    }
}

pub mod corpus {
    //! Realistic messages, the same on every run: mostly 2-20 KB text or
    //! text+HTML, some 20-100 KB, and a few 100 KB-1 MB with a base64 attachment.

    use std::fmt::Write as _;

    const WORDS: [&str; 32] = [
        "invoice",
        "order",
        "shipment",
        "the",
        "of",
        "and",
        "please",
        "find",
        "attached",
        "regards",
        "meeting",
        "tomorrow",
        "report",
        "quarter",
        "customer",
        "account",
        "payment",
        "due",
        "thank",
        "you",
        "for",
        "your",
        "request",
        "we",
        "will",
        "send",
        "update",
        "status",
        "delivery",
        "confirmed",
        "team",
        "project",
    ];

    /// splitmix64.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn between(&mut self, low: usize, high: usize) -> usize {
            low + usize::try_from(self.below((high - low) as u64)).unwrap_or(0)
        }
    }

    fn prose(rng: &mut Rng, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes + 100);
        let mut line = 0;
        while out.len() < bytes {
            let w = WORDS[usize::try_from(rng.below(WORDS.len() as u64)).unwrap_or(0)];
            out.push_str(w);
            line += w.len() + 1;
            if line > 70 {
                out.push_str("\r\n");
                line = 0;
            } else {
                out.push(' ');
            }
        }
        out.push_str("\r\n");
        out
    }

    fn base64_lines(rng: &mut Rng, bytes: usize) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(bytes * 4 / 3 + bytes / 38 + 4);
        let mut encoded = bytes.div_ceil(3) * 4;
        while encoded > 0 {
            let n = encoded.min(76);
            for _ in 0..n {
                out.push(char::from(
                    ALPHABET[usize::try_from(rng.below(64)).unwrap_or(0)],
                ));
            }
            out.push_str("\r\n");
            encoded -= n;
        }
        out
    }

    /// Message number `i` (CRLF line ends, lines under 80 characters).
    pub fn message(i: u32) -> Vec<u8> {
        let mut rng = Rng(u64::from(i).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        let kind = rng.below(100);
        let mut m = String::new();
        let _ = write!(
            m,
            "Return-Path: <sender{s}@example.org>\r\n\
             From: Sender {s} <sender{s}@example.org>\r\n\
             To: Alice <alice@contoso.example>\r\n\
             Subject: Order {i} {w}\r\n\
             Date: Fri, 04 Dec 2026 {h:02}:{mi:02}:{se:02} +0000\r\n\
             Message-ID: <bench-{i}@example.org>\r\n\
             MIME-Version: 1.0\r\n",
            s = rng.below(500),
            w = WORDS[usize::try_from(rng.below(32)).unwrap_or(0)],
            h = rng.below(24),
            mi = rng.below(60),
            se = rng.below(60),
        );
        let boundary = format!("=_bench_{i}");
        if kind < 45 {
            let size = rng.between(2_000, 20_000);
            m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
            m.push_str(&prose(&mut rng, size));
        } else if kind < 90 {
            let size = rng.between(2_000, 20_000);
            let text = prose(&mut rng, size / 3);
            let html = prose(&mut rng, size * 2 / 3).replace("\r\n", "<br>\r\n");
            let _ = write!(
                m,
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
                 --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\
                 --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
                 <html><body><p>\r\n{html}</p></body></html>\r\n--{boundary}--\r\n"
            );
        } else if kind < 97 {
            let size = rng.between(20_000, 100_000);
            m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
            m.push_str(&prose(&mut rng, size));
        } else {
            let size = rng.between(100_000, 750_000);
            let text = prose(&mut rng, 1_500);
            let data = base64_lines(&mut rng, size);
            let _ = write!(
                m,
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
                 --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\
                 --{boundary}\r\nContent-Type: application/pdf; name=\"report-{i}.pdf\"\r\n\
                 Content-Disposition: attachment; filename=\"report-{i}.pdf\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{data}--{boundary}--\r\n"
            );
        }
        m.into_bytes()
    }
}

pub mod peak {
    //! A child process's wall time and peak memory.

    use std::process::{Child, Command, ExitStatus};
    use std::time::{Duration, Instant};

    /// How a child ran.
    #[derive(Debug, Clone)]
    pub struct Run {
        pub status: ExitStatus,
        pub elapsed: Duration,
        /// Highest VmHWM seen (KiB), polled every 5 ms.
        pub peak_kib: u64,
        pub stdout: String,
        pub stderr: String,
    }

    /// `VmHWM` of a process, in KiB.
    pub fn vm_hwm(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Runs `command` to its end (blocking), its output captured.
    pub fn run(mut command: Command) -> anyhow::Result<Run> {
        use std::io::Read as _;
        use std::process::Stdio;
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let mut child: Child = command.spawn()?;
        let pid = child.id();
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_string(&mut s);
            }
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let mut peak_kib = 0;
        let status = loop {
            if let Some(kib) = vm_hwm(pid) {
                peak_kib = peak_kib.max(kib);
            }
            if let Some(status) = child.try_wait()? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = start.elapsed();
        Ok(Run {
            status,
            elapsed,
            peak_kib,
            stdout: reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        })
    }
}

/// The unprivileged user the peers run as (mbsync and getmail refuse or misbehave as
/// root), created by `bench/run`; its uid and gid.
pub fn peer_user() -> anyhow::Result<(u32, u32)> {
    const NAME: &str = "mailbridge-bench";
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != NAME {
                return None;
            }
            let _password = f.next()?;
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .with_context(|| format!("no user {NAME}: run the benchmark through bench/run"))
}

/// Counts the files of the Maildirs under `root` (every `new/` and `cur/`).
pub fn count_maildir_messages(root: &Path) -> u64 {
    let mut n = 0;
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name();
        if name == "new" || name == "cur" {
            n += std::fs::read_dir(&path).map_or(0, |d| d.flatten().count() as u64);
        } else if name != "tmp" {
            n += count_maildir_messages(&path);
        }
    }
    n
}

pub mod daemon {
    //! `mailbridge serve` as a child process, set up as a user would: accounts
    //! imported with `mailbridge account import`, sinks and watches through the REST
    //! API. Its memory is read from `/proc/<pid>/status`.

    use std::fmt::Write as _;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use anyhow::{Context as _, bail};
    use serde_json::Value;
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    use tokio::process::{Child, Command};

    /// How long the daemon may take to print its address.
    const START: Duration = Duration::from_mins(1);

    /// One side of an account (host, port, `tls` as the config file spells it).
    #[derive(Debug, Clone)]
    pub struct Side {
        pub transport: &'static str,
        pub host: String,
        pub port: u16,
        pub tls: &'static str,
    }

    /// A password account for the accounts file.
    #[derive(Debug, Clone)]
    pub struct Account {
        pub name: String,
        pub address: String,
        pub password: String,
        pub incoming: Option<Side>,
        pub outgoing: Option<Side>,
    }

    /// A data directory, a configuration file and the `mailbridge` binary built
    /// beside this benchmark (`cargo build --release -p mailbridge-cli`).
    #[derive(Debug)]
    pub struct Home {
        pub dir: tempfile::TempDir,
        pub bin: PathBuf,
        /// The CA file and certificate name the accounts trust.
        ca: PathBuf,
        tls_name: String,
    }

    impl Home {
        /// A fresh home; `ca_pem` and `tls_name` are the mail servers' trust.
        pub fn new(ca_pem: &str, tls_name: &str) -> anyhow::Result<Self> {
            let bin = std::env::current_exe()?.with_file_name("mailbridge");
            if !bin.is_file() {
                bail!(
                    "{} is missing: build it with `cargo build --release -p mailbridge-cli` (bench/run does)",
                    bin.display()
                );
            }
            let dir = tempfile::Builder::new()
                .prefix("mailbridge-bench-daemon-")
                .tempdir()?;
            let ca = dir.path().join("ca.pem");
            std::fs::write(&ca, ca_pem)?;
            std::fs::write(dir.path().join("mailbridge.toml"), "")?;
            Ok(Self {
                dir,
                bin,
                ca,
                tls_name: tls_name.to_owned(),
            })
        }

        /// The `mailbridge` command with this home's configuration and data.
        pub fn command(&self) -> Command {
            let mut c = Command::new(&self.bin);
            c.env("MAILBRIDGE_CONFIG", self.dir.path().join("mailbridge.toml"))
                .env("MAILBRIDGE_DATA_DIR", self.dir.path().join("data"))
                .env_remove("MAILBRIDGE_MASTER_KEY")
                .env_remove("MAILBRIDGE_MASTER_PASSPHRASE")
                .env_remove("MAILBRIDGE_LISTEN")
                .env_remove("MAILBRIDGE_DATABASE")
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .kill_on_drop(true);
            // `BENCH_DAEMON_RUST_LOG=mailbridge_connector=debug` shows, e.g., each
            // watcher batch's timings in the log kept with `BENCH_DAEMON_LOG`.
            if let Ok(filter) = std::env::var("BENCH_DAEMON_RUST_LOG") {
                c.env("RUST_LOG", filter);
            }
            c
        }

        /// Imports `accounts` with their passwords (`mailbridge account import`).
        pub async fn import(&self, accounts: &[Account]) -> anyhow::Result<()> {
            let mut text = String::new();
            let side = |text: &mut String, key: &str, s: &Side| {
                let _ = writeln!(
                    text,
                    "{key} = {{ transport = \"{}\", host = \"{}\", port = {}, tls = \"{}\", tls_name = \"{}\", extra_ca_file = \"{}\" }}",
                    s.transport,
                    s.host,
                    s.port,
                    s.tls,
                    self.tls_name,
                    self.ca.display()
                );
            };
            for a in accounts {
                let mut transports = Vec::new();
                transports.extend(a.incoming.as_ref().map(|s| format!("\"{}\"", s.transport)));
                transports.extend(a.outgoing.as_ref().map(|s| format!("\"{}\"", s.transport)));
                let _ = writeln!(
                    text,
                    "[[account]]\nname = \"{}\"\naddress = \"{}\"\nsign_in = \"password\"\n\
                     transports = [{}]\ndownload = {}\nsend = {}",
                    a.name,
                    a.address,
                    transports.join(", "),
                    a.incoming.is_some(),
                    a.outgoing.is_some(),
                );
                if let Some(s) = &a.incoming {
                    side(&mut text, "incoming", s);
                }
                if let Some(s) = &a.outgoing {
                    side(&mut text, "outgoing", s);
                }
                text.push('\n');
            }
            for a in accounts {
                let _ = writeln!(
                    text,
                    "[[secret]]\nid = \"account:{}:password\"\nkind = \"password\"\nvalue = \"{}\"\n",
                    a.name, a.password
                );
            }
            let file = self.dir.path().join("accounts.toml");
            std::fs::write(&file, text)?;
            let out = self
                .command()
                .args(["account", "import"])
                .arg(&file)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .await?;
            std::fs::remove_file(&file)?;
            if !out.status.success() {
                bail!(
                    "mailbridge account import failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(())
        }

        /// Starts `mailbridge serve` on a free port; its log goes to `serve.log` here.
        pub async fn serve(&self) -> anyhow::Result<Daemon> {
            let log = std::fs::File::create(self.dir.path().join("serve.log"))?;
            let mut child = self
                .command()
                .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()?;
            let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
            let mut token = None;
            let base = tokio::time::timeout(START, async {
                while let Some(line) = lines.next_line().await? {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        return Ok(addr.to_owned());
                    }
                    if let Some(found) = line.split_whitespace().find(|w| w.starts_with("mbt_")) {
                        token = Some(found.to_owned());
                    }
                }
                bail!("mailbridge serve ended before it listened")
            })
            .await
            .context("mailbridge serve did not print its address within a minute")??;
            // The rest of standard output is read and dropped.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let token = token.context("mailbridge serve printed no first API token")?;
            Ok(Daemon {
                pid: child.id().context("no pid")?,
                child,
                base,
                token,
                http: reqwest::Client::new(),
                log: self.dir.path().join("serve.log"),
            })
        }

        /// The folder a sink may write into.
        pub fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    /// A running `mailbridge serve`.
    #[derive(Debug)]
    pub struct Daemon {
        child: Child,
        pub pid: u32,
        pub base: String,
        token: String,
        pub http: reqwest::Client,
        log: PathBuf,
    }

    impl Daemon {
        /// A request with the administrator token.
        pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
            self.http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(&self.token)
        }

        /// A JSON call; refuses any answer but `expect`.
        pub async fn call(
            &self,
            method: reqwest::Method,
            path: &str,
            body: Option<Value>,
            expect: u16,
        ) -> anyhow::Result<Value> {
            let mut req = self.request(method.clone(), path);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let res = req.send().await?;
            let status = res.status().as_u16();
            let text = res.text().await?;
            if status != expect {
                bail!("{method} {path} answered {status}, not {expect}: {text}");
            }
            Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
        }

        /// Account ids by name.
        pub async fn account_ids(
            &self,
        ) -> anyhow::Result<std::collections::HashMap<String, String>> {
            let accounts = self
                .call(reqwest::Method::GET, "/api/v1/accounts", None, 200)
                .await?;
            Ok(accounts
                .as_array()
                .context("accounts: not a list")?
                .iter()
                .filter_map(|a| {
                    Some((a["name"].as_str()?.to_owned(), a["id"].as_str()?.to_owned()))
                })
                .collect())
        }

        /// Creates a sink.
        pub async fn sink(&self, body: Value) -> anyhow::Result<()> {
            self.call(reqwest::Method::POST, "/api/v1/sinks", Some(body), 201)
                .await
                .map(drop)
        }

        /// Turns the watch of account `id` on, every message to `sink`.
        pub async fn watch(&self, id: &str, sink: &str) -> anyhow::Result<()> {
            self.call(
                reqwest::Method::PUT,
                &format!("/api/v1/accounts/{id}/watch"),
                Some(serde_json::json!({"routes": [{"name": "all", "sinks": [sink]}]})),
                200,
            )
            .await
            .map(drop)
        }

        /// [`Self::watch`] for every id in `ids`, `parallel` requests at a time (each
        /// change makes the daemon bring its watchers in line with the store; with
        /// requests in flight together, those passes cover several changes each).
        pub async fn watch_many(
            &self,
            ids: &[String],
            sink: &str,
            parallel: usize,
        ) -> anyhow::Result<()> {
            let mut tasks = tokio::task::JoinSet::new();
            let mut pending = ids.iter();
            loop {
                while tasks.len() < parallel.max(1) {
                    let Some(id) = pending.next() else { break };
                    let req = self
                        .request(
                            reqwest::Method::PUT,
                            &format!("/api/v1/accounts/{id}/watch"),
                        )
                        .json(&serde_json::json!({"routes": [{"name": "all", "sinks": [sink]}]}));
                    let id = id.clone();
                    tasks.spawn(async move {
                        // A PUT is idempotent: one the daemon cut off after its request
                        // timeout (503, a busy store) is sent again.
                        for _ in 0..10 {
                            let res = req.try_clone().context("a PUT body")?.send().await?;
                            let status = res.status();
                            match status.as_u16() {
                                200 => return anyhow::Ok(()),
                                503 => {}
                                _ => bail!(
                                    "PUT watch of {id} answered {status}: {}",
                                    res.text().await?
                                ),
                            }
                        }
                        bail!("PUT watch of {id} answered 503 ten times")
                    });
                }
                match tasks.join_next().await {
                    Some(done) => done??,
                    None => return Ok(()),
                }
            }
        }

        /// The watchers' states, by name (`idle`, `syncing`, ...).
        pub async fn watcher_states(
            &self,
        ) -> anyhow::Result<std::collections::HashMap<String, String>> {
            let rows = self
                .call(reqwest::Method::GET, "/api/v1/watchers", None, 200)
                .await?;
            Ok(rows
                .as_array()
                .context("watchers: not a list")?
                .iter()
                .filter_map(|r| {
                    Some((
                        r["account"].as_str()?.to_owned(),
                        r["state"]["state"].as_str()?.to_owned(),
                    ))
                })
                .collect())
        }

        /// A line of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
        pub fn status_kib(&self, field: &str) -> u64 {
            status_kib(self.pid, field).unwrap_or(0)
        }

        /// The last lines of the daemon's log, for an error message.
        pub fn log_tail(&self) -> String {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines
                .get(lines.len().saturating_sub(20)..)
                .unwrap_or_default()
                .join("\n")
        }

        /// Stops it with SIGTERM and waits (at most a minute) for it to end; its log is
        /// copied to `$BENCH_DAEMON_LOG` when that is set.
        pub async fn stop(mut self) -> anyhow::Result<()> {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()?;
            if !status.success() {
                bail!("kill -TERM {} failed", self.pid);
            }
            let ended = tokio::time::timeout(Duration::from_mins(1), self.child.wait())
                .await
                .context("mailbridge serve did not stop within a minute of SIGTERM")??;
            if let Some(keep) = std::env::var_os("BENCH_DAEMON_LOG").map(PathBuf::from) {
                std::fs::copy(&self.log, &keep).with_context(|| {
                    format!("failed to copy the daemon's log to {}", keep.display())
                })?;
            }
            if !ended.success() {
                bail!("mailbridge serve ended with {ended}: {}", self.log_tail());
            }
            Ok(())
        }
    }

    /// A line of `/proc/<pid>/status` in KiB.
    pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Polls `done` every `every` until it holds; fails with `what` after `limit`.
    pub async fn until<F, Fut>(
        what: &str,
        limit: Duration,
        every: Duration,
        mut done: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        let start = Instant::now();
        loop {
            if done().await? {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("{what}: not within {limit:?}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Files in `dir` whose name ends with `suffix`.
    pub fn count_files(dir: &Path, suffix: &str) -> u64 {
        std::fs::read_dir(dir).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count() as u64
        })
    }
}

/// Fills `user`'s INBOX with corpus messages `0..count` (four APPENDs at once); their
/// total size.
pub async fn fill(world: &MailWorld, user: &str, count: u32) -> anyhow::Result<u64> {
    const FILLERS: u32 = 4;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..FILLERS {
        let store = world.mail.mail_store();
        let user = user.to_owned();
        tasks.spawn(async move {
            let mut bytes = 0u64;
            for i in (k..count).step_by(FILLERS as usize) {
                let raw = corpus::message(i);
                bytes += raw.len() as u64;
                store.append(&user, "INBOX", &raw, false).await?;
            }
            anyhow::Ok(bytes)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok(total)
}

/// Flushes what earlier runs wrote, so the next run starts with a quiet disk.
pub fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_secs(2));
}

/// The first line a program prints for `arg` (its version).
pub fn version(program: &str, arg: &str) -> String {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

pub mod peers {
    //! Files and directories the peers (run as [`peer_user`](crate::peer_user)) own,
    //! and mbsync.

    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use anyhow::bail;

    use crate::{PASSWORD, USER, count_maildir_messages, peak, version};

    /// A directory the peer user owns.
    pub fn peer_dir(base: &Path, name: &str, owner: (u32, u32)) -> anyhow::Result<PathBuf> {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::chown(&dir, Some(owner.0), Some(owner.1))?;
        Ok(dir)
    }

    /// A private file the peer user owns.
    pub fn write_owned(path: &Path, text: &str, owner: (u32, u32)) -> anyhow::Result<()> {
        std::fs::write(path, text)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))?;
        Ok(())
    }

    /// How mbsync ran: its name and version, the run, the messages it stored.
    #[derive(Debug)]
    pub struct Mbsync {
        pub name: String,
        pub run: peak::Run,
        pub messages: u64,
    }

    /// mbsync, as the peer user, with its default `FSync yes`: [`USER`]'s INBOX over
    /// IMAPS on `port` into a Maildir under `base/mbsync-<round>`.
    pub fn mbsync(
        base: &Path,
        round: u32,
        port: u16,
        ca: &Path,
        owner: (u32, u32),
    ) -> anyhow::Result<Mbsync> {
        let dir = peer_dir(base, &format!("mbsync-{round}"), owner)?;
        peer_dir(&dir, "Maildir", owner)?;
        let config = dir.join("mbsyncrc");
        write_owned(
            &config,
            &format!(
                "IMAPAccount bench\nHost localhost\nPort {port}\nUser {USER}\nPass {PASSWORD}\n\
                 SSLType IMAPS\nCertificateFile {ca}\nAuthMechs LOGIN\n\n\
                 IMAPStore remote\nAccount bench\n\n\
                 MaildirStore local\nPath {maildir}/\nInbox {maildir}/INBOX\n\n\
                 Channel bench\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\n\
                 Sync Pull\nSyncState *\n",
                ca = ca.display(),
                maildir = dir.join("Maildir").display(),
            ),
            owner,
        )?;
        let mut command = Command::new("mbsync");
        command
            .arg("-c")
            .arg(&config)
            .args(["-q", "-a"])
            .env("HOME", &dir)
            .current_dir(&dir)
            .uid(owner.0)
            .gid(owner.1);
        let run = peak::run(command)?;
        if !run.status.success() {
            bail!("mbsync failed: {}{}", run.stdout, run.stderr);
        }
        Ok(Mbsync {
            name: format!("mbsync ({})", version("mbsync", "--version")),
            run,
            messages: count_maildir_messages(&dir.join("Maildir")),
        })
    }
}
