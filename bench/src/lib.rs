//! mailbridge benchmarks. Each binary in `src/bin/` measures one path of mailbridge
//! and the same path in a peer, in the same run, and prints both with their ratio.
//! Run them with `bench/run <name>` (release build); see `bench/README.md`.
//!
//! Parts shared by the mail benchmarks:
//! - [`MailWorld`]: the emulated tenant (Basic auth on, so the peers can log in with
//!   a password) with the testkit's Dovecot and Postfix, TLS under its test CA.
//! - [`corpus`]: realistic messages, generated deterministically.
//! - [`peak`]: a child process's wall time and peak memory (VmHWM).
//! - [`peer_user`]: the unprivileged user the peers run as.

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
        let mut tenant =
            Tenant::new("Contoso", "contoso.example").with_user(User::new(USER, "Alice", PASSWORD));
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
