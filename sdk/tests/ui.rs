//! Compile-time behaviour of `#[derive(Plugin)]`: what compiles, and what each misuse reports.
//! Refresh the snapshots with `TRYBUILD=overwrite cargo test -p redplug --test ui`.

use std::path::{Path, PathBuf};

#[test]
fn ui() {
    // The snapshots of the script cases show the paths tried as `$WORKSPACE/target/...`, the
    // form trybuild gives paths inside the workspace; a target directory elsewhere would show
    // as itself and differ from every snapshot.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the sdk crate is inside the workspace");
    assert!(
        trybuild_crate().starts_with(workspace),
        "the UI snapshots expect the target directory inside the workspace, but it is {}: \
         run this test without CARGO_TARGET_DIR (or with one under {})",
        trybuild_crate().display(),
        workspace.display()
    );
    write_script_files();
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    for category in [
        "connection_name",
        "plugin_attr",
        "field_roles",
        "field_types",
        "script",
        "shape",
        "middleware",
    ] {
        t.compile_fail(format!("tests/ui/{category}/*.rs"));
    }
}

/// `#[redis_script("...")]` reads files relative to the manifest of the crate being compiled,
/// and trybuild compiles the cases as a crate of its own in
/// `<target>/tests/trybuild/redplug/`. The Lua files the cases name are written there: one
/// that compiles, and one with a byte that is not UTF-8 (a file git would keep as binary).
fn write_script_files() {
    let scripts = trybuild_crate().join("scripts");
    std::fs::create_dir_all(&scripts).expect("create the trybuild crate's scripts/ folder");
    for (name, bytes) in [
        ("ok.lua", &b"return 1"[..]),
        ("not_utf8.lua", &b"return '\xff'"[..]),
    ] {
        std::fs::write(scripts.join(name), bytes).expect("write a Lua file for the cases");
    }
}

/// trybuild's crate directory: `tests/trybuild/<package>` in the target directory, the parent
/// of the `tmp` folder cargo gives integration tests.
fn trybuild_crate() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory");
    target
        .join("tests")
        .join("trybuild")
        .join(env!("CARGO_PKG_NAME"))
}
