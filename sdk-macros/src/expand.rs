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
use crate::kinds::ConnectionKind;
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
    match errors.finish() {
        Ok(()) => Ok(plugin(&input)),
        Err(error) => Err(Failure {
            error,
            fallback: fallback(&input),
        }),
    }
}

fn plugin(input: &Input) -> TokenStream {
    let krate = krate(input);
    let ident = input.ident;
    let (_, _, where_clause) = input.generics.split_for_impl();
    let name = input.plugin_name();
    let type_name = input.type_name();

    let mut needs = Vec::new();
    let mut inits = Vec::new();
    let mut check = None;
    for field in input.fields() {
        let ty = field.ty;
        let span = ty.span();
        let index = Literal::usize_unsuffixed(needs.len());
        let init = match field.role() {
            Some(Role::Connection(kind, lit)) => {
                needs.push(need(&krate, field, kind, lit));
                connection(&krate, &name, field, kind, lit, &index)
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
    quote! {
        #[automatically_derived]
        impl #krate::Plugin for #ident #where_clause {
            const NAME: &'static str = #name;
            const NEEDS: &'static [#krate::__private::Need] = &[#(#needs),*];

            fn build(
                __context: &mut #krate::__private::BuildContext<'_>,
            ) -> ::core::result::Result<Self, #krate::BuildError> {
                ::core::result::Result::Ok(Self { #(#inits),* })
            }
            #check_config
        }

        const _: () = {
            #krate::__private::inventory::submit! {
                #krate::__private::Registration::of::<#ident>(
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
