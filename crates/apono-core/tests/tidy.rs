//! One home for each shared helper: a test that fails when the workspace writes one of
//! `apono-core`'s helpers again (duration parsing, error chains, bounded actions, passwords,
//! JSON descriptions) instead of calling it.
//!
//! It reads the workspace's Rust sources as text. A definition named like a helper, or a
//! hand-written walk down an error's `source()` chain, outside `apono-core` is a failure unless
//! listed in [`KNOWN`] with the reason it may stay.

use std::path::{Path, PathBuf};

/// Names of the helpers `apono-core` owns, and where they live.
const HELPERS: &[(&str, &str)] = &[
    ("parse_duration", "apono_core::parse_duration"),
    ("format_duration", "apono_core::format_duration"),
    ("error_chain", "apono_core::error_chain"),
    ("transport_chain", "apono_core::error_chain"),
    ("bounded", "ActionContext::bounded"),
    ("generate_password", "apono_core::generate_password"),
    ("json_type", "apono_core::json::json_type"),
    (
        "describe_json_error",
        "apono_core::json::describe_json_error",
    ),
];

/// Places that may keep a definition or a chain walk: (path, what, why).
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "crates/apono-client/src/duration.rs",
        "fn parse_duration",
        "calls apono_core::parse_duration and returns the client's usage error",
    ),
    (
        "crates/apono-provision-winrm/src/transport.rs",
        ".source()",
        "searches the chain for TLS words; it does not format it",
    ),
    (
        "crates/apono-core/src/conformance/secret_store.rs",
        ".source()",
        "shows Display and Debug of every link, to look for leaked secrets",
    ),
    (
        "crates/apono-secrets/tests/common/mod.rs",
        ".source()",
        "shows Display and Debug of every link, to look for leaked secrets",
    ),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `fn NAME(` or `fn NAME<` on a line, after any visibility and `async`.
fn defines(line: &str, name: &str) -> bool {
    let code = line.trim_start();
    if code.starts_with("//") {
        return false;
    }
    ["(", "<"]
        .iter()
        .any(|open| code.contains(&format!("fn {name}{open}")))
}

/// `x = y.source();`: a step of a hand-written walk down a chain.
fn walks_chain(line: &str) -> bool {
    let code = line.trim_start();
    !code.starts_with("//") && code.contains(" = ") && code.trim_end().ends_with(".source();")
}

/// Every place outside `apono-core`'s own homes that defines a helper or walks a chain.
fn findings() -> Vec<(String, String, usize)> {
    let root = workspace();
    let mut files = Vec::new();
    for top in ["crates", "bins", "tests", "examples"] {
        rust_files(&root.join(top), &mut files);
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        let home = rel.starts_with("crates/apono-core/src/")
            && !rel.starts_with("crates/apono-core/src/conformance/");
        if home || rel == "crates/apono-core/tests/tidy.rs" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            for (name, _) in HELPERS {
                if defines(line, name) {
                    found.push((rel.clone(), format!("fn {name}"), i + 1));
                }
            }
            if walks_chain(line) {
                found.push((rel.clone(), ".source()".to_owned(), i + 1));
            }
        }
    }
    found
}

#[test]
fn shared_helpers_have_one_home() {
    let found = findings();
    // The scan reads the workspace: it sees a definition known to be there.
    assert!(
        found.iter().any(|(path, what, _)| {
            path == "crates/apono-client/src/duration.rs" && what == "fn parse_duration"
        }),
        "the scan found nothing under {}",
        workspace().display()
    );
    let unexpected: Vec<String> = found
        .into_iter()
        .filter(|(path, what, _)| !KNOWN.iter().any(|(p, w, _)| p == path && w == what))
        .map(|(path, what, line)| {
            let home = HELPERS
                .iter()
                .find(|(name, _)| *what == format!("fn {name}"))
                .map_or("apono_core::error_chain", |(_, home)| home);
            format!("{path}:{line}: {what} — use {home}")
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "helpers written again instead of called (add to KNOWN only with a reason):\n{}",
        unexpected.join("\n")
    );
}

#[test]
fn the_checks_recognise_what_they_look_for() {
    assert!(defines(
        "pub(crate) fn error_chain(e: &dyn Error) -> String {",
        "error_chain"
    ));
    assert!(defines("    async fn bounded<T>(", "bounded"));
    assert!(!defines(
        "    fn untrusted_text_is_escaped_and_bounded() {",
        "bounded"
    ));
    assert!(!defines("// fn bounded(", "bounded"));
    assert!(walks_chain("        source = s.source();"));
    assert!(walks_chain("        next = cause.source();"));
    assert!(!walks_chain("    let mut next = error.source()"));
    assert!(!walks_chain("    fn source(&self) -> Option<&dyn Error> {"));
    // The walk starts with `let mut x = e.source();`, which counts as well: it is the first step.
    assert!(walks_chain("    let mut source = e.source();"));
}
