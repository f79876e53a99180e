//! Printing results: tables that fit the terminal, JSON and YAML.
// This module is where the CLI writes its results to stdout.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal;

use anyhow::Context;
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::cli::Format;

/// The width tables must fit: `$COLUMNS` when set, else the terminal's, else none.
pub(crate) fn width() -> Option<u16> {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| *c >= 20)
    {
        return Some(cols);
    }
    if std::io::stdout().is_terminal() {
        return console::Term::stdout().size_checked().map(|(_, cols)| cols);
    }
    None
}

/// A table with `header`, one row per item.
pub(crate) fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    match width() {
        Some(w) => {
            table
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(w);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    table.set_header(header.iter().map(|h| h.to_owned()));
    for row in rows {
        table.add_row(row.iter().map(|cell| printable(cell)).collect::<Vec<_>>());
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// `text` safe to put on a terminal: control characters (an escape sequence could clear or
/// rewrite what an approver reads) and bidirectional overrides (which reorder what is shown)
/// are written out as `\u{…}`; line breaks stay. Cells carry text other people wrote: a
/// requester's justification, a resource's name from the target.
pub(crate) fn printable(text: &str) -> String {
    let hostile = |c: char| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(hostile) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if hostile(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Prints `value` as JSON or YAML, or `table()` as a table.
pub(crate) fn emit<T: Serialize>(
    format: Format,
    value: &T,
    table_of: impl FnOnce(&T) -> Table,
) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(value).context("encoding JSON")?
        ),
        Format::Yaml => serde_yaml_ng::to_string(value).context("encoding YAML")?,
        Format::Table => {
            let table = table_of(value);
            let mut text = String::new();
            for line in table.lines() {
                text.push_str(line.trim_end());
                text.push('\n');
            }
            text
        }
    };
    out(text.as_bytes()).context("writing to stdout")
}

/// Prints a line on stdout.
pub(crate) fn line(text: impl std::fmt::Display) {
    if let Err(e) = out(format!("{text}\n").as_bytes()) {
        // The one other place that reports an error: stdout is gone.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("error: writing to stdout: {e}");
        }
        std::process::exit(1);
    }
}

/// Writes `bytes` to stdout. A reader that went away (`apono … | head -1`) ends the
/// command quietly with status 0, as a `SIGPIPE` would without a message: what it wanted
/// has been written.
pub(crate) fn out(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other,
    }
}

/// `2026-11-21 06:30:05 UTC`: to the second, as grants may last a minute.
pub(crate) fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `2026-11-21 06:30:05 UTC (in 1m 59s)`, or `(ended)` once `at` has passed.
pub(crate) fn time_left(
    at: &chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let left = (*at - now).num_seconds();
    if left <= 0 {
        return format!("{} (ended)", time(at));
    }
    let (d, h, m, s) = (left / 86_400, left / 3_600 % 24, left / 60 % 60, left % 60);
    let relative = match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    };
    format!("{} (in {relative})", time(at))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::{printable, time, time_left};

    #[test]
    fn times_are_shown_to_the_second() {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 6, 30, 5).unwrap();
        assert_eq!(time(&at), "2026-11-21 06:30:05 UTC");
        let check = |secs: i64, want: &str| {
            let now = at - chrono::Duration::seconds(secs);
            assert_eq!(
                time_left(&at, now),
                format!("2026-11-21 06:30:05 UTC {want}")
            );
        };
        check(59, "(in 59s)");
        check(119, "(in 1m 59s)");
        check(3_600 + 61, "(in 1h 1m)");
        check(2 * 86_400 + 3_600, "(in 2d 1h)");
        check(0, "(ended)");
        check(-5, "(ended)");
    }

    #[test]
    fn escapes_and_overrides_are_shown_not_obeyed() {
        assert_eq!(printable("plain, two\nlines"), "plain, two\nlines");
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\ry\u{7}"), "x\\u{d}y\\u{7}");
        assert_eq!(printable("ok\u{202e}gpj.exe"), "ok\\u{202e}gpj.exe");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
    }
}
