//! Finding the programs the launchers run.
//!
//! Search order: the directories on `PATH`, then `<workspace root>/.venv/bin` (where
//! `scripts/test.sh` installs the PyPI tools), then the system directories Debian keeps
//! daemons in but not every `PATH` lists (`/usr/sbin`, `/usr/lib/postgresql/<newest>/bin`).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Server};

/// `<workspace root>/.venv`, the project's Python virtual environment.
pub(crate) fn venv_dir() -> PathBuf {
    // This crate lives at `<workspace root>/crates/apono-testkit`.
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .join(".venv")
}

/// The first executable file called `program` in the search directories.
pub(crate) fn program(server: Server, program: &'static str) -> Result<PathBuf> {
    candidates(program)
        .into_iter()
        .next()
        .ok_or_else(|| missing(server, program))
}

/// Every executable file called `program` in the search directories, in search order.
pub(crate) fn candidates(program: &str) -> Vec<PathBuf> {
    search_dirs()
        .into_iter()
        .map(|dir| dir.join(program))
        .filter(|path| is_executable(path))
        .collect()
}

/// The error for a program that is nowhere to be found.
pub(crate) fn missing(server: Server, program: &'static str) -> Error {
    let searched = search_dirs()
        .iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Error::MissingProgram {
        server,
        program,
        searched,
    }
}

fn search_dirs() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(venv_dir().join("bin"));
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.extend(postgres_bin_dirs());
    let mut seen = Vec::new();
    dirs.retain(|dir| {
        let new = !seen.contains(dir);
        seen.push(dir.clone());
        new
    });
    dirs
}

/// `/usr/lib/postgresql/<version>/bin`, newest version first.
fn postgres_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_the_server_the_places_searched_and_the_remedy() {
        let error = program(Server::Sshd, "apono-testkit-no-such-program").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("sshd: `apono-testkit-no-such-program` not found (searched "),
            "{message}"
        );
        assert!(
            message.contains(&format!("{}/bin", venv_dir().display())),
            "{message}"
        );
        assert!(!message.contains(".."), "{message}");
        assert!(message.ends_with(
            "which installs openssh-server, openssh-client, sudo and util-linux (as root)"
        ));
    }

    #[test]
    fn daemons_outside_path_are_found() {
        // Debian keeps these off the default PATH of non-root users.
        for name in ["sshd", "postgres", "initdb", "mariadbd"] {
            assert!(!candidates(name).is_empty(), "{name} not found");
        }
    }
}
