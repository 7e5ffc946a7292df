//! The `#[derive(Plugin)]` macro behind `redplug`. Use it through `redplug`, not directly.

use proc_macro::TokenStream;

/// See `redplug::Plugin`.
#[proc_macro_derive(Plugin, attributes(plugin, redis_pool, redis_cluster, redis_selectors))]
pub fn derive_plugin(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}
