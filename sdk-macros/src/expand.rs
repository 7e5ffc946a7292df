//! Code generation: the `impl redplug::Plugin` and the `inventory` registration.
//!
//! Everything rustc type-checks on the user's behalf (does this field's type fit its
//! attribute?) is generated with the field type's span, through a `__private` trait whose
//! `#[diagnostic::on_unimplemented]` says what to write, so the error lands on the type.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, LitStr, Type};

use crate::ast::{Field, Input};
use crate::attr::Role;
use crate::errors::Errors;
use crate::kinds::{ConnectionKind, SCRIPT_FIELD_TRAIT};
use crate::script::{self, ScriptFile};
use crate::valid;

/// Why the derive failed, and an expansion to emit next to the errors so that code using the
/// type (`Counter::NAME`, `runtime.get::<Counter>()`) does not fail a second time.
pub(crate) struct Failure {
    pub error: syn::Error,
    pub fallback: TokenStream,
}

/// The derive's output: the impl, or the errors and a best-effort impl.
pub(crate) fn derive(node: &DeriveInput) -> TokenStream {
    match try_derive(node) {
        Ok(tokens) => tokens,
        Err(Failure {
            error,
            mut fallback,
        }) => {
            fallback.extend(error.to_compile_error());
            fallback
        }
    }
}

pub(crate) fn try_derive(node: &DeriveInput) -> Result<TokenStream, Failure> {
    let mut errors = Errors::default();
    let input = Input::from_syn(node, &mut errors);
    valid::check(&input, &mut errors);
    let scripts = read_scripts(&input, &mut errors);
    match errors.finish() {
        Ok(()) => Ok(plugin(&input, &scripts)),
        Err(error) => Err(Failure {
            error,
            fallback: fallback(&input),
        }),
    }
}

/// The file of every `#[redis_script("...")]` field whose path is well formed, by field index.
/// A missing or unreadable file is reported with the other mistakes.
fn read_scripts(input: &Input, errors: &mut Errors) -> Vec<Option<ScriptFile>> {
    input
        .fields()
        .iter()
        .map(|field| match field.role() {
            Some(Role::Script(path)) if valid::script_path_problem(&path.value()).is_none() => {
                errors.ok(script::read(path))
            }
            _ => None,
        })
        .collect()
}

fn plugin(input: &Input, files: &[Option<ScriptFile>]) -> TokenStream {
    let krate = krate(input);
    let plugin_type = input.ident;
    let (_, _, where_clause) = input.generics.split_for_impl();
    let name = input.plugin_name();
    let type_name = input.type_name();

    let mut needs = Vec::new();
    let mut scripts = Vec::new();
    let mut injected = Vec::new();
    let mut inits = Vec::new();
    let mut check = None;
    for (field, file) in input.fields().iter().zip(files) {
        let ty = field.ty;
        let span = ty.span();
        let index = Literal::usize_unsuffixed(needs.len());
        let init = match field.role() {
            Some(Role::Connection(kind, lit)) => {
                needs.push(need(&krate, field, kind, lit));
                injected.push(injection(&krate, field, kind));
                connection(&krate, &name, field, kind, lit, &index)
            }
            Some(Role::Script(path)) => {
                let index = Literal::usize_unsuffixed(scripts.len());
                if let Some(file) = file {
                    scripts.push(plugin_script(&krate, field, path, file));
                }
                let field_trait = ident(SCRIPT_FIELD_TRAIT);
                quote_spanned! {span=>
                    <#ty as #krate::__private::#field_trait>::from_script(
                        <Self as #krate::Plugin>::SCRIPTS[#index].script,
                    )
                }
            }
            Some(Role::Selectors) => quote_spanned! {span=>
                <#ty as #krate::__private::SelectorsField>::from_selectors(__context.selectors())
            },
            Some(Role::Config) => {
                let value = config(&krate, ty);
                check = Some(quote!(::core::result::Result::map(#value, ::core::mem::drop)));
                quote!(#value?)
            }
            None => {
                quote_spanned!(span=> <#ty as #krate::__private::DefaultField>::default_field())
            }
        };
        let member = &field.member;
        inits.push(quote!(#member: #init));
    }

    // Only a plugin with a config has anything to check; the trait's default says `Ok`.
    let check_config = check.map(|check| {
        quote! {
            fn check_config(
                __context: &#krate::__private::BuildContext<'_>,
            ) -> ::core::result::Result<(), #krate::BuildError> {
                #check
            }
        }
    });
    // Both only when there is something to list; the trait's defaults say "none".
    let scripts = (!scripts.is_empty()).then(|| {
        quote! {
            const SCRIPTS: &'static [#krate::PluginScript] = &[#(#scripts),*];
        }
    });
    let injected = (!injected.is_empty()).then(|| {
        quote! {
            fn injected(&self) -> #krate::__private::Injections {
                let mut __injected = #krate::__private::Injections::new();
                #(#injected)*
                __injected
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #krate::Plugin for #plugin_type #where_clause {
            const NAME: &'static str = #name;
            const NEEDS: &'static [#krate::__private::Need] = &[#(#needs),*];
            #scripts

            fn build(
                __context: &mut #krate::__private::BuildContext<'_>,
            ) -> ::core::result::Result<Self, #krate::BuildError> {
                ::core::result::Result::Ok(Self { #(#inits),* })
            }
            #check_config
            #injected
        }

        const _: () = {
            #krate::__private::inventory::submit! {
                #krate::__private::Registration::of::<#plugin_type>(
                    ::core::concat!(::core::module_path!(), "::", #type_name),
                    #krate::__private::SourceLocation {
                        file: ::core::file!(),
                        line: ::core::line!(),
                    },
                )
            }
        };
    }
}

/// An identifier generated code uses, from the kinds table.
fn ident(name: &str) -> Ident {
    Ident::new(name, Span::call_site())
}

/// One entry of `Plugin::NEEDS`. `optional` comes from the field's type, so `Option<RedisPool>`
/// (or an alias of it) is optional without the macro having to recognise the type.
fn need(krate: &TokenStream, field: &Field, kind: &ConnectionKind, name: &LitStr) -> TokenStream {
    let (variant, field_trait) = (ident(kind.variant), ident(kind.field_trait));
    let (ty, field) = (field.ty, &field.name);
    let optional = quote_spanned!(ty.span()=> <#ty as #krate::__private::#field_trait>::OPTIONAL);
    quote! {
        #krate::__private::Need {
            field: #field,
            kind: #krate::__private::NeedKind::#variant,
            name: #name,
            optional: #optional,
        }
    }
}

/// One entry of `Plugin::SCRIPTS`: the source comes from `include_str!` on the file's absolute
/// path, which also makes cargo rebuild the crate when the file changes.
fn plugin_script(
    krate: &TokenStream,
    field: &Field,
    path: &LitStr,
    file: &ScriptFile,
) -> TokenStream {
    let (field, absolute, sha1) = (&field.name, &file.absolute, &file.sha1);
    quote! {
        #krate::PluginScript {
            field: #field,
            script: #krate::RedisScript::__from_file(#path, ::core::include_str!(#absolute), #sha1),
        }
    }
}

/// The handle a pool or cluster field holds, for the host to prepare (it loads the plugin's
/// scripts into those servers). Same path and span as `need`, so a field of the wrong type
/// still gets one diagnostic.
fn injection(krate: &TokenStream, field: &Field, kind: &ConnectionKind) -> TokenStream {
    let (method, field_trait) = (ident(kind.method), ident(kind.field_trait));
    let (ty, member, name) = (field.ty, &field.member, &field.name);
    let handle = quote_spanned!(ty.span()=> <#ty as #krate::__private::#field_trait>::injected(&self.#member));
    quote! {
        __injected.#method(#name, #handle);
    }
}

/// A pool or cluster field: the resolved handle converted to the field's type.
///
/// This goes through `<Type as PoolField>` exactly as `need` does (same path, same span), not
/// through `BuildContext::pool_field`: for a field of the wrong type rustc then emits two
/// identical diagnostics and shows one, where a call with a trait bound would add a second
/// error with a different "required by" note.
fn connection(
    krate: &TokenStream,
    plugin: &str,
    field: &Field,
    kind: &ConnectionKind,
    name: &LitStr,
    index: &Literal,
) -> TokenStream {
    let (method, field_trait) = (ident(kind.method), ident(kind.field_trait));
    let noun = kind.noun;
    let (ty, field) = (field.ty, &field.name);
    // Only reachable if a registration and its constructor disagree: the runtime checks every
    // required need before it builds anything.
    let unresolved = quote! {
        #krate::BuildError::Unresolved {
            plugin: ::core::convert::Into::into(#plugin),
            field: #field,
            kind: #noun,
            name: #name,
        }
    };
    quote_spanned! {ty.span()=>
        ::core::option::Option::ok_or_else(
            <#ty as #krate::__private::#field_trait>::from_resolved(__context.#method(#index)),
            || #unresolved,
        )?
    }
}

/// `#[plugin(config)]`: deserialize the plugin's config, falling back to `Default` when the
/// type has one (chosen at compile time by autoref specialisation, see `__private`). The
/// expression is the `Result`; `build` applies `?` to it and `check_config` drops the value.
fn config(krate: &TokenStream, ty: &Type) -> TokenStream {
    let span = ty.span();
    let type_name = type_display(ty);
    quote_spanned! {span=>
        {
            #[allow(unused_imports)]
            use #krate::__private::{ViaDefault as _, ViaNoDefault as _};
            #krate::__private::config_field::<#ty>(
                __context,
                #type_name,
                (&&#krate::__private::ConfigDefault::<#ty>::new()).fallback(),
            )
        }
    }
}

/// An impl with no needs, so that the only errors the user sees are the derive's own.
/// Generic types get nothing: any impl would need bounds the user has not written.
fn fallback(input: &Input) -> TokenStream {
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let krate = krate(input);
    let ident = input.ident;
    let where_clause = &input.generics.where_clause;
    let name = input.plugin_name();
    quote! {
        #[automatically_derived]
        impl #krate::Plugin for #ident #where_clause {
            const NAME: &'static str = #name;
            const NEEDS: &'static [#krate::__private::Need] = &[];

            fn build(
                _: &mut #krate::__private::BuildContext<'_>,
            ) -> ::core::result::Result<Self, #krate::BuildError> {
                ::core::result::Result::Err(#krate::BuildError::Config {
                    plugin: ::core::convert::Into::into(#name),
                    at: ::core::default::Default::default(),
                    path: ::core::default::Default::default(),
                    message: ::core::convert::Into::into(
                        "not built: `#[derive(Plugin)]` rejected this type at compile time",
                    ),
                })
            }
        }
    }
}

fn krate(input: &Input) -> TokenStream {
    match &input.attrs.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::redplug),
    }
}

/// The type as a user would write it, for `BuildError::MissingConfig`: token streams print a
/// space between every token (`Vec < String >`).
fn type_display(ty: &Type) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
}
