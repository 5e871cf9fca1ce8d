//! The sandbox: the emulated tenant as a running service, for `mailbridge sandbox` and
//! `mailbridge-testkit serve`, with a summary of what it serves and how to sign in.

use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;

use crate::crypto::TestCa;
use crate::emulator::Emulator;
use crate::mailservers::MailServers;
use crate::model::{PermissionKind, TenantModel};
use crate::server::EmulatorServer;

/// How to start a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub model: TenantModel,
    /// Where the HTTP endpoints listen (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Start Dovecot and Postfix behind IMAP, POP3, SMTP, Graph and EWS.
    pub mail_servers: bool,
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    server: EmulatorServer,
    mail: Option<MailServers>,
    ca_file: Option<std::path::PathBuf>,
}

impl Sandbox {
    /// Starts the HTTP endpoints, and the mail servers when asked.
    pub async fn start(options: SandboxOptions) -> anyhow::Result<Self> {
        let emulator = Emulator::new(options.model)?;
        let server = EmulatorServer::start(emulator, options.listen).await?;
        let (mail, ca_file) = if options.mail_servers {
            let ca = TestCa::generate()?;
            let mail = match MailServers::start(&server.emulator, &ca).await {
                Ok(m) => m,
                Err(e) => {
                    server.stop().await;
                    return Err(anyhow::Error::new(e).context(
                        "failed to start Dovecot and Postfix for the sandbox (install them with scripts/install-deps and run as root, or pass --no-mail-servers for the HTTP endpoints alone)",
                    ));
                }
            };
            let ca_file = mail.root().join("sandbox-ca.pem");
            std::fs::write(&ca_file, mail.ca_pem())
                .with_context(|| format!("failed to write {}", ca_file.display()))?;
            (Some(mail), Some(ca_file))
        } else {
            (None, None)
        };
        Ok(Self {
            server,
            mail,
            ca_file,
        })
    }

    /// The mail servers, when running.
    pub fn mail_servers(&self) -> Option<&MailServers> {
        self.mail.as_ref()
    }

    /// The emulator.
    pub fn emulator(&self) -> &Emulator {
        &self.server.emulator
    }

    /// What a person needs to use the sandbox: endpoints, tenants, users, apps.
    pub fn summary(&self) -> String {
        let base = self.server.base_url();
        let mut out = String::new();
        let _ = writeln!(out, "mailbridge sandbox: an emulated Microsoft 365 tenant");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  authority host   {base}   (e.g. {base}/<tenant>/oauth2/v2.0/token)"
        );
        let _ = writeln!(out, "  Graph root       {base}/v1.0");
        let _ = writeln!(out, "  EWS URL          {base}/EWS/Exchange.asmx");
        let _ = writeln!(
            out,
            "  Autodiscover     {base}/autodiscover/autodiscover.json"
        );
        if let (Some(mail), Some(ca)) = (&self.mail, &self.ca_file) {
            let _ = writeln!(
                out,
                "  IMAP             {} (STARTTLS), {} (TLS)",
                mail.imap(),
                mail.imaps()
            );
            let _ = writeln!(
                out,
                "  POP3             {} (STLS), {} (TLS)",
                mail.pop3(),
                mail.pop3s()
            );
            let _ = writeln!(out, "  SMTP submission  {} (STARTTLS)", mail.submission());
            let _ = writeln!(
                out,
                "  trusted CA       {}   (add it as the extra CA file; TLS name {})",
                ca.display(),
                mail.tls_name()
            );
        } else {
            let _ = writeln!(
                out,
                "  (no mail servers: Graph and EWS have no mailboxes to serve)"
            );
        }
        self.server.emulator.read(|m| {
            for t in &m.tenants {
                let _ = writeln!(out);
                let _ = writeln!(
                    out,
                    "tenant {} ({}), domains {}",
                    t.display_name,
                    t.id,
                    t.domains.join(", ")
                );
                for u in &t.users {
                    let _ = writeln!(
                        out,
                        "  user  {:<28} password {}{}",
                        u.upn,
                        u.password,
                        if u.mfa_required {
                            format!("  (MFA code {})", u.mfa_code)
                        } else {
                            String::new()
                        }
                    );
                }
                for a in &t.apps {
                    let _ = writeln!(out, "  app   {}  client id {}", a.display_name, a.client_id);
                    for s in &a.secrets {
                        let _ = writeln!(
                            out,
                            "        secret value {}  (expires {})",
                            s.value,
                            s.expires.date()
                        );
                    }
                    let perms: Vec<String> = a
                        .permissions
                        .iter()
                        .map(|p| {
                            format!(
                                "{} {}{}",
                                p.api.portal_name(),
                                p.value,
                                if p.kind == PermissionKind::Application {
                                    " (application)"
                                } else {
                                    ""
                                }
                            )
                        })
                        .collect();
                    if !perms.is_empty() {
                        let _ = writeln!(out, "        permissions: {}", perms.join(", "));
                    }
                }
            }
        });
        out
    }

    /// Stops everything.
    pub async fn stop(self) {
        if let Some(mail) = self.mail {
            mail.stop().await;
        }
        self.server.stop().await;
    }
}

/// Waits for Ctrl-C or SIGTERM, so the mail servers are stopped (not orphaned) however
/// the sandbox is ended.
pub async fn wait_for_shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut hup = signal(SignalKind::hangup()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            () = async { match hup.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Loads the tenant model (`tenant` TOML, or the built-in sandbox tenant), starts the
/// sandbox, prints its summary, and serves until Ctrl-C or SIGTERM: the whole of
/// `mailbridge sandbox` and `mailbridge-testkit serve`.
pub async fn run(
    tenant: Option<&std::path::Path>,
    listen: SocketAddr,
    mail_servers: bool,
) -> anyhow::Result<()> {
    let model = match tenant {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read tenant model {}", path.display()))?;
            TenantModel::from_toml(&text)
                .with_context(|| format!("failed to load tenant model {}", path.display()))?
        }
        None => TenantModel::sandbox(),
    };
    let sandbox = Sandbox::start(SandboxOptions {
        model,
        listen,
        mail_servers,
    })
    .await
    .with_context(|| {
        format!("failed to start the sandbox on {listen} (is the port free? use --listen)")
    })?;
    {
        // A closed stdout (`| head`) must not stop the sandbox.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", sandbox.summary());
        let _ = writeln!(out, "Press Ctrl-C to stop.");
        let _ = out.flush();
    }
    wait_for_shutdown_signal().await;
    sandbox.stop().await;
    Ok(())
}
