//! Peak memory of a piece of work, measured in a child process (the peak resident set
//! is per process, and a test binary runs many tests): the parent runs one test of its
//! own binary again with an environment variable set, and that test prints
//! `PEAK_KIB=<n>` after its work.

/// Peak resident set (`VmHWM`) of this process, in KiB.
pub fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Runs test `test` (its full path, e.g. `hostile::child_lists_an_endless_uidl`) of
/// this test binary in a child process with `env` set to `1`, and returns the peak
/// the child printed as `PEAK_KIB=<n>`, with its whole output. Panics, with the
/// child's output, when the child fails or prints no peak.
pub fn child_peak_kib(test: &str, env: &str) -> (u64, String) {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture"])
        .env(env, "1")
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("PEAK_KIB="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the child printed no PEAK_KIB: {stdout}"));
    (peak, stdout)
}
