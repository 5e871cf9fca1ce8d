//! The sandbox: the emulated tenant as a running service, for `mailbridge sandbox` and
//! `mailbridge-testkit serve`, with a summary of what it serves and how to sign in.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::emulator::Emulator;
use crate::model::{PermissionKind, TenantModel};
use crate::server::EmulatorServer;

/// How to start a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub model: TenantModel,
    /// Where the HTTP endpoints listen (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    server: EmulatorServer,
}

impl Sandbox {
    /// Starts the HTTP endpoints.
    pub async fn start(options: SandboxOptions) -> anyhow::Result<Self> {
        let emulator = Emulator::new(options.model)?;
        let server = EmulatorServer::start(emulator, options.listen).await?;
        Ok(Self { server })
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
        self.server.stop().await;
    }
}
