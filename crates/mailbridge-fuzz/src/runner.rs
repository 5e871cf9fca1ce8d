//! The stable-Rust fuzz runner: replays a target's seed corpus, then feeds it random
//! mutations of those seeds until the time is up. It is not coverage-guided (that is
//! cargo-fuzz's job, on nightly); it needs nothing but stable Rust, so `scripts/test`
//! runs every target on every change.
//!
//! A panic is a finding: the input is written to `<artifacts>/<target>/crash-<hash>`
//! and the run reports it.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Target;

/// The largest input the runner makes.
const MAX_INPUT: usize = 64 * 1024;

/// Byte strings that mean something to the parsers under test: line ends, literal
/// announcements, huge numbers, JSON and XML punctuation, base64 padding.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b" ",
    b"{",
    b"}",
    b"{18446744073709551615}\r\n",
    b"{9223372036854775807}\r\n",
    b"{0}\r\n",
    b"4294967295",
    b"18446744073709551616",
    b"-1",
    b"* ",
    b"+ ",
    b"A1 OK ",
    b"250-",
    b"250 ",
    b"+OK ",
    b"-ERR ",
    b".\r\n",
    b"\"",
    b"\\",
    b"[",
    b"]",
    b"(",
    b")",
    b":",
    b",",
    b"null",
    b"\"@odata.nextLink\":",
    b"<",
    b">",
    b"</",
    b"/>",
    b"&amp;",
    b"&#x0;",
    b"<![CDATA[",
    b"]]>",
    b"=",
    b"==",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xf0\x9f\x92\xa9",
];

/// What one target's run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub target: &'static str,
    pub seeds: usize,
    pub executions: u64,
    pub elapsed: Duration,
    /// Inputs that made the target panic, as written to the artifacts directory.
    pub crashes: Vec<PathBuf>,
}

/// A small, fast pseudo-random generator (xorshift64*), seeded per run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % (n.max(1) as u64)).unwrap_or(0)
    }
}

/// The seed inputs of a corpus directory (every regular file), sorted by name.
pub fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.into_iter().filter_map(|p| fs::read(p).ok()).collect()
}

/// One random change to `input`, drawing on `seeds` for splices.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let pos = |rng: &mut Rng, len: usize| rng.below(len + 1);
    match rng.below(9) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = [0, 0xff, b'0', b'9', b' ', b'\r', b'\n', 0x7f][rng.below(8)];
        }
        2 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            let at = pos(rng, input.len());
            input.splice(at..at, token.iter().copied());
        }
        3 if !input.is_empty() => {
            let start = rng.below(input.len());
            let len = rng.below((input.len() - start).min(256)) + 1;
            input.drain(start..start + len);
        }
        4 if !input.is_empty() => {
            let start = rng.below(input.len());
            let len = rng.below((input.len() - start).min(512)) + 1;
            let chunk = input[start..start + len].to_vec();
            let at = pos(rng, input.len());
            input.splice(at..at, chunk);
        }
        5 if !seeds.is_empty() => {
            let other = &seeds[rng.below(seeds.len())];
            let cut = pos(rng, input.len());
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        6 if !input.is_empty() => {
            let at = rng.below(input.len());
            input.truncate(at);
        }
        7 => {
            // A run of digits: sizes, counts, UIDs.
            let at = pos(rng, input.len());
            let digits: Vec<u8> = (0..=rng.below(24))
                .map(|_| b'0' + u8::try_from(rng.below(10)).unwrap_or(0))
                .collect();
            input.splice(at..at, digits);
        }
        _ => {
            let at = pos(rng, input.len());
            let byte = u8::try_from(rng.below(256)).unwrap_or(0);
            input.insert(at, byte);
        }
    }
    input.truncate(MAX_INPUT);
}

/// Runs `input` through the target; `Err` with the panic message when it panics.
pub fn run_one(target: &Target, input: &[u8]) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

/// A stable name for an input: FNV-1a of its bytes.
fn input_hash(input: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Replays `target`'s corpus, then mutates it for `duration`. Panics are caught,
/// written under `artifacts/<target>/` and returned in the report; the run goes on.
pub fn run_target(
    target: &Target,
    corpus_dir: &Path,
    artifacts_dir: &Path,
    duration: Duration,
    seed: u64,
) -> RunReport {
    let seeds = read_corpus(corpus_dir);
    let mut rng = Rng::new(seed ^ u64::from_le_bytes(*b"mailbrdg"));
    let mut crashes = Vec::new();
    let mut executions = 0u64;
    let start = Instant::now();
    let record = |input: &[u8], message: &str, crashes: &mut Vec<PathBuf>| {
        let dir = artifacts_dir.join(target.name);
        let path = dir.join(format!("crash-{}", input_hash(input)));
        if !crashes.contains(&path) {
            let _ = fs::create_dir_all(&dir);
            let _ = fs::write(&path, input);
            eprintln!(
                "{}: panic ({message}) on an input of {} bytes, saved as {}",
                target.name,
                input.len(),
                path.display()
            );
            crashes.push(path);
        }
    };
    for input in &seeds {
        executions += 1;
        if let Err(message) = run_one(target, input) {
            record(input, &message, &mut crashes);
        }
    }
    let mut input = Vec::new();
    while start.elapsed() < duration && crashes.len() < 10 {
        // 64 executions between clock reads.
        for _ in 0..64 {
            if rng.below(16) == 0 || input.is_empty() {
                input = if seeds.is_empty() {
                    Vec::new()
                } else {
                    seeds[rng.below(seeds.len())].clone()
                };
            }
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut input, &seeds);
            }
            executions += 1;
            if let Err(message) = run_one(target, &input) {
                record(&input, &message, &mut crashes);
                input.clear();
            }
        }
    }
    RunReport {
        target: target.name,
        seeds: seeds.len(),
        executions,
        elapsed: start.elapsed(),
        crashes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_on_bang(data: &[u8]) {
        assert!(!data.contains(&b'!'), "found a bang");
    }

    #[test]
    fn a_panicking_input_is_found_and_saved() {
        let dir = tempfile_dir();
        let corpus = dir.join("corpus");
        fs::create_dir_all(&corpus).unwrap();
        fs::write(corpus.join("seed"), b"hello world").unwrap();
        let target = Target {
            name: "bang",
            run: panics_on_bang,
        };
        let prev = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        let report = run_target(
            &target,
            &corpus,
            &dir.join("artifacts"),
            Duration::from_secs(20),
            7,
        );
        panic::set_hook(prev);
        assert!(!report.crashes.is_empty(), "the runner never made a '!'");
        let saved = fs::read(&report.crashes[0]).unwrap();
        assert!(saved.contains(&b'!'));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn mutations_stay_within_the_input_bound() {
        let mut rng = Rng::new(1);
        let seeds = vec![vec![b'a'; MAX_INPUT]];
        let mut input = seeds[0].clone();
        for _ in 0..10_000 {
            mutate(&mut rng, &mut input, &seeds);
            assert!(input.len() <= MAX_INPUT);
        }
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mailbridge-fuzz-test-{}-{}",
            std::process::id(),
            input_hash(format!("{:?}", Instant::now()).as_bytes())
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
