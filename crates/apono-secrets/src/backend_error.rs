//! The `source` our backends attach: a description we wrote ourselves.
//!
//! SDK, HTTP client and JSON errors may carry a response body, and a response body may carry
//! the secret (serde_json's "invalid type: string \"…\"", rustify's `content`, smithy's raw
//! response). So they are never attached as they are: a backend reduces them to the facts
//! that help an operator (status code, service error code, transport failure) first.

use std::fmt;

use apono_core::BoxError;

/// A backend failure described in words chosen by this crate.
#[derive(Debug)]
pub(crate) struct BackendError(String);

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackendError {}

/// Boxes a description as an error source.
#[cfg_attr(not(any(feature = "aws", feature = "hashicorp")), allow(dead_code))]
pub(crate) fn source(description: impl Into<String>) -> Option<BoxError> {
    Some(Box::new(BackendError(description.into())))
}
