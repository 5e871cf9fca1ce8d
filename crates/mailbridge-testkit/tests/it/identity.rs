//! Tests of the identity surface: every flow end to end over HTTP, driven through the
//! HTML pages the way a browser would, and every admin-mistake row of
//! `microsoft-protocols.md` §8.2 that shows a token-endpoint answer.

mod app_only;
mod authcode;
mod device;
mod discovery;
mod matrix;
mod support;
