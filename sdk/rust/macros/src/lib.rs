//! `#[ork::task]`: makes `fn main(input: Input) -> ork::Result<Output>` a
//! complete task program. Re-exported by `ork-sdk` as `ork::task`.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{parse_macro_input, FnArg, ItemFn};

/// Put on `fn main(input: Input) -> ork::Result<Output>` (`Input`:
/// `Deserialize + JsonSchema`, `Output`: `Serialize + JsonSchema`). The
/// generated `main` reads the input by the worker contract, calls the
/// function, writes its output to `$ORK_OUTPUT`, and exits 0 or 1 (an
/// error is written to `$ORK_ERROR`, retryable or not). With
/// `--ork-schema`, it prints the input and output JSON Schema instead.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[ork::task] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let mut f = parse_macro_input!(item as ItemFn);
    if f.sig.ident != "main" {
        return syn::Error::new_spanned(
            &f.sig.ident,
            "#[ork::task] goes on `fn main(input: Input) -> ork::Result<Output>`",
        )
        .to_compile_error()
        .into();
    }
    if f.sig.inputs.len() != 1 || !matches!(f.sig.inputs.first(), Some(FnArg::Typed(_))) {
        return syn::Error::new_spanned(
            &f.sig.inputs,
            "#[ork::task] fn main takes exactly one parameter, its input",
        )
        .to_compile_error()
        .into();
    }
    if f.sig.asyncness.is_some() {
        return syn::Error::new_spanned(
            f.sig.asyncness,
            "#[ork::task] fn main is not async (start a runtime inside it if you need one)",
        )
        .to_compile_error()
        .into();
    }
    let inner = format_ident!("__ork_task_main");
    f.sig.ident = inner.clone();
    let vis = &f.vis;
    quote! {
        #vis fn main() -> ::std::process::ExitCode {
            #f
            ::ork::run(#inner)
        }
    }
    .into()
}
