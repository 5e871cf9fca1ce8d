//! Fuzz targets for the SMTP parsers (`mailbridge_smtp::reply`): replies (multi-line,
//! enhanced status codes, what they mean) and EHLO capabilities, with explicit limits.

use mailbridge_smtp::reply::{Capabilities, EnhancedCode, ReplyLimits, parse};

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "smtp_reply",
        run: smtp_reply,
    },
    Target {
        name: "smtp_ehlo",
        run: smtp_ehlo,
    },
];

/// Small bounds, so that the fuzzer reaches them.
const LIMITS: ReplyLimits = ReplyLimits {
    max_line: 512,
    max_lines: 16,
    max_bytes: 2048,
};

/// One reply: within the bounds, never more bytes used than given, text printable,
/// and its meaning and enhanced codes computed.
fn smtp_reply(data: &[u8]) {
    if let Ok(Some((reply, used))) = parse(data, &LIMITS) {
        assert!(used <= data.len());
        assert!(!reply.lines.is_empty() && reply.lines.len() <= LIMITS.max_lines);
        assert!((100..600).contains(&reply.code));
        assert!(reply.lines.iter().all(|l| !l.chars().any(char::is_control)));
        for code in reply.enhanced() {
            assert_eq!(EnhancedCode::parse(&code.to_string()), Some(code));
        }
        let meaning = reply.meaning();
        let _ = (meaning.class(), meaning.fix(), meaning.password_fix());
    }
}

/// An EHLO reply's capabilities: keywords, AUTH mechanisms, SIZE.
fn smtp_ehlo(data: &[u8]) {
    if let Ok(Some((reply, _))) = parse(data, &LIMITS) {
        let caps = Capabilities::parse(&reply.lines);
        assert!(caps.entries.len() < reply.lines.len().max(1));
        let _ = (
            caps.has("PIPELINING"),
            caps.auth_mechanisms(),
            caps.max_size(),
        );
    }
}

#[cfg(test)]
mod tests {
    /// Every seed, and mutations of it (byte flips, cuts, splices, repeats), run
    /// without a panic. `MAILBRIDGE_FUZZ_ROUNDS` sets the mutations per seed.
    #[test]
    fn seeds_and_their_mutations_never_panic() {
        let rounds: usize = std::env::var("MAILBRIDGE_FUZZ_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(300);
        for target in super::TARGETS {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fuzz/corpus")
                .join(target.name);
            let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect();
            assert!(seeds.len() >= 3, "{}: seed corpus", target.name);
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                usize::try_from(state % 1_000_003).unwrap()
            };
            for seed in &seeds {
                (target.run)(seed);
                for _ in 0..rounds {
                    let mut input = seed.clone();
                    for _ in 0..=next() % 4 {
                        let len = input.len().max(1);
                        match next() % 5 {
                            0 if !input.is_empty() => {
                                let i = next() % len;
                                input[i] = u8::try_from(next() % 256).unwrap();
                            }
                            1 => input.truncate(next() % len),
                            2 => {
                                let other = &seeds[next() % seeds.len()];
                                let at = next() % (other.len().max(1));
                                input.extend_from_slice(&other[at.min(other.len())..]);
                            }
                            3 if !input.is_empty() => {
                                let i = next() % len;
                                let piece = input[i..].to_vec();
                                input.splice(i..i, piece);
                            }
                            _ => input.insert(next() % (input.len() + 1), b"\r\n.-+ 0"[next() % 7]),
                        }
                    }
                    (target.run)(&input);
                }
            }
        }
    }
}
