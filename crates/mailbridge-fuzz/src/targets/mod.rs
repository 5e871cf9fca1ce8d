//! The fuzz targets, one file per area. Each file's `TARGETS` lists its targets.

pub mod auth;
pub mod ews;
pub mod graph;
pub mod imap;
pub mod mailbox;
pub mod pop3;
pub mod smtp;
