//! The administration pages: the navigation every signed-in page shows, and the
//! pages of apps, providers, the outbox, parked deliveries, users and tokens,
//! settings and the audit log.
//!
//! Each page asks [`mailbridge_types::access::allowed`] for the signed-in person's
//! role (administrators change, auditors read, users see only what the API lets a
//! user see), and each change goes through the function the REST API's handler
//! calls, with the person as the caller, so the rules, the validation and the audit
//! log entry are the API's.

#![expect(
    clippy::result_large_err,
    reason = "a check that fails returns the finished page to answer with"
)]

pub(crate) mod apps;
pub(crate) mod audit;
pub(crate) mod deliveries;
pub(crate) mod providers;
pub(crate) mod settings;
pub(crate) mod users;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailbridge_server::api_token::Caller;
use mailbridge_server::daemon::DaemonHandle;
use mailbridge_server::problem::Problem;
use mailbridge_types::access::{Action, allowed};

use crate::Web;
use crate::i18n::Tr;
use crate::pages::{MessagePage, Visit, Who, page, session, who};
use crate::session::same;

/// How many rows a page of a list shows.
pub(crate) const PAGE_SIZE: usize = 50;

/// A signed-in visit to an administration page: the page's language, the header,
/// and the person as the caller of the API's functions.
pub(crate) struct Admin {
    pub(crate) t: Tr,
    pub(crate) who: Who,
    pub(crate) caller: Caller,
}

impl Admin {
    /// The signed-in person, or the answer: to the sign-in page without a session.
    pub(crate) async fn of(web: &Web, visit: &Visit) -> Result<Self, Response> {
        let Some(session) = session(web, visit).await? else {
            return Err(Redirect::to("/signin").into_response());
        };
        let t = visit.tr_for(&session.user);
        Ok(Self {
            t,
            who: who(t, &session),
            caller: Caller::person(&session.user, &visit.addr),
        })
    }

    /// Whether the person's role allows `action`.
    pub(crate) fn may(&self, action: Action) -> bool {
        allowed(self.caller.token.role, action)
    }

    /// `Ok` when the role allows `action`, else the 403 page.
    pub(crate) fn require(&self, action: Action) -> Result<(), Response> {
        if self.may(action) {
            Ok(())
        } else {
            Err(self.text_page(
                StatusCode::FORBIDDEN,
                "forbidden-title",
                self.t.get("admin-forbidden"),
            ))
        }
    }

    /// `Ok` when a form carried this session's CSRF token, else the 403 page.
    pub(crate) fn csrf(&self, sent: Option<&str>) -> Result<(), Response> {
        if sent.is_some_and(|sent| same(sent, &self.who.csrf)) {
            Ok(())
        } else {
            Err(crate::pages::csrf_refused(self.t))
        }
    }

    /// A page with a title (message id) and a text already in the page's language.
    pub(crate) fn text_page(&self, status: StatusCode, title: &str, text: String) -> Response {
        page(
            status,
            &MessagePage {
                t: self.t,
                who: Some(self.who.clone()),
                title: self.t.get(title),
                message: text,
            },
        )
    }

    /// The page of a problem no field of a form is at fault for.
    pub(crate) fn problem_page(&self, problem: &Problem) -> Response {
        self.text_page(problem.status, "error-title", problem.detail.clone())
    }
}

/// The daemon's work, or the page saying the pages run without it.
pub(crate) fn daemon<'a>(web: &'a Web, admin: &Admin) -> Result<&'a DaemonHandle, Response> {
    web.daemon.as_ref().ok_or_else(|| {
        admin.text_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "error-title",
            admin.t.get("admin-no-daemon"),
        )
    })
}

/// One page of `items` (`page` counts from 0): the rows, and the numbers of the
/// previous and next pages when there are such.
pub(crate) fn page_of<T>(items: Vec<T>, page: usize) -> Paged<T> {
    let pages = items.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages - 1);
    let rows: Vec<T> = items
        .into_iter()
        .skip(page * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    Paged {
        rows,
        prev: page.checked_sub(1),
        next: (page + 1 < pages).then_some(page + 1),
    }
}

/// A page of a list.
#[derive(Debug)]
pub(crate) struct Paged<T> {
    pub(crate) rows: Vec<T>,
    pub(crate) prev: Option<usize>,
    pub(crate) next: Option<usize>,
}

/// A time as the pages show it: UTC, to the second.
pub(crate) fn when(t: time::OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

/// One link of the navigation.
#[derive(Debug)]
pub(crate) struct NavLink {
    pub(crate) href: &'static str,
    pub(crate) label: String,
}

/// The pages of the navigation, in order: address, message id, and what the role
/// must be allowed to open it.
const NAV: [(&str, &str, Action); 9] = [
    (
        "/",
        "admin-nav-dashboard",
        Action::ReadAccount { own: true },
    ),
    (
        "/accounts",
        "admin-nav-accounts",
        Action::ReadAccount { own: true },
    ),
    ("/apps", "admin-nav-apps", Action::ReadSystem),
    ("/providers", "admin-nav-providers", Action::ReadSystem),
    (
        "/outbox",
        "admin-nav-outbox",
        Action::ReadAccount { own: true },
    ),
    (
        "/parked",
        "admin-nav-parked",
        Action::ReadAccount { own: true },
    ),
    ("/users", "admin-nav-users", Action::ReadSystem),
    ("/settings", "admin-nav-settings", Action::ReadSystem),
    ("/audit", "admin-nav-audit", Action::ReadSystem),
];

impl Who {
    /// The links of the navigation this person's role may open.
    pub(crate) fn nav(&self, t: &Tr) -> Vec<NavLink> {
        NAV.iter()
            .filter(|(_, _, action)| allowed(self.role, *action))
            .map(|(href, id, _)| NavLink {
                href,
                label: t.get(id),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mailbridge_types::access::Role;

    use super::*;

    fn hrefs(role: Role) -> Vec<&'static str> {
        let who = Who {
            line: String::new(),
            csrf: String::new(),
            role,
        };
        who.nav(&Tr::new("en")).iter().map(|l| l.href).collect()
    }

    #[test]
    fn lists_are_paged() {
        let p = page_of((0..120).collect(), 0);
        assert_eq!((p.rows.len(), p.prev, p.next), (PAGE_SIZE, None, Some(1)));
        let p = page_of((0..120).collect(), 2);
        assert_eq!((p.rows.len(), p.prev, p.next), (20, Some(1), None));
        assert_eq!(p.rows[0], 100);
        // A page past the end shows the last one.
        let p = page_of((0..120).collect(), 99);
        assert_eq!(p.prev, Some(1));
        let p = page_of(Vec::<u8>::new(), 0);
        assert_eq!((p.rows.len(), p.prev, p.next), (0, None, None));
    }

    #[test]
    fn the_navigation_shows_only_what_the_role_may_open() {
        assert_eq!(hrefs(Role::Administrator).len(), NAV.len());
        assert_eq!(hrefs(Role::Auditor).len(), NAV.len());
        assert_eq!(hrefs(Role::User), ["/", "/accounts", "/outbox", "/parked"]);
    }
}
