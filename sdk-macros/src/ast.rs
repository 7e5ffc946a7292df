//! The model of the derive input: the struct, its fields and what their attributes say,
//! borrowing the syn nodes so that errors and generated code keep the user's spans.

use heck::ToSnakeCase;
use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Data as SynData, DeriveInput, Fields, Generics, Ident, Index, Member, Type};

use crate::attr::{self, Container, FieldAttr, Role};
use crate::errors::Errors;

pub(crate) struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a Generics,
    pub attrs: Container,
    pub data: Data<'a>,
}

pub(crate) enum Data<'a> {
    Struct(Vec<Field<'a>>),
    /// Not supported; the keyword, to point the error at.
    Enum(&'a syn::token::Enum),
    /// Not supported; the keyword, to point the error at.
    Union(&'a syn::token::Union),
}

pub(crate) struct Field<'a> {
    /// How generated code names the field: `redis`, or `0` in a tuple struct.
    pub member: Member,
    /// The field's name as `Need::field` reports it: `redis`, `0`, `type` for `r#type`.
    pub name: String,
    pub ty: &'a Type,
    /// The redplug attributes, in the order written. `valid` makes sure there is at most one.
    pub attrs: Vec<FieldAttr>,
}

impl<'a> Input<'a> {
    /// Builds the model, reporting malformed attributes into `errors` and leaving them out.
    pub(crate) fn from_syn(node: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attrs = attr::container(&node.attrs, errors);
        let data = match &node.data {
            SynData::Struct(data) => Data::Struct(fields(&data.fields, errors)),
            SynData::Enum(data) => Data::Enum(&data.enum_token),
            SynData::Union(data) => Data::Union(&data.union_token),
        };
        Input {
            ident: &node.ident,
            generics: &node.generics,
            attrs,
            data,
        }
    }

    /// The plugin's name: `#[plugin(name = "...")]`, or the type's name in snake_case.
    pub(crate) fn plugin_name(&self) -> String {
        match &self.attrs.name {
            Some(name) => name.value(),
            None => self.type_name().to_snake_case(),
        }
    }

    /// The type's name as written, without `r#`.
    pub(crate) fn type_name(&self) -> String {
        self.ident.unraw().to_string()
    }

    pub(crate) fn fields(&self) -> &[Field<'a>] {
        match &self.data {
            Data::Struct(fields) => fields,
            Data::Enum(_) | Data::Union(_) => &[],
        }
    }
}

impl Field<'_> {
    /// What the field asks for; `None` means it is built with `Default`.
    pub(crate) fn role(&self) -> Option<&Role> {
        self.attrs.first().map(|attr| &attr.role)
    }
}

fn fields<'a>(fields: &'a Fields, errors: &mut Errors) -> Vec<Field<'a>> {
    fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let (member, name) = match &field.ident {
                Some(ident) => (Member::Named(ident.clone()), ident.unraw().to_string()),
                None => (
                    Member::Unnamed(Index {
                        index: index as u32,
                        span: Span::call_site(),
                    }),
                    index.to_string(),
                ),
            };
            Field {
                member,
                name,
                ty: &field.ty,
                attrs: attr::field(&field.attrs, errors),
            }
        })
        .collect()
}
