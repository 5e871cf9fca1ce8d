//! Exchange Online's rules for who may open which mailbox over which protocol, used by
//! the Dovecot/Postfix judge hook.
//!
//! Dovecot's Lua passdb hands every credential (bearer token or password) to
//! `POST /_testkit/judge` with the mailbox (`user`), the service (`imap`, `pop3`, `smtp`)
//! and the SASL mechanism. The emulator answers in plain text:
//!
//! ```text
//! allow            |  deny
//! <empty>          |  <the text the client sees>
//! <log reason>     |  <log reason>
//! ```
//!
//! The rules themselves are plain functions in [`rules`]. Every judgement is recorded
//! with [`Emulator::record`] (surface `imap-judge`, `pop3-judge`, `smtp-judge`; the
//! credential only as a truncated SHA-256) so tests can assert why a login failed. The
//! judge route itself is not recorded by the HTTP middleware, so the credential never
//! lands in the request log in clear.

pub mod rules;

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::emulator::{Emulator, RecordedRequest};
use rules::{Context, Denial, Principal, Service};

/// The path Dovecot's Lua passdb posts to.
pub const JUDGE_PATH: &str = "/_testkit/judge";

/// The judge routes (`/_testkit/judge`).
pub fn router() -> Router<Emulator> {
    Router::new().route(JUDGE_PATH, post(judge_route))
}

#[derive(Debug, Deserialize)]
struct JudgeForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    mechanism: String,
    #[serde(default)]
    credential: String,
}

async fn judge_route(State(emulator): State<Emulator>, body: axum::body::Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<JudgeForm>(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed judge request").into_response();
    };
    let judgement = judge(
        &emulator,
        &form.user,
        &form.service,
        &form.mechanism,
        &form.credential,
    );
    let text = match &judgement.outcome {
        Ok(_) => format!("allow\n\n{}\n", judgement.log),
        Err(_) => format!("deny\n{}\n{}\n", judgement.client_text, judgement.log),
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// The result of judging one credential.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// Who authenticated, or why not.
    pub outcome: Result<Principal, Denial>,
    /// What the client is told on denial (Exchange's wording for the service).
    pub client_text: String,
    /// The reason, for the log.
    pub log: String,
}

/// Checks propagation the way [`Emulator::exchange_change_effective`] does, without
/// taking the model lock again.
fn effective_fn(emulator: &Emulator) -> impl Fn(Option<OffsetDateTime>) -> bool {
    let delay = emulator.knobs().exchange_propagation_delay_secs;
    let now = emulator.now();
    move |at: Option<OffsetDateTime>| at.is_none_or(|at| now >= at + time::Duration::seconds(delay))
}

/// A short fingerprint of a credential for the log: never the credential itself.
fn fingerprint(credential: &str) -> String {
    let digest = crate::crypto::sha256(credential.as_bytes());
    digest
        .iter()
        .take(6)
        .fold("sha256:".to_owned(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Judges a credential presented to Dovecot or Postfix and records the judgement.
pub fn judge(
    emulator: &Emulator,
    user: &str,
    service: &str,
    mechanism: &str,
    credential: &str,
) -> Judgement {
    let mechanism = mechanism.to_ascii_uppercase();
    let password = matches!(mechanism.as_str(), "PLAIN" | "LOGIN");
    let parsed_service = Service::from_dovecot(service);
    let outcome = match parsed_service {
        None => Err(Denial::UnsupportedMechanism(format!("service {service}"))),
        Some(svc) => judge_credential(emulator, user, svc, &mechanism, credential),
    };
    let svc = parsed_service.unwrap_or(Service::Imap);
    let (client_text, log) = match &outcome {
        Ok(p) => (
            String::new(),
            format!("{} may open {user} over {}", p.label(), svc.name()),
        ),
        Err(d) => (rules::client_text(svc, d, password), d.explain()),
    };
    emulator.record(RecordedRequest {
        surface: format!("{}-judge", svc.name()),
        method: mechanism.clone(),
        uri: format!("{}://{}", svc.name(), user.to_ascii_lowercase()),
        headers: vec![
            (
                "x-verdict".to_owned(),
                if outcome.is_ok() { "allow" } else { "deny" }.to_owned(),
            ),
            (
                "x-reason".to_owned(),
                outcome.as_ref().err().map_or("ok", Denial::code).to_owned(),
            ),
            (
                "x-principal".to_owned(),
                outcome.as_ref().map(Principal::label).unwrap_or_default(),
            ),
            ("x-credential".to_owned(), fingerprint(credential)),
        ],
        body: log.clone(),
        status: if outcome.is_ok() { 200 } else { 403 },
        at: emulator.now(),
    });
    if let Err(d) = &outcome {
        tracing::info!(user, service, mechanism, reason = d.code(), "judge denied");
    }
    Judgement {
        outcome,
        client_text,
        log,
    }
}

fn judge_credential(
    emulator: &Emulator,
    user: &str,
    service: Service,
    mechanism: &str,
    credential: &str,
) -> Result<Principal, Denial> {
    let effective = effective_fn(emulator);
    match mechanism {
        "OAUTHBEARER" if !generic_server(emulator, user) => Err(Denial::UnsupportedMechanism(
            "OAUTHBEARER (Exchange Online takes XOAUTH2 only)".to_owned(),
        )),
        "XOAUTH2" | "OAUTHBEARER" => {
            let token = emulator
                .validate_access_token(credential)
                .map_err(Denial::TokenInvalid)?;
            emulator.read(|model| {
                let ctx = Context {
                    model,
                    effective: &effective,
                };
                rules::judge_token(&ctx, &token, user, service)
            })
        }
        "PLAIN" | "LOGIN" => {
            let store_secret = emulator
                .mail_store()
                .map(|s| s.config().store_secret.clone())
                .unwrap_or_default();
            if service == Service::Imap
                && !store_secret.is_empty()
                && rules::constant_time_eq(credential.as_bytes(), store_secret.as_bytes())
            {
                return Ok(Principal::Store);
            }
            emulator.read(|model| {
                let ctx = Context {
                    model,
                    effective: &effective,
                };
                rules::judge_password(&ctx, user, credential, service)
            })
        }
        other => Err(Denial::UnsupportedMechanism(other.to_owned())),
    }
}

/// Whether `user`'s tenant models a generic (non-Exchange-Online) server: Basic auth on,
/// and OAUTHBEARER (RFC 7628) accepted besides XOAUTH2.
fn generic_server(emulator: &Emulator, user: &str) -> bool {
    emulator.read(|m| m.user(user).is_some_and(|(t, _)| t.basic_auth_enabled))
}

/// The principal that most recently authenticated to SMTP as `mailbox` (from the
/// judge's records).
pub fn smtp_principal_for(emulator: &Emulator, mailbox: &str) -> Option<Principal> {
    let uri = format!("smtp://{}", mailbox.to_ascii_lowercase());
    emulator
        .requests()
        .into_iter()
        .rev()
        .find(|r| {
            r.surface == "smtp-judge" && r.uri == uri && r.header("x-verdict") == Some("allow")
        })
        .and_then(|r| r.header("x-principal").and_then(Principal::from_label))
}

/// Exchange's SendAs check for a message submitted by whoever authenticated as
/// `authenticated` with envelope sender `sender`. `Err` carries the SMTP reply
/// (`554 5.2.252 SendAsDenied; ...`). Recorded as surface `smtp-sendas`.
pub fn check_send_as(emulator: &Emulator, authenticated: &str, sender: &str) -> Result<(), String> {
    let principal = smtp_principal_for(emulator, authenticated)
        .unwrap_or_else(|| Principal::User(authenticated.to_owned()));
    let effective = effective_fn(emulator);
    let outcome = emulator.read(|model| {
        let ctx = Context {
            model,
            effective: &effective,
        };
        rules::may_send_as(&ctx, &principal, authenticated, sender)
    });
    emulator.record(RecordedRequest {
        surface: "smtp-sendas".to_owned(),
        method: "MAIL".to_owned(),
        uri: format!("smtp://{}", authenticated.to_ascii_lowercase()),
        headers: vec![
            ("x-sender".to_owned(), sender.to_owned()),
            ("x-principal".to_owned(), principal.label()),
            (
                "x-verdict".to_owned(),
                if outcome.is_ok() { "allow" } else { "deny" }.to_owned(),
            ),
        ],
        body: outcome
            .as_ref()
            .err()
            .map(Denial::explain)
            .unwrap_or_default(),
        status: if outcome.is_ok() { 200 } else { 403 },
        at: emulator.now(),
    });
    outcome.map_err(|_| {
        format!(
            "554 5.2.252 SendAsDenied; {authenticated} not allowed to send as {sender}; STOREDRV.Submit; Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.[EndDiagnosticData] [Hostname={}]",
            rules::FRONTEND_HOST
        )
    })
}
