//! Durations as people type them — `90s`, `15m`, `2h`, `1d`, `1h30m` — in the connector's
//! configuration, in access requests and on the command line, with one grammar everywhere.
//!
//! ```text
//! duration = seconds | term { [spaces] term }
//! seconds  = number                       (a bare number counts seconds: "90")
//! term     = number unit
//! number   = digit { digit }
//! unit     = "s" | "m" | "h" | "d"        (lower case: seconds, minutes, hours, days)
//! ```
//!
//! Space around the whole text is ignored, and terms may be separated by spaces (`1h 30m`).
//! Terms add up, in any order. A duration must be longer than zero. Anything else — a unit
//! other than `s`, `m`, `h` or `d` (months and weeks are not units; `M` is not minutes), a
//! sign, a fraction, a number without a unit after a term, a value too large to count — is
//! refused with a [`DurationError`] that quotes (a shortened copy of) the text and says why.
//!
//! [`format_duration`] writes the canonical form (`1d2h3m4s`), which [`parse_duration`] reads
//! back to the same value.
//!
//! ```
//! use std::time::Duration;
//! use apono_core::duration::{format_duration, parse_duration};
//!
//! assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
//! assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
//! assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
//! assert!(parse_duration("2 hours").is_err());
//! assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
//! ```

use std::fmt::Write as _;
use std::time::Duration;

/// Seconds in each unit, largest first (the order [`format_duration`] writes them in).
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];

/// Why a text is not a duration. The message quotes the text (shortened, control characters
/// escaped) and says what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text does not follow the grammar.
    #[error("{text} is not a duration such as 90s, 15m, 2h or 1d: {reason}")]
    Invalid {
        /// The text, quoted, shortened and escaped.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The text is a duration of zero.
    #[error("{text} must be longer than zero")]
    Zero {
        /// The text, quoted, shortened and escaped.
        text: String,
    },
    /// The value does not fit in 64 bits of seconds.
    #[error("{text} is too long a duration")]
    TooLong {
        /// The text, quoted, shortened and escaped.
        text: String,
    },
}

/// Parses a duration in the [module's grammar](self): `90s`, `15m`, `2h`, `1d`, a sum such as
/// `1h30m` or `1h 30m`, or a bare number of seconds; it must be longer than zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let invalid = |reason: String| DurationError::Invalid {
        text: quoted(text),
        reason,
    };
    let too_long = || DurationError::TooLong { text: quoted(text) };
    if trimmed.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let total = if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        trimmed.parse::<u64>().map_err(|_| too_long())?
    } else {
        let mut total: u64 = 0;
        let mut number = String::new();
        for c in trimmed.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            if c.is_whitespace() {
                if number.is_empty() {
                    continue;
                }
                return Err(invalid(format!("{number} needs a unit (s, m, h or d)")));
            }
            let Some(&(_, size)) = UNITS.iter().find(|(unit, _)| *unit == c) else {
                return Err(invalid(match c {
                    'S' | 'M' | 'H' | 'D' => {
                        format!("units are lower case: s, m, h or d, not {c:?}")
                    }
                    '-' | '+' => "a duration has no sign".into(),
                    '.' | ',' => "a duration is whole numbers of its units".into(),
                    _ => format!("{c:?} is not a unit (s, m, h or d)"),
                }));
            };
            if number.is_empty() {
                return Err(invalid(format!("{c:?} needs a number before it")));
            }
            let n: u64 = number.parse().map_err(|_| too_long())?;
            let secs = n.checked_mul(size).ok_or_else(too_long)?;
            total = total.checked_add(secs).ok_or_else(too_long)?;
            number.clear();
        }
        if !number.is_empty() {
            return Err(invalid(format!("{number} needs a unit (s, m, h or d)")));
        }
        total
    };
    if total == 0 {
        return Err(DurationError::Zero { text: quoted(text) });
    }
    Ok(Duration::from_secs(total))
}

/// Writes `duration` in the canonical form [`parse_duration`] reads: the largest units first,
/// units that are zero left out (`1d2h`, `1m30s`), and `0s` for zero. Fractions of a second
/// are dropped.
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if secs >= size {
            // Writing to a String cannot fail.
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    out
}

fn quoted(text: &str) -> String {
    crate::error::quote_untrusted(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Everything either former parser (`apono-client`'s and `apono-control`'s) accepted, and
    /// what the one grammar adds.
    #[test]
    fn accepted() {
        for (text, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("2h", 7200),
            ("1d", 86_400),
            ("1h30m", 5400),
            ("30m1h", 5400),
            ("1h1h", 7200),
            ("1d2h3m4s", 93_784),
            ("  5m  ", 300),
            ("0h5m", 300),
            ("007s", 7),
            // A bare number is seconds.
            ("60", 60),
            ("1", 1),
            // Spaces between terms.
            ("1h 30m", 5400),
            ("1d\t12h", 129_600),
            ("18446744073709551615", u64::MAX),
            ("18446744073709551615s", u64::MAX),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn refused_with_a_reason() {
        for (text, message) in [
            (
                "",
                "is not a duration such as 90s, 15m, 2h or 1d: it is empty",
            ),
            ("   ", "it is empty"),
            ("h", "'h' needs a number before it"),
            ("1x", "'x' is not a unit (s, m, h or d)"),
            ("5m3", "3 needs a unit (s, m, h or d)"),
            ("1h 30", "30 needs a unit"),
            ("30 m", "30 needs a unit"),
            ("2 hours", "2 needs a unit"),
            ("2hours", "'o' is not a unit"),
            ("1H", "units are lower case: s, m, h or d, not 'H'"),
            ("1M", "units are lower case"),
            ("1w", "'w' is not a unit"),
            ("-1h", "a duration has no sign"),
            ("+5m", "a duration has no sign"),
            ("1.5h", "whole numbers"),
            ("soon", "is not a duration"),
            ("0", "\"0\" must be longer than zero"),
            ("0s", "must be longer than zero"),
            ("0h0m", "must be longer than zero"),
            ("18446744073709551616", "is too long a duration"),
            ("99999999999999999999d", "is too long a duration"),
            ("213503982334602d", "is too long a duration"),
            ("18446744073709551615s1s", "is too long a duration"),
        ] {
            let error = parse_duration(text).expect_err(text).to_string();
            assert!(error.contains(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn errors_quote_a_short_escaped_copy() {
        let long = format!("{}x", "1".repeat(100));
        let error = parse_duration(&long).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("\"{}…\"", "1".repeat(64))),
            "{error}"
        );
        let error = parse_duration("1h\u{1b}[2J").unwrap_err().to_string();
        assert!(!error.contains('\u{1b}'), "{error}");
    }

    #[test]
    fn canonical_form() {
        for (secs, text) in [
            (0, "0s"),
            (1, "1s"),
            (90, "1m30s"),
            (3600, "1h"),
            (5400, "1h30m"),
            (86_400, "1d"),
            (93_784, "1d2h3m4s"),
            (90_061, "1d1h1m1s"),
        ] {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s");
    }

    proptest! {
        #[test]
        fn the_canonical_form_reads_back(secs in 1..=u64::MAX) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn a_sum_of_terms_is_the_sum(terms in prop::collection::vec((0..10_000u64, 0..4usize), 1..6)) {
            let text: String = terms.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
            let secs: u64 = terms.iter().map(|(n, u)| n * UNITS[*u].1).sum();
            let parsed = parse_duration(&text);
            if secs == 0 {
                let zero = matches!(parsed, Err(DurationError::Zero { .. }));
                prop_assert!(zero, "{:?}", parsed);
            } else {
                prop_assert_eq!(parsed, Ok(Duration::from_secs(secs)));
            }
        }

        #[test]
        fn never_panics(text in "\\PC{0,30}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn refuses_any_other_letter(n in 1..1000u64, unit in "[a-zA-Z]") {
            let text = format!("{n}{unit}");
            let known = matches!(unit.as_str(), "s" | "m" | "h" | "d");
            prop_assert_eq!(parse_duration(&text).is_ok(), known, "{}", text);
        }
    }
}
