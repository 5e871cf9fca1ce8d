//! What the daemon is told to do with received mail, as stored and as the API takes
//! it: a [`SinkSpec`] per sink (its settings without its secret) and a [`Watch`] per
//! account (whether its watcher runs, the folder, the poll interval, the routes).
//!
//! [`build_sink`] turns a spec and its secret into a working sink; [`SinkSpec::problems`]
//! and [`Watch::problems`] say what is wrong with one before it is stored, each
//! problem naming its field, so the API can answer 422 with the field at fault.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailbridge_sinks::SinkError;
use mailbridge_sinks::address::AddressPolicy;
use mailbridge_sinks::attachments::{AttachmentsOptions, AttachmentsSink, DEFAULT_MAX_ATTACHMENTS};
use mailbridge_sinks::folder::FolderSink;
use mailbridge_sinks::relay::{RelayConfig, RelaySink};
use mailbridge_sinks::route::Route;
use mailbridge_sinks::webhook::{WebhookConfig, WebhookSink};
use mailbridge_smtp::client::SmtpConfig;
use mailbridge_types::config::{EndpointConfig, Transport};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::watcher::AnySink;

/// The longest poll interval taken (a day).
pub const MAX_POLL_INTERVAL_SECS: u64 = 86_400;
/// The shortest poll interval taken.
pub const MIN_POLL_INTERVAL_SECS: u64 = 1;
/// The most routes an account has.
pub const MAX_ROUTES: usize = 100;

fn yes() -> bool {
    true
}

/// A sink's settings. Its secret (a webhook's signing secret, a relay's password) is
/// not part of it: it is sealed apart and never read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkSpec {
    /// Each message a `.eml` file in `path`, named after its idempotency key.
    Folder { path: PathBuf },
    /// Each message a file in the Maildir `path` (`new/<idempotency key>`), for mail
    /// programs and IMAP servers to read.
    Maildir { path: PathBuf },
    /// Each message's attachments under `path`, one directory per message with a
    /// JSON sidecar.
    Attachments {
        path: PathBuf,
        /// A message with more attachments is refused, not cut short.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_attachments: Option<usize>,
    },
    /// A JSON POST per message, signed with the sink's secret (HMAC-SHA256).
    Webhook {
        url: url::Url,
        /// Loopback, private and link-local receivers are refused unless this is set.
        #[serde(default)]
        allow_private_addresses: bool,
        /// The whole request, connection to answer (default 30 s).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
        /// Messages up to this size travel inline (default 1 MiB), larger as a link.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inline_mime_max: Option<u64>,
        /// An extra trusted CA (PEM file) for an `https` receiver.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extra_ca_file: Option<PathBuf>,
        /// The receiver's own certificate, pinned (`sha256:<hex>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_pin: Option<String>,
    },
    /// Each message, bytes unchanged, to an SMTP relay.
    Relay {
        /// Where the relay is: `transport = "smtp"`, host, port, TLS mode, trust.
        server: EndpointConfig,
        /// `AUTH PLAIN` with this login (the password is the sink's secret).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// The envelope sender; unset: the message's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        envelope_from: Option<String>,
        /// The envelope recipients; empty: the message's To, Cc and Bcc.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recipients: Vec<String>,
        /// Put a `Received:` trace header in front of the message (default true).
        #[serde(default = "yes")]
        received_header: bool,
    },
}

/// A problem with a spec: the field (a JSON path) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub field: String,
    pub message: String,
}

impl SpecProblem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn check_path(field: &str, path: &Path, problems: &mut Vec<SpecProblem>) {
    if !path.is_absolute() {
        problems.push(SpecProblem::new(
            field,
            format!(
                "{} is not an absolute path; give the whole path (the daemon's working directory is not yours)",
                path.display()
            ),
        ));
    }
}

impl SinkSpec {
    /// The kind, as in the `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkSpec::Folder { .. } => "folder",
            SinkSpec::Maildir { .. } => "maildir",
            SinkSpec::Attachments { .. } => "attachments",
            SinkSpec::Webhook { .. } => "webhook",
            SinkSpec::Relay { .. } => "relay",
        }
    }

    /// Whether this kind has a secret, and whether it must: a webhook signs with one
    /// always; a relay has one (its password) when it signs in.
    pub fn secret_needed(&self) -> SecretNeed {
        match self {
            SinkSpec::Webhook { .. }
            | SinkSpec::Relay {
                username: Some(_), ..
            } => SecretNeed::Required,
            _ => SecretNeed::None,
        }
    }

    /// What is wrong with these settings, without connecting anywhere.
    pub fn problems(&self) -> Vec<SpecProblem> {
        let mut problems = Vec::new();
        match self {
            SinkSpec::Folder { path } | SinkSpec::Maildir { path } => {
                check_path("path", path, &mut problems);
            }
            SinkSpec::Attachments {
                path,
                max_attachments,
            } => {
                check_path("path", path, &mut problems);
                if *max_attachments == Some(0) {
                    problems.push(SpecProblem::new("max_attachments", "must be at least 1"));
                }
            }
            SinkSpec::Webhook {
                url,
                timeout_secs,
                extra_ca_file,
                tls_pin,
                ..
            } => {
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    problems.push(SpecProblem::new(
                        "url",
                        format!("{url} is not an http or https address with a host"),
                    ));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    problems.push(SpecProblem::new(
                        "url",
                        "must not carry a user or password (the requests are signed with the sink's secret)",
                    ));
                }
                if matches!(timeout_secs, Some(t) if *t == 0 || *t > 600) {
                    problems.push(SpecProblem::new(
                        "timeout_secs",
                        "must be between 1 and 600 seconds",
                    ));
                }
                if let Some(file) = extra_ca_file {
                    check_path("extra_ca_file", file, &mut problems);
                }
                if let Some(pin) = tls_pin
                    && let Err(e) = mailbridge_tls::Pin::parse(pin)
                {
                    problems.push(SpecProblem::new("tls_pin", e.to_string()));
                }
            }
            SinkSpec::Relay {
                server, recipients, ..
            } => {
                if server.transport != Transport::Smtp {
                    problems.push(SpecProblem::new(
                        "server.transport",
                        "a relay is an SMTP server: set transport = \"smtp\"",
                    ));
                }
                for p in server.problems() {
                    problems.push(SpecProblem::new(format!("server.{}", p.setting), p.problem));
                }
                if recipients.len() > 1000 {
                    problems.push(SpecProblem::new("recipients", "at most 1000 recipients"));
                }
            }
        }
        problems
    }
}

/// Whether a sink kind has a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretNeed {
    None,
    Required,
}

/// What an account's watcher does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// Whether the watcher runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The folder watched (default INBOX; Graph and EWS: a well-known name or path).
    #[serde(default = "inbox")]
    pub folder: String,
    /// Seconds between polls where IMAP IDLE is not available (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_secs: Option<u64>,
    /// Ordered rules: the first that matches decides a message's sinks.
    pub routes: Vec<Route>,
}

fn inbox() -> String {
    "INBOX".into()
}

impl Watch {
    /// The poll interval in force.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs.unwrap_or(60))
    }

    /// What is wrong with it; `sink_names` are the sinks that exist.
    pub fn problems(&self, sink_names: &[&str]) -> Vec<SpecProblem> {
        let mut problems = Vec::new();
        if self.folder.trim().is_empty() || self.folder.chars().any(char::is_control) {
            problems.push(SpecProblem::new(
                "folder",
                "must be a folder name without control characters",
            ));
        }
        if let Some(s) = self.poll_interval_secs
            && !(MIN_POLL_INTERVAL_SECS..=MAX_POLL_INTERVAL_SECS).contains(&s)
        {
            problems.push(SpecProblem::new(
                "poll_interval_secs",
                format!(
                    "must be between {MIN_POLL_INTERVAL_SECS} and {MAX_POLL_INTERVAL_SECS} seconds"
                ),
            ));
        }
        if self.routes.len() > MAX_ROUTES {
            problems.push(SpecProblem::new(
                "routes",
                format!("at most {MAX_ROUTES} routes"),
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.sinks.is_empty() {
                problems.push(SpecProblem::new(
                    format!("routes[{i}].sinks"),
                    "names no sink; a route sends a message to at least one",
                ));
            }
            for (j, sink) in route.sinks.iter().enumerate() {
                if !sink_names.contains(&sink.as_str()) {
                    problems.push(SpecProblem::new(
                        format!("routes[{i}].sinks[{j}]"),
                        format!(
                            "there is no sink called {sink:?}; create it first (POST /api/v1/sinks)"
                        ),
                    ));
                }
            }
        }
        problems
    }
}

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("sink {name}: {problem}")]
    Invalid { name: String, problem: SpecProblem },
    #[error("sink {name} has no secret stored: set it again with its secret")]
    NoSecret { name: String },
    #[error("sink {name}: failed to read {}", path.display())]
    ReadFile {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sink {name} could not be set up")]
    Sink {
        name: String,
        #[source]
        source: SinkError,
    },
}

/// A working sink from its settings and secret.
pub async fn build_sink(
    name: &str,
    spec: &SinkSpec,
    secret: Option<SecretString>,
) -> Result<AnySink, BuildError> {
    if let Some(problem) = spec.problems().into_iter().next() {
        return Err(BuildError::Invalid {
            name: name.to_owned(),
            problem,
        });
    }
    let sink_error = |source| BuildError::Sink {
        name: name.to_owned(),
        source,
    };
    Ok(match spec {
        SinkSpec::Folder { path } => {
            AnySink::Folder(FolderSink::open(path).await.map_err(sink_error)?)
        }
        SinkSpec::Maildir { path } => {
            AnySink::Folder(FolderSink::open_maildir(path).await.map_err(sink_error)?)
        }
        SinkSpec::Attachments {
            path,
            max_attachments,
        } => AnySink::Attachments(
            AttachmentsSink::open(
                path,
                AttachmentsOptions {
                    max_attachments: max_attachments.unwrap_or(DEFAULT_MAX_ATTACHMENTS),
                    ..AttachmentsOptions::default()
                },
            )
            .await
            .map_err(sink_error)?,
        ),
        SinkSpec::Webhook {
            url,
            allow_private_addresses,
            timeout_secs,
            inline_mime_max,
            extra_ca_file,
            tls_pin,
        } => {
            let secret = secret.ok_or_else(|| BuildError::NoSecret {
                name: name.to_owned(),
            })?;
            let mut config = WebhookConfig::new(url.clone(), secret);
            if *allow_private_addresses {
                config.addresses = AddressPolicy::AllowPrivate;
            }
            if let Some(t) = timeout_secs {
                config.timeout = Duration::from_secs(*t);
            }
            if let Some(m) = inline_mime_max {
                config.inline_mime_max = *m;
            }
            if let Some(file) = extra_ca_file {
                config.trust.extra_ca_pem =
                    Some(tokio::fs::read_to_string(file).await.map_err(|source| {
                        BuildError::ReadFile {
                            name: name.to_owned(),
                            path: file.clone(),
                            source,
                        }
                    })?);
            }
            // Checked by problems() above.
            config.trust.pin = tls_pin
                .as_deref()
                .and_then(|p| mailbridge_tls::Pin::parse(p).ok());
            AnySink::Webhook(Box::new(WebhookSink::new(config).map_err(sink_error)?))
        }
        SinkSpec::Relay {
            server,
            username,
            envelope_from,
            recipients,
            received_header,
        } => {
            let mut smtp = SmtpConfig::new(&server.host, server.port(), server.tls_mode());
            smtp.trust =
                mailbridge_mailbox::connect::trust(server).map_err(|e| BuildError::Invalid {
                    name: name.to_owned(),
                    problem: SpecProblem::new("server", e.to_string()),
                })?;
            let mut config = RelayConfig::new(smtp);
            if let Some(user) = username {
                let password = secret.ok_or_else(|| BuildError::NoSecret {
                    name: name.to_owned(),
                })?;
                config.login = Some((user.clone(), password));
            }
            config.envelope_from.clone_from(envelope_from);
            config.recipients.clone_from(recipients);
            config.received_header = *received_header;
            AnySink::Relay(Box::new(RelaySink::new(config)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn sink_specs_read_as_documented_and_refuse_unknown_fields() {
        let s: SinkSpec = parse(r#"{"kind":"folder","path":"/srv/mail"}"#).unwrap();
        assert_eq!(s.kind(), "folder");
        let m: SinkSpec = parse(r#"{"kind":"maildir","path":"/srv/Maildir"}"#).unwrap();
        assert_eq!(m.kind(), "maildir");
        assert!(m.problems().is_empty());
        let m: SinkSpec = parse(r#"{"kind":"maildir","path":"Maildir"}"#).unwrap();
        assert_eq!(m.problems()[0].field, "path");
        assert!(s.problems().is_empty());
        let e = parse::<SinkSpec>(r#"{"kind":"folder","path":"/srv","colour":"red"}"#).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse::<SinkSpec>(r#"{"kind":"fax","path":"/srv"}"#).unwrap_err();
        assert!(e.contains("fax"), "{e}");
        let s: SinkSpec = parse(
            r#"{"kind":"relay","server":{"transport":"smtp","host":"relay.example","port":25,"tls":"none"},"envelope_from":"m365@example.org"}"#,
        )
        .unwrap();
        assert_eq!(s.secret_needed(), SecretNeed::None);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        let s: SinkSpec = parse(r#"{"kind":"webhook","url":"https://hooks.example/in"}"#).unwrap();
        assert_eq!(s.secret_needed(), SecretNeed::Required);
    }

    #[test]
    fn problems_name_their_field() {
        let s: SinkSpec = parse(r#"{"kind":"folder","path":"relative/dir"}"#).unwrap();
        assert_eq!(s.problems()[0].field, "path");
        let s: SinkSpec = parse(
            r#"{"kind":"webhook","url":"ftp://x.example/","timeout_secs":0,"tls_pin":"sha256:zz"}"#,
        )
        .unwrap();
        let fields: Vec<_> = s.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["url", "timeout_secs", "tls_pin"]);
        let s: SinkSpec = parse(
            r#"{"kind":"relay","server":{"transport":"imap","host":"relay.example","port":0}}"#,
        )
        .unwrap();
        let fields: Vec<_> = s.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["server.transport", "server.port"]);

        let w: Watch = parse(
            r#"{"folder":"INBOX","poll_interval_secs":0,"routes":[{"name":"all","sinks":["archive","nope"]}]}"#,
        )
        .unwrap();
        let fields: Vec<_> = w
            .problems(&["archive"])
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["poll_interval_secs", "routes[0].sinks[1]"]);
    }

    #[test]
    fn a_watch_has_sane_defaults() {
        let w: Watch = parse(r#"{"routes":[]}"#).unwrap();
        assert!(w.enabled);
        assert_eq!(w.folder, "INBOX");
        assert_eq!(w.poll_interval(), Duration::from_mins(1));
    }
}
