//! mailbridge-accounts: everything the command line and the daemon share about
//! accounts, so that both call the same functions.
//!
//! Parts:
//! - [`provider`]: built-in providers (Microsoft 365 over Graph, IMAP/SMTP, POP/SMTP and
//!   EWS, the last with Exchange Online's retirement notice; Outlook.com; Exchange
//!   on-premises over EWS; Gmail; generic IMAP/SMTP), the defaults a provider gives its
//!   accounts (app, extra CA file, TLS pins), and the domain -> provider table.
//! - [`autodetect`]: from an address to a provider and endpoints, step by step (domain
//!   table, MX, the tenant's OpenID configuration, Autodiscover v2, Thunderbird
//!   autoconfig, SRV records), each with a timeout and an injectable base URL or
//!   resolver; the result says which step decided.
//! - [`account`]: accounts made from a provider or a detection, and the validation of
//!   accounts and apps (each problem names the setting and what to change; host names,
//!   ports, URLs, pins and name lengths included).
//! - [`endpoint`]: the endpoint-URL grammar (`imaps://host:port`, `smtp+starttls://`,
//!   `graph+https://`, ...) and an endpoint written back in it.
//! - [`check`]: "test receive" (IMAP, POP3, Graph, EWS: open the inbox and read one
//!   header) and "test send" (SMTP, Graph, EWS), step by step with times, naming the
//!   cause and fix of every §8.2 admin mistake from the token's claims and the
//!   server's reply.
//! - [`master_key`]: where the master key comes from (environment, passphrase, key
//!   file), opening the store in the data directory (finishing a key rotation that
//!   stopped half-way), and the library half of a key rotation.
//! - [`catalog`]: the apps and accounts in force (the store's, then the configuration
//!   file's), looking an account and its app up, and the provider table.
//! - [`signin`]: an app's authority, token client and credential, an account's scopes
//!   per transport, and [`signin::SignIn`], the long-lived service that hands out an
//!   account's password or access token through one token cache (single flight).
//! - [`health`]: when apps' secrets and certificates expire and how long refresh
//!   tokens have been idle, with the warnings to act on.
//! - [`transfer`]: import (checked whole first) and export of apps, accounts and, on
//!   request, secrets.
//! - [`error`]: this crate's error: a typed kind, a class, the source kept.

pub mod account;
pub mod autodetect;
pub mod catalog;
pub mod check;
pub mod endpoint;
pub mod error;
pub mod health;
pub mod master_key;
pub mod provider;
pub mod signin;
pub mod transfer;

pub use error::{Error, ErrorKind};
