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
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Prints `value` as JSON or YAML, or `table()` as a table.
pub(crate) fn emit<T: Serialize>(
    format: Format,
    value: &T,
    table_of: impl FnOnce(&T) -> Table,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).context("encoding JSON")?
        ),
        Format::Yaml => print!(
            "{}",
            serde_yaml_ng::to_string(value).context("encoding YAML")?
        ),
        Format::Table => {
            let table = table_of(value);
            for line in table.lines() {
                println!("{}", line.trim_end());
            }
        }
    }
    Ok(())
}

/// Prints a line on stdout.
pub(crate) fn line(text: impl std::fmt::Display) {
    println!("{text}");
}

/// `2026-11-21 06:30 UTC`.
pub(crate) fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
