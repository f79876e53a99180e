//! Python scripts run with the workspace's venv (`<workspace>/.venv`, which `scripts/test.sh`
//! creates from `scripts/requirements-test.txt`): the vendor clients that check the protocol
//! fakes, and other checkers written in Python.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `<workspace>/.venv/bin/python`.
///
/// # Panics
///
/// When it does not exist, with a message that says how to create it. Tests that need it never
/// skip.
pub fn venv_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: create it with `python3 -m venv .venv` at the workspace root and \
         `.venv/bin/pip install -r scripts/requirements-test.txt` (scripts/test.sh does this)",
        python.display()
    );
    python
}

/// Runs `script` with the venv's Python, `args` as its arguments, `envs` added to its
/// environment and `stdin` (if any) on its standard input, and returns its output.
///
/// # Panics
///
/// When the venv is missing or the interpreter cannot be started.
pub fn run_script(
    script: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Output {
    let python = venv_python();
    let mut child = Command::new(&python)
        .arg(script)
        .args(args)
        .envs(envs.iter().copied())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", python.display()));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .unwrap_or_else(|e| panic!("could not write to {}: {e}", script.display()));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", python.display()))
}
