//! `mailbridge serve`: the daemon. With nothing set it keeps SQLite (WAL) and the
//! master key file in the data directory and answers HTTP on 127.0.0.1:8025;
//! `--database postgres://...` puts the store in PostgreSQL instead (the master key
//! still comes from the data directory or the environment). Every flag has a
//! `MAILBRIDGE_*` environment variable.
//!
//! While the store has no person for the web UI, every start prints a one-time setup
//! link (`http://ADDR/setup?token=...`, valid for an hour; the token is stored as its
//! SHA-256 and a new start replaces it) whose page creates the first administrator.
//! The web UI's pages ([`mailbridge_web`]) are served beside the API.
//!
//! On the first start (a store that never had an API token) an administrator token
//! named `first-admin` is made and printed once on standard output; later starts print
//! none. Standard output also gets `listening on http://ADDR` once the socket is bound
//! (scripts and tests read the port from it); logs go to standard error, as text or
//! JSON, and never carry a token or a password.
//!
//! `--tls-cert`/`--tls-key` serve HTTPS (the lines above then say `https://`), and
//! `--trusted-proxy` names reverse proxies whose `X-Forwarded-*` headers are believed
//! ([`crate::serve_net`]).
//!
//! Beside the API it runs the daemon's work ([`mailbridge_server::daemon`]): a watcher
//! for every account whose watch is on (while this instance holds the account's
//! lease) and the outbox's sender.
//!
//! SIGTERM or Ctrl-C: stop accepting connections, let requests in flight finish, stop
//! the watchers after the message each is delivering and the sender after the message
//! it hands over, and exit 0 within `--shutdown-timeout` seconds however long they
//! take.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mailbridge_accounts::signin::SignIn;
use mailbridge_server::daemon::{Daemon, DaemonSettings};
use mailbridge_server::metrics::{DaemonMetrics, Metrics};
use mailbridge_server::store_tokens::{FIRST_TOKEN_NAME, StoreTokens, issue_first, store_ready};
use mailbridge_server::{ApiLimits, AppState, app};
use mailbridge_store::{Backend, Store};
use secrecy::{ExposeSecret as _, SecretString};

use crate::context::{self, GlobalArgs};
use crate::serve_net::{Cidr, Forwarding, TlsListener, forwarded, server_tls};

/// A database URL: may hold a password, so never shown whole.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

/// Any text: the store checks it (and names it without its password) when it opens;
/// an argument parser's error would repeat it whole.
impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(SecretString::from(s.to_owned())))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(REDACTED)")
    }
}

/// Where the store is: SQLite in the data directory, or PostgreSQL.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// PostgreSQL for the store (several instances share it):
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE (or sqlite://PATH). Without it:
    /// SQLite in the data directory.
    #[arg(
        long,
        env = "MAILBRIDGE_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<DatabaseUrl>,
}

impl StoreArgs {
    /// Opens the store these arguments name, with the master key in force (from the
    /// environment, or the key file in the data directory, created on first run).
    pub async fn open(&self, global: &GlobalArgs) -> anyhow::Result<Store> {
        let Some(url) = &self.database else {
            return context::open_store(global).await;
        };
        let dir = global.data_dir();
        mailbridge_store::files::create_private_dir(&dir).with_context(|| {
            format!(
                "failed to create the data directory {} (it holds the master key file)",
                dir.display()
            )
        })?;
        let key = mailbridge_accounts::master_key::master_key(&dir)?;
        Store::connect(url.0.expose_secret(), &key).await.context(
            "failed to open the PostgreSQL store given by --database (MAILBRIDGE_DATABASE)",
        )
    }
}

/// How logs are written on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event (fields as keys).
    Json,
}

/// `mailbridge serve`
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address and port for the HTTP API (port 0: any free port; the line
    /// `listening on http://ADDR` says which).
    #[arg(long, env = "MAILBRIDGE_LISTEN", default_value = "127.0.0.1:8025")]
    pub listen: SocketAddr,
    /// The address webhook receivers reach this API at (`https://host[:port]`): a
    /// webhook's link to a message too large to travel inline starts with it.
    /// Default: `http://` and the listening address, unless that is `0.0.0.0` or `[::]`
    /// (then no link: set this).
    #[arg(long, env = "MAILBRIDGE_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The longest a stop (SIGTERM, Ctrl-C) waits for requests in flight, in seconds.
    #[arg(
        long,
        env = "MAILBRIDGE_SHUTDOWN_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub shutdown_timeout: u64,
    /// This instance's name in leases and outbox claims (default: host name and
    /// process id). Unique per running instance.
    #[arg(long, env = "MAILBRIDGE_INSTANCE")]
    pub instance: Option<String>,
    /// How long an instance holds an account's watcher without renewing its lease, in
    /// seconds: when an instance dies, another takes its accounts over within this.
    #[arg(
        long,
        env = "MAILBRIDGE_LEASE",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub lease: u64,
    /// Log format on standard error.
    #[arg(long, env = "MAILBRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first);
    /// with --tls-key. Cookies are then `Secure`.
    #[arg(
        long,
        env = "MAILBRIDGE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "MAILBRIDGE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// A reverse proxy (an address or a network, e.g. 10.0.0.0/8) whose
    /// X-Forwarded-For, -Proto and -Host are believed: the client's address for rate
    /// limits and logs, HTTPS for `Secure` cookies, and the public address when
    /// --public-url is not given. Repeatable (the variable takes a comma-separated
    /// list); from any other address those headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "MAILBRIDGE_TRUSTED_PROXIES",
        value_name = "ADDR/CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<Cidr>,
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    // Listened for from the start: a stop asked for while starting is a clean stop too.
    let stop_signal = stop_signal()?;
    let store = args.store.open(global).await?;
    let backend = match store.backend() {
        Backend::Sqlite => "sqlite",
        _ => "postgres",
    };
    if let Some(token) = issue_first(&store)
        .await
        .context("failed to make the first administrator API token")?
    {
        // Standard output, not the log: logs never carry a token.
        println!(
            "API token \"{FIRST_TOKEN_NAME}\" (administrator): {}",
            token.expose_secret()
        );
        println!(
            "It is shown only this once: keep it now. To make another: mailbridge token add NAME --role administrator"
        );
        tracing::info!(
            token = FIRST_TOKEN_NAME,
            "first administrator API token made and printed once"
        );
    }
    // Read before binding: a wrong file is said at once, before anything listens.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server_tls(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {} (another program may use the port; choose another with --listen or MAILBRIDGE_LISTEN)",
                args.listen
            )
        })?;
    let addr = listener
        .local_addr()
        .context("failed to read the address the HTTP API listens on")?;
    let instance = args.instance.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            hostname().unwrap_or_else(|| "mailbridge".into()),
            std::process::id()
        )
    });
    let mut settings = DaemonSettings::new(
        instance.clone(),
        global.data_dir().join("spool"),
        global.config.clone(),
    );
    settings.lease = Duration::from_secs(args.lease.max(3));
    settings.public_url = match &args.public_url {
        Some(url) => Some(url.clone()),
        None if addr.ip().is_unspecified() => {
            tracing::warn!(
                listen = %addr,
                "listening on every address: webhooks get no link to a message too large to travel inline; give the address receivers reach with --public-url"
            );
            None
        }
        None => Some(format!("{scheme}://{addr}")),
    };
    let metrics = Arc::new(Metrics::default());
    let daemon_metrics = DaemonMetrics::register(&metrics);
    settings.on_message = Some(daemon_metrics.message_hook());
    // Behind a trusted proxy without --public-url, the web UI takes its public address
    // from the forwarded scheme and host of each request that has them.
    let public_url = settings.public_url.clone();
    // One sign-in service: a person's sign-in on the Authorize page primes the tokens
    // the watchers then use.
    let sign_in = Arc::new(SignIn::new(store.clone()));
    let daemon = Daemon::start(store.clone(), Arc::clone(&sign_in), settings);
    let watchers = daemon.handle();
    let web = mailbridge_web::router(mailbridge_web::WebConfig {
        store: store.clone(),
        config_file: global.config.clone(),
        watchers: Arc::new(move || watchers.states()),
        // Over TLS every cookie is `Secure`; behind a proxy that forwards HTTPS the
        // forwarding layer adds the flag per request.
        secure_cookies: tls.is_some(),
        daemon: Some(daemon.handle()),
        data_dir: Some(global.data_dir()),
        sign_in,
        public_url,
    });
    let state = AppState {
        tokens: Arc::new(StoreTokens::new(store.clone())),
        metrics,
        ready: store_ready(store.clone()),
        limits: ApiLimits::default(),
        daemon: Some(daemon.handle()),
        web: Some(web),
    };
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let following = daemon_metrics.follow(
        daemon.handle(),
        Duration::from_secs(5),
        metrics_stop.clone(),
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let forwarding = Arc::new(Forwarding {
        tls: tls.is_some(),
        trusted: args.trusted_proxy.clone(),
        public_url_set: args.public_url.is_some(),
    });
    let service = app(state)
        .layer(axum::middleware::from_fn_with_state(forwarding, forwarded))
        .into_make_service_with_connect_info::<SocketAddr>();
    let mut server = if let Some(acceptor) = tls {
        use axum::serve::ListenerExt as _;
        // `tap_io` only to let the connection's address through as `ConnectInfo`.
        let listener = TlsListener::new(listener, acceptor).tap_io(|_| {});
        let server = axum::serve(listener, service)
            .with_graceful_shutdown(async move { stopped.notified().await });
        tokio::spawn(async move { server.await })
    } else {
        let server = axum::serve(listener, service)
            .with_graceful_shutdown(async move { stopped.notified().await });
        tokio::spawn(async move { server.await })
    };
    if let Some(token) = mailbridge_web::setup_token(&store)
        .await
        .context("failed to make the one-time setup link of the web UI")?
    {
        // Standard output, not the log: logs never carry a token.
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        println!(
            "setup link (creates the first administrator of the web UI; works once, for {} minutes): {scheme}://{host}/setup?token={}",
            mailbridge_web::SETUP_LINK_LIFETIME.as_secs() / 60,
            token.expose_secret()
        );
        tracing::info!("no web UI user yet: one-time setup link printed on standard output");
    }
    println!("listening on {scheme}://{addr}");
    tracing::info!(%addr, backend, instance = instance.as_str(), "mailbridge serve started");

    let bound = Duration::from_secs(args.shutdown_timeout);
    let started = std::time::Instant::now();
    tokio::select! {
        ended = &mut server => {
            ended.context("the HTTP server task failed")?.context("the HTTP server stopped")?;
        }
        signal = stop_signal => {
            tracing::info!(signal, timeout_secs = args.shutdown_timeout, "stopping: no new connections, waiting for requests in flight");
            stop.notify_one();
            if let Ok(ended) = tokio::time::timeout(bound, &mut server).await {
                ended.context("the HTTP server task failed")?.context("the HTTP server stopped")?;
            } else {
                server.abort();
                tracing::warn!(timeout_secs = args.shutdown_timeout, "requests still in flight after the shutdown timeout were cut off");
            }
        }
    }
    // Watchers finish the message they deliver and give their leases back; the
    // outbox sender finishes the message it hands over; all within the same bound.
    daemon
        .stop(
            bound
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(1)),
        )
        .await;
    metrics_stop.cancel();
    let _ = following.await;
    store.close().await;
    tracing::info!("mailbridge serve stopped");
    Ok(())
}

/// Listens for SIGTERM and Ctrl-C (SIGINT) from now on; the future ends with the
/// name of the first that arrives.
fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// The host's name, for the default instance name.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// `--public-url`: an `http://` or `https://` address with a host, without a query.
fn parse_public_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| {
            "give an http:// or https:// address, e.g. https://mailbridge.example.com".to_owned()
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(['?', '#']) || text.chars().any(char::is_whitespace) {
        return Err(
            "give the address with its host and no query, e.g. https://mailbridge.example.com:8025"
                .to_owned(),
        );
    }
    Ok(text.trim_end_matches('/').to_owned())
}
