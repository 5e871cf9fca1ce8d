//! `mailbridge-fuzz`: runs the fuzz targets on stable Rust.
//!
//! ```text
//! mailbridge-fuzz list
//! mailbridge-fuzz run [--seconds N] [--seed S] [--root DIR] [TARGET...]
//! mailbridge-fuzz replay TARGET FILE...
//! ```
//!
//! `run` replays each target's corpus (`<root>/fuzz/corpus/<target>`), then mutates it
//! for N seconds (default 5); a panic is saved under `<root>/fuzz/artifacts/<target>/`
//! and makes the exit code 1. `replay` runs given files (a crash found by cargo-fuzz
//! or this runner) once each.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailbridge_fuzz::runner::{run_one, run_target};
use mailbridge_fuzz::{Target, all, find};

fn usage() -> ExitCode {
    eprintln!(
        "usage: mailbridge-fuzz list\n       mailbridge-fuzz run [--seconds N] [--seed S] [--root DIR] [TARGET...]\n       mailbridge-fuzz replay TARGET FILE..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => {
            for t in all() {
                println!("{}", t.name);
            }
            ExitCode::SUCCESS
        }
        Some("run") => run(&args[1..]),
        Some("replay") => replay(&args[1..]),
        _ => usage(),
    }
}

fn run(args: &[String]) -> ExitCode {
    let mut seconds = 5u64;
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let mut root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next().cloned().ok_or_else(|| {
                eprintln!("mailbridge-fuzz: {arg} needs {what}");
            })
        };
        match arg.as_str() {
            "--seconds" => match value("a number").map(|v| v.parse()) {
                Ok(Ok(n)) => seconds = n,
                _ => return usage(),
            },
            "--seed" => match value("a number").map(|v| v.parse()) {
                Ok(Ok(n)) => seed = n,
                _ => return usage(),
            },
            "--root" => match value("a directory") {
                Ok(v) => root = PathBuf::from(v),
                Err(()) => return usage(),
            },
            name => names.push(name.to_owned()),
        }
    }
    let targets: Vec<Target> = if names.is_empty() {
        all()
    } else {
        let mut picked = Vec::new();
        for n in &names {
            let Some(t) = find(n) else {
                eprintln!("mailbridge-fuzz: no target named {n} (see `mailbridge-fuzz list`)");
                return ExitCode::from(2);
            };
            picked.push(t);
        }
        picked
    };
    // Panics are reported once per saved input, not with a backtrace per execution.
    std::panic::set_hook(Box::new(|_| {}));
    println!("seed {seed}, {seconds} s per target");
    println!(
        "{:<28} {:>6} {:>12} {:>10} {:>8}",
        "target", "seeds", "executions", "per s", "crashes"
    );
    let mut failed = false;
    for t in &targets {
        let corpus = root.join("fuzz/corpus").join(t.name);
        let report = run_target(
            t,
            &corpus,
            &root.join("fuzz/artifacts"),
            Duration::from_secs(seconds),
            seed,
        );
        let millis: u64 = report
            .elapsed
            .as_millis()
            .max(1)
            .try_into()
            .unwrap_or(u64::MAX);
        let per_s = report.executions.saturating_mul(1000) / millis;
        println!(
            "{:<28} {:>6} {:>12} {:>10} {:>8}",
            report.target,
            report.seeds,
            report.executions,
            per_s,
            report.crashes.len()
        );
        if report.seeds == 0 {
            eprintln!("{}: no seed corpus in {}", t.name, corpus.display());
            failed = true;
        }
        if !report.crashes.is_empty() {
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn replay(args: &[String]) -> ExitCode {
    let Some((name, files)) = args.split_first() else {
        return usage();
    };
    let Some(target) = find(name) else {
        eprintln!("mailbridge-fuzz: no target named {name}");
        return ExitCode::from(2);
    };
    let mut failed = false;
    for f in files {
        let Ok(input) = std::fs::read(f) else {
            eprintln!("mailbridge-fuzz: cannot read {f}");
            return ExitCode::from(2);
        };
        match run_one(&target, &input) {
            Ok(()) => println!("{f}: ok"),
            Err(message) => {
                println!("{f}: panic: {message}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
