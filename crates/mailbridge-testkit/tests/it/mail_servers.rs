//! Tests of the mail servers surface: real Dovecot and Postfix judged by the emulator
//! with Exchange Online's rules, and the mail store over them.

mod fixture;

mod auth;
mod delivery;
mod harness;
mod matrix;
mod store;
