//! The dashboard (`/`): the accounts the signed-in person may see, each with its
//! watcher's state and last error (with its fix), its last sync, its outbox queue
//! and parked deliveries, its messages per hour over the last 24 hours (a small SVG
//! drawn here) and its median delivery latency of the last hour; totals on top; and
//! what expires soon (app secrets and certificates, refresh tokens near Microsoft's
//! 90-day idle limit, EWS accounts on Exchange Online).
//!
//! The counts come from the daemon's [`mailbridge_server::activity::Activity`] (in
//! memory: a restart starts them at zero), the outbox and parked counts from the
//! store, what expires from `mailbridge-accounts`' `health` (as `mailbridge auth
//! status` shows it). Administrators and auditors see every account; a user sees
//! only the accounts they own, and only their apps.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_accounts::health::{EXPIRY_WARNING_DAYS, IDLE_WARNING_DAYS};
use mailbridge_connector::watcher::state::{WatcherEvent, WatcherState};
use mailbridge_store::{AccountId, OutboxState};
use mailbridge_types::access::{Action, allowed};
use mailbridge_types::config::Transport;
use time::OffsetDateTime;

use crate::Web;
use crate::accounts::When;
use crate::i18n::Tr;
use crate::pages::{Visit, Who, badge, page, session, store_failed, who};

/// The hours the chart shows.
const CHART_HOURS: usize = 24;
/// Microsoft expires a refresh token after this many days without use.
const REFRESH_TOKEN_IDLE_LIMIT_DAYS: i64 = 90;

/// One account row.
#[derive(Debug)]
struct Row {
    id: String,
    name: String,
    address: String,
    /// The badge's class: ok, busy, wait, bad, off.
    badge: &'static str,
    state: String,
    /// The last error and its fix (the watcher state's reason).
    detail: Option<String>,
    /// Its fix in the viewer's language (an AADSTS code it names).
    fix: Option<String>,
    last_sync: Option<When>,
    /// Outbox messages due (queued or retrying) and being sent.
    due: u64,
    sending: u64,
    /// "N due, M sending" in the page's language.
    queue: String,
    parked: u64,
    /// Messages in the last 24 hours.
    messages: u64,
    /// The inline SVG chart (numbers and escaped text only).
    chart: String,
    latency: Option<String>,
}

/// One thing that expires soon.
#[derive(Debug)]
struct Expiring {
    what: String,
    when: Option<When>,
    detail: String,
}

/// The totals over the rows shown.
#[derive(Debug, Default)]
struct Totals {
    accounts: usize,
    due: u64,
    sending: u64,
    parked: u64,
    messages: u64,
    failing: usize,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    t: Tr,
    who: Option<Who>,
    accounts: Vec<Row>,
    totals: Totals,
    expiring: Vec<Expiring>,
    empty: Option<String>,
}

/// `&`, `<`, `>`, `"` and `'` as entities.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Chart geometry: bar width and gap, and the plot's height, in SVG units.
const BAR: usize = 5;
const GAP: usize = 1;
const HEIGHT: u64 = 32;
/// At most this many bars are drawn (more counts: the newest).
const MAX_BARS: usize = 48;

/// A bar chart of `counts` (oldest first) as inline SVG: one bar per hour scaled to
/// the largest count (a non-zero count is at least one unit high; a zero hour draws
/// no bar), a base line, and `label` (the numbers in words) as its accessible name.
/// No script and no style attribute: presentation attributes and classes only.
pub(crate) fn chart(counts: &[u32], label: &str) -> String {
    let counts = &counts[counts.len().saturating_sub(MAX_BARS)..];
    let width = counts.len() * (BAR + GAP);
    let max = u64::from(counts.iter().copied().max().unwrap_or(0));
    let label = escape(label);
    let mut svg = format!(
        r#"<svg class="dashboard-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h}" width="{width}" height="{h}" role="img" aria-label="{label}"><title>{label}</title>"#,
        h = HEIGHT + 1
    );
    for (i, n) in counts.iter().enumerate() {
        let n = u64::from(*n);
        if n == 0 || max == 0 {
            continue;
        }
        let bar = (n * HEIGHT).div_ceil(max).clamp(1, HEIGHT);
        let _ = write!(
            svg,
            r#"<rect class="dashboard-bar" x="{x}" y="{y}" width="{BAR}" height="{bar}" fill="currentColor"><title>{n}</title></rect>"#,
            x = i * (BAR + GAP),
            y = HEIGHT - bar,
        );
    }
    let _ = write!(
        svg,
        r#"<line x1="0" y1="{HEIGHT}" x2="{width}" y2="{HEIGHT}" stroke="currentColor" stroke-width="1" opacity="0.4"/></svg>"#
    );
    svg
}

/// A latency as people read it: `340 ms`, `2.5 s`.
fn latency_text(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// The dashboard; see the module's documentation.
pub(crate) async fn dashboard(State(web): State<Arc<Web>>, visit: Visit) -> Response {
    let session = match session(&web, &visit).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/signin").into_response(),
        Err(r) => return r,
    };
    let t = visit.tr_for(&session.user);
    let who = Some(who(t, &session));
    let own: Option<HashSet<AccountId>> =
        if allowed(session.user.role, Action::ReadAccount { own: false }) {
            None
        } else {
            match web.store.account_owners().await {
                Ok(owners) => Some(
                    owners
                        .into_iter()
                        .filter(|(_, owner)| *owner == session.user.name)
                        .map(|(id, _)| id)
                        .collect(),
                ),
                Err(e) => return store_failed(t, &e),
            }
        };
    if own.as_ref().is_some_and(HashSet::is_empty) {
        return page(
            StatusCode::OK,
            &DashboardPage {
                t,
                who,
                accounts: Vec::new(),
                totals: Totals::default(),
                expiring: Vec::new(),
                empty: Some(t.get("dashboard-none-yours")),
            },
        );
    }
    let accounts = match mailbridge_accounts::catalog::by_id(&web.store, &web.config_file).await {
        Ok(a) => a,
        Err(e) => return store_failed(t, &e),
    };
    let outbox = match web.store.outbox_counts().await {
        Ok(o) => o,
        Err(e) => return store_failed(t, &e),
    };
    let states: HashMap<String, WatcherEvent> = (web.watchers)()
        .into_iter()
        .map(|e| (e.account.clone(), e))
        .collect();
    let now = web.store.now();
    let activity = web.daemon.as_ref().map(|d| d.activity().clone());
    let visible: Vec<_> = accounts
        .into_iter()
        .filter(|(id, _)| own.as_ref().is_none_or(|own| own.contains(id)))
        .collect();
    let mut rows = Vec::with_capacity(visible.len());
    let mut totals = Totals::default();
    let mut apps_shown = HashSet::new();
    let mut names_shown = HashSet::new();
    let mut expiring = Vec::new();
    for (id, (account, _)) in &visible {
        let parked = match web.store.parked_count(Some(*id)).await {
            Ok(n) => n,
            Err(e) => return store_failed(t, &e),
        };
        let count = |states: &[OutboxState]| -> u64 {
            outbox
                .iter()
                .filter(|(a, s, _)| a == id && states.contains(s))
                .map(|(_, _, n)| n)
                .sum()
        };
        let due = count(&[OutboxState::Queued, OutboxState::Retrying]);
        let sending = count(&[OutboxState::Sending]);
        let event = states.get(&account.name);
        let (badge, state, detail) = badge(t, event.map(|e| &e.state));
        // The last error's fix in the viewer's language, when it names an AADSTS code.
        let fix = detail
            .as_deref()
            .and_then(|d| crate::diagnosis::in_text(t, d));
        let seen = activity
            .as_ref()
            .map(|a| a.of(&account.name, CHART_HOURS, now));
        let per_hour = seen
            .as_ref()
            .map_or_else(|| vec![0; CHART_HOURS], |s| s.per_hour.clone());
        let messages: u64 = per_hour.iter().map(|n| u64::from(*n)).sum();
        let numbers = per_hour
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let label = t.with2(
            "dashboard-chart-label",
            ("counts", &numbers),
            ("total", &messages.to_string()),
        );
        if matches!(
            event.map(|e| &e.state),
            Some(WatcherState::WaitingUntil { .. } | WatcherState::NeedsSignIn { .. })
        ) {
            totals.failing += 1;
        }
        totals.accounts += 1;
        totals.due += due;
        totals.sending += sending;
        totals.parked += parked;
        totals.messages += messages;
        if let Some(app) = &account.app {
            apps_shown.insert(app.clone());
        }
        names_shown.insert(account.name.clone());
        if let Some(e) = account
            .incoming_side()
            .into_iter()
            .chain(account.outgoing_side())
            .find(|e| e.transport == Transport::Ews)
            && let Some(notice) = mailbridge_accounts::check::ews_notice(&e.host)
        {
            expiring.push(Expiring {
                what: t.with("dashboard-expires-ews", "account", &account.name),
                when: None,
                detail: notice,
            });
        }
        rows.push(Row {
            id: id.to_string(),
            name: account.name.clone(),
            address: account.address.clone(),
            badge,
            state,
            detail,
            fix,
            last_sync: seen.as_ref().and_then(|s| s.last_sync).map(When::of),
            due,
            sending,
            queue: t.with2(
                "dashboard-queue",
                ("due", &due.to_string()),
                ("sending", &sending.to_string()),
            ),
            parked,
            messages,
            chart: chart(&per_hour, &label),
            latency: seen
                .as_ref()
                .and_then(|s| s.median_latency)
                .map(latency_text),
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    match expiring_credentials(&web, t, own.is_none(), &apps_shown, &names_shown).await {
        Ok(mut found) => {
            found.append(&mut expiring);
            expiring = found;
        }
        Err(r) => return r,
    }
    let empty = rows.is_empty().then(|| t.get("dashboard-empty"));
    page(
        StatusCode::OK,
        &DashboardPage {
            t,
            who,
            accounts: rows,
            totals,
            expiring,
            empty,
        },
    )
}

/// App secrets and certificates expiring within [`EXPIRY_WARNING_DAYS`] (all apps
/// when `every_app`, else those in `apps`), and refresh tokens idle for more than
/// [`IDLE_WARNING_DAYS`] of the accounts in `accounts`: `mailbridge auth status`'s
/// health.
async fn expiring_credentials(
    web: &Web,
    t: Tr,
    every_app: bool,
    apps: &HashSet<String>,
    accounts: &HashSet<String>,
) -> Result<Vec<Expiring>, Response> {
    let catalog = mailbridge_accounts::catalog::catalog(&web.store, &web.config_file)
        .await
        .map_err(|e| store_failed(t, &e))?;
    let health = mailbridge_accounts::health::health(&catalog, &web.store)
        .await
        .map_err(|e| store_failed(t, &e))?;
    let mut out = Vec::new();
    for app in health.apps {
        if !(every_app || apps.contains(&app.name)) {
            continue;
        }
        let (Some(days), Some(expires)) = (app.expires_in_days, app.expires.as_deref()) else {
            continue;
        };
        if days > EXPIRY_WARNING_DAYS {
            continue;
        }
        let what = if app.credential == "certificate" {
            "dashboard-expires-certificate"
        } else {
            "dashboard-expires-secret"
        };
        out.push(Expiring {
            what: t.with(what, "app", &app.name),
            when: parse_rfc3339(expires).map(When::of),
            detail: if days < 0 {
                t.get("dashboard-expired")
            } else {
                t.with("dashboard-expires-in", "days", &days)
            },
        });
    }
    for account in health.accounts {
        if !accounts.contains(&account.name) {
            continue;
        }
        let (Some(idle), Some(last)) = (
            account.refresh_token_idle_days,
            account
                .refresh_token_last_used
                .as_deref()
                .and_then(parse_rfc3339),
        ) else {
            continue;
        };
        if idle <= IDLE_WARNING_DAYS {
            continue;
        }
        let left = REFRESH_TOKEN_IDLE_LIMIT_DAYS - idle;
        out.push(Expiring {
            what: t.with("dashboard-expires-refresh", "account", &account.name),
            when: Some(When::of(
                last + time::Duration::days(REFRESH_TOKEN_IDLE_LIMIT_DAYS),
            )),
            detail: if left < 0 {
                t.get("dashboard-expired")
            } else {
                t.with("dashboard-expires-in", "days", &left)
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heights(svg: &str) -> Vec<u64> {
        svg.split("<rect ")
            .skip(1)
            .filter_map(|r| {
                let h = r.split("height=\"").nth(1)?;
                h.split('"').next()?.parse().ok()
            })
            .collect()
    }

    #[test]
    fn bars_scale_to_the_largest_hour() {
        let svg = chart(&[1, 2, 4], "three hours");
        assert_eq!(heights(&svg), vec![8, 16, 32]);
        assert!(svg.contains(r#"aria-label="three hours""#));
        assert!(svg.contains("<title>three hours</title>"));
        assert!(!svg.contains("style="));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn a_small_count_beside_a_large_one_stays_visible() {
        assert_eq!(heights(&chart(&[1, 1000], "x")), vec![1, 32]);
    }

    #[test]
    fn zero_hours_draw_no_bar() {
        let svg = chart(&[0; 24], "none");
        assert!(heights(&svg).is_empty());
        assert!(svg.contains(r#"width="144""#));
        assert_eq!(heights(&chart(&[0, 3, 0], "x")), vec![32]);
        assert!(chart(&[0, 3, 0], "x").contains(r#"x="6""#));
    }

    #[test]
    fn bounded_to_48_bars_and_escaped() {
        let many: Vec<u32> = (0..500).map(|_| 1).collect();
        let svg = chart(&many, "<b>\"x\"</b>");
        assert_eq!(heights(&svg).len(), MAX_BARS);
        assert!(svg.contains("&lt;b&gt;&quot;x&quot;&lt;/b&gt;"));
        assert!(!svg.contains("<b>"));
        let empty = chart(&[], "empty");
        assert!(heights(&empty).is_empty());
        assert!(chart(&[u32::MAX, 1], "x").contains(r#"height="32""#));
    }

    #[test]
    fn latency_in_ms_or_s() {
        assert_eq!(latency_text(Duration::from_millis(340)), "340 ms");
        assert_eq!(latency_text(Duration::from_millis(2500)), "2.5 s");
    }
}
