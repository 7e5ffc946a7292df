//! Collects every `syn::Error` the stages find, so the user sees all mistakes in one build
//! instead of fixing them one compile at a time.

use std::fmt::Display;

use quote::ToTokens;

#[derive(Default)]
pub(crate) struct Errors {
    first: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.first {
            Some(first) => first.combine(error),
            None => self.first = Some(error),
        }
    }

    /// An error spanning `tokens` (first to last token where the compiler can join spans).
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Runs a parser that reports through `syn::Result`, keeping its error if it fails.
    pub(crate) fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        match self.first {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
