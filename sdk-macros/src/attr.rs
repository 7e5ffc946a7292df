//! The attribute grammar, parsed once into typed values:
//!
//! - on the struct: `#[plugin(name = "...", crate = "...")]`;
//! - on a field: `#[redis_pool("name")]`, `#[redis_cluster("name")]`, `#[redis_selectors]`,
//!   `#[redis_script("path")]`, `#[plugin(config)]`.
//!
//! This module only answers "is this attribute well formed, and what does it say". Whether the
//! values fit together (one role per field, one config field, names that can match a config
//! entry) is `valid`'s business.

use proc_macro2::{Span, TokenTree};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Ident, Lit, LitStr, Meta, Path, Token};

use crate::errors::Errors;
use crate::kinds::{CONNECTIONS, ConnectionKind, PLUGIN, SCRIPT, SELECTORS, field_attribute};

const STRUCT_KEYS: &str = "`name` and `crate`";

/// What `#[plugin(...)]` on the struct says.
#[derive(Default)]
pub(crate) struct Container {
    /// `name = "..."`: the plugin's name; `None` means the type's name in snake_case.
    pub name: Option<LitStr>,
    /// `crate = "..."`: where `redplug` is, for a crate that renamed the dependency.
    pub krate: Option<Path>,
}

/// What one redplug attribute on a field asks for.
pub(crate) enum Role {
    /// `#[redis_pool("name")]` or `#[redis_cluster("name")]`.
    Connection(&'static ConnectionKind, LitStr),
    /// `#[redis_selectors]`.
    Selectors,
    /// `#[redis_script("path")]`: the path as written, relative to the crate's manifest.
    Script(LitStr),
    /// `#[plugin(config)]`.
    Config,
}

impl Role {
    /// The attribute as a user writes it, for messages.
    pub(crate) fn written(&self) -> String {
        match self {
            Role::Connection(kind, _) => format!("#[{}(\"...\")]", kind.attribute),
            Role::Selectors => format!("#[{SELECTORS}]"),
            Role::Script(_) => format!("#[{SCRIPT}(\"...\")]"),
            Role::Config => format!("#[{PLUGIN}(config)]"),
        }
    }

    pub(crate) fn same_kind(&self, other: &Role) -> bool {
        match (self, other) {
            (Role::Connection(a, _), Role::Connection(b, _)) => std::ptr::eq(*a, *b),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// One redplug attribute on a field, with the token that names it (`redis_pool`, `config`) so
/// that conflicts can be reported on the attribute the user should remove.
pub(crate) struct FieldAttr {
    pub role: Role,
    pub key: Span,
}

/// Reads the attributes on the struct (or enum / union: the derive reports those elsewhere,
/// but their attributes are still checked so all mistakes show at once).
pub(crate) fn container(attrs: &[Attribute], errors: &mut Errors) -> Container {
    let mut container = Container::default();
    for attr in attrs {
        let path = attr.path();
        if path.is_ident(PLUGIN) {
            if let Some(list) = list_or_report(attr, "#[plugin(name = \"...\")]", errors) {
                let parsed = list.parse_nested_meta(|meta| container_key(&meta, &mut container));
                errors.ok(parsed);
            }
        } else if let Some(written) = path
            .get_ident()
            .and_then(|i| field_attribute(&i.to_string()))
        {
            errors.spanned(
                attr,
                format!("`{written}` goes on a field of the plugin struct, not on the type itself"),
            );
        }
    }
    container
}

fn container_key(meta: &ParseNestedMeta, container: &mut Container) -> syn::Result<()> {
    let key = &meta.path;
    if key.is_ident("name") {
        let name = string_value(meta, "#[plugin(name = \"counter\")]")?;
        if container.name.is_some() {
            return Err(
                meta.error("duplicate `name` in `#[plugin(...)]`: a plugin has one name; keep one")
            );
        }
        container.name = Some(name);
    } else if key.is_ident("crate") {
        let value = string_value(meta, "#[plugin(crate = \"::my_redplug\")]")?;
        if container.krate.is_some() {
            return Err(meta.error("duplicate `crate` in `#[plugin(...)]`; keep one"));
        }
        let path = value.parse::<Path>().map_err(|_| {
            syn::Error::new(
                value.span(),
                format!(
                    "`#[plugin(crate = {:?})]` is not a path: write the path the `redplug` dependency is reachable at, such as `#[plugin(crate = \"::my_redplug\")]`",
                    value.value()
                ),
            )
        })?;
        container.krate = Some(path);
    } else if key.is_ident("config") {
        return Err(meta.error(
            "`#[plugin(config)]` marks the field that holds the plugin's own config: put it on that field, not on the struct",
        ));
    } else {
        return Err(meta.error(format!(
            "unknown key `{}` in `#[plugin(...)]` on the struct; valid keys here are {STRUCT_KEYS}",
            key_text(key)
        )));
    }
    Ok(())
}

/// Reads the redplug attributes on one field, in the order written. Attributes that are
/// malformed are reported and left out.
pub(crate) fn field(attrs: &[Attribute], errors: &mut Errors) -> Vec<FieldAttr> {
    let mut roles = Vec::new();
    for attr in attrs {
        let path = attr.path();
        let key = path.span();
        if let Some(kind) = CONNECTIONS
            .into_iter()
            .find(|kind| path.is_ident(kind.attribute))
        {
            if let Some(name) = errors.ok(connection(attr, kind)) {
                roles.push(FieldAttr {
                    role: Role::Connection(kind, name),
                    key,
                });
            }
        } else if path.is_ident(SELECTORS) {
            if errors.ok(selectors(attr)).is_some() {
                roles.push(FieldAttr {
                    role: Role::Selectors,
                    key,
                });
            }
        } else if path.is_ident(SCRIPT) {
            if let Some(path) = errors.ok(script(attr)) {
                roles.push(FieldAttr {
                    role: Role::Script(path),
                    key,
                });
            }
        } else if path.is_ident(PLUGIN)
            && let Some(list) = list_or_report(attr, "#[plugin(config)]", errors)
        {
            let parsed = list.parse_nested_meta(|meta| field_key(&meta, &mut roles));
            errors.ok(parsed);
        }
    }
    roles
}

fn field_key(meta: &ParseNestedMeta, roles: &mut Vec<FieldAttr>) -> syn::Result<()> {
    let key = &meta.path;
    if key.is_ident("config") {
        if meta.input.peek(Token![=]) {
            meta.input.parse::<Token![=]>()?;
            let value: Expr = meta.input.parse()?;
            return Err(syn::Error::new_spanned(
                value,
                "`config` takes no value: write `#[plugin(config)]`; the value comes from the gateway's config at `extra_config[\"plugin/redplug\"][\"<plugin name>\"]`",
            ));
        }
        if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
            let rest: TokenTree = meta.input.parse()?;
            return Err(syn::Error::new(
                rest.span(),
                "`config` takes no arguments: write `#[plugin(config)]`",
            ));
        }
        roles.push(FieldAttr {
            role: Role::Config,
            key: key.span(),
        });
        Ok(())
    } else if key.is_ident("name") || key.is_ident("crate") {
        Err(meta.error(format!(
            "`{}` describes the whole plugin: put `#[plugin({} = \"...\")]` on the struct, not on a field",
            key_text(key),
            key_text(key)
        )))
    } else {
        Err(meta.error(format!(
            "unknown key `{}` in `#[plugin(...)]` on a field; the only valid key here is `config`",
            key_text(key)
        )))
    }
}

/// `#[redis_pool("name")]` / `#[redis_cluster("name")]`: exactly one string literal.
fn connection(attr: &Attribute, kind: &ConnectionKind) -> syn::Result<LitStr> {
    let (attribute, noun) = (kind.attribute, kind.noun);
    match &attr.meta {
        Meta::Path(_) => Err(syn::Error::new_spanned(
            attr,
            format!(
                "`#[{attribute}]` needs the name of a {noun}: write `#[{attribute}(\"name\")]`"
            ),
        )),
        Meta::NameValue(meta) => Err(syn::Error::new_spanned(
            &meta.value,
            format!(
                "`#[{attribute} = ...]` is not the syntax: write the name in parentheses, `#[{attribute}({})]`",
                suggested_name(&meta.value)
            ),
        )),
        Meta::List(list) if !is_paren(list) => Err(syn::Error::new(
            list.delimiter.span().join(),
            format!("write the {noun} name in parentheses: `#[{attribute}(\"name\")]`"),
        )),
        Meta::List(list) if list.tokens.is_empty() => Err(syn::Error::new(
            list.delimiter.span().join(),
            format!(
                "`#[{attribute}()]` is empty: write the name of the {noun}, `#[{attribute}(\"name\")]`"
            ),
        )),
        Meta::List(list) => list.parse_args_with(|input: ParseStream| connection_name(input, kind)),
    }
}

fn connection_name(input: ParseStream, kind: &ConnectionKind) -> syn::Result<LitStr> {
    let (attribute, noun) = (kind.attribute, kind.noun);
    if input.peek(LitStr) {
        let name: LitStr = input.parse()?;
        if !name.suffix().is_empty() {
            return Err(syn::Error::new(
                name.span(),
                format!(
                    "remove the suffix `{}` after the {noun} name: write `#[{attribute}({:?})]`",
                    name.suffix(),
                    name.value()
                ),
            ));
        }
        if input.is_empty() {
            return Ok(name);
        }
        if !input.peek(Token![,]) {
            let rest: TokenTree = input.parse()?;
            return Err(syn::Error::new(
                rest.span(),
                format!("expected `)` after the {noun} name: write `#[{attribute}(\"name\")]`"),
            ));
        }
        input.parse::<Token![,]>()?;
        if input.is_empty() {
            return Ok(name);
        }
        let second: TokenTree = input.parse()?;
        return Err(syn::Error::new(
            second.span(),
            format!(
                "`#[{attribute}(...)]` takes one name: a field holds one {noun}; declare another field for a second {noun}"
            ),
        ));
    }
    if input.peek(Lit) {
        let lit: Lit = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "the {noun} name must be a string literal: write `#[{attribute}({})]`",
                quoted(&lit_text(&lit))
            ),
        ));
    }
    if input.peek(Ident::peek_any) {
        let ident = input.call(Ident::parse_any)?;
        let text = ident.unraw().to_string();
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            let value = input
                .parse::<Expr>()
                .map(|v| suggested_name(&v))
                .unwrap_or_default();
            return Err(syn::Error::new(
                ident.span(),
                format!(
                    "`#[{attribute}(...)]` takes the {noun} name alone, without a key: write `#[{attribute}({})]`",
                    if value.is_empty() {
                        "\"name\"".to_owned()
                    } else {
                        value
                    }
                ),
            ));
        }
        if input.peek(Token![!]) {
            return Err(syn::Error::new(
                ident.span(),
                format!(
                    "macros are not expanded inside `#[{attribute}(...)]`: write the {noun} name as a string literal, `#[{attribute}(\"name\")]`"
                ),
            ));
        }
        return Err(syn::Error::new(
            ident.span(),
            format!(
                "the {noun} name must be a string literal, not a path or constant: write `#[{attribute}({})]`",
                quoted(&text)
            ),
        ));
    }
    let token: TokenTree = input.parse()?;
    Err(syn::Error::new(
        token.span(),
        format!("expected the {noun} name as a string literal: `#[{attribute}(\"name\")]`"),
    ))
}

/// How messages show a script path to write.
const SCRIPT_EXAMPLE: &str = "#[redis_script(\"scripts/limit.lua\")]";

/// `#[redis_script("path")]`: exactly one string literal, the path of a Lua file.
fn script(attr: &Attribute) -> syn::Result<LitStr> {
    match &attr.meta {
        Meta::Path(_) => Err(syn::Error::new_spanned(
            attr,
            format!(
                "`#[redis_script]` needs the path of a Lua file, relative to the directory of the crate's Cargo.toml: write `{SCRIPT_EXAMPLE}`"
            ),
        )),
        Meta::NameValue(meta) => Err(syn::Error::new_spanned(
            &meta.value,
            format!(
                "`#[redis_script = ...]` is not the syntax: write the path in parentheses, `#[redis_script({})]`",
                suggested_path(&meta.value)
            ),
        )),
        Meta::List(list) if !is_paren(list) => Err(syn::Error::new(
            list.delimiter.span().join(),
            format!("write the path of the Lua file in parentheses: `{SCRIPT_EXAMPLE}`"),
        )),
        Meta::List(list) if list.tokens.is_empty() => Err(syn::Error::new(
            list.delimiter.span().join(),
            format!(
                "`#[redis_script()]` is empty: write the path of a Lua file, relative to the directory of the crate's Cargo.toml, such as `{SCRIPT_EXAMPLE}`"
            ),
        )),
        Meta::List(list) => list.parse_args_with(script_path),
    }
}

fn script_path(input: ParseStream) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        let path: LitStr = input.parse()?;
        if !path.suffix().is_empty() {
            return Err(syn::Error::new(
                path.span(),
                format!(
                    "remove the suffix `{}` after the path: write `#[redis_script({:?})]`",
                    path.suffix(),
                    path.value()
                ),
            ));
        }
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
        if input.is_empty() {
            return Ok(path);
        }
        let second: TokenTree = input.parse()?;
        return Err(syn::Error::new(
            second.span(),
            "`#[redis_script(...)]` takes one path: a field holds one script; declare another `RedisScript` field for a second script",
        ));
    }
    if input.peek(Lit) {
        let lit: Lit = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "the path must be a string literal: write `#[redis_script({})]`",
                quoted(&lit_text(&lit))
            ),
        ));
    }
    if input.peek(Ident::peek_any) {
        let ident = input.call(Ident::parse_any)?;
        let message = if input.peek(Token![!]) {
            format!(
                "macros are not expanded inside `#[redis_script(...)]`: write the path as a string literal, relative to the directory of the crate's Cargo.toml, such as `{SCRIPT_EXAMPLE}`"
            )
        } else if input.peek(Token![=]) {
            format!(
                "`#[redis_script(...)]` takes the path alone, without a key: write `{SCRIPT_EXAMPLE}`"
            )
        } else {
            format!(
                "the path must be a string literal, not a path or constant: the file is read when the crate compiles; write `{SCRIPT_EXAMPLE}`"
            )
        };
        return Err(syn::Error::new(ident.span(), message));
    }
    let token: TokenTree = input.parse()?;
    Err(syn::Error::new(
        token.span(),
        format!("expected the path of a Lua file as a string literal: `{SCRIPT_EXAMPLE}`"),
    ))
}

/// `#[redis_selectors]`: a bare path.
fn selectors(attr: &Attribute) -> syn::Result<()> {
    let (offending, name): (&dyn quote::ToTokens, String) = match &attr.meta {
        Meta::Path(_) => return Ok(()),
        Meta::NameValue(meta) => (&meta.value, suggested_name(&meta.value)),
        Meta::List(list) if list.tokens.is_empty() => {
            return Err(syn::Error::new(
                list.delimiter.span().join(),
                "`#[redis_selectors]` takes no arguments: write it bare, `#[redis_selectors]`",
            ));
        }
        Meta::List(list) => {
            let name = syn::parse2::<LitStr>(list.tokens.clone())
                .map(|lit| quoted(&lit.value()))
                .unwrap_or_else(|_| "\"name\"".to_owned());
            (&list.tokens, name)
        }
    };
    Err(syn::Error::new_spanned(
        offending,
        format!(
            "`#[redis_selectors]` takes no arguments: it injects lookups over every configured pool and cluster; to inject one named pool write `#[redis_pool({name})]` on a `RedisPool` field"
        ),
    ))
}

/// The `(...)` of `#[plugin(...)]`, or an error for `#[plugin]` and `#[plugin = ...]`.
fn list_or_report<'a>(
    attr: &'a Attribute,
    example: &str,
    errors: &mut Errors,
) -> Option<&'a syn::MetaList> {
    match &attr.meta {
        Meta::List(list) if !is_paren(list) => {
            errors.push(syn::Error::new(
                list.delimiter.span().join(),
                format!("write `#[plugin(...)]` with parentheses: `{example}`"),
            ));
            None
        }
        Meta::List(list) => Some(list),
        Meta::Path(_) => {
            errors.spanned(attr, format!("`#[plugin]` needs a key: write `{example}`"));
            None
        }
        Meta::NameValue(meta) => {
            errors.spanned(
                &meta.value,
                format!("`#[plugin = ...]` is not the syntax: write `{example}`"),
            );
            None
        }
    }
}

fn is_paren(list: &syn::MetaList) -> bool {
    matches!(list.delimiter, syn::MacroDelimiter::Paren(_))
}

/// The string after `key =`, with an error on the value when it is anything else.
fn string_value(meta: &ParseNestedMeta, example: &str) -> syn::Result<LitStr> {
    let key = key_text(&meta.path);
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("`{key}` needs a value: write `{example}`")));
    }
    let value: Expr = meta.value()?.parse()?;
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.suffix().is_empty() => Ok(lit),
        other => Err(syn::Error::new_spanned(
            &other,
            format!(
                "`{key}` takes a string literal: write `#[plugin({key} = {})]`",
                suggested_name(&other)
            ),
        )),
    }
}

fn key_text(path: &Path) -> String {
    match path.get_ident() {
        Some(ident) => ident.unraw().to_string(),
        None => quote::quote!(#path).to_string().replace(' ', ""),
    }
}

/// What the user probably meant, quoted: `eight` -> `"eight"`, `8` -> `"8"`.
fn suggested_name(value: &Expr) -> String {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => quoted(&lit_text(lit)),
        Expr::Path(path) => match path.path.get_ident() {
            Some(ident) => quoted(&ident.unraw().to_string()),
            None => "\"name\"".to_owned(),
        },
        _ => "\"name\"".to_owned(),
    }
}

/// What the user probably meant as a script path, quoted; the example path otherwise.
fn suggested_path(value: &Expr) -> String {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => quoted(&lit_text(lit)),
        _ => "\"scripts/limit.lua\"".to_owned(),
    }
}

fn lit_text(lit: &Lit) -> String {
    match lit {
        Lit::Str(lit) => lit.value(),
        Lit::ByteStr(lit) => String::from_utf8_lossy(&lit.value()).into_owned(),
        Lit::Char(lit) => lit.value().to_string(),
        Lit::Int(lit) => lit.base10_digits().to_owned(),
        Lit::Float(lit) => lit.base10_digits().to_owned(),
        Lit::Bool(lit) => lit.value.to_string(),
        _ => "name".to_owned(),
    }
}

fn quoted(text: &str) -> String {
    format!("{text:?}")
}
