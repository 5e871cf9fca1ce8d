//! `mailbridge-testkit serve --config tenant.toml`: the emulated tenant as a program.

fn main() {}
