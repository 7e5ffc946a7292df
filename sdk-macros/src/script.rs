//! `#[redis_script("path")]` at compile time: find the file next to the crate's `Cargo.toml`,
//! read it, insist on UTF-8 (Redis runs Lua source text) and hash it with SHA1, the name Redis
//! gives a script in `EVALSHA` and `SCRIPT EXISTS`.
//!
//! Generated code includes the file with `include_str!` on its absolute path, so rustc records
//! it in the crate's dep-info and cargo rebuilds the crate when the file changes; the hash is
//! computed here from the same bytes.

use std::io;
use std::path::{Path, PathBuf};

use syn::LitStr;

/// A script file that was found and read.
pub(crate) struct ScriptFile {
    /// The absolute path, for `include_str!`.
    pub absolute: String,
    /// The SHA1 of the file's bytes, 40 lowercase hex digits, as Redis writes it.
    pub sha1: String,
}

/// Reads the file `path` names, relative to the crate's manifest directory. Errors are spanned
/// on the path literal and name the file that was tried.
pub(crate) fn read(path: &LitStr) -> syn::Result<ScriptFile> {
    let written = path.value();
    let error = |message: String| syn::Error::new(path.span(), message);
    let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return Err(error(format!(
            "cannot find {written:?}: `#[redis_script]` reads paths relative to the crate's Cargo.toml, and CARGO_MANIFEST_DIR is not set; build the crate with cargo"
        )));
    };
    let manifest_dir = PathBuf::from(manifest_dir);
    let file = manifest_dir.join(&written);
    let shown = file.display();
    let bytes = std::fs::read(&file).map_err(|cause| {
        error(format!(
            "cannot read the Lua file of `#[redis_script({written:?})]`: tried {shown}, which {}; the path is relative to the directory of the crate's Cargo.toml ({})",
            io_reason(&cause),
            manifest_dir.display()
        ))
    })?;
    let source = String::from_utf8(bytes).map_err(|cause| {
        let at = cause.utf8_error().valid_up_to();
        error(format!(
            "the Lua file {shown} is not UTF-8 (the first invalid byte is at offset {at}): Redis runs scripts as text; save the file as UTF-8"
        ))
    })?;
    let Some(absolute) = file.to_str().map(str::to_owned) else {
        return Err(error(format!(
            "the path {shown} is not valid UTF-8, so the script cannot be included; rename the file or a folder on its path"
        )));
    };
    Ok(ScriptFile {
        absolute,
        sha1: sha1_smol::Sha1::from(source.as_bytes())
            .digest()
            .to_string(),
    })
}

/// Why a file could not be read, as the end of a sentence that starts "tried <path>, which".
fn io_reason(cause: &io::Error) -> String {
    match cause.kind() {
        io::ErrorKind::NotFound => "does not exist".to_owned(),
        io::ErrorKind::PermissionDenied => "this build may not read (permission denied)".to_owned(),
        io::ErrorKind::IsADirectory => "is a directory, not a file".to_owned(),
        _ => format!("could not be read ({cause})"),
    }
}

/// Whether `path` would be read from outside the crate on every machine alike: an absolute
/// path only works where it was written.
pub(crate) fn is_absolute(path: &str) -> bool {
    Path::new(path).is_absolute()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_like_redis() {
        // `SCRIPT LOAD "return 1"` answers this on Redis 7.
        let sha1 = sha1_smol::Sha1::from("return 1".as_bytes())
            .digest()
            .to_string();
        assert_eq!(sha1, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
