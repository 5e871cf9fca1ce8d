//! Gathers each language's message files (`locales/<lang>/*.ftl`, by name) into one
//! text per language, embedded by `src/i18n.rs`: each page area keeps its own file,
//! and a new file needs no list edited by hand.

use std::fmt::Write as _;
use std::path::Path;

const LANGUAGES: [&str; 5] = ["en", "pl", "de", "fr", "ru"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("locales");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::from(
        "/// The languages, English first (the reference), each with its messages.\npub const LANGUAGES: [(&str, &str); 5] = [\n",
    );
    for lang in LANGUAGES {
        let dir = root.join(lang);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "ftl"))
            .collect();
        files.sort();
        let _ = write!(out, "    (\"{lang}\", concat!(");
        for file in &files {
            println!("cargo:rerun-if-changed={}", file.display());
            let _ = write!(
                out,
                "include_str!({:?}), \"\\n\", ",
                file.display().to_string()
            );
        }
        out.push_str(")),\n");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("locales.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}
