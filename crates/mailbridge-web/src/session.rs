//! Session ids, CSRF tokens and cookies.
//!
//! - A session id is 32 random bytes (base64url) that live only in the browser's
//!   cookie; the store keeps their SHA-256 ([`sha256_hex`]), so a copy of the
//!   database opens no session.
//! - Every session has its own CSRF token, put in each form as the hidden field
//!   `csrf` and compared (in constant time) on every POST. Forms shown before a
//!   session exists (sign-in, setup) use a double-submit token: a random
//!   `mb_form` cookie that the form must repeat.
//! - Cookies are `HttpOnly; SameSite=Strict; Path=/`, plus `Secure` when the UI is
//!   served over TLS.

use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mb_session";
/// The double-submit cookie of forms shown without a session.
pub const FORM_COOKIE: &str = "mb_form";
/// How long a session lasts after signing in.
pub const SESSION_LIFETIME: Duration = Duration::from_hours(12);

/// Why no random token could be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system gave no randomness for a session token: {0}")]
pub struct RandomError(getrandom::Error);

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 of `token` as 64 lowercase hex digits (what the store keeps).
pub fn sha256_hex(token: &str) -> String {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    d.as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: `name=value` with the flags, kept for `max_age`.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Max-Age={}; Path=/; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// A `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", Duration::ZERO, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_only_as_their_hash() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let h = sha256_hex(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cookies_are_read_and_written_with_their_flags() {
        let h = "theme=dark; mb_session=abc; mb_form=";
        assert_eq!(cookie(h, "mb_session"), Some("abc"));
        assert_eq!(cookie(h, "mb_form"), None);
        assert_eq!(cookie(h, "mb"), None);
        assert_eq!(cookie("garbage", "mb_session"), None);
        assert_eq!(
            set_cookie("mb_session", "abc", Duration::from_mins(1), false),
            "mb_session=abc; Max-Age=60; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(clear_cookie("mb_session", true).ends_with("; Secure"));
        assert!(clear_cookie("mb_session", true).contains("Max-Age=0"));
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
