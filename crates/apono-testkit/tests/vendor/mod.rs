//! Runs the vendor-client scripts in this directory with the project's Python venv.

use std::path::PathBuf;

/// Runs `tests/vendor/{script}` with `args` (JSON) as its only argument and `envs` added to its
/// environment; panics with the script's output unless it exits 0 and prints `ok`. Returns
/// what it printed.
///
/// Never skips: a missing venv or package is a failure that says what to install.
pub(crate) fn run(script: &str, args: &serde_json::Value, envs: &[(&str, &str)]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vendor")
        .join(script);
    let output = apono_testkit::python::run_script(&path, &[&args.to_string()], envs, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|l| l.trim() == "ok"),
        "vendor check {script} failed ({}).\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout.into_owned()
}
