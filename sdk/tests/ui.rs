//! Compile-time behaviour of `#[derive(Plugin)]`: what compiles, and what each misuse reports.
//! Refresh the snapshots with `TRYBUILD=overwrite cargo test -p redplug --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    for category in [
        "connection_name",
        "plugin_attr",
        "field_roles",
        "field_types",
        "shape",
        "middleware",
    ] {
        t.compile_fail(format!("tests/ui/{category}/*.rs"));
    }
}
