//! Durations as people type them: `90s`, `15m`, `2h`, `1d`, `1h30m`.

use std::time::Duration;

use crate::error::ClientError;

/// Parses `90s`, `15m`, `2h`, `1d` or a sum such as `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ClientError> {
    let bad = || {
        ClientError::Usage(format!(
            "{:?} is not a duration such as 90s, 15m, 2h or 1d",
            crate::error::sanitize(text, 40)
        ))
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, secs) in [
            ("60", 60),
            ("90s", 90),
            ("15m", 900),
            ("1h30m", 5400),
            ("1d", 86_400),
        ] {
            assert_eq!(parse_duration(text).expect(text), Duration::from_secs(secs));
        }
        for bad in ["", "h", "1x", "5m3", "-1s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
