//! The token cache: MSAL's semantics in Rust.
//!
//! - keyed by (authority, client id, account, sorted scopes);
//! - a token counts as expired 5 minutes before `expires_at`;
//! - proactive refresh once `refresh_at` (from `refresh_in`) has passed, falling back
//!   to the still-valid token when the refresh fails;
//! - single flight per key: concurrent callers wait for one request to the token
//!   endpoint and share its answer;
//! - a token a resource rejected (HTTP 401) is replaced once: callers that hand back
//!   the same rejected token together cause one request, and one that hands back a
//!   token already replaced gets the replacement ([`TokenCache::replace_rejected`]);
//! - throttled or transient failures are retried a bounded number of times with
//!   backoff (honouring `Retry-After`, also on 5xx answers; a `Retry-After` longer
//!   than the policy's longest wait is returned, not cut short), never in a tight loop.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mailbridge_types::{Clock, ErrorClass};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::token::{AuthError, TokenSet};

/// A token counts as expired this long before its real expiry.
pub const EXPIRY_MARGIN: time::Duration = time::Duration::minutes(5);

/// Identifies one cached access token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    pub authority: String,
    pub client_id: String,
    /// The account (mailbox address) or `app` for app-only tokens.
    pub account: String,
    /// Sorted, deduplicated.
    pub scopes: Vec<String>,
}

impl CacheKey {
    /// A key; scopes are sorted and deduplicated.
    pub fn new(authority: &str, client_id: &str, account: &str, scopes: &[String]) -> Self {
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        Self {
            authority: authority.to_owned(),
            client_id: client_id.to_ascii_lowercase(),
            account: account.to_ascii_lowercase(),
            scopes,
        }
    }
}

struct Cached {
    access_token: SecretString,
    expires_at: OffsetDateTime,
    refresh_at: Option<OffsetDateTime>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Retry policy for the token endpoint.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubles each time, with up to 50 % jitter.
    pub base_delay: Duration,
    /// Longest wait, also for `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_mins(1),
        }
    }
}

/// Shared access-token cache.
pub struct TokenCache {
    clock: Arc<dyn Clock>,
    slots: Mutex<HashMap<CacheKey, Slot>>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field(
                "entries",
                &self.slots.lock().map(|s| s.len()).unwrap_or_default(),
            )
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// An empty cache.
    pub fn new(clock: Arc<dyn Clock>, retry: RetryPolicy) -> Self {
        Self {
            clock,
            slots: Mutex::new(HashMap::new()),
            retry,
        }
    }

    fn slot(&self, key: &CacheKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(key.clone()).or_default().clone()
    }

    /// Forgets a token (after a resource rejected it, or on sign-out).
    pub async fn invalidate(&self, key: &CacheKey) {
        *self.slot(key).lock().await = None;
    }

    /// A valid access token for `key`: the cached one, or one from `fetch` (called at
    /// most once per key at a time, with retries for transient failures).
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: &CacheKey,
        mut fetch: F,
    ) -> Result<SecretString, AuthError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<TokenSet, AuthError>>,
    {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        let now = self.clock.now();
        let still_valid = guard
            .as_ref()
            .filter(|c| now < c.expires_at - EXPIRY_MARGIN)
            .map(|c| {
                (
                    SecretString::from(c.access_token.expose_secret().to_owned()),
                    c.refresh_at,
                )
            });
        if let Some((token, refresh_at)) = &still_valid
            && refresh_at.is_none_or(|at| now < at)
        {
            return Ok(SecretString::from(token.expose_secret().to_owned()));
        }
        match self.fetch_with_retry(&mut fetch).await {
            Ok(set) => {
                let token = SecretString::from(set.access_token.expose_secret().to_owned());
                *guard = Some(Cached {
                    access_token: set.access_token,
                    expires_at: set.expires_at,
                    refresh_at: set.refresh_at,
                });
                Ok(token)
            }
            Err(e) => match still_valid {
                // Proactive refresh failed: the old token is still good.
                Some((token, _)) => Ok(token),
                None => Err(e),
            },
        }
    }

    /// A new access token for `key` after a resource rejected `rejected` (HTTP 401)
    /// though it looked valid. When the cached token is no longer `rejected` (another
    /// caller replaced it meanwhile) and is still valid, that one is returned without a
    /// request; otherwise `fetch` is called (single flight, with retries), whatever the
    /// cached expiry says. On failure the rejected token is forgotten, so it is not
    /// handed out again.
    pub async fn replace_rejected<F, Fut>(
        &self,
        key: &CacheKey,
        rejected: &SecretString,
        mut fetch: F,
    ) -> Result<SecretString, AuthError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<TokenSet, AuthError>>,
    {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        let now = self.clock.now();
        if let Some(c) = guard.as_ref()
            && c.access_token.expose_secret() != rejected.expose_secret()
            && now < c.expires_at - EXPIRY_MARGIN
        {
            return Ok(SecretString::from(
                c.access_token.expose_secret().to_owned(),
            ));
        }
        match self.fetch_with_retry(&mut fetch).await {
            Ok(set) => {
                let token = SecretString::from(set.access_token.expose_secret().to_owned());
                *guard = Some(Cached {
                    access_token: set.access_token,
                    expires_at: set.expires_at,
                    refresh_at: set.refresh_at,
                });
                Ok(token)
            }
            Err(e) => {
                if guard
                    .as_ref()
                    .is_some_and(|c| c.access_token.expose_secret() == rejected.expose_secret())
                {
                    *guard = None;
                }
                Err(e)
            }
        }
    }

    async fn fetch_with_retry<F, Fut>(&self, fetch: &mut F) -> Result<TokenSet, AuthError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<TokenSet, AuthError>>,
    {
        let mut delay = self.retry.base_delay;
        let mut attempt = 1;
        loop {
            match fetch().await {
                Ok(set) => return Ok(set),
                Err(e) => {
                    let wait = match e.class() {
                        // Never sooner than asked: a longer wait than the policy allows
                        // goes back to the caller, whose error says how long.
                        ErrorClass::Throttled {
                            retry_after: Some(retry_after),
                        } if retry_after > self.retry.max_delay => return Err(e),
                        ErrorClass::Throttled { retry_after } => retry_after.unwrap_or(delay),
                        ErrorClass::Transient => delay,
                        _ => return Err(e),
                    };
                    if attempt >= self.retry.attempts {
                        return Err(e);
                    }
                    let jitter = wait.mul_f64(rand_fraction() * 0.5);
                    tokio::time::sleep((wait + jitter).min(self.retry.max_delay)).await;
                    delay = (delay * 2).min(self.retry.max_delay);
                    attempt += 1;
                }
            }
        }
    }
}

fn rand_fraction() -> f64 {
    let mut b = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut b);
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailbridge_types::OffsetClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn set(clock: &OffsetClock, token: &str, expires_in: i64) -> TokenSet {
        TokenSet {
            access_token: SecretString::from(token),
            expires_at: clock.now() + time::Duration::seconds(expires_in),
            refresh_at: None,
            scopes: Vec::new(),
            refresh_token: None,
            id_token: None,
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn token_is_reused_until_five_minutes_before_expiry() {
        let clock = Arc::new(OffsetClock::new());
        let cache = TokenCache::new(clock.clone(), fast());
        let key = CacheKey::new("a", "c", "x", &["s".into()]);
        let calls = AtomicU32::new(0);
        let fetch = || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let s = set(&clock, &format!("t{n}"), 3600);
            async move { Ok(s) }
        };
        assert_eq!(
            cache
                .get_or_fetch(&key, fetch)
                .await
                .unwrap()
                .expose_secret(),
            "t0"
        );
        clock.advance(time::Duration::minutes(54));
        assert_eq!(
            cache
                .get_or_fetch(&key, fetch)
                .await
                .unwrap()
                .expose_secret(),
            "t0"
        );
        clock.advance(time::Duration::minutes(1) + time::Duration::seconds(1));
        assert_eq!(
            cache
                .get_or_fetch(&key, fetch)
                .await
                .unwrap()
                .expose_secret(),
            "t1"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn hundred_concurrent_callers_make_one_request() {
        let clock = Arc::new(OffsetClock::new());
        let cache = Arc::new(TokenCache::new(clock.clone(), fast()));
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (cache, calls, clock) = (cache.clone(), calls.clone(), clock.clone());
            tasks.push(tokio::spawn(async move {
                let key = CacheKey::new("a", "c", "x", &["b".into(), "a".into()]);
                cache
                    .get_or_fetch(&key, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let s = set(&clock, "t", 3600);
                        async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(s)
                        }
                    })
                    .await
                    .unwrap()
                    .expose_secret()
                    .to_owned()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "t");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn throttling_is_retried_and_real_errors_are_not() {
        let clock = Arc::new(OffsetClock::new());
        let cache = TokenCache::new(clock.clone(), fast());
        let key = CacheKey::new("a", "c", "x", &[]);
        let calls = AtomicU32::new(0);
        let token = cache
            .get_or_fetch(&key, || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let s = set(&clock, "ok", 3600);
                async move {
                    if n < 2 {
                        Err(AuthError::Status {
                            status: 429,
                            retry_after: Some(Duration::from_millis(1)),
                        })
                    } else {
                        Ok(s)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(token.expose_secret(), "ok");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let key2 = CacheKey::new("a", "c", "y", &[]);
        let calls2 = AtomicU32::new(0);
        let err = cache
            .get_or_fetch(&key2, || {
                calls2.fetch_add(1, Ordering::SeqCst);
                async {
                    Err(AuthError::Status {
                        status: 400,
                        retry_after: None,
                    })
                }
            })
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(calls2.load(Ordering::SeqCst), 1);

        let key3 = CacheKey::new("a", "c", "z", &[]);
        let calls3 = AtomicU32::new(0);
        let err = cache
            .get_or_fetch(&key3, || {
                calls3.fetch_add(1, Ordering::SeqCst);
                async {
                    Err(AuthError::Status {
                        status: 503,
                        retry_after: None,
                    })
                }
            })
            .await
            .unwrap_err();
        assert!(err.class().is_retryable());
        assert_eq!(calls3.load(Ordering::SeqCst), 3, "bounded retries");
    }

    #[tokio::test]
    async fn a_rejected_token_is_replaced_once_for_all_who_hand_it_back() {
        let clock = Arc::new(OffsetClock::new());
        let cache = Arc::new(TokenCache::new(clock.clone(), fast()));
        let key = CacheKey::new("a", "c", "x", &[]);
        let calls = Arc::new(AtomicU32::new(0));
        let fetch = {
            let (calls, clock) = (calls.clone(), clock.clone());
            move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let s = set(&clock, &format!("t{n}"), 3600);
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok(s)
                }
            }
        };
        let first = cache.get_or_fetch(&key, fetch.clone()).await.unwrap();
        assert_eq!(first.expose_secret(), "t0");
        // Twenty callers were refused with t0 at once: one request, one new token.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, key, fetch) = (cache.clone(), key.clone(), fetch.clone());
            let rejected = SecretString::from("t0");
            tasks.push(tokio::spawn(async move {
                cache
                    .replace_rejected(&key, &rejected, fetch)
                    .await
                    .unwrap()
                    .expose_secret()
                    .to_owned()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // The replacement is what everyone gets now; t1 rejected in turn is replaced.
        let now = cache.get_or_fetch(&key, fetch.clone()).await.unwrap();
        assert_eq!(now.expose_secret(), "t1");
        let next = cache
            .replace_rejected(&key, &SecretString::from("t1"), fetch.clone())
            .await
            .unwrap();
        assert_eq!(next.expose_secret(), "t2");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_rejected_token_is_not_handed_out_again_when_no_new_one_comes() {
        let clock = Arc::new(OffsetClock::new());
        let cache = TokenCache::new(clock.clone(), fast());
        let key = CacheKey::new("a", "c", "x", &[]);
        cache
            .get_or_fetch(&key, || {
                let s = set(&clock, "old", 3600);
                async move { Ok(s) }
            })
            .await
            .unwrap();
        let err = cache
            .replace_rejected(&key, &SecretString::from("old"), || async {
                Err(AuthError::Status {
                    status: 400,
                    retry_after: None,
                })
            })
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        let calls = AtomicU32::new(0);
        let t = cache
            .get_or_fetch(&key, || {
                calls.fetch_add(1, Ordering::SeqCst);
                let s = set(&clock, "new", 3600);
                async move { Ok(s) }
            })
            .await
            .unwrap();
        assert_eq!(t.expose_secret(), "new");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failed_proactive_refresh_falls_back_to_the_valid_token() {
        let clock = Arc::new(OffsetClock::new());
        let cache = TokenCache::new(clock.clone(), fast());
        let key = CacheKey::new("a", "c", "x", &[]);
        let refresh_at = Some(clock.now() + time::Duration::minutes(30));
        cache
            .get_or_fetch(&key, || {
                let mut first = set(&clock, "old", 3600);
                first.refresh_at = refresh_at;
                async move { Ok(first) }
            })
            .await
            .unwrap();
        clock.advance(time::Duration::minutes(31));
        let t = cache
            .get_or_fetch(&key, || async {
                Err(AuthError::Status {
                    status: 503,
                    retry_after: None,
                })
            })
            .await
            .unwrap();
        assert_eq!(t.expose_secret(), "old");
    }
}
