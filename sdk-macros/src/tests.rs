//! The derive on odd inputs, called directly on `syn::DeriveInput`: it must answer every one of
//! them with either an expansion or spanned errors (plus a fallback), and never panic. The
//! messages users see are pinned by the trybuild cases in `tests/ui`; these tests cover the
//! inputs that are tedious to compile one by one.

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::expand::{self, Failure};

/// The expansion, or the error messages. Either way the output must parse as Rust items, or the
/// user would see a syntax error from our output instead of our message.
fn derive(source: &str) -> Result<TokenStream, Vec<String>> {
    let input: DeriveInput = syn::parse_str(source).expect("test input is a valid item");
    let output = expand::derive(&input);
    if let Err(error) = syn::parse2::<syn::File>(output.clone()) {
        panic!("output of {source} does not parse: {error}\n{output}");
    }
    match expand::try_derive(&input) {
        Ok(tokens) => Ok(tokens),
        Err(Failure { error, .. }) => Err(error.into_iter().map(|e| e.to_string()).collect()),
    }
}

fn expands(source: &str) -> String {
    match derive(source) {
        Ok(tokens) => tokens.to_string(),
        Err(messages) => panic!("expected {source} to expand, got {messages:#?}"),
    }
}

fn errors(source: &str) -> Vec<String> {
    match derive(source) {
        Ok(tokens) => panic!("expected errors for {source}, got {tokens}"),
        Err(messages) => {
            for message in &messages {
                assert!(!message.is_empty(), "empty message for {source}");
                assert!(
                    !message.starts_with(char::is_uppercase),
                    "messages are lower case: {message}"
                );
            }
            messages
        }
    }
}

fn one_error(source: &str) -> String {
    let mut messages = errors(source);
    assert_eq!(messages.len(), 1, "{source}: {messages:#?}");
    messages.remove(0)
}

#[test]
fn plain_shapes_expand() {
    let empty = expands("struct Empty {}");
    assert!(
        empty.contains("const NAME : & 'static str = \"empty\""),
        "{empty}"
    );
    assert!(empty.contains("const NEEDS : & 'static [:: redplug :: __private :: Need] = & []"));
    expands("struct Unit;");
    expands("struct Tuple(u8, #[redis_pool(\"a\")] RedisPool);");
    expands(
        "struct Documented { /// docs\n #[doc = \"more\"] #[redis_selectors] s: RedisSelectors }",
    );
    expands(
        "#[cfg_attr(test, derive(Debug))] struct WithOtherAttrs { #[allow(dead_code)] #[serde(skip)] a: u8 }",
    );
    expands("struct WhereWithoutGenerics where u8: Copy { a: u8 }");
    expands("pub(crate) struct Visible { pub(super) a: u8 }");
}

#[test]
fn default_names_are_snake_case_without_raw_prefix() {
    assert!(expands("struct RateLimiter;").contains("\"rate_limiter\""));
    assert!(expands("struct HTTPCache;").contains("\"http_cache\""));
    let raw = expands("struct r#type { #[redis_pool(\"p\")] r#match: RedisPool }");
    assert!(
        raw.contains("const NAME : & 'static str = \"type\""),
        "{raw}"
    );
    assert!(raw.contains("field : \"match\""), "{raw}");
    assert!(raw.contains("\"::\" , \"type\""), "{raw}");
}

#[test]
fn very_long_names_are_fine() {
    let ident = format!("P{}", "a".repeat(5_000));
    let name = "n".repeat(100_000);
    let source = format!(
        "#[plugin(name = \"{name}\")] struct {ident} {{ #[redis_pool(\"{name}\")] r: RedisPool }}"
    );
    assert!(expands(&source).contains(&name));
    let many_fields: String = (0..500)
        .map(|i| format!("#[redis_pool(\"p{i}\")] f{i}: RedisPool,"))
        .collect();
    expands(&format!("struct Many {{ {many_fields} }}"));
}

#[test]
fn renamed_crate_replaces_every_redplug_path() {
    let tokens = expands(
        "#[plugin(crate = \"::my_sdk\")] struct Renamed { #[redis_pool(\"a\")] a: RedisPool, #[plugin(config)] c: C, d: u8, #[redis_selectors] s: S }",
    );
    assert!(!tokens.contains("redplug"), "{tokens}");
    assert!(tokens.contains(":: my_sdk :: __private :: inventory :: submit !"));
    expands("#[plugin(crate = \"crate::sdk\")] struct Local;");
    expands("#[plugin(crate = \"self::sdk\")] struct Local;");
}

#[test]
fn generated_paths_are_absolute() {
    let tokens = expands(
        "struct All { #[redis_pool(\"a\")] a: RedisPool, #[redis_cluster(\"b\")] b: RedisCluster, #[redis_selectors] s: RedisSelectors, #[plugin(config)] c: C, d: u8 }",
    );
    for bare in [
        " Result ::",
        " Ok (",
        " Err (",
        " Some (",
        " None ",
        " Default ::",
        " Into ::",
    ] {
        for (position, _) in tokens.match_indices(bare) {
            let before = &tokens[..position];
            assert!(
                before.ends_with("::"),
                "`{bare}` is not behind an absolute path in {tokens}"
            );
        }
    }
}

#[test]
fn connection_name_grammar() {
    for (attribute, expected) in [
        ("#[redis_pool]", "needs the name of a pool"),
        ("#[redis_pool()]", "is empty"),
        ("#[redis_pool[\"x\"]]", "in parentheses"),
        ("#[redis_pool{\"x\"}]", "in parentheses"),
        ("#[redis_pool = \"x\"]", "`#[redis_pool(\"x\")]`"),
        ("#[redis_pool = x]", "`#[redis_pool(\"x\")]`"),
        ("#[redis_pool(eight)]", "`#[redis_pool(\"eight\")]`"),
        ("#[redis_pool(r#type)]", "`#[redis_pool(\"type\")]`"),
        ("#[redis_pool(a::b)]", "string literal"),
        ("#[redis_pool(8)]", "`#[redis_pool(\"8\")]`"),
        ("#[redis_pool(0x1F)]", "`#[redis_pool(\"31\")]`"),
        ("#[redis_pool(1.5)]", "`#[redis_pool(\"1.5\")]`"),
        ("#[redis_pool(true)]", "`#[redis_pool(\"true\")]`"),
        ("#[redis_pool('x')]", "`#[redis_pool(\"x\")]`"),
        ("#[redis_pool(b\"x\")]", "`#[redis_pool(\"x\")]`"),
        ("#[redis_pool(-1)]", "string literal"),
        ("#[redis_pool(+)]", "string literal"),
        ("#[redis_pool(())]", "string literal"),
        (
            "#[redis_pool(concat!(\"a\", \"b\"))]",
            "macros are not expanded",
        ),
        ("#[redis_pool(name = \"x\")]", "without a key"),
        ("#[redis_pool(name = )]", "without a key"),
        ("#[redis_pool(\"x\"suffix)]", "remove the suffix"),
        ("#[redis_pool(\"x\" \"y\")]", "expected `)`"),
        ("#[redis_pool(\"x\", \"y\")]", "takes one name"),
        ("#[redis_pool(\"x\",,)]", "takes one name"),
        ("#[redis_pool(\"\")]", "empty name"),
        ("#[redis_pool(\" \\t\\n\")]", "blank name"),
        ("#[redis_pool(\"x \")]", "whitespace around"),
        ("#[redis_cluster]", "needs the name of a cluster"),
        ("#[redis_cluster(\"\")]", "extra_config.redis.clusters[]"),
    ] {
        let message = one_error(&format!("struct S {{ {attribute} f: RedisPool }}"));
        assert!(message.contains(expected), "{attribute}: {message}");
    }
    expands("struct S { #[redis_pool(\"x\",)] f: RedisPool }");
    expands("struct S { #[redis_pool(r\"raw\")] f: RedisPool }");
    expands("struct S { #[redis_pool(r#\"x\"#)] f: RedisPool }");
    expands("struct S { #[redis_pool(\"with inner space\")] f: RedisPool }");
    expands("struct S { #[redis_pool(\"ünïcödé\")] f: RedisPool }");
}

#[test]
fn selectors_grammar() {
    for attribute in [
        "#[redis_selectors()]",
        "#[redis_selectors(\"x\")]",
        "#[redis_selectors(a, b)]",
        "#[redis_selectors = \"x\"]",
        "#[redis_selectors[]]",
    ] {
        let message = one_error(&format!("struct S {{ {attribute} f: RedisSelectors }}"));
        assert!(
            message.contains("takes no arguments"),
            "{attribute}: {message}"
        );
    }
    assert!(
        one_error("struct S { #[redis_selectors(\"eight\")] f: RedisSelectors }")
            .contains("#[redis_pool(\"eight\")]")
    );
}

#[test]
fn plugin_attribute_grammar_on_the_struct() {
    for (attribute, expected) in [
        ("#[plugin]", "needs a key"),
        ("#[plugin = \"x\"]", "not the syntax"),
        ("#[plugin[name = \"x\"]]", "parentheses"),
        ("#[plugin(nmae = \"x\")]", "unknown key `nmae`"),
        ("#[plugin(r#type = \"x\")]", "unknown key `type`"),
        ("#[plugin(a::b = \"x\")]", "unknown key `a::b`"),
        ("#[plugin(name)]", "needs a value"),
        ("#[plugin(name(\"x\"))]", "needs a value"),
        (
            "#[plugin(name = counter)]",
            "`#[plugin(name = \"counter\")]`",
        ),
        ("#[plugin(name = 1 + 1)]", "string literal"),
        ("#[plugin(name = \"x\"suffix)]", "string literal"),
        ("#[plugin(name = \"a\", name = \"b\")]", "duplicate `name`"),
        (
            "#[plugin(crate = \"a\", crate = \"b\")]",
            "duplicate `crate`",
        ),
        ("#[plugin(crate = \"not a path\")]", "is not a path"),
        ("#[plugin(crate = \"\")]", "is not a path"),
        ("#[plugin(config)]", "on that field"),
        ("#[plugin(name = \"\")]", "is empty"),
        (
            "#[plugin(name = \"rate limiter\")]",
            "`#[plugin(name = \"rate_limiter\")]`",
        ),
        ("#[plugin(name = \"tab\\there\")]", "whitespace"),
        ("#[redis_pool(\"x\")]", "goes on a field"),
        ("#[redis_selectors]", "goes on a field"),
    ] {
        let message = one_error(&format!("{attribute} struct S;"));
        assert!(message.contains(expected), "{attribute}: {message}");
    }
    expands("#[plugin()] struct S;");
    expands("#[plugin(name = \"x\",)] struct S;");
    expands("#[plugin(name = \"x\")] #[plugin(crate = \"::redplug\")] struct S;");
}

#[test]
fn plugin_attribute_grammar_on_a_field() {
    for (attribute, expected) in [
        ("#[plugin]", "needs a key"),
        ("#[plugin(confg)]", "unknown key `confg`"),
        ("#[plugin(config = true)]", "takes no value"),
        ("#[plugin(config(x))]", "takes no arguments"),
        ("#[plugin(name = \"x\")]", "on the struct"),
        ("#[plugin(crate = \"x\")]", "on the struct"),
        ("#[plugin(config, config)]", "duplicate"),
        ("#[plugin(config)] #[plugin(config)]", "duplicate"),
    ] {
        let message = one_error(&format!("struct S {{ {attribute} f: C }}"));
        assert!(message.contains(expected), "{attribute}: {message}");
    }
}

#[test]
fn field_roles() {
    let message =
        one_error("struct S { #[redis_pool(\"a\")] #[redis_cluster(\"b\")] f: RedisPool }");
    assert!(
        message.contains("already has `#[redis_pool(\"...\")]`"),
        "{message}"
    );
    let message = one_error("struct S { #[redis_selectors] #[redis_selectors] f: RedisSelectors }");
    assert!(
        message.contains("duplicate `#[redis_selectors]`"),
        "{message}"
    );
    let message = one_error("struct S { #[plugin(config)] a: A, #[plugin(config)] b: B }");
    assert!(message.contains("`a` already is"), "{message}");
    // Several selectors fields are allowed: each gets a clone of the same handle.
    expands(
        "struct S { #[redis_selectors] a: RedisSelectors, #[redis_selectors] b: RedisSelectors }",
    );
    // Two fields may name the same pool.
    expands("struct S { #[redis_pool(\"x\")] a: RedisPool, #[redis_pool(\"x\")] b: RedisPool }");
}

#[test]
fn shapes_that_are_not_plugins() {
    assert!(one_error("enum E { A, B }").contains("not on an enum"));
    assert!(one_error("enum E {}").contains("not on an enum"));
    assert!(one_error("enum E { A(#[redis_pool] RedisPool) }").contains("not on an enum"));
    assert!(one_error("union U { a: u8 }").contains("not on a union"));
    assert!(one_error("struct G<T> { t: T }").contains("generic parameters"));
    assert!(one_error("struct G<const N: usize>;").contains("generic parameters"));
    assert!(one_error("struct L<'a> { s: &'a str }").contains("lifetime parameters"));
    assert!(
        one_error("struct L<'a, T: 'a> where T: Copy { s: &'a T }").contains("generic parameters")
    );
}

#[test]
fn all_mistakes_are_reported_together() {
    let messages = errors(
        "#[plugin(name = \"\", nope)] struct S<T> { #[redis_pool] a: RedisPool, #[redis_cluster(\"\")] b: RedisCluster, #[plugin(config)] #[redis_selectors] c: T }",
    );
    // name, nope, generics, a, b, c
    assert_eq!(messages.len(), 6, "{messages:#?}");
}

#[test]
fn failures_still_emit_an_impl_except_for_generic_types() {
    let fallback = |source: &str| {
        let input: DeriveInput = syn::parse_str(source).unwrap();
        match expand::try_derive(&input) {
            Ok(tokens) => panic!("expected an error for {source}, got {tokens}"),
            Err(Failure { fallback, .. }) => fallback.to_string(),
        }
    };
    let tokens = fallback("#[plugin(name = \"counter\")] struct S { #[redis_pool] a: RedisPool }");
    assert!(
        tokens.contains("impl :: redplug :: Plugin for S"),
        "{tokens}"
    );
    assert!(tokens.contains("\"counter\""), "{tokens}");
    assert!(
        !tokens.contains("submit"),
        "a broken plugin must not register: {tokens}"
    );
    assert!(fallback("enum E { A }").contains("impl :: redplug :: Plugin for E"));
    assert!(fallback("struct G<T>(T);").is_empty());
}

#[test]
fn a_script_field_includes_its_file_and_carries_its_sha1() {
    // Any UTF-8 file of this crate serves as a script here.
    let tokens = expands(
        "struct S { #[redis_pool(\"p\")] redis: RedisPool, #[redis_script(\"Cargo.toml\")] limit: RedisScript }",
    );
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let bytes = std::fs::read(&manifest).unwrap();
    let sha1 = sha1_smol::Sha1::from(&bytes).digest().to_string();
    assert!(
        tokens.contains(&format!(
            "include_str ! ({:?})",
            manifest.display().to_string()
        )),
        "{tokens}"
    );
    assert!(tokens.contains(&format!("{sha1:?}")), "{tokens}");
    assert!(tokens.contains("const SCRIPTS"), "{tokens}");
    assert!(tokens.contains("fn injected"), "{tokens}");
}

#[test]
fn plugins_without_scripts_or_connections_keep_the_trait_defaults() {
    let tokens = expands("struct S { hits: u64 }");
    assert!(!tokens.contains("SCRIPTS"), "{tokens}");
    assert!(!tokens.contains("fn injected"), "{tokens}");
}

#[test]
fn script_mistakes_are_reported_with_the_others() {
    let messages = errors(
        "struct S { #[redis_script(\"no/such/file.lua\")] a: RedisScript, #[redis_script(\"\")] b: RedisScript, #[redis_script] c: RedisScript, #[redis_script(\"/abs.lua\")] d: RedisScript }",
    );
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("no/such/file.lua") && m.contains("does not exist")),
        "{messages:#?}"
    );
}
