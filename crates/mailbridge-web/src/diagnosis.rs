//! Diagnoses in the viewer's language: an AADSTS code's cause and fix, and a check
//! step's fix, said from their stable ids with the messages of
//! `locales/<lang>/diagnosis.ftl` (`aadsts-<code>-cause`, `aadsts-<code>-fix`,
//! `fix-<id>`).
//!
//! The ids come from the libraries: the AADSTS catalogue's codes
//! (`mailbridge_auth::diagnosis::CATALOGUE`) and the checks' `fix_id`
//! (`mailbridge_accounts::check::FIX_IDS`), with the values the texts name as Fluent
//! arguments. A fix without an id is a server's or library's own words and is shown as
//! it is; an id without a message (a newer library than these messages) falls back to
//! the English text and is logged.

use std::collections::BTreeMap;

use mailbridge_accounts::check::StepResult;
use mailbridge_auth::diagnosis::TokenError;

use crate::i18n::Tr;

/// An AADSTS code's cause and fix in `t`'s language, `None` when the code is not in
/// the catalogue.
pub fn aadsts(t: Tr, code: u32) -> Option<(String, String)> {
    mailbridge_auth::diagnosis::lookup(code)?;
    let id = format!("aadsts-{code}");
    let cause = t.try_with_args(&format!("{id}-cause"), []);
    let fix = t.try_with_args(&format!("{id}-fix"), []);
    let said = cause.zip(fix);
    if said.is_none() {
        tracing::warn!(language = t.lang(), code, "no message for an AADSTS code");
    }
    said
}

/// The cause and fix of an identity-platform error in `t`'s language: the
/// catalogue's entry for its code, else the OAuth error it named.
pub fn token_error(t: Tr, error: &TokenError) -> (String, String) {
    if let Some(said) = error.code.and_then(|code| aadsts(t, code)) {
        return said;
    }
    let unknown = |part: &str| {
        t.try_with_args(
            &format!("aadsts-unknown-{part}"),
            [("error", error.error.as_str())],
        )
    };
    unknown("cause").zip(unknown("fix")).unwrap_or_else(|| {
        let d = error.diagnose();
        (d.cause, d.fix)
    })
}

/// A fix in `t`'s language from its stable id and arguments (a check step's `fix_id`
/// and `fix_args`), with `english` (the step's `fix`) when the fix has no id or its id
/// has no message (logged).
///
/// Ids: `aadsts-<code>` and `aadsts-unknown` give the catalogue's cause and fix (with
/// the claims-challenge note when `args` has `claims`); any other id gives `fix-<id>`.
pub fn localized_fix(
    t: Tr,
    id: Option<&str>,
    args: &BTreeMap<String, String>,
    english: &str,
) -> String {
    let Some(id) = id else {
        return english.to_owned();
    };
    let values = || args.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let said = if id.starts_with("aadsts-") {
        let cause = t.try_with_args(&format!("{id}-cause"), values());
        let fix = t.try_with_args(&format!("{id}-fix"), values());
        cause.zip(fix).and_then(|(cause, fix)| {
            let both = t.try_with_args(
                "diagnosis-cause-fix",
                [("cause", cause.as_str()), ("fix", fix.as_str())],
            )?;
            if args.contains_key("claims") {
                let note = t.try_with_args("fix-claims-challenge", [])?;
                t.try_with_args(
                    "diagnosis-with-claims",
                    [("fix", both.as_str()), ("claims", note.as_str())],
                )
            } else {
                Some(both)
            }
        })
    } else {
        t.try_with_args(&format!("fix-{id}"), values())
    };
    said.unwrap_or_else(|| {
        tracing::warn!(
            language = t.lang(),
            id,
            "a diagnosis id has no message: showing the English fix"
        );
        english.to_owned()
    })
}

/// A check step's fix in `t`'s language (see [`localized_fix`]), `None` when the step
/// has no fix.
pub fn step_fix(t: Tr, step: &StepResult) -> Option<String> {
    let english = step.fix.as_deref()?;
    Some(localized_fix(
        t,
        step.fix_id.as_deref(),
        &step.fix_args,
        english,
    ))
}

/// The cause and fix of the first catalogued `AADSTSnnnn` in an error text (a
/// watcher's last error, say), in `t`'s language: `None` when the text names no
/// catalogued code.
pub fn in_text(t: Tr, text: &str) -> Option<String> {
    let (_, rest) = text.split_once("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let code = digits.parse().ok()?;
    let (cause, fix) = aadsts(t, code)?;
    t.try_with_args(
        "diagnosis-cause-fix",
        [("cause", cause.as_str()), ("fix", fix.as_str())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::i18n::LANGUAGES;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The variables a message uses (`{ $name }`), `None` when the language lacks it.
    fn variables(text: &str, id: &str) -> Option<Vec<String>> {
        let line = text
            .lines()
            .find(|l| l.split_once(" = ").is_some_and(|(i, _)| i.trim() == id))?;
        let mut vars: Vec<String> = line
            .split("{ $")
            .skip(1)
            .filter_map(|rest| rest.split_once(" }").map(|(v, _)| v.to_owned()))
            .collect();
        vars.sort();
        vars.dedup();
        Some(vars)
    }

    #[test]
    fn every_catalogue_code_and_check_fix_has_its_messages_in_every_language() {
        let mut ids: Vec<String> = mailbridge_auth::diagnosis::CATALOGUE
            .iter()
            .flat_map(|e| {
                [
                    format!("aadsts-{}-cause", e.code),
                    format!("aadsts-{}-fix", e.code),
                ]
            })
            .collect();
        ids.extend(["aadsts-unknown-cause".into(), "aadsts-unknown-fix".into()]);
        ids.extend(
            mailbridge_accounts::check::FIX_IDS
                .iter()
                .map(|id| format!("fix-{id}")),
        );
        ids.push("fix-claims-challenge".into());
        let english = LANGUAGES[0].1;
        for id in &ids {
            let vars = variables(english, id).unwrap_or_else(|| panic!("en lacks {id}"));
            for (tag, text) in &LANGUAGES[1..] {
                let other = variables(text, id).unwrap_or_else(|| panic!("{tag} lacks {id}"));
                assert_eq!(other, vars, "{tag} {id} uses other variables");
            }
        }
    }

    #[test]
    fn the_english_catalogue_messages_are_the_catalogues_words() {
        let en = Tr::new("en");
        for entry in mailbridge_auth::diagnosis::CATALOGUE {
            assert_eq!(
                aadsts(en, entry.code),
                Some((entry.cause.to_owned(), entry.fix.to_owned())),
                "AADSTS{}",
                entry.code
            );
        }
    }

    #[test]
    fn a_wrong_secret_names_the_localized_portal_blade() {
        let id = Some("aadsts-7000215");
        let none = BTreeMap::new();
        let english = "the secret is wrong: ...";
        for (lang, blade, value) in [
            ("en", "Certificates & secrets", "Secret ID"),
            (
                "pl",
                "Certyfikaty i wpisy tajne",
                "Identyfikator wpisu tajnego",
            ),
            ("de", "Zertifikate & Geheimnisse", "Geheimnis-ID"),
            ("fr", "Certificats & secrets", "ID de secret"),
            ("ru", "Сертификаты и секреты", "Идентификатор секрета"),
        ] {
            let fix = localized_fix(Tr::new(lang), id, &none, english);
            assert!(fix.contains(blade), "{lang}: {fix}");
            assert!(fix.contains(value), "{lang}: {fix}");
        }
        assert_eq!(
            localized_fix(Tr::new("en"), id, &none, english),
            format!(
                "{}: {}",
                mailbridge_auth::diagnosis::lookup(7_000_215).unwrap().cause,
                mailbridge_auth::diagnosis::lookup(7_000_215).unwrap().fix
            )
        );
    }

    #[test]
    fn the_service_principal_made_with_the_wrong_object_id_names_enterprise_applications() {
        let values = args(&[
            ("app", "11111111-2222-3333-4444-555555555555"),
            ("oid", "99999999-2222-3333-4444-555555555555"),
            ("mailbox", "alice@contoso.com"),
        ]);
        for (lang, enterprise, registrations) in [
            ("en", "Enterprise applications", "App registrations"),
            (
                "pl",
                "Aplikacje dla przedsiębiorstw",
                "Rejestracje aplikacji",
            ),
            ("de", "Unternehmensanwendungen", "App-Registrierungen"),
            (
                "fr",
                "Applications d’entreprise",
                "Inscriptions d’applications",
            ),
            ("ru", "Корпоративные приложения", "Регистрация приложений"),
        ] {
            let fix = localized_fix(
                Tr::new(lang),
                Some("mail-refused-app-only-imap"),
                &values,
                "English",
            );
            assert!(fix.contains(enterprise), "{lang}: {fix}");
            assert!(fix.contains(registrations), "{lang}: {fix}");
            // Cmdlets and the token's own ids stay as they are.
            assert!(
                fix.contains(
                    "`New-ServicePrincipal -AppId 11111111-2222-3333-4444-555555555555 -ObjectId 99999999-2222-3333-4444-555555555555`"
                ),
                "{lang}: {fix}"
            );
            assert!(fix.contains("-Identity alice@contoso.com -ImapEnabled $true"));
        }
    }

    #[test]
    fn no_id_keeps_the_servers_words_and_an_unknown_id_falls_back_to_english() {
        let none = BTreeMap::new();
        let de = Tr::new("de");
        assert_eq!(localized_fix(de, None, &none, "server text"), "server text");
        assert_eq!(
            localized_fix(de, Some("no-such-fix"), &none, "English fix"),
            "English fix"
        );
        assert_eq!(
            localized_fix(de, Some("aadsts-1"), &none, "English fix"),
            "English fix"
        );
        // The PowerShell hashtable's braces survive Fluent.
        let fix = localized_fix(
            Tr::new("ru"),
            Some("ews-access-denied"),
            &args(&[("mailbox", "a@b.c"), ("app", "app-id")]),
            "",
        );
        assert!(fix.contains("-EwsAllowedAppIDs @{Add='app-id'}"), "{fix}");
    }

    #[test]
    fn a_claims_challenge_and_an_unknown_code_are_said_too() {
        let fix = localized_fix(
            Tr::new("fr"),
            Some("aadsts-50076"),
            &args(&[("claims", "challenge")]),
            "",
        );
        assert!(fix.starts_with("l’authentification multifacteur"), "{fix}");
        assert!(fix.contains("`mailbridge auth login`"), "{fix}");
        let unknown = localized_fix(
            Tr::new("pl"),
            Some("aadsts-unknown"),
            &args(&[("error", "invalid_grant")]),
            "",
        );
        assert!(
            unknown.starts_with("platforma tożsamości odpowiedziała invalid_grant"),
            "{unknown}"
        );
        assert_eq!(
            in_text(
                Tr::new("de"),
                "token: AADSTS7000215: Invalid client secret provided."
            )
            .as_deref()
            .map(|s| s.starts_with("der geheime Schlüssel ist falsch: ")),
            Some(true)
        );
        assert_eq!(in_text(Tr::new("de"), "AADSTS"), None);
        assert_eq!(in_text(Tr::new("de"), "no code"), None);
    }
}
