//! Runs the vendor-client scripts in this directory with the project's Python venv.

use std::path::PathBuf;
use std::process::Command;

/// `<workspace>/.venv/bin/python`.
fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
}

/// Runs `tests/vendor/{script}` with `args` (JSON) as its only argument and `envs` added to its
/// environment; panics with the script's output unless it exits 0 and prints `ok`. Returns
/// what it printed.
///
/// Never skips: a missing venv or package is a failure that says what to install.
pub(crate) fn run(script: &str, args: &serde_json::Value, envs: &[(&str, &str)]) -> String {
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
    let output = Command::new(&python)
        .arg(&path)
        .arg(args.to_string())
        .envs(envs.iter().copied())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|l| l.trim() == "ok"),
        "vendor check {script} failed ({}).\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout.into_owned()
}
