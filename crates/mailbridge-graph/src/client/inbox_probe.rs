//! A look at a mail folder without syncing it, for "test receive": the folder's counts
//! ([Get mailFolder](https://learn.microsoft.com/graph/api/mailfolder-get)) and the
//! first message's internet headers
//! ([List messages](https://learn.microsoft.com/graph/api/user-list-messages) with
//! `$top=1&$select=subject,internetMessageHeaders`).

use mailbridge_auth::source::TokenSource;
use serde_json::Value;

use super::{ClientError, GraphClient, Mailbox, percent_encode};

/// A folder's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderCounts {
    pub total: u64,
    pub unread: u64,
}

/// One message's internet headers, in the order Graph lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeaders {
    pub id: String,
    pub subject: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl GraphClient {
    /// The counts of `folder` (an id or a well-known name such as `inbox`).
    pub async fn folder_counts(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        folder: &str,
    ) -> Result<FolderCounts, ClientError> {
        let url = format!(
            "{}{}/mailFolders/{}",
            self.config.root,
            mailbox.path(),
            percent_encode(folder)
        );
        let v = self.json(mailbox, token, &url, |h| h.get(&url)).await?;
        let count = |k: &str| v[k].as_u64();
        match (count("totalItemCount"), count("unreadItemCount")) {
            (Some(total), unread) => Ok(FolderCounts {
                total,
                unread: unread.unwrap_or_default(),
            }),
            _ => Err(ClientError::Protocol(format!(
                "{}: the folder answer has no totalItemCount",
                mailbridge_http::redact(&url)
            ))),
        }
    }

    /// The internet headers of the first message Graph lists in `folder`; `None` when
    /// the folder is empty.
    pub async fn first_message_headers(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        folder: &str,
    ) -> Result<Option<MessageHeaders>, ClientError> {
        let url = self.folder_url(
            mailbox,
            folder,
            "messages?$top=1&$select=subject,internetMessageHeaders",
        );
        let v = self.json(mailbox, token, &url, |h| h.get(&url)).await?;
        let Some(first) = v["value"].as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        let id = first["id"]
            .as_str()
            .ok_or_else(|| {
                ClientError::Protocol(format!(
                    "{}: a message without an id",
                    mailbridge_http::redact(&url)
                ))
            })?
            .to_owned();
        let headers = first["internetMessageHeaders"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| {
                        let name = h["name"].as_str()?;
                        let value = h.get("value").and_then(Value::as_str).unwrap_or_default();
                        Some((name.to_owned(), value.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(MessageHeaders {
            id,
            subject: first["subject"].as_str().map(str::to_owned),
            headers,
        }))
    }
}
