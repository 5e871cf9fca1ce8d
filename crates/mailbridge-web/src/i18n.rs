//! The pages' languages: English, Polish, German, French and Russian, with Project
//! Fluent (`fluent-bundle`, the reference implementation's Rust crate). Every text of
//! a page is a message in `locales/<lang>/<area>.ftl`, embedded in the binary; values go in
//! as Fluent arguments, never by joining strings, so each language orders its own
//! sentence.
//!
//! Which language: the user's own setting, else the browser's `Accept-Language`
//! (highest weight first, by primary subtag), else English ([`negotiate`]).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

// The languages, English first (the reference), each with its messages: every file
// of `locales/<lang>/` joined in name order (made by `build.rs`).
include!(concat!(env!("OUT_DIR"), "/locales.rs"));

/// The language used when nothing else matches.
pub const DEFAULT: &str = "en";

/// Every language's bundle, parsed once.
static BUNDLES: LazyLock<BTreeMap<&'static str, FluentBundle<FluentResource>>> =
    LazyLock::new(|| {
        LANGUAGES
            .iter()
            .map(|(tag, text)| (*tag, bundle(tag, text)))
            .collect()
    });

fn bundle(tag: &str, text: &str) -> FluentBundle<FluentResource> {
    let id: unic_langid::LanguageIdentifier = tag.parse().unwrap_or_default();
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // Plain text: the pages are HTML with `lang` set, no bidirectional isolation marks.
    bundle.set_use_isolating(false);
    let resource = FluentResource::try_new(text.to_owned()).unwrap_or_else(|(partial, errors)| {
        tracing::error!(language = tag, ?errors, "a locale file has syntax errors");
        partial
    });
    if let Err(errors) = bundle.add_resource(resource) {
        tracing::error!(
            language = tag,
            ?errors,
            "a locale file repeats a message id"
        );
    }
    bundle
}

/// The supported language tag for `tag` (`pl-PL` -> `pl`), if any.
pub fn supported(tag: &str) -> Option<&'static str> {
    let primary = tag.split(['-', '_']).next()?.trim();
    LANGUAGES
        .iter()
        .map(|(t, _)| *t)
        .find(|t| t.eq_ignore_ascii_case(primary))
}

/// The language of a page: `user`'s setting when supported, else the best supported
/// language of `accept_language` (an `Accept-Language` header), else [`DEFAULT`].
pub fn negotiate(user: Option<&str>, accept_language: Option<&str>) -> &'static str {
    if let Some(lang) = user.and_then(supported) {
        return lang;
    }
    let mut offers: Vec<(u16, usize, &'static str)> = accept_language
        .unwrap_or_default()
        .split(',')
        .take(32)
        .enumerate()
        .filter_map(|(i, item)| {
            let mut parts = item.split(';');
            let tag = supported(parts.next()?.trim())?;
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1000), qvalue)
                .unwrap_or(0);
            (weight > 0).then_some((weight, i, tag))
        })
        .collect();
    // Highest weight first; among equal weights, the browser's order.
    offers.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    offers.first().map_or(DEFAULT, |o| o.2)
}

/// A `q=` weight (RFC 9110 §12.4.2: `0`, `1`, `0.x` up to three decimals) in
/// thousandths.
fn qvalue(q: &str) -> Option<u16> {
    let (int, frac) = q.trim().split_once('.').unwrap_or((q.trim(), ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// The messages of one language, as templates use them.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    lang: &'static str,
}

impl Tr {
    /// The messages of `lang` (English when `lang` is not supported).
    pub fn new(lang: &str) -> Self {
        Self {
            lang: supported(lang).unwrap_or(DEFAULT),
        }
    }

    /// The language tag, for `<html lang>`.
    pub fn lang(&self) -> &'static str {
        self.lang
    }

    /// The message `id` without arguments.
    pub fn get(&self, id: &str) -> String {
        self.format(id, None)
    }

    /// The message `id` with one argument `name` = `value`.
    pub fn with(&self, id: &str, name: &str, value: &dyn std::fmt::Display) -> String {
        let mut args = FluentArgs::new();
        args.set(name.to_owned(), FluentValue::from(value.to_string()));
        self.format(id, Some(&args))
    }

    /// The message `id` with two arguments.
    pub fn with2(
        &self,
        id: &str,
        (name1, value1): (&str, &str),
        (name2, value2): (&str, &str),
    ) -> String {
        let mut args = FluentArgs::new();
        args.set(name1.to_owned(), FluentValue::from(value1.to_owned()));
        args.set(name2.to_owned(), FluentValue::from(value2.to_owned()));
        self.format(id, Some(&args))
    }

    /// The message `id` with the arguments `args` (name, value), or `None` when this
    /// language has no message `id` (a message id made from data, such as a diagnosis
    /// id, may be unknown).
    pub fn try_with_args<'a>(
        &self,
        id: &str,
        args: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<String> {
        BUNDLES.get(self.lang)?.get_message(id)?.value()?;
        let mut fluent = FluentArgs::new();
        for (name, value) in args {
            fluent.set(name.to_owned(), FluentValue::from(value.to_owned()));
        }
        Some(self.format(id, Some(&fluent)))
    }

    fn format(&self, id: &str, args: Option<&FluentArgs<'_>>) -> String {
        let Some(bundle) = BUNDLES.get(self.lang) else {
            return id.to_owned();
        };
        let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) else {
            tracing::error!(language = self.lang, id, "a message is missing");
            return id.to_owned();
        };
        let mut errors = Vec::new();
        let text = bundle.format_pattern(pattern, args, &mut errors);
        if !errors.is_empty() {
            tracing::error!(
                language = self.lang,
                id,
                ?errors,
                "a message did not format"
            );
        }
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The message ids of a file, each with the variables it uses.
    fn messages(text: &str) -> BTreeMap<String, BTreeSet<String>> {
        text.lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
            .filter_map(|l| l.split_once(" = "))
            .map(|(id, value)| {
                let vars = value
                    .split("{ $")
                    .skip(1)
                    .filter_map(|rest| rest.split_once(" }").map(|(v, _)| v.to_owned()))
                    .collect();
                (id.trim().to_owned(), vars)
            })
            .collect()
    }

    #[test]
    fn every_language_has_exactly_the_english_messages_with_their_variables() {
        let english = messages(LANGUAGES[0].1);
        assert!(english.len() > 30, "{english:?}");
        for (tag, text) in &LANGUAGES[1..] {
            let other = messages(text);
            let missing: Vec<_> = english.keys().filter(|k| !other.contains_key(*k)).collect();
            let extra: Vec<_> = other.keys().filter(|k| !english.contains_key(*k)).collect();
            assert!(missing.is_empty(), "{tag} lacks {missing:?}");
            assert!(extra.is_empty(), "{tag} has ids English lacks: {extra:?}");
            for (id, vars) in &english {
                assert_eq!(&other[id], vars, "{tag} {id} uses other variables");
            }
        }
    }

    #[test]
    fn every_file_parses_and_every_message_formats_in_its_language() {
        for (tag, text) in LANGUAGES {
            assert!(FluentResource::try_new(text.to_owned()).is_ok(), "{tag}");
            let tr = Tr::new(tag);
            for (id, vars) in messages(text) {
                let mut args = FluentArgs::new();
                for v in &vars {
                    args.set(v.clone(), FluentValue::from("X"));
                }
                let out = tr.format(&id, Some(&args));
                assert_ne!(out, id, "{tag} {id} is missing");
                // Braces only where the message writes them as literals (`{ "{" }`,
                // as in a PowerShell hashtable).
                let literal = text
                    .lines()
                    .any(|l| l.starts_with(&format!("{id} = ")) && l.contains("{ \"{\" }"));
                assert!(literal || !out.contains('{'), "{tag} {id}: {out}");
                assert!(!out.contains("{$"), "{tag} {id}: {out}");
            }
        }
        assert_eq!(Tr::new("pl").get("sign-out"), "Wyloguj");
        assert_eq!(
            Tr::new("de").with("signin-throttled", "seconds", &30),
            "Zu viele fehlgeschlagene Anmeldungen. Versuchen Sie es in 30 s erneut."
        );
    }

    #[test]
    fn the_user_setting_then_the_browser_then_english() {
        assert_eq!(negotiate(Some("ru"), Some("pl")), "ru");
        assert_eq!(negotiate(Some("xx"), Some("pl-PL,pl;q=0.9")), "pl");
        assert_eq!(negotiate(None, Some("pl")), "pl");
        assert_eq!(negotiate(None, Some("es-ES, fr;q=0.5, de;q=0.8")), "de");
        assert_eq!(negotiate(None, Some("fr;q=0.5, de;q=0.5")), "fr");
        assert_eq!(negotiate(None, Some("de;q=0, fr;q=0.1")), "fr");
        assert_eq!(negotiate(None, Some("es, it")), "en");
        assert_eq!(negotiate(None, Some("*;q=abc,,;")), "en");
        assert_eq!(negotiate(None, None), "en");
        assert_eq!(negotiate(None, Some("de;q=0.999, pl;q=1.0")), "pl");
        assert_eq!(
            negotiate(None, Some("de;q=1.5, fr;q=0.0001, ru;q=0.3")),
            "ru"
        );
    }
}
