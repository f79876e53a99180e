//! Runs the Python checks in this directory with the project's Python venv.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// `<workspace>/.venv/bin/python`, as in `apono-testkit`'s vendor checks.
fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
}

/// Runs `tests/vendor/{script}` with `input` (JSON) on its stdin — the scripts checked are too
/// large for one command-line argument — and returns its output.
///
/// Never skips: a missing venv is a panic that says how to create it.
pub(crate) fn run(script: &str, input: &serde_json::Value) -> Output {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: create it with `python3 -m venv .venv` at the workspace root and \
         `.venv/bin/pip install -r scripts/requirements-test.txt` (scripts/test.sh does this)",
        python.display()
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vendor")
        .join(script);
    let mut child = Command::new(&python)
        .arg(&path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input.to_string().as_bytes())
        .expect("write the checker's input");
    drop(stdin);
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", python.display()))
}
