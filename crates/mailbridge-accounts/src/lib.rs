//! mailbridge-accounts: everything the command line and the daemon share about
//! accounts.

pub mod account;
pub mod autodetect;
pub mod check;
pub mod provider;
