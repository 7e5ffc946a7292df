//! The `#[derive(Plugin)]` macro behind `redplug`. Use it through `redplug`, not directly.
//!
//! Stages, one module each: `attr` parses the attribute grammar, `ast` models the input,
//! `valid` checks the rules, `expand` generates code. Errors from every stage are collected
//! (`errors`) and reported together, next to a best-effort impl. `kinds` is the one table of
//! attributes that all stages read; `script` reads and hashes `#[redis_script]` files.

#![forbid(unsafe_code)]

mod ast;
mod attr;
mod errors;
mod expand;
mod kinds;
mod script;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// See `redplug::Plugin`.
#[proc_macro_derive(
    Plugin,
    attributes(plugin, redis_pool, redis_cluster, redis_selectors, redis_script)
)]
pub fn derive_plugin(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
