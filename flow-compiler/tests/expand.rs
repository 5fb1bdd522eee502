//! Expansion snapshots (as pin-project's `*-expanded.rs`): each `tests/expand/NAME.rs`
//! holds annotated functions; `NAME.expanded.rs` is what the macros turn them into.
//! After a deliberate change to the generated code, regenerate with `FLOW_BLESS=1`.

use std::path::Path;

fn expand_file(source: &str) -> String {
    let file: syn::File = syn::parse_str(source).expect("fixture parses");
    let mut items = Vec::new();
    for item in file.items {
        let syn::Item::Fn(mut f) = item else { continue };
        let attr = f.attrs.remove(0);
        let args = match &attr.meta {
            syn::Meta::List(l) => l.tokens.clone(),
            _ => proc_macro2::TokenStream::new(),
        };
        let item = quote::ToTokens::into_token_stream(f);
        let expanded = if attr.path().is_ident("workflow") {
            flow_compiler::workflow(args, item)
        } else {
            flow_compiler::task(args, item)
        };
        let expanded: syn::File = syn::parse2(expanded).expect("expansion parses");
        items.extend(expanded.items);
    }
    prettyplease::unparse(&syn::File {
        shebang: None,
        attrs: Vec::new(),
        items,
    })
}

#[test]
fn expansions_match_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
    let bless = std::env::var_os("FLOW_BLESS").is_some();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".rs") || name.ends_with(".expanded.rs") {
            continue;
        }
        let actual = expand_file(&std::fs::read_to_string(&path).unwrap());
        let snapshot = path.with_extension("expanded.rs");
        if bless {
            std::fs::write(&snapshot, &actual).unwrap();
        } else {
            let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
            assert!(
                expected == actual,
                "{name}: expansion changed; rerun with FLOW_BLESS=1 if intended\n{actual}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 2);
}
