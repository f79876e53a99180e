//! Durations as people type them: `90s`, `15m`, `2h`, `1d`, `1h30m` — the grammar of
//! [`apono_core::duration`], which the connector also uses for requests and its configuration.

use std::time::Duration;

use crate::error::ClientError;

/// Parses a duration in [`apono_core::duration`]'s grammar (`90s`, `15m`, `2h`, `1d`, a sum
/// such as `1h30m`, or a bare number of seconds; longer than zero); a refused text is a
/// [`ClientError::Usage`] that says why.
pub fn parse_duration(text: &str) -> Result<Duration, ClientError> {
    apono_core::parse_duration(text).map_err(|e| ClientError::Usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_usage_errors() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        for bad in ["", "soon", "0s"] {
            assert!(
                matches!(parse_duration(bad), Err(ClientError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
