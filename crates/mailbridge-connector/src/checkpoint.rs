//! Where a sync stopped, kept per account and key: the [`CheckpointStore`] the sync
//! loop writes each durable checkpoint to, implemented for the store.

use std::future::Future;
use std::path::Path;

use mailbridge_mailbox::mailbox::Checkpoint;

/// Keeps checkpoints per account and key ([`checkpoint_key`]). A saved checkpoint is
/// durable when `save` returns.
pub trait CheckpointStore: Sync {
    /// Why reading or writing failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoint last saved under `account` and `key`; `None` before the first.
    fn load(
        &self,
        account: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, Self::Error>> + Send;

    /// Saves `checkpoint` under `account` and `key`, replacing the one there.
    fn save(
        &self,
        account: &str,
        key: &str,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl CheckpointStore for mailbridge_store::Store {
    type Error = mailbridge_store::StoreError;

    async fn load(&self, account: &str, key: &str) -> Result<Option<Checkpoint>, Self::Error> {
        self.checkpoint(account, key).await
    }

    async fn save(
        &self,
        account: &str,
        key: &str,
        checkpoint: &Checkpoint,
    ) -> Result<(), Self::Error> {
        self.set_checkpoint(account, key, checkpoint).await
    }
}

/// The key of the checkpoint of `folder` synced into the directory `out` (as
/// given, canonical paths preferred): another directory starts over. The same key
/// earlier versions of `mailbridge fetch` used, so their checkpoints still count.
pub fn checkpoint_key(folder: &str, out: &Path) -> String {
    format!("{folder}\u{1f}{}", out.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_one_fetch_always_used() {
        assert_eq!(
            checkpoint_key("INBOX", Path::new("/home/a/mail")),
            "INBOX\u{1f}/home/a/mail"
        );
        assert_ne!(
            checkpoint_key("INBOX", Path::new("/m")),
            checkpoint_key("Sent", Path::new("/m"))
        );
    }
}
