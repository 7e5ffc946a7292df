//! The rules a well-formed input must also follow, one function per rule. Each reports into
//! `errors` and carries on, so the user sees every broken rule in one build.
//!
//! Deliberately not a rule: several `#[redis_selectors]` fields. Each gets a clone of the same
//! cheap handle, nothing is ambiguous about it, and a plugin made of parts may want one per part.
//! Two fields naming the same pool are fine for the same reason.

use heck::ToSnakeCase;
use syn::{GenericParam, LitStr};

use crate::ast::{Data, Field, Input};
use crate::attr::Role;
use crate::errors::Errors;
use crate::kinds::ConnectionKind;
use crate::script;

pub(crate) fn check(input: &Input, errors: &mut Errors) {
    struct_only(input, errors);
    no_generics(input, errors);
    if let Some(name) = &input.attrs.name {
        plugin_name(name, errors);
    }
    reserved_name(input, errors);
    for field in input.fields() {
        one_role_per_field(field, errors);
        match field.role() {
            Some(Role::Connection(kind, name)) => connection_name(kind, name, errors),
            Some(Role::Script(path)) => script_path(path, errors),
            _ => {}
        }
    }
    one_config_field(input.fields(), errors);
}

/// A plugin is one value whose fields hold what it needs; an enum or union has no fields the
/// runtime could fill.
fn struct_only(input: &Input, errors: &mut Errors) {
    let (keyword, kind, what): (&dyn quote::ToTokens, &str, &str) = match &input.data {
        Data::Struct(_) => return,
        Data::Enum(keyword) => (keyword, "enum", "an enum"),
        Data::Union(keyword) => (keyword, "union", "a union"),
    };
    errors.spanned(
        keyword,
        format!(
            "`#[derive(Plugin)]` works on structs only, not on {what}: the runtime fills a plugin's fields with its connections; declare a struct and keep the {kind} in one of its fields"
        ),
    );
}

/// The runtime builds exactly one instance per registered type, and registration needs a
/// concrete type: `Counter<T>` is a different plugin for every `T`, none of which is registered.
fn no_generics(input: &Input, errors: &mut Errors) {
    let params = &input.generics.params;
    if params.is_empty() {
        return;
    }
    let only_lifetimes = params
        .iter()
        .all(|param| matches!(param, GenericParam::Lifetime(_)));
    let message = if only_lifetimes {
        "`#[derive(Plugin)]` does not support lifetime parameters: the runtime builds a plugin once and keeps it for the gateway's whole life, so its fields must own their data (`'static`)"
    } else {
        "`#[derive(Plugin)]` does not support generic parameters: the runtime builds exactly one instance per registered plugin type, and a generic struct is a different type for every parameter, none of them registered; use concrete types for the fields"
    };
    errors.spanned(input.generics, message);
}

/// The plugin's name is its key under `extra_config["plugin/redplug"]` and in the pipeline
/// config; an empty name or one with whitespace cannot be written there unambiguously.
fn plugin_name(name: &LitStr, errors: &mut Errors) {
    let value = name.value();
    if value.trim().is_empty() {
        errors.spanned(
            name,
            "`#[plugin(name = \"\")]` is empty: write the name the gateway config uses for this plugin, such as `#[plugin(name = \"counter\")]`, or remove `name` to use the type's name in snake_case",
        );
    } else if value.chars().any(char::is_whitespace) {
        errors.spanned(
            name,
            format!(
                "plugin name {value:?} contains whitespace, which the gateway config cannot refer to reliably: write `#[plugin(name = {:?})]`",
                value.to_snake_case()
            ),
        );
    }
}

/// Keys of `extra_config["plugin/redplug"]` that mean something of their own: `name` lists the
/// plugins of an endpoint or backend, and `max_body_bytes` bounds the bodies plugins read. A
/// plugin with one of these names could not be given settings.
const RESERVED: [&str; 2] = ["name", "max_body_bytes"];

fn reserved_name(input: &Input, errors: &mut Errors) {
    let name = input.plugin_name();
    if !RESERVED.contains(&name.as_str()) {
        return;
    }
    let message = format!(
        "a plugin cannot be named {name:?}: in `extra_config[\"plugin/redplug\"]` that key {}; \
         choose another name with `#[plugin(name = \"...\")]`",
        if name == "name" {
            "lists the plugins of an endpoint"
        } else {
            "bounds the bodies plugins read"
        }
    );
    match &input.attrs.name {
        Some(literal) => errors.spanned(literal, message),
        None => errors.spanned(input.ident, message),
    }
}

/// A name must be able to match an entry of `connection_pools[]` / `clusters[]`: an empty one
/// never does, and surrounding whitespace is always a typo that would only show at startup.
fn connection_name(kind: &ConnectionKind, name: &LitStr, errors: &mut Errors) {
    let ConnectionKind {
        attribute,
        list,
        example,
        ..
    } = kind;
    let value = name.value();
    if value.trim().is_empty() {
        let blank = if value.is_empty() {
            "an empty"
        } else {
            "a blank"
        };
        errors.spanned(
            name,
            format!(
                "`#[{attribute}({value:?})]` has {blank} name: write the `name` of an entry of `{list}`, such as `#[{attribute}({example:?})]`"
            ),
        );
    } else if value.trim() != value {
        errors.spanned(
            name,
            format!(
                "`#[{attribute}({value:?})]` has whitespace around the name, so it would never match a configured name: write `#[{attribute}({:?})]`",
                value.trim()
            ),
        );
    }
}

/// A script path names a file in the crate: an empty one names the crate's folder, surrounding
/// whitespace is a typo that would only show as a missing file, and an absolute path works on
/// the machine it was written on and nowhere else.
fn script_path(path: &LitStr, errors: &mut Errors) {
    if let Some(problem) = script_path_problem(&path.value()) {
        errors.spanned(path, problem);
    }
}

/// What is wrong with a script path before looking for the file, if anything. The derive
/// reads only files whose path passed this.
pub(crate) fn script_path_problem(value: &str) -> Option<String> {
    if value.trim().is_empty() {
        Some(
            "`#[redis_script(\"\")]` has no path: write the path of a Lua file, relative to the directory of the crate's Cargo.toml, such as `#[redis_script(\"scripts/limit.lua\")]`"
                .to_owned(),
        )
    } else if value.trim() != value {
        Some(format!(
            "`#[redis_script({value:?})]` has whitespace around the path: write `#[redis_script({:?})]`",
            value.trim()
        ))
    } else if script::is_absolute(value) {
        Some(format!(
            "`#[redis_script({value:?})]` is an absolute path, which only exists on this machine: write the path relative to the directory of the crate's Cargo.toml, and keep the file inside the crate so that it ships with it"
        ))
    } else {
        None
    }
}

/// A field holds one thing; with two attributes the derive could only guess which one the
/// user meant, so the second is reported on its own token.
fn one_role_per_field(field: &Field, errors: &mut Errors) {
    let Some((first, rest)) = field.attrs.split_first() else {
        return;
    };
    for extra in rest {
        let message = if extra.role.same_kind(&first.role) {
            format!(
                "duplicate `{}` on field `{}`: a field takes it once; remove this one",
                extra.role.written(),
                field.name
            )
        } else {
            format!(
                "field `{}` already has `{}`, so it cannot also take `{}`: a field holds one thing; move this attribute to a field of its own",
                field.name,
                first.role.written(),
                extra.role.written()
            )
        };
        errors.push(syn::Error::new(extra.key, message));
    }
}

/// A plugin has one config object, at `extra_config["plugin/redplug"]["<plugin name>"]`; two
/// fields would both read that same object.
fn one_config_field(fields: &[Field], errors: &mut Errors) {
    let mut configs = fields.iter().filter_map(|field| {
        field
            .attrs
            .iter()
            .find(|attr| matches!(attr.role, Role::Config))
            .map(|attr| (field, attr))
    });
    let Some((first, _)) = configs.next() else {
        return;
    };
    for (_, attr) in configs {
        errors.push(syn::Error::new(
            attr.key,
            format!(
                "only one field can be `#[plugin(config)]`, and `{}` already is: a plugin has one config object; put everything it holds in that field's type",
                first.name
            ),
        ));
    }
}
