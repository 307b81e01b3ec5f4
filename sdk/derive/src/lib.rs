//! `#[derive(PluginConfig)]`: a pt component's config with each key written once.
//!
//! ```ignore
//! #[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
//! #[serde(default, deny_unknown_fields)]
//! pub struct RotNetConfig {
//!     /// Hidden width of the rotation head.
//!     #[config(default = 256, min = 1)]
//!     pub hidden: i64,
//!     /// Width of the architecture's `features`.
//!     #[config(input)]
//!     pub feature_dim: i64,
//! }
//! ```
//! The doc comment is the key's description (`pt plugin info`), `default` its default (a string
//! literal converts with `Into`; no `default`: the type's `Default`), `min`/`max` (inclusive),
//! `above`/`below` (exclusive), `non_empty` and `one_of = ["a", "b"]` its checks, and `input`
//! (`input = "fact"` to name another fact) makes it a key pt fills from another component of the
//! run when the recipe leaves it unset; `optional` lets it stay unset. A host-filled key with a
//! plain type arrives filled: `new` never sees it unset. `#[config(validate = path)]` on the
//! struct adds a `fn(&Self) -> pt_sdk::Result<()>` for checks across keys.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::spanned::Spanned;
use syn::{parse_macro_input, Attribute, Data, DeriveInput, Error, Expr, Fields, Ident, Lit, LitStr, Path, Type};

#[proc_macro_derive(PluginConfig, attributes(config))]
pub fn derive_plugin_config(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(Error::into_compile_error).into()
}

/// One config key as the field declares it.
#[derive(Default)]
struct Key {
    ident: Option<Ident>,
    doc: String,
    default: Option<Expr>,
    /// Some: filled by the host from this fact ("" = the key's own name).
    input: Option<String>,
    optional: bool,
    is_option: bool,
    min: Option<Expr>,
    max: Option<Expr>,
    above: Option<Expr>,
    below: Option<Expr>,
    non_empty: bool,
    one_of: Option<Expr>,
}

impl Key {
    fn name(&self) -> String {
        self.ident.as_ref().map(|i| i.to_string()).unwrap_or_default()
    }
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Struct(data) = &input.data else {
        return Err(Error::new(input.span(), "PluginConfig: a config is a struct with named fields"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(Error::new(input.span(), "PluginConfig: a config is a struct with named fields"));
    };
    require_serde_defaults(&input.attrs, input.span())?;
    let hook = struct_hook(&input.attrs)?;
    let keys = fields.named.iter().map(parse_key).collect::<syn::Result<Vec<_>>>()?;

    let name = &input.ident;
    let defaults = keys.iter().map(default_expr);
    let idents = keys.iter().map(|k| k.ident.clone());
    let described = keys.iter().map(|k| {
        let (key, doc) = (k.name(), describe(k));
        quote!((#key, #doc))
    });
    let inputs = keys.iter().filter_map(input_decl);
    let filled: Vec<String> =
        keys.iter().filter(|k| k.input.is_some() && !k.optional && !k.is_option).map(Key::name).collect();
    let checks = keys.iter().map(checks);
    // Checks across keys see only real values: none of the plain-typed host-filled keys unset.
    let hook = hook.map(|path| {
        quote!(if !unset.iter().any(|k| <Self as ::pt_sdk::Config>::filled_inputs().contains(k)) { #path(self)?; })
    });
    Ok(quote! {
        impl ::core::default::Default for #name {
            fn default() -> Self {
                Self { #( #idents: #defaults, )* }
            }
        }
        impl ::pt_sdk::Config for #name {
            fn describe() -> &'static [(&'static str, &'static str)] {
                &[ #( #described, )* ]
            }
            fn inputs() -> ::std::vec::Vec<::pt_sdk::InputDecl> {
                ::std::vec![ #( #inputs, )* ]
            }
            fn filled_inputs() -> &'static [&'static str] {
                &[ #( #filled, )* ]
            }
            fn validate_except(&self, unset: &[&str]) -> ::pt_sdk::Result<()> {
                use ::pt_sdk::config::check;
                #( #checks )*
                #hook
                Ok(())
            }
            fn validate(&self) -> ::pt_sdk::Result<()> {
                self.validate_except(&[])
            }
        }
    })
}

/// `#[serde(default, deny_unknown_fields)]` is what makes unset keys take their defaults and a
/// misspelt key an error; without it the derive would promise what serde does not do.
fn require_serde_defaults(attrs: &[Attribute], span: proc_macro2::Span) -> syn::Result<()> {
    let serde: String =
        attrs.iter().filter(|a| a.path().is_ident("serde")).map(|a| a.meta.to_token_stream_string()).collect();
    if serde.contains("rename_all") {
        Err(Error::new(span, "PluginConfig: a key is its field's name; drop serde's rename_all"))
    } else if serde.contains("default") && serde.contains("deny_unknown_fields") {
        Ok(())
    } else {
        Err(Error::new(span, "PluginConfig needs #[serde(default, deny_unknown_fields)] on the struct"))
    }
}

trait MetaText {
    fn to_token_stream_string(&self) -> String;
}

impl MetaText for syn::Meta {
    fn to_token_stream_string(&self) -> String {
        quote!(#self).to_string()
    }
}

/// `#[config(validate = path)]` on the struct.
fn struct_hook(attrs: &[Attribute]) -> syn::Result<Option<Path>> {
    let mut hook = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("config")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("validate") {
                hook = Some(meta.value()?.parse::<Path>()?);
                Ok(())
            } else {
                Err(meta.error("on the struct, #[config(...)] takes only `validate = path`"))
            }
        })?;
    }
    Ok(hook)
}

fn parse_key(field: &syn::Field) -> syn::Result<Key> {
    let mut key = Key { ident: field.ident.clone(), is_option: is_option(&field.ty), ..Key::default() };
    let mut doc = Vec::new();
    for attr in &field.attrs {
        if attr.path().is_ident("doc") {
            if let syn::Meta::NameValue(nv) = &attr.meta {
                if let Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) = &nv.value {
                    doc.push(s.value().trim().to_string());
                }
            }
        } else if attr.path().is_ident("serde")
            && ["rename", "flatten", "skip", "alias"].iter().any(|w| quote!(#attr).to_string().contains(w))
        {
            return Err(Error::new(
                attr.span(),
                "PluginConfig: a key is its field's name, one key per field; drop serde's rename/alias/flatten/skip",
            ));
        } else if attr.path().is_ident("config") {
            attr.parse_nested_meta(|meta| {
                let p = &meta.path;
                if p.is_ident("default") {
                    key.default = Some(meta.value()?.parse()?);
                } else if p.is_ident("input") {
                    key.input = Some(if meta.input.peek(syn::Token![=]) {
                        meta.value()?.parse::<LitStr>()?.value()
                    } else {
                        String::new()
                    });
                } else if p.is_ident("optional") {
                    key.optional = true;
                } else if p.is_ident("min") {
                    key.min = Some(meta.value()?.parse()?);
                } else if p.is_ident("max") {
                    key.max = Some(meta.value()?.parse()?);
                } else if p.is_ident("above") {
                    key.above = Some(meta.value()?.parse()?);
                } else if p.is_ident("below") {
                    key.below = Some(meta.value()?.parse()?);
                } else if p.is_ident("non_empty") {
                    key.non_empty = true;
                } else if p.is_ident("one_of") {
                    key.one_of = Some(meta.value()?.parse()?);
                } else {
                    return Err(meta.error(
                        "unknown #[config] option (expected default, input, optional, min, max, above, below, non_empty, one_of)",
                    ));
                }
                Ok(())
            })?;
        }
    }
    key.doc = doc.join(" ").trim().to_string();
    if key.doc.is_empty() {
        return Err(Error::new(
            field.span(),
            format!(
                "config key `{}` has no doc comment: write one, it is the description `pt plugin info` shows",
                key.name()
            ),
        ));
    }
    if key.optional && key.input.is_none() {
        return Err(Error::new(field.span(), "`optional` applies to host-filled keys: add `input`"));
    }
    if key.optional && !key.is_option {
        return Err(Error::new(
            field.span(),
            "an `optional` input stays unset when nothing fills it: make it an Option<T>",
        ));
    }
    Ok(key)
}

fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

fn default_expr(key: &Key) -> Tokens {
    match &key.default {
        Some(Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. })) => quote!(::core::convert::Into::into(#s)),
        Some(expr) => quote!(#expr),
        None => quote!(::core::default::Default::default()),
    }
}

/// The description: the doc comment, plus where pt fills a host-filled key from.
fn describe(key: &Key) -> String {
    match &key.input {
        None => key.doc.clone(),
        Some(fact) => {
            let fact = if fact.is_empty() { key.name() } else { fact.clone() };
            let when = if key.optional { "; unset: pt fills it from" } else { "; unset: filled by pt from" };
            format!("{}{when} the run's `{fact}`", key.doc.trim_end_matches('.'))
        }
    }
}

fn input_decl(key: &Key) -> Option<Tokens> {
    let fact = key.input.as_ref()?;
    let name = key.name();
    let from = (!fact.is_empty()).then(|| quote!(.from(#fact)));
    let optional = key.optional.then(|| quote!(.optional()));
    Some(quote!(::pt_sdk::InputDecl::key(#name) #from #optional))
}

/// The key's checks, skipped while it is a host-filled key not yet filled.
fn checks(key: &Key) -> Tokens {
    let (name, ident) = (key.name(), &key.ident);
    let bound = |f: &str, e: &Option<Expr>| {
        let f = Ident::new(f, proc_macro2::Span::call_site());
        e.as_ref().map(|e| quote!(check::#f(#name, &self.#ident, (#e) as f64)?;))
    };
    let (min, max) = (bound("min", &key.min), bound("max", &key.max));
    let (above, below) = (bound("above", &key.above), bound("below", &key.below));
    let non_empty = key.non_empty.then(|| quote!(check::non_empty(#name, &self.#ident)?;));
    let one_of = key.one_of.as_ref().map(|e| quote!(check::one_of(#name, &self.#ident, &#e)?;));
    quote! {
        if !unset.contains(&#name) {
            #min #max #above #below #non_empty #one_of
        }
    }
}
