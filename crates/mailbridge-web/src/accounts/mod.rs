//! The account pages: the list (`/accounts`), an account's detail (`/accounts/{id}`:
//! its watcher's state and recent history, sign-in, routes and sinks, recent messages
//! and parked deliveries, Test receive / Test send), the test results shown live as
//! their steps finish ([`live`]), and the add / edit wizard ([`wizard`]).
//!
//! Who reaches which account is `mailbridge-server`'s `account_access`, asked with a
//! caller made from the signed-in person (their role, acting for their name), so the
//! pages and the API refuse the same things. Saving and testing call the API's own
//! functions (`api_config::add_account`, `change_account`, `run_check`).

#![expect(
    clippy::result_large_err,
    reason = "a helper that fails returns the finished page to answer with"
)]

pub(crate) mod form;
pub(crate) mod live;
pub(crate) mod wizard;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_accounts::check::Report;
use mailbridge_connector::watcher::state::{WatcherEvent, WatcherState};
use mailbridge_server::account_access::{account_for, reach};
use mailbridge_server::api_token::Caller;
use mailbridge_server::daemon::DaemonHandle;
use mailbridge_server::problem::Problem;
use mailbridge_store::{AccountState, WebSession};
use mailbridge_types::access::{Action, allowed};
use mailbridge_types::config::{AccountConfig, EndpointConfig, SignInMethod, Transport};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::Web;
use crate::i18n::Tr;
use crate::pages::{Visit, Who, badge, csrf_refused, message, page, session, store_failed, who};
use crate::session::same;

/// How many watcher events each account keeps for its page.
const HISTORY: usize = 20;

/// The last watcher events of each account (by name), newest last, as the daemon
/// announces them while the pages run.
#[derive(Clone, Default)]
pub(crate) struct History(Arc<Mutex<HashMap<String, VecDeque<WatcherEvent>>>>);

impl History {
    /// Follows the daemon's watcher events (when there is a daemon and a runtime):
    /// a task that ends when the daemon's event channel closes.
    pub(crate) fn follow(daemon: Option<&DaemonHandle>) -> Self {
        let history = Self::default();
        let (Some(daemon), Ok(runtime)) = (daemon, tokio::runtime::Handle::try_current()) else {
            return history;
        };
        let mut events = daemon.subscribe();
        for e in daemon.states() {
            history.push(e);
        }
        let kept = history.clone();
        runtime.spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => kept.push(e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        history
    }

    fn push(&self, event: WatcherEvent) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let list = all.entry(event.account.clone()).or_default();
        if list
            .back()
            .is_some_and(|last| last.at == event.at && last.state == event.state)
        {
            return;
        }
        list.push_back(event);
        while list.len() > HISTORY {
            list.pop_front();
        }
    }

    /// The events of `account`, newest first.
    fn of(&self, account: &str) -> Vec<WatcherEvent> {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(account)
            .map(|l| l.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

const UTC_TEXT: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
const ISO: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// A time as pages show it: `datetime` (ISO 8601, UTC) and the UTC text, which the
/// page's script turns into the viewer's own time zone.
#[derive(Debug, Clone)]
pub(crate) struct When {
    pub(crate) iso: String,
    pub(crate) text: String,
}

impl When {
    pub(crate) fn of(t: OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        Self {
            iso: t.format(ISO).unwrap_or_default(),
            text: t.format(UTC_TEXT).unwrap_or_default(),
        }
    }
}

/// The signed-in person on an account page.
pub(crate) struct Signed {
    pub(crate) session: WebSession,
    pub(crate) t: Tr,
    pub(crate) who: Who,
    /// The person as the API's access rules see them.
    pub(crate) caller: Caller,
}

impl Signed {
    /// The page header's person (`who` of a page).
    #[expect(
        clippy::unnecessary_wraps,
        reason = "pages take the header's person as an option"
    )]
    pub(crate) fn who(&self) -> Option<Who> {
        Some(Who {
            line: self.who.line.clone(),
            csrf: self.who.csrf.clone(),
            role: self.who.role,
        })
    }

    /// Whether a form's `csrf` is this session's.
    pub(crate) fn csrf_ok(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|s| same(s, &self.session.csrf_token))
    }

    pub(crate) fn may_write(&self) -> bool {
        allowed(self.session.user.role, Action::WriteAccount { own: true })
    }
}

/// The signed-in person, or the answer: to the sign-in page, or the store's failure.
pub(crate) async fn signed(web: &Web, visit: &Visit) -> Result<Signed, Response> {
    let Some(session) = session(web, visit).await? else {
        return Err(Redirect::to("/signin").into_response());
    };
    let t = visit.tr_for(&session.user);
    let who = who(t, &session);
    let caller = Caller::person(&session.user, &visit.addr);
    Ok(Signed {
        session,
        t,
        who,
        caller,
    })
}

/// The daemon, or the page that says it is not running.
pub(crate) fn daemon(web: &Web, t: Tr) -> Result<&DaemonHandle, Response> {
    web.daemon.as_ref().ok_or_else(|| {
        message(
            StatusCode::SERVICE_UNAVAILABLE,
            t,
            "error-title",
            "accounts-not-running",
        )
    })
}

/// The page answering a refusal of the API's functions: 403 and 404 in the page's
/// words; anything else with the API's own detail (it says what to do).
pub(crate) fn refused(t: Tr, problem: &Problem) -> Response {
    match problem.status {
        StatusCode::FORBIDDEN => message(
            StatusCode::FORBIDDEN,
            t,
            "forbidden-title",
            "accounts-forbidden",
        ),
        StatusCode::NOT_FOUND => message(
            StatusCode::NOT_FOUND,
            t,
            "accounts-not-found-title",
            "accounts-not-found",
        ),
        s if s.is_server_error() => message(s, t, "error-title", "error-store"),
        s => page(
            s,
            &crate::pages::MessagePage {
                t,
                who: None,
                title: t.get("accounts-refused-title"),
                message: problem.detail.clone(),
            },
        ),
    }
}

/// The sign-in words of an account: password, user sign-in, app-only.
fn sign_in_text(t: Tr, method: SignInMethod) -> String {
    t.get(match method {
        SignInMethod::Password => "accounts-sign-in-password",
        SignInMethod::Delegated => "accounts-sign-in-delegated",
        SignInMethod::AppOnly => "accounts-sign-in-app-only",
    })
}

/// `imap 127.0.0.1:993` (the URL for Graph and EWS).
fn side_text(e: Option<&EndpointConfig>) -> String {
    match e {
        None => "—".to_owned(),
        Some(e) if matches!(e.transport, Transport::Graph | Transport::Ews) => {
            format!("{} {}", transport_name(e.transport), e.host)
        }
        Some(e) => match e.port {
            Some(p) => format!("{} {}:{p}", transport_name(e.transport), e.host),
            None => format!("{} {}", transport_name(e.transport), e.host),
        },
    }
}

pub(crate) fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Graph => "Graph",
        Transport::Imap => "IMAP",
        Transport::Pop3 => "POP3",
        Transport::Smtp => "SMTP",
        Transport::Ews => "EWS",
    }
}

// ---- list ----

struct ListRow {
    id: String,
    name: String,
    address: String,
    sign_in: String,
    badge: &'static str,
    state: String,
}

#[derive(Template)]
#[template(path = "accounts_list.html")]
struct ListPage {
    t: Tr,
    who: Option<Who>,
    rows: Vec<ListRow>,
    may_add: bool,
}

/// `/accounts`: the accounts the person may see, each with its state.
pub(crate) async fn list(State(web): State<Arc<Web>>, visit: Visit) -> Response {
    let s = match signed(&web, &visit).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let t = s.t;
    let daemon = match daemon(&web, t) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let reach = match reach(&s.caller, daemon.store()).await {
        Ok(r) => r,
        Err(p) => return refused(t, &p),
    };
    let accounts =
        match mailbridge_accounts::catalog::by_id(daemon.store(), daemon.config_file()).await {
            Ok(a) => a,
            Err(e) => return store_failed(t, &e),
        };
    let states: HashMap<String, WatcherEvent> = (web.watchers)()
        .into_iter()
        .map(|e| (e.account.clone(), e))
        .collect();
    let mut rows: Vec<ListRow> = accounts
        .into_iter()
        .filter(|(id, _)| reach.as_ref().is_none_or(|r| r.contains(id)))
        .map(|(id, (account, _))| {
            let (badge, state, _) = badge(t, states.get(&account.name).map(|e| &e.state));
            ListRow {
                id: id.to_string(),
                sign_in: sign_in_text(t, account.sign_in),
                name: account.name,
                address: account.address,
                badge,
                state,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    page(
        StatusCode::OK,
        &ListPage {
            t,
            who: s.who(),
            rows,
            may_add: s.may_write(),
        },
    )
}

// ---- detail ----

struct HistoryRow {
    at: When,
    badge: &'static str,
    state: String,
    detail: Option<String>,
}

struct RouteRow {
    name: String,
    sinks: String,
}

struct MessageRow {
    at: When,
    what: String,
    state: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "accounts_detail.html")]
struct DetailPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    id: String,
    account: AccountConfig,
    sign_in: String,
    incoming: String,
    outgoing: String,
    owner: Option<String>,
    badge: &'static str,
    state: String,
    state_at: Option<When>,
    /// The last error with its fix (the watcher's reason), if the state has one.
    last_error: Option<String>,
    /// The cause and fix of an AADSTS code in the last error, in the viewer's language.
    last_error_fix: Option<String>,
    delegated: bool,
    /// "Signed in" or why not, for delegated accounts.
    signed_in: Option<String>,
    needs_sign_in: Option<String>,
    history: Vec<HistoryRow>,
    watching: Option<bool>,
    routes: Vec<RouteRow>,
    messages: Vec<MessageRow>,
    parked: Vec<MessageRow>,
    may_write: bool,
    in_store: bool,
}

/// `/accounts/{id}`: one account, if the person may read it.
pub(crate) async fn detail(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path(id): Path<String>,
) -> Response {
    let s = match signed(&web, &visit).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let t = s.t;
    let daemon = match daemon(&web, t) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (id, account, _) = match account_for(&s.caller, daemon, &id, false).await {
        Ok(a) => a,
        Err(p) => return refused(t, &p),
    };
    let store = daemon.store();
    let owner = match store.account_owner(id).await {
        Ok(o) => o,
        Err(e) => return store_failed(t, &e),
    };
    let in_store = match store.account_by_id(id).await {
        Ok(a) => a.is_some(),
        Err(e) => return store_failed(t, &e),
    };
    let current = daemon.state_of(&account.name);
    let (badge_class, state, reason) = badge(t, current.as_ref().map(|e| &e.state));
    let last_error = match current.as_ref().map(|e| &e.state) {
        Some(WatcherState::WaitingUntil { .. } | WatcherState::NeedsSignIn { .. }) => reason,
        _ => None,
    };
    let delegated = account.sign_in == SignInMethod::Delegated;
    let (signed_in, needs_sign_in) = if delegated {
        match store.account_state_by_id(id).await {
            Ok(Some(AccountState::SignedIn)) => match store.signed_in_user(id).await {
                // Who signed in, as the Authorize page keeps it.
                Ok(Some(user)) => (Some(t.with("authorize-signed-in-as", "user", &user)), None),
                Ok(None) => (Some(t.get("accounts-signed-in")), None),
                Err(e) => return store_failed(t, &e),
            },
            Ok(Some(AccountState::NeedsSignIn { reason })) => (None, Some(reason)),
            Ok(None) => (None, Some(t.get("accounts-not-signed-in"))),
            Err(e) => return store_failed(t, &e),
        }
    } else {
        (None, None)
    };
    let history = web
        .history
        .of(&account.name)
        .into_iter()
        .map(|e| {
            let (badge, state, detail) = badge(t, Some(&e.state));
            HistoryRow {
                at: When::of(e.at),
                badge,
                state,
                detail,
            }
        })
        .collect();
    let watch = match store.watch::<serde_json::Value>(id).await {
        Ok(w) => w,
        Err(e) => return store_failed(t, &e),
    };
    let watching = watch
        .as_ref()
        .map(|w| w.get("enabled").and_then(serde_json::Value::as_bool) != Some(false));
    let routes = watch
        .as_ref()
        .and_then(|w| w.get("routes"))
        .and_then(serde_json::Value::as_array)
        .map(|routes| {
            routes
                .iter()
                .map(|r| RouteRow {
                    name: r
                        .get("name")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    sinks: r
                        .get("sinks")
                        .and_then(serde_json::Value::as_array)
                        .map(|s| {
                            s.iter()
                                .filter_map(serde_json::Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let outbox = match store.outbox_list(Some(id)).await {
        Ok(o) => o,
        Err(e) => return store_failed(t, &e),
    };
    let messages = outbox
        .iter()
        .rev()
        .take(10)
        .map(|m| MessageRow {
            at: When::of(m.sent_at.unwrap_or(m.created_at)),
            what: if m.recipients.is_empty() {
                t.with("accounts-message-header", "size", &m.size)
            } else {
                t.with("accounts-message-to", "to", &m.recipients.join(", "))
            },
            state: m.state.as_str().to_owned(),
            error: m.last_error.clone(),
        })
        .collect();
    let parked = match store.parked_list(Some(id), None, 10).await {
        Ok(p) => p,
        Err(e) => return store_failed(t, &e),
    };
    let parked = parked
        .iter()
        .map(|p| MessageRow {
            at: When::of(p.parked_at),
            what: t.with2(
                "accounts-parked-what",
                ("route", &p.route),
                ("sinks", &p.remaining_sinks.join(", ")),
            ),
            state: t.with("accounts-parked-attempts", "attempts", &p.attempts),
            error: Some(p.last_error.clone()),
        })
        .collect();
    page(
        StatusCode::OK,
        &DetailPage {
            t,
            who: s.who(),
            csrf: s.session.csrf_token.clone(),
            id: id.to_string(),
            sign_in: sign_in_text(t, account.sign_in),
            incoming: side_text(account.incoming_side()),
            outgoing: side_text(if account.send {
                account.outgoing_side()
            } else {
                None
            }),
            owner,
            badge: badge_class,
            state,
            state_at: current.as_ref().map(|e| When::of(e.at)),
            last_error_fix: last_error
                .as_deref()
                .and_then(|e| crate::diagnosis::in_text(t, e)),
            last_error,
            delegated,
            signed_in,
            needs_sign_in,
            history,
            watching,
            routes,
            messages,
            parked,
            may_write: s.may_write(),
            in_store,
            account,
        },
    )
}

// ---- tests ----

/// One step of a test as the page shows it.
pub(crate) struct StepRow {
    pub(crate) ok: bool,
    pub(crate) name: String,
    pub(crate) ms: u128,
    pub(crate) detail: String,
    pub(crate) fix: Option<String>,
}

/// A test's result as the page shows it.
pub(crate) struct Outcome {
    pub(crate) title: String,
    pub(crate) ok: bool,
    pub(crate) summary: String,
    pub(crate) steps: Vec<StepRow>,
}

/// The test's name in the page's language.
pub(crate) fn test_title(t: Tr, receive: bool) -> String {
    t.get(if receive {
        "accounts-test-receive"
    } else {
        "accounts-test-send"
    })
}

/// A check's report as the page shows it.
pub(crate) fn outcome(t: Tr, receive: bool, report: &Report) -> Outcome {
    Outcome {
        title: test_title(t, receive),
        ok: report.ok,
        summary: t.get(if report.ok {
            "accounts-test-passed"
        } else {
            "accounts-test-failed"
        }),
        steps: report
            .steps
            .iter()
            .map(|s| StepRow {
                ok: s.ok,
                name: s.step.clone(),
                ms: s.elapsed_ms,
                detail: mailbridge_types::printable(&s.detail).into_owned(),
                // In the viewer's language from the fix's id (server words as they are).
                fix: crate::diagnosis::step_fix(t, s)
                    .map(|f| mailbridge_types::printable(&f).into_owned()),
            })
            .collect(),
    }
}

/// A check that could not run (409 `cannot-check`): one failed step with the API's
/// detail, which says what to change.
pub(crate) fn not_run(t: Tr, receive: bool, problem: &Problem) -> Outcome {
    Outcome {
        title: test_title(t, receive),
        ok: false,
        summary: t.get("accounts-test-not-run"),
        steps: vec![StepRow {
            ok: false,
            name: t.get("accounts-test-setup-step"),
            ms: 0,
            detail: problem.detail.clone(),
            fix: None,
        }],
    }
}

#[derive(Template)]
#[template(path = "accounts_test.html")]
struct TestPage {
    t: Tr,
    who: Option<Who>,
    csrf: String,
    id: String,
    name: String,
    outcome: Outcome,
    receive: bool,
    /// While the run goes on: its address (the Refresh link; the script polls it).
    poll: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct TestForm {
    csrf: Option<String>,
}

/// `POST /accounts/{id}/test/receive|send`: the API's check, its steps on a page.
pub(crate) async fn test(
    State(web): State<Arc<Web>>,
    visit: Visit,
    Path((id, kind)): Path<(String, String)>,
    Form(form): Form<TestForm>,
) -> Response {
    let s = match signed(&web, &visit).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let t = s.t;
    if !s.csrf_ok(form.csrf.as_deref()) {
        return csrf_refused(t);
    }
    let receive = match kind.as_str() {
        "receive" => true,
        "send" => false,
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                t,
                "accounts-not-found-title",
                "accounts-not-found",
            );
        }
    };
    let daemon = match daemon(&web, t) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (id, account, app) = match account_for(&s.caller, daemon, &id, true).await {
        Ok(a) => a,
        Err(p) => return refused(t, &p),
    };
    let check = live::Check {
        account: account.clone(),
        app,
        receive,
        password: None,
    };
    let run = match web.runs.start(&s, daemon, &id.to_string(), check) {
        Ok(run) => run,
        Err(why) => return live::not_started(t, &why),
    };
    let Some((_, seen)) = web.runs.seen(&s, &id.to_string(), &run, t) else {
        return live::gone(t, false);
    };
    run_page(&s, &id.to_string(), account.name, receive, &run, seen)
}

/// The page of a run: its steps so far and, while it runs, the link that shows more.
fn run_page(
    s: &Signed,
    id: &str,
    name: String,
    receive: bool,
    run: &str,
    seen: live::Seen,
) -> Response {
    let kind = if receive { "receive" } else { "send" };
    page(
        StatusCode::OK,
        &TestPage {
            t: s.t,
            who: s.who(),
            csrf: s.session.csrf_token.clone(),
            id: id.to_owned(),
            name,
            outcome: seen.outcome,
            receive,
            poll: (!seen.done).then(|| format!("/accounts/{id}/test/{kind}/{run}")),
        },
    )
}

/// `GET /accounts/{id}/test/{kind}/{run}`: a run started by this session, as a page
/// or (`Accept: application/json`, the script's polling) as JSON; 404 for any other
/// session's run, the person's access to the account checked again.
pub(crate) async fn test_run(
    State(web): State<Arc<Web>>,
    visit: Visit,
    headers: axum::http::HeaderMap,
    Path((id, kind, run)): Path<(String, String, String)>,
) -> Response {
    let as_json = live::wants_json(&headers);
    let s = match signed(&web, &visit).await {
        Ok(s) => s,
        Err(_) if as_json => return StatusCode::UNAUTHORIZED.into_response(),
        Err(r) => return r,
    };
    let t = s.t;
    let daemon = match daemon(&web, t) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (id, account, _) = match account_for(&s.caller, daemon, &id, true).await {
        Ok(a) => a,
        Err(p) if as_json => return p.status.into_response(),
        Err(p) => return refused(t, &p),
    };
    let id = id.to_string();
    let Some((receive, seen)) = web.runs.seen(&s, &id, &run, t) else {
        return live::gone(t, as_json);
    };
    if kind != if receive { "receive" } else { "send" } {
        return live::gone(t, as_json);
    }
    if as_json {
        return live::json(t, seen);
    }
    run_page(&s, &id, account.name, receive, &run, seen)
}

const SCRIPT: &str = include_str!("../../assets/accounts.js");

/// `/assets/accounts.js`: shows the pages' times in the viewer's time zone.
pub(crate) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(account: &str, seconds: i64, state: WatcherState) -> WatcherEvent {
        WatcherEvent {
            account: account.into(),
            state,
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds),
        }
    }

    #[test]
    fn the_history_keeps_the_last_events_of_each_account_newest_first() {
        let h = History::default();
        for i in 0..30 {
            h.push(event("ops", i, WatcherState::Syncing));
        }
        h.push(event("other", 1, WatcherState::Idle));
        // The same event announced twice is kept once.
        h.push(event("other", 1, WatcherState::Idle));
        let ops = h.of("ops");
        assert_eq!(ops.len(), HISTORY);
        assert_eq!(ops[0].at, event("ops", 29, WatcherState::Idle).at);
        assert_eq!(h.of("other").len(), 1);
        assert!(h.of("nobody").is_empty());
    }

    #[test]
    fn times_carry_iso_utc_for_the_script_and_utc_text_without_it() {
        let at = OffsetDateTime::UNIX_EPOCH.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap())
            + time::Duration::days(20_000);
        let w = When::of(at);
        assert_eq!(w.iso, "2024-10-04T00:00:00Z");
        assert_eq!(w.text, "2024-10-04 00:00:00 UTC");
    }

    #[test]
    fn a_side_reads_as_its_transport_and_where() {
        let e = EndpointConfig {
            transport: Transport::Imap,
            host: "imap.example.org".into(),
            port: Some(993),
            tls: None,
            tls_name: None,
            extra_ca_file: None,
            tls_pin: None,
        };
        assert_eq!(side_text(Some(&e)), "IMAP imap.example.org:993");
        let g = EndpointConfig {
            transport: Transport::Graph,
            host: "https://graph.microsoft.com".into(),
            port: Some(443),
            ..e
        };
        assert_eq!(side_text(Some(&g)), "Graph https://graph.microsoft.com");
        assert_eq!(side_text(None), "—");
    }
}
