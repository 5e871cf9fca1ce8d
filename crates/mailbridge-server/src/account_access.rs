//! Which accounts a caller reaches. Administrators change and auditors read every
//! account; a token with the role `user` reads and changes the accounts its user owns
//! ([`Store::account_owner`]: the accounts it created through the API, or that an
//! administrator gave it with `PUT /api/v1/accounts/{id}/owner`), and no other.
//!
//! Every handler of an account first asks the role alone ([`Caller::require`] with
//! `own: true`: may this role touch any account of its own?), before reading the
//! request's body; then, with the account's id known, `require_account` answers
//! for that account, and listings keep what `reach` allows.

use std::collections::HashSet;

use mailbridge_store::{AccountId, Store};
use mailbridge_types::access::{Action, Role, allowed};
use mailbridge_types::config::{AccountConfig, AppConfig};

use crate::api_config::{account_by_id, account_id, store_failed};
use crate::api_token::Caller;
use crate::daemon::DaemonHandle;
use crate::problem::Problem;

/// Reading (or, with `write`, changing) one account.
fn action(write: bool, own: bool) -> Action {
    if write {
        Action::WriteAccount { own }
    } else {
        Action::ReadAccount { own }
    }
}

/// `Ok` when `caller` may read (with `write`: change) account `id`; else the 403 to
/// answer, which says why and who can change it. Asked before the account is looked
/// up, so a refused caller learns nothing about accounts that are not its own.
pub async fn require_account(
    caller: &Caller,
    store: &Store,
    id: AccountId,
    write: bool,
) -> Result<(), Problem> {
    caller.require(action(write, true))?;
    if allowed(caller.token.role, action(write, false)) {
        return Ok(());
    }
    let Some(user) = caller.token.user.as_deref() else {
        return Err(Problem::forbidden(format!(
            "the token \"{}\" has the role user but acts for no user, so it may not {} any account; make one that does with `mailbridge token add NAME --role user --user USER`",
            caller.token.name,
            if write { "change" } else { "read" },
        )));
    };
    let owner = store
        .account_owner(id)
        .await
        .map_err(|e| store_failed(&e))?;
    if owner.as_deref() == Some(user) {
        return Ok(());
    }
    Err(Problem::forbidden(format!(
        "the token \"{}\" acts for the user {user}, who may not {} account {id}: a user reaches only the accounts it owns; an administrator can give it this one (PUT /api/v1/accounts/{id}/owner)",
        caller.token.name,
        if write { "change" } else { "read" },
    )))
}

/// The accounts `caller` may read: `None` for every account (administrators and
/// auditors), else the ids its user owns (none for a token acting for no user).
pub async fn reach(caller: &Caller, store: &Store) -> Result<Option<HashSet<AccountId>>, Problem> {
    if allowed(caller.token.role, Action::ReadAccount { own: false }) {
        return Ok(None);
    }
    let Some(user) = caller.token.user.as_deref() else {
        return Ok(Some(HashSet::new()));
    };
    let owners = store.account_owners().await.map_err(|e| store_failed(&e))?;
    Ok(Some(
        owners
            .into_iter()
            .filter(|(_, owner)| owner == user)
            .map(|(id, _)| id)
            .collect(),
    ))
}

/// The user that accounts `caller` creates belong to: none for administrators (the
/// account is nobody's until given), the token's user for a `user` token (refused
/// when it acts for no user).
pub fn new_account_owner(caller: &Caller) -> Result<Option<String>, Problem> {
    if caller.token.role != Role::User {
        return Ok(None);
    }
    caller.token.user.clone().map(Some).ok_or_else(|| {
        Problem::forbidden(format!(
            "the token \"{}\" has the role user but acts for no user, so it may not create an account nobody would own; make one that does with `mailbridge token add NAME --role user --user USER`",
            caller.token.name
        ))
    })
}

/// Account `id` (from a request's path) with its app, when `caller` may read it (with
/// `write`: change it): 403 before anything about the account is looked up, 404 when
/// there is no such account.
pub async fn account_for(
    caller: &Caller,
    daemon: &DaemonHandle,
    id: &str,
    write: bool,
) -> Result<(AccountId, AccountConfig, Option<AppConfig>), Problem> {
    require_account(caller, daemon.store(), account_id(id)?, write).await?;
    account_by_id(daemon, id).await
}
