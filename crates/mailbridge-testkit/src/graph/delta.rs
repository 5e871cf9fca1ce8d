//! `GET mailFolders/{id}/messages/delta` (§3.2): rounds of changes since a delta token,
//! paged with `Prefer: odata.maxpagesize`, with the sync state kept server-side behind
//! opaque `$skiptoken` / `$deltatoken` values.
//!
//! <https://learn.microsoft.com/graph/api/message-delta>,
//! <https://learn.microsoft.com/graph/delta-query-messages>

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::auth::Need;
use super::errors::GraphError;
use super::json::select;
use super::messages::{message_value, preference_applied, resolve_folder};
use super::query::{Cmp, Filter, param, parse_filter, parse_select};
use super::{Ctx, ids, json_response, lock};
use crate::mailstore::{MessageSummary, StoredMessageId};

/// Page size when neither `Prefer: odata.maxpagesize` nor `$top` is given (unverified
/// for Microsoft, notes §9 item 3).
pub const DEFAULT_PAGE_SIZE: usize = 10;

/// Which changes a sync reports (`changeType=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeType {
    All,
    Created,
    Updated,
    Deleted,
}

/// What a sync is about, fixed by its first request.
#[derive(Debug, Clone)]
pub(crate) struct SyncConfig {
    mailbox: String,
    folder: String,
    select: Option<Vec<String>>,
    received: Vec<(Cmp, OffsetDateTime)>,
    change_type: ChangeType,
    page_size: usize,
    page_size_preferred: bool,
}

/// The state after a round: every message of the folder (by the id Graph shows) with its
/// read state and the UID it is stored under (a rewritten draft is an update).
pub(crate) type Known = BTreeMap<(u32, u32), (bool, bool, u32)>;

#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Upsert(MessageSummary),
    Removed(StoredMessageId),
}

/// A token handed out in a link.
#[derive(Debug, Clone)]
pub(crate) enum DeltaToken {
    /// `$skiptoken`: the rest of a round.
    Skip {
        config: SyncConfig,
        remaining: Vec<Entry>,
        known: Known,
    },
    /// `$deltatoken`: the state a round ended in.
    Delta { config: SyncConfig, known: Known },
}

fn sync_state_not_found(location: &str) -> GraphError {
    GraphError::new(
        StatusCode::GONE,
        "syncStateNotFound",
        "The sync state is not found or has expired. Start a new sync without a delta token.",
    )
    .with_header(header::LOCATION, location.to_owned())
}

fn change_type(v: Option<&str>) -> Result<ChangeType, GraphError> {
    Ok(match v.map(str::to_ascii_lowercase).as_deref() {
        None => ChangeType::All,
        Some("created") => ChangeType::Created,
        Some("updated") => ChangeType::Updated,
        Some("deleted") => ChangeType::Deleted,
        Some(other) => {
            return Err(GraphError::bad_request(format!(
                "The value '{other}' of the changeType query option is not valid."
            )));
        }
    })
}

fn key(id: &StoredMessageId) -> (u32, u32) {
    (id.uid_validity, id.uid)
}

/// `GET .../messages/delta`.
pub async fn delta(ctx: &Ctx, folder: Option<&str>) -> Result<Response, GraphError> {
    let opened = ctx.open(Need::Read).await?;
    let mb = &opened.mailbox;
    let Some(folder) = folder else {
        return Err(GraphError::bad_request(
            "Change tracking is not supported against 'microsoft.graph.message'.",
        ));
    };
    let folder_name = resolve_folder(mb, folder)?;
    let restart = format!("{}/{}", ctx.root(), ctx.path);
    let prefer = ctx.prefer();
    let tokens = &ctx.emulator.graph_state().delta;
    let skip = param(&ctx.query, "$skiptoken");
    let delta_token = param(&ctx.query, "$deltatoken");
    let (config, entries, known) = if let Some(t) = skip.or(delta_token) {
        let Some(found) = lock(tokens).get(t).cloned() else {
            return Err(sync_state_not_found(&restart));
        };
        match found {
            DeltaToken::Skip {
                config,
                remaining,
                known,
            } => {
                if !config.mailbox.eq_ignore_ascii_case(&mb.upn) || config.folder != folder_name {
                    return Err(sync_state_not_found(&restart));
                }
                (config, remaining, known)
            }
            DeltaToken::Delta { mut config, known } => {
                if !config.mailbox.eq_ignore_ascii_case(&mb.upn) || config.folder != folder_name {
                    return Err(sync_state_not_found(&restart));
                }
                if let Some(n) = prefer.max_page_size {
                    config.page_size = n;
                    config.page_size_preferred = true;
                }
                let (entries, known) = round(ctx, &config, &known).await?;
                (config, entries, known)
            }
        }
    } else {
        let filter = match param(&ctx.query, "$filter") {
            Some(f) => parse_filter(f)?,
            None => Filter::default(),
        };
        if filter.is_read.is_some()
            || filter
                .received
                .iter()
                .any(|(op, _)| !matches!(op, Cmp::Ge | Cmp::Gt))
        {
            return Err(GraphError::inefficient_filter());
        }
        let top = param(&ctx.query, "$top").and_then(|t| t.parse::<usize>().ok());
        let config = SyncConfig {
            mailbox: mb.upn.clone(),
            folder: folder_name.clone(),
            select: parse_select(&ctx.query)?,
            received: filter.received,
            change_type: change_type(param(&ctx.query, "changeType"))?,
            page_size: prefer
                .max_page_size
                .or(top)
                .unwrap_or(DEFAULT_PAGE_SIZE)
                .max(1),
            page_size_preferred: prefer.max_page_size.is_some(),
        };
        let (entries, known) = round(ctx, &config, &Known::new()).await?;
        (config, entries, known)
    };
    let split = entries.len().min(config.page_size);
    let (page, rest) = entries.split_at(split);
    let store = ctx.store()?;
    let mut values = Vec::new();
    for e in page {
        match e {
            Entry::Upsert(s) => {
                if let Some(v) = message_value(ctx, &store, s).await? {
                    let mut v = select(v, config.select.as_deref());
                    v.insert("@odata.type".into(), json!("#microsoft.graph.message"));
                    values.push(Value::Object(v));
                }
            }
            Entry::Removed(id) => values.push(json!({
                "@odata.type": "#microsoft.graph.message",
                "id": ids::message_id(id),
                "@removed": {"reason": "deleted"},
            })),
        }
    }
    let new_token = crate::crypto::random_token(48);
    let base = format!(
        "{}/{}/mailFolders('{}')/messages/delta",
        ctx.root(),
        match &ctx.target {
            super::auth::Target::Me => "me".to_owned(),
            super::auth::Target::User(u) => format!("users/{u}"),
        },
        ids::folder_id(&mb.upn, &folder_name)
    );
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#Collection(message)", ctx.root()),
        "value": values,
    });
    let token = if rest.is_empty() {
        body["@odata.deltaLink"] = json!(format!("{base}?$deltatoken={new_token}"));
        DeltaToken::Delta {
            config: config.clone(),
            known,
        }
    } else {
        body["@odata.nextLink"] = json!(format!("{base}?$skiptoken={new_token}"));
        DeltaToken::Skip {
            config: config.clone(),
            remaining: rest.to_vec(),
            known,
        }
    };
    lock(tokens).insert(new_token, token);
    let mut r = json_response(StatusCode::OK, &body);
    if config.page_size_preferred
        && let Ok(v) = HeaderValue::from_str(&format!("odata.maxpagesize={}", config.page_size))
    {
        r.headers_mut().insert("preference-applied", v);
    }
    preference_applied(ctx, &mut r);
    Ok(r)
}

/// The changes of the folder since `known`, and the state after them.
async fn round(
    ctx: &Ctx,
    config: &SyncConfig,
    known: &Known,
) -> Result<(Vec<Entry>, Known), GraphError> {
    let store = ctx.store()?;
    let mut current = store.list(&config.mailbox, &config.folder).await?;
    let filter = Filter {
        is_read: None,
        received: config.received.clone(),
        first_property: None,
    };
    current.retain(|s| filter.matches(s.seen, s.received));
    current.sort_by_key(|s| std::cmp::Reverse((s.received, s.id.uid)));
    let mut entries = Vec::new();
    let mut next = Known::new();
    for s in &current {
        let shown = key(&super::messages::exposed(ctx, &s.id));
        let state = (s.seen, super::messages::has_flag(s, "\\Flagged"), s.id.uid);
        next.insert(shown, state);
        let report = match known.get(&shown) {
            None => matches!(config.change_type, ChangeType::All | ChangeType::Created),
            Some(before) if *before != state => {
                matches!(config.change_type, ChangeType::All | ChangeType::Updated)
            }
            Some(_) => false,
        };
        if report {
            entries.push(Entry::Upsert(s.clone()));
        }
    }
    if matches!(config.change_type, ChangeType::All | ChangeType::Deleted) {
        for (uid_validity, uid) in known.keys() {
            if !next.contains_key(&(*uid_validity, *uid)) {
                entries.push(Entry::Removed(StoredMessageId {
                    mailbox: config.mailbox.clone(),
                    folder: config.folder.clone(),
                    uid_validity: *uid_validity,
                    uid: *uid,
                }));
            }
        }
    }
    Ok((entries, next))
}
