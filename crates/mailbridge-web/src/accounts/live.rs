//! Test receive / Test send, live: the POST starts the API's check (`run_check`) as a
//! task kept here and answers at once with the steps so far; each step is recorded as
//! it finishes (`mailbridge_accounts::check::observed`). `GET
//! /accounts/{id}/test/{kind}/{run}` shows the run again (the page's Refresh link) or,
//! asked for JSON, its steps so far (the embedded script polls it and appends them).
//!
//! Bounds: at most [`RUNNING_PER_PERSON`] runs at once per person, each stopped after
//! [`DEADLINE`], every run forgotten [`KEPT`] after it started. A run's id is random
//! and bound to the session that started it: another session (another person, or the
//! same person signed in elsewhere) gets 404, and the person's access to the account
//! is checked again on every read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailbridge_accounts::check::{ProgressHook, Report, StepResult, observed};
use mailbridge_server::daemon::DaemonHandle;
use mailbridge_server::problem::Problem;
use mailbridge_types::config::{AccountConfig, AppConfig};
use serde::Serialize;

use super::{Outcome, Signed, StepRow, not_run, outcome, test_title};
use crate::i18n::Tr;
use crate::pages::message;
use crate::session::{random_token, same, sha256_hex};

/// Runs one person may have going at once.
pub(crate) const RUNNING_PER_PERSON: usize = 3;
/// How long a check may run before it is stopped.
pub(crate) const DEADLINE: Duration = Duration::from_mins(2);
/// How long a run's steps are kept after it started.
pub(crate) const KEPT: Duration = Duration::from_mins(10);

/// What a run has done so far.
#[derive(Default)]
struct Progress {
    steps: Vec<StepResult>,
    end: Option<End>,
}

/// How a run ended.
enum End {
    Report(Report),
    /// The check could not run (the API's problem, which says what to change).
    NotRun(Problem),
    /// Stopped at [`DEADLINE`].
    TimedOut,
}

struct Run {
    /// The SHA-256 of the starting session's CSRF token (one per session).
    session: String,
    user: String,
    account: String,
    receive: bool,
    started: Instant,
    progress: Arc<Mutex<Progress>>,
    task: tokio::task::AbortHandle,
}

/// The runs of every person, in the web state.
#[derive(Default)]
pub(crate) struct Runs(Mutex<HashMap<String, Run>>);

impl Drop for Runs {
    fn drop(&mut self) {
        for run in self
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            run.task.abort();
        }
    }
}

/// Why no run was started.
pub(crate) enum NotStarted {
    /// The person has [`RUNNING_PER_PERSON`] runs going.
    Busy,
    /// No random id could be made.
    Random,
}

/// What a run's page and its JSON show.
pub(crate) struct Seen {
    pub(crate) outcome: Outcome,
    pub(crate) done: bool,
}

/// What a run checks: `run_check`'s arguments.
pub(crate) struct Check {
    pub(crate) account: AccountConfig,
    pub(crate) app: Option<AppConfig>,
    pub(crate) receive: bool,
    /// A password just typed (the wizard's unsaved account): kept only in the task.
    pub(crate) password: Option<secrecy::SecretString>,
}

impl Runs {
    /// Starts `run_check` for account `id` as `s`'s task; its id.
    pub(crate) fn start(
        &self,
        s: &Signed,
        daemon: &DaemonHandle,
        id: &str,
        check: Check,
    ) -> Result<String, NotStarted> {
        let Check {
            account,
            app,
            receive,
            password,
        } = check;
        let mut runs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        forget_old(&mut runs);
        let user = s.session.user.name.clone();
        let running = runs
            .values()
            .filter(|r| r.user == user && !r.task.is_finished())
            .count();
        if running >= RUNNING_PER_PERSON {
            return Err(NotStarted::Busy);
        }
        let run = random_token().map_err(|_| NotStarted::Random)?;
        let progress = Arc::new(Mutex::new(Progress::default()));
        let heard = Arc::clone(&progress);
        let hook: ProgressHook = Arc::new(move |step: &StepResult| {
            heard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .steps
                .push(step.clone());
        });
        let ended = Arc::clone(&progress);
        let daemon = daemon.clone();
        let to = (!receive).then(|| account.address.clone());
        let task = tokio::spawn(async move {
            let check = mailbridge_server::api_config::run_check(
                &daemon,
                &account,
                app.as_ref(),
                to,
                password,
            );
            let end = match Box::pin(tokio::time::timeout(DEADLINE, observed(hook, check))).await {
                Ok(Ok(report)) => End::Report(report),
                Ok(Err(problem)) => End::NotRun(problem),
                Err(_) => End::TimedOut,
            };
            ended.lock().unwrap_or_else(PoisonError::into_inner).end = Some(end);
        });
        runs.insert(
            run.clone(),
            Run {
                session: sha256_hex(&s.session.csrf_token),
                user,
                account: id.to_owned(),
                receive,
                started: Instant::now(),
                progress,
                task: task.abort_handle(),
            },
        );
        Ok(run)
    }

    /// What run `run` of account `id` has done, if `s`'s session started it and it
    /// is still kept; whether it receives.
    pub(crate) fn seen(&self, s: &Signed, id: &str, run: &str, t: Tr) -> Option<(bool, Seen)> {
        let mut runs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        forget_old(&mut runs);
        let r = runs.get(run)?;
        let mine = same(&r.session, &sha256_hex(&s.session.csrf_token))
            && r.user == s.session.user.name
            && r.account == id;
        if !mine {
            return None;
        }
        let progress = r.progress.lock().unwrap_or_else(PoisonError::into_inner);
        Some((r.receive, view(t, r.receive, &progress)))
    }
}

fn forget_old(runs: &mut HashMap<String, Run>) {
    runs.retain(|_, r| {
        let keep = r.started.elapsed() < KEPT;
        if !keep {
            r.task.abort();
        }
        keep
    });
}

fn view(t: Tr, receive: bool, progress: &Progress) -> Seen {
    let so_far = || Report {
        ok: false,
        steps: progress.steps.clone(),
    };
    match &progress.end {
        None => {
            let mut o = outcome(t, receive, &so_far());
            o.summary = t.get("livetest-running");
            Seen {
                outcome: o,
                done: false,
            }
        }
        Some(End::Report(report)) => Seen {
            outcome: outcome(t, receive, report),
            done: true,
        },
        Some(End::NotRun(problem)) => Seen {
            outcome: not_run(t, receive, problem),
            done: true,
        },
        Some(End::TimedOut) => {
            let mut o = outcome(t, receive, &so_far());
            o.title = test_title(t, receive);
            o.summary = t.with("livetest-deadline", "seconds", &DEADLINE.as_secs());
            Seen {
                outcome: o,
                done: true,
            }
        }
    }
}

/// One step in the JSON the script reads, in the page's words.
#[derive(Serialize)]
struct StepJson {
    ok: bool,
    name: String,
    /// "✓ passed" / "✗ failed" for screen readers.
    state: String,
    ms: String,
    detail: String,
    fix: Option<String>,
    fix_label: String,
}

/// The JSON of a run.
#[derive(Serialize)]
struct RunJson {
    done: bool,
    ok: bool,
    summary: String,
    steps: Vec<StepJson>,
}

/// Whether the request asks for JSON (the script's `Accept`).
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

/// A run's steps as JSON.
pub(crate) fn json(t: Tr, seen: Seen) -> Response {
    let o = seen.outcome;
    let steps = o
        .steps
        .into_iter()
        .map(|s: StepRow| StepJson {
            ok: s.ok,
            state: t.get(if s.ok {
                "accounts-step-ok"
            } else {
                "accounts-step-failed"
            }),
            ms: t.with("accounts-step-ms", "ms", &s.ms),
            name: s.name,
            detail: s.detail,
            fix: s.fix,
            fix_label: t.get("accounts-fix"),
        })
        .collect();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(RunJson {
            done: seen.done,
            ok: o.ok,
            summary: o.summary,
            steps,
        }),
    )
        .into_response()
}

/// The page for a run that is not (or no longer) there.
pub(crate) fn gone(t: Tr, as_json: bool) -> Response {
    if as_json {
        return StatusCode::NOT_FOUND.into_response();
    }
    message(
        StatusCode::NOT_FOUND,
        t,
        "accounts-not-found-title",
        "livetest-gone",
    )
}

/// The page for a refused start.
pub(crate) fn not_started(t: Tr, why: &NotStarted) -> Response {
    match why {
        NotStarted::Busy => crate::pages::page(
            StatusCode::TOO_MANY_REQUESTS,
            &crate::pages::MessagePage {
                t,
                who: None,
                title: t.get("error-title"),
                message: t.with("livetest-busy", "count", &RUNNING_PER_PERSON),
            },
        ),
        NotStarted::Random => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            t,
            "error-title",
            "error-store",
        ),
    }
}
