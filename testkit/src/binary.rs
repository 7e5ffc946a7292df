//! Finding the Redis programs the harness runs, and the message shown when they are missing.

use std::env;
use std::ffi::OsStr;
use std::path::PathBuf;

/// The server binary every [`RedisServer`](crate::RedisServer) runs.
pub(crate) const REDIS_SERVER: &str = "redis-server";
/// The command-line client used to form clusters and to probe TLS servers.
pub(crate) const REDIS_CLI: &str = "redis-cli";

/// The panic message for a Redis program that is not on `PATH`, with install instructions.
///
/// Tests never skip when Redis is missing: a skipped integration test looks like a passing one.
pub fn missing_program_message(program: &str) -> String {
    format!(
        "{program} was not found on PATH; install it with \
         `sudo apt-get install redis-server redis-tools` (Debian/Ubuntu) or `brew install redis` (macOS)"
    )
}

/// Looks `program` up in the directories of `path` (a `PATH`-style list).
pub(crate) fn find_in(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// The full path of `program` on `PATH`, or a panic that says how to install it.
pub(crate) fn require(program: &str) -> PathBuf {
    find_in(program, env::var_os("PATH").as_deref())
        .unwrap_or_else(|| panic!("{}", missing_program_message(program)))
}

#[cfg(unix)]
fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &std::path::Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_program_and_how_to_install_it() {
        let message = missing_program_message(REDIS_SERVER);
        assert!(
            message.starts_with("redis-server was not found on PATH;"),
            "{message}"
        );
        assert!(
            message.contains("sudo apt-get install redis-server redis-tools"),
            "{message}"
        );
        assert!(message.contains("brew install redis"), "{message}");
    }

    #[test]
    fn empty_or_unset_path_finds_nothing() {
        assert_eq!(find_in(REDIS_SERVER, None), None);
        assert_eq!(find_in(REDIS_SERVER, Some(OsStr::new(""))), None);
    }

    #[test]
    fn finds_an_executable_in_a_listed_directory() {
        let sh = find_in("sh", Some(OsStr::new("/nonexistent:/bin:/usr/bin")));
        assert!(sh.is_some_and(|p| p.ends_with("sh")));
    }
}
