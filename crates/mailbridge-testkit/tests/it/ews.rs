//! Tests of the EWS (`/EWS/Exchange.asmx`) and Autodiscover v2 surfaces, talking to them
//! over HTTP with SOAP bodies written the way real clients send them.

mod auth;
mod autodiscover;
mod faults;
mod mailbox;
mod support;
