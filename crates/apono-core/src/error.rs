//! Error classification shared by every contract in this crate.
//!
//! Each crate has its own `thiserror` enum; what they share is [`ErrorKind`], the answer to the
//! question a caller (the scheduler, above all) asks of any failure: *will trying again help?*

use std::fmt;

/// A boxed error kept as the `source` of our own errors.
///
/// Backends put the transport or SDK error here so that `{:#}` chains and `tracing` show the
/// cause, while the `Display` of our error stays short and never repeats it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure an error is, independent of which backend raised it.
///
/// Callers match on the kind instead of on backend-specific variants; the scheduler uses
/// [`ErrorKind::is_retryable`] to decide between backing off and failing the work item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The thing asked for does not exist (a secret, a key, a resource, an account).
    NotFound,
    /// The caller is not allowed to do this (a read-guard, an ACL, a missing right on the target).
    PermissionDenied,
    /// The remote side could not be reached or answered with a transient failure; retry later.
    Unavailable,
    /// The action's deadline passed before it finished; retry later.
    Timeout,
    /// The action was cancelled by its caller (for example during shutdown); retry later.
    Cancelled,
    /// Data read from somewhere had the wrong shape (a secret that is not a JSON object, a key
    /// that is missing, a response that does not parse).
    Malformed,
    /// The request or configuration is invalid (a name that fails its grammar, an unknown
    /// permission). Retrying the same input cannot help.
    InvalidInput,
    /// The target is in a state that forbids the action (an existing account that is not ours).
    Conflict,
    /// The integration does not implement this action.
    Unsupported,
    /// A bug or an unexpected answer; not retried automatically.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same action later can succeed.
    ///
    /// ```
    /// use apono_core::ErrorKind;
    /// assert!(ErrorKind::Unavailable.is_retryable());
    /// assert!(!ErrorKind::InvalidInput.is_retryable());
    /// ```
    pub const fn is_retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout | Self::Cancelled)
    }

    /// A stable lower-case name for logs, metrics labels and API responses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::PermissionDenied => "permission_denied",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Malformed => "malformed",
            Self::InvalidInput => "invalid_input",
            Self::Conflict => "conflict",
            Self::Unsupported => "unsupported",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error and its `source` chain on one line, each cause after `": "`:
/// `"secret store vault is unavailable: error sending request: connection refused"`.
///
/// This is the one place the workspace turns a chain into text (for a `tracing` field, a
/// problem shown to a user, a retry reason); binaries print `anyhow`'s `{:#}` instead. A
/// cause whose text is the same as the one before it (a wrapper that repeats its source) is
/// written once.
///
/// ```
/// use apono_core::error_chain;
/// let error = Wrapped(std::io::Error::other("connection refused"));
/// # #[derive(Debug)] struct Wrapped(std::io::Error);
/// # impl std::fmt::Display for Wrapped {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("could not connect") }
/// # }
/// # impl std::error::Error for Wrapped {
/// #     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.0) }
/// # }
/// assert_eq!(error_chain(&error), "could not connect: connection refused");
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut next = error.source();
    while let Some(cause) = next {
        let shown = cause.to_string();
        if shown != last {
            text.push_str(": ");
            text.push_str(&shown);
            last = shown;
        }
        next = cause.source();
    }
    text
}

/// Shortens and escapes untrusted text before it goes into an error message, so that a hostile
/// name cannot forge log lines (newlines, control characters) or flood them (length).
pub(crate) fn quote_untrusted(input: &str) -> String {
    const MAX: usize = 64;
    let mut shown: String = input.chars().take(MAX).collect();
    if shown.len() < input.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_kinds_are_retryable() {
        let retryable: Vec<_> = [
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Cancelled,
            ErrorKind::Malformed,
            ErrorKind::InvalidInput,
            ErrorKind::Conflict,
            ErrorKind::Unsupported,
            ErrorKind::Internal,
        ]
        .into_iter()
        .filter(|k| k.is_retryable())
        .collect();
        assert_eq!(
            retryable,
            [
                ErrorKind::Unavailable,
                ErrorKind::Timeout,
                ErrorKind::Cancelled
            ]
        );
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    fn chain(layers: &[&'static str]) -> Layer {
        layers
            .iter()
            .rev()
            .fold(None, |inner, text| Some(Layer(text, inner.map(Box::new))))
            .expect("at least one layer")
    }

    #[test]
    fn error_chains_are_one_line() {
        for (layers, text) in [
            (&["alone"][..], "alone"),
            (&["a", "b", "c"][..], "a: b: c"),
            // A wrapper that repeats its source is written once.
            (&["a", "b", "b", "c"][..], "a: b: c"),
            (&["a", "a"][..], "a"),
            // Only neighbours are compared.
            (&["a", "b", "a"][..], "a: b: a"),
        ] {
            assert_eq!(error_chain(&chain(layers)), text, "{layers:?}");
        }
        let boxed: BoxError = Box::new(chain(&["outer", "inner"]));
        assert_eq!(error_chain(boxed.as_ref()), "outer: inner");
    }

    #[test]
    fn untrusted_text_is_escaped_and_bounded() {
        assert_eq!(quote_untrusted("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(500);
        let shown = quote_untrusted(&long);
        assert!(shown.chars().count() < 80, "{shown}");
        assert!(shown.ends_with("…\""));
    }
}

/// A name that failed its grammar. The input is shown escaped and shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {shown} {reason}")]
pub struct NameError {
    what: String,
    shown: String,
    reason: String,
}

impl NameError {
    /// Builds an error for `input`, which is shown escaped and shortened.
    pub fn new(what: impl Into<String>, input: &str, reason: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            shown: quote_untrusted(input),
            reason: reason.into(),
        }
    }
}
