//! Daemon idle benchmark: N IMAP accounts (default 1,000, `BENCH_ACCOUNTS`), each
//! its own Dovecot mailbox over IMAPS, watched by one `mailbridge serve`: the
//! daemon's resident memory with every watcher in IDLE, less its memory with the same
//! accounts and nothing watched, per account. Beside it, in the same run, fetchmail's
//! idle mode (one process per mailbox, as fetchmail's `idle` watches one folder of
//! one account): resident and proportional memory per process over M mailboxes
//! (default 20, `BENCH_FETCHMAIL`; 0 skips it).
//!
//! The testkit's Dovecot allows 100 processes per service, too few for 1,000 IMAPS
//! sessions (each an `imap-login` TLS proxy and an `imap` process): this benchmark
//! raises the limits in the run's `dovecot.conf` and reloads Dovecot.

#![expect(
    clippy::cast_precision_loss,
    reason = "kilobytes and megabytes for a printed table"
)]

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use mailbridge_bench::daemon::{Account, Home, Side, status_kib, until};
use mailbridge_bench::peers::{peer_dir, write_owned};
use mailbridge_bench::{MailWorld, PASSWORD, user_address, version};
use serde_json::json;

/// Accounts the daemon watches.
const ACCOUNTS: u32 = 1_000;
/// fetchmail processes measured.
const FETCHMAILS: u32 = 20;
/// The longest the watchers (or fetchmails) may take to reach IDLE
/// (`BENCH_IDLE_LIMIT_SECS` overrides).
const LIMIT: Duration = Duration::from_mins(10);

/// Lets Dovecot take `sessions` IMAPS sessions at once, and reloads it.
async fn raise_dovecot_limits(world: &MailWorld, sessions: u32) -> anyhow::Result<()> {
    let conf = world.mail.root().join("dovecot.conf");
    let limit = sessions * 2 + 200;
    let mut text = std::fs::read_to_string(&conf)?;
    let _ = write!(
        text,
        "\n# mailbridge-bench daemon-idle: room for {sessions} IMAPS sessions\n\
         default_process_limit = {limit}\ndefault_client_limit = {clients}\n",
        clients = limit * 2
    );
    std::fs::write(&conf, text)?;
    let log = world.mail.dovecot_log();
    let reloads = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("reloading configuration")
            .count()
    };
    let before = reloads(&log);
    let out = Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .arg("reload")
        .output()?;
    ensure!(
        out.status.success(),
        "doveadm reload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    until(
        "Dovecot reloads its configuration",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let log = log.clone();
            async move { Ok(reloads(&log) > before) }
        },
    )
    .await?;
    let config = Command::new("doveconf")
        .arg("-c")
        .arg(&conf)
        .arg("default_process_limit")
        .output()?;
    ensure!(
        String::from_utf8_lossy(&config.stdout).contains(&limit.to_string()),
        "Dovecot did not take default_process_limit = {limit}: {}",
        String::from_utf8_lossy(&config.stderr)
    );
    Ok(())
}

/// IMAP sessions Dovecot has open: its master's `imap` children (one per session).
/// Counted from `/proc` rather than with `doveadm who`, whose answer comes from
/// Dovecot's `anvil`, which drops the connection once a thousand sessions hold its
/// file descriptors.
fn imap_sessions(world: &MailWorld) -> anyhow::Result<usize> {
    let pid_file = world.mail.root().join("run").join("master.pid");
    let master: u32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} holds no process id", pid_file.display()))?;
    let mut n = 0;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so read after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if comm == "imap" && ppid.and_then(|p| p.parse::<u32>().ok()) == Some(master) {
            n += 1;
        }
    }
    Ok(n)
}

/// Proportional memory of a process (`Pss` of `smaps_rollup`), in KiB.
fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

struct Fetchmail {
    child: Child,
    log: std::path::PathBuf,
}

/// `count` fetchmail processes in idle mode, one per mailbox, as the peer user; their
/// mean RSS and PSS (KiB) once each is in IDLE.
async fn fetchmail(world: &MailWorld, base: &Path, count: u32) -> anyhow::Result<(f64, f64)> {
    let owner = mailbridge_bench::peer_user()?;
    let ca = base.join("ca.pem");
    world.write_ca(&ca)?;
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644))?;
    let port = world.mail.imaps().port();
    let mut running = Vec::new();
    for i in 0..count {
        let dir = peer_dir(base, &format!("fetchmail-{i}"), owner)?;
        let rc = dir.join("fetchmailrc");
        write_owned(
            &rc,
            &format!(
                "set no syslog\n\
                 poll localhost protocol imap port {port}\n  \
                 user \"{user}\" there with password \"{PASSWORD}\"\n  \
                 ssl sslcertfile \"{ca}\" sslcertck idle keep mda \"/bin/true\"\n",
                user = user_address(i),
                ca = ca.display(),
            ),
            owner,
        )?;
        let log = dir.join("fetchmail.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("fetchmail")
            .arg("-f")
            .arg(&rc)
            .args(["--nodetach", "-d", "300", "-v"])
            .env("HOME", &dir)
            .env("FETCHMAILHOME", &dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .uid(owner.0)
            .gid(owner.1)
            .spawn()
            .context("failed to start fetchmail")?;
        running.push(Fetchmail { child, log });
    }
    let idling = until(
        "every fetchmail is in IDLE",
        LIMIT,
        Duration::from_millis(200),
        || {
            let logs: Vec<_> = running.iter().map(|f| f.log.clone()).collect();
            async move {
                Ok(logs.iter().all(|l| {
                    std::fs::read_to_string(l)
                        .unwrap_or_default()
                        .contains("+ idling")
                }))
            }
        },
    )
    .await;
    let (mut rss, mut pss) = (0u64, 0u64);
    for f in &running {
        rss += status_kib(f.child.id(), "VmRSS").unwrap_or(0);
        pss += pss_kib(f.child.id()).unwrap_or(0);
    }
    let first_log = running
        .first()
        .map(|f| std::fs::read_to_string(&f.log).unwrap_or_default())
        .unwrap_or_default();
    for mut f in running {
        let _ = f.child.kill();
        let _ = f.child.wait();
    }
    if let Err(e) = idling {
        bail!("{e:#}; the first fetchmail's log:\n{first_log}");
    }
    Ok((rss as f64 / f64::from(count), pss as f64 / f64::from(count)))
}

/// `fetchmail 6.4.37` (from "This is fetchmail release 6.4.37+...").
fn fetchmail_version() -> String {
    let line = version("fetchmail", "--version");
    let release = line
        .split_whitespace()
        .skip_while(|w| *w != "release")
        .nth(1)
        .unwrap_or_default();
    let number: String = release
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    format!("fetchmail {number}")
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let accounts = env_u32("BENCH_ACCOUNTS", ACCOUNTS);
    let fetchmails = env_u32("BENCH_FETCHMAIL", FETCHMAILS).min(accounts.max(1));
    let world = MailWorld::start_with_users(accounts.max(fetchmails)).await?;
    raise_dovecot_limits(&world, accounts + fetchmails).await?;
    let base = tempfile::Builder::new()
        .prefix("mailbridge-bench-idle-")
        .tempdir()?;
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755))?;

    let home = Home::new(world.mail.ca_pem(), world.mail.tls_name())?;
    let list: Vec<Account> = (0..accounts)
        .map(|i| Account {
            name: format!("user{i}"),
            address: user_address(i),
            password: PASSWORD.into(),
            incoming: Some(Side {
                transport: "imap",
                host: "127.0.0.1".into(),
                port: world.mail.imaps().port(),
                tls: "implicit",
            }),
            outgoing: None,
        })
        .collect();
    home.import(&list).await?;
    let daemon = home.serve().await?;
    let archive = home.path("archive");
    daemon
        .sink(json!({"name": "archive", "settings": {"kind": "folder", "path": archive}}))
        .await?;
    let ids = daemon.account_ids().await?;
    ensure!(
        ids.len() == accounts as usize,
        "{} accounts listed, not {accounts}",
        ids.len()
    );
    let base_rss = daemon.status_kib("VmRSS");

    eprintln!("watching {accounts} accounts ...");
    let start = Instant::now();
    let id_list: Vec<String> = ids.values().cloned().collect();
    daemon.watch_many(&id_list, "archive", 16).await?;
    eprintln!(
        "{accounts} watches set in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let last = std::sync::atomic::AtomicUsize::new(0);
    let (d, l) = (&daemon, &last);
    let limit = Duration::from_secs(u64::from(env_u32(
        "BENCH_IDLE_LIMIT_SECS",
        u32::try_from(LIMIT.as_secs()).unwrap_or(600),
    )));
    let idle = until(
        "every watcher is idle",
        limit,
        Duration::from_secs(1),
        move || async move {
            let states = d.watcher_states().await?;
            let n = states.values().filter(|s| *s == "idle").count();
            l.store(n, std::sync::atomic::Ordering::Relaxed);
            Ok(n == accounts as usize)
        },
    )
    .await;
    let last_count = last.load(std::sync::atomic::Ordering::Relaxed);
    // Not all idle in time: the figure is given over those that are, and says so.
    let partial = idle.is_err();
    if let Err(e) = idle {
        let states = daemon.watcher_states().await.unwrap_or_default();
        let other = states.iter().find(|(_, s)| *s != "idle");
        eprintln!(
            "{e:#}: {last_count} of {accounts} idle, {} with a watcher (one not idle: {other:?}); measuring those",
            states.len()
        );
        if last_count == 0 {
            bail!("no watcher became idle; daemon log:\n{}", daemon.log_tail());
        }
    }
    let idle_count = if partial {
        u32::try_from(last_count).unwrap_or(accounts)
    } else {
        accounts
    };
    let to_idle = start.elapsed();
    let rss_idle = daemon.status_kib("VmRSS");
    let sessions = imap_sessions(&world)?;
    // Again after the lease renewals and IDLE rounds of the next half minute.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let states = daemon.watcher_states().await?;
    let still = states.values().filter(|s| *s == "idle").count();
    let rss_later = daemon.status_kib("VmRSS");
    let hwm = daemon.status_kib("VmHWM");
    daemon.stop().await?;

    let fm = if fetchmails > 0 {
        Some(fetchmail(&world, base.path(), fetchmails).await?)
    } else {
        None
    };
    world.mail.stop().await;
    world.server.stop().await;

    let per = |rss: u64| rss.saturating_sub(base_rss) as f64 / f64::from(idle_count.max(1));
    println!(
        "daemon-idle: {accounts} IMAP accounts (one Dovecot mailbox each, IMAPS), one `mailbridge serve`; {} after {:.1} s",
        if partial {
            format!("only {idle_count} idle (the limit)")
        } else {
            "all idle".to_owned()
        },
        to_idle.as_secs_f64()
    );
    println!("Dovecot's IMAP sessions with every watcher idle: {sessions}");
    println!("{:<58} {:>12} {:>14}", "", "RSS", "per account");
    println!(
        "{:<58} {:>9.1} MB {:>14}",
        "mailbridge serve, accounts imported, none watched",
        base_rss as f64 / 1024.0,
        "-"
    );
    println!(
        "{:<58} {:>9.1} MB {:>11.1} KB",
        format!("mailbridge serve, {idle_count} watchers in IDLE"),
        rss_idle as f64 / 1024.0,
        per(rss_idle)
    );
    println!(
        "{:<58} {:>9.1} MB {:>11.1} KB",
        format!("  30 s later ({still} idle)"),
        rss_later as f64 / 1024.0,
        per(rss_later)
    );
    println!(
        "{:<58} {:>9.1} MB {:>11.1} KB",
        "  peak (VmHWM)",
        hwm as f64 / 1024.0,
        per(hwm)
    );
    if let Some((rss, pss)) = fm {
        println!(
            "{:<58} {:>9.1} MB {:>11.1} KB",
            format!(
                "{} --idle, per process (RSS), {fetchmails} mailboxes",
                fetchmail_version()
            ),
            rss / 1024.0,
            rss
        );
        println!(
            "{:<58} {:>9.1} MB {:>11.1} KB",
            "  the same, proportional (PSS: shared pages divided)",
            pss / 1024.0,
            pss
        );
    }
    Ok(())
}
