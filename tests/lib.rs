//! End-to-end tests of the `apono-connector` binary (see the `[[test]]` targets) and the
//! `apono-quickstart-target` helper of `scripts/quickstart.sh`.
//!
//! The library holds what the tests share: [`connector_bin`].

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The `apono-connector` binary to test: `APONO_TEST_CONNECTOR_BIN` if set, else the workspace's
/// own, brought up to date first with `cargo build -p apono-connector` (test builds do not link
/// other packages' binaries; `scripts/test.sh` runs the same build beforehand).
///
/// Panics with cargo's output if the build fails: a test of the binary cannot run without it.
pub fn connector_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("APONO_TEST_CONNECTOR_BIN") {
            return path.into();
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let mut build = Command::new(cargo);
        // Only the caller's toolchain and target directory carry over: variables cargo sets for
        // the test itself (features, package metadata) must not steer this build.
        build.env_clear();
        for (key, value) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            let keep = matches!(
                key_text.as_ref(),
                "PATH"
                    | "HOME"
                    | "CARGO_HOME"
                    | "RUSTUP_HOME"
                    | "RUSTUP_TOOLCHAIN"
                    | "CARGO_TARGET_DIR"
                    | "TMPDIR"
            );
            if keep {
                build.env(key, value);
            }
        }
        let out = build
            .args([
                "build",
                "--quiet",
                "-p",
                "apono-connector",
                "--bin",
                "apono-connector",
                "--manifest-path",
                manifest,
            ])
            .output()
            .expect("running cargo build");
        assert!(
            out.status.success(),
            "cargo build of apono-connector failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // target/<profile>/deps/<this test> → target/<profile>/apono-connector
        let exe = std::env::current_exe().expect("test path");
        exe.parent()
            .and_then(|deps| deps.parent())
            .expect("target directory")
            .join("apono-connector")
    })
    .clone()
}
