//! Tests of the Graph surface (`microsoft-protocols.md` §3, §8.2 Graph column): an
//! emulator on a free port, tokens minted for the emulated tenant, plain HTTP.

mod access;
mod mail;
mod support;
