//! The error of this crate's services: a typed kind, the class the retry logic reads,
//! the words for a person (what happened and what to do), and the source kept.

use std::fmt;

use mailbridge_types::ErrorClass;

/// What went wrong, for a caller that acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No account, app or provider by that name.
    NotFound,
    /// The configuration is wrong or incomplete (a missing app, secret or password, a
    /// setting that does not parse); a person must change it.
    Misconfigured,
    /// Input that does not parse or breaks a rule (an endpoint URL, an import file).
    Invalid,
    /// The store (database, master key) failed.
    Store,
    /// A file could not be read or written.
    Io,
    /// Getting a token failed (the class says whether to retry or sign in again).
    SignIn,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of this crate. `Display` is its own words (or, for an error passed on
/// as it is, the source's); [`std::error::Error::source`] keeps the chain.
pub struct Error {
    kind: ErrorKind,
    class: ErrorClass,
    message: Option<String>,
    source: Option<Source>,
}

impl Error {
    /// An error in its own words, without a source.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            class: default_class(kind),
            message: Some(message.into()),
            source: None,
        }
    }

    /// An error in its own words caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Source>,
    ) -> Self {
        Self {
            kind,
            class: default_class(kind),
            message: Some(message.into()),
            source: Some(source.into()),
        }
    }

    /// `source` passed on as it is (its words, its chain).
    pub fn from_source(kind: ErrorKind, source: impl Into<Source>) -> Self {
        Self {
            kind,
            class: default_class(kind),
            message: None,
            source: Some(source.into()),
        }
    }

    /// The same error with another class (a token failure's own).
    #[must_use]
    pub fn classed(mut self, class: ErrorClass) -> Self {
        self.class = class;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether to retry, wait, sign in again or fix the configuration.
    pub fn class(&self) -> ErrorClass {
        self.class
    }
}

fn default_class(kind: ErrorKind) -> ErrorClass {
    match kind {
        ErrorKind::NotFound | ErrorKind::Misconfigured | ErrorKind::Invalid => {
            ErrorClass::Misconfigured
        }
        ErrorKind::Store | ErrorKind::Io | ErrorKind::SignIn => ErrorClass::Transient,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.message, &self.source) {
            (Some(m), _) => f.write_str(m),
            (None, Some(s)) => fmt::Display::fmt(s, f),
            (None, None) => write!(f, "{:?}", self.kind),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("class", &self.class)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match (&self.message, &self.source) {
            // Passed on as it is: its own words are shown, so the chain goes on below.
            (None, Some(s)) => s.source(),
            (_, s) => s
                .as_deref()
                .map(|s| s as &(dyn std::error::Error + 'static)),
        }
    }
}

impl From<mailbridge_store::StoreError> for Error {
    fn from(e: mailbridge_store::StoreError) -> Self {
        Self::from_source(ErrorKind::Store, e)
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_passed_on_shows_its_words_once_and_keeps_its_chain() {
        let inner = Error::with_source(
            ErrorKind::Io,
            "failed to read the CA file ca.pem",
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        );
        let outer = Error::from_source(ErrorKind::Io, inner);
        assert_eq!(outer.to_string(), "failed to read the CA file ca.pem");
        assert_eq!(
            mailbridge_types::error_chain(&outer),
            "failed to read the CA file ca.pem: no such file"
        );
        assert_eq!(outer.kind(), ErrorKind::Io);
        let e = Error::new(ErrorKind::NotFound, "no account named \"x\"");
        assert_eq!(e.class(), ErrorClass::Misconfigured);
        assert!(std::error::Error::source(&e).is_none());
    }
}
