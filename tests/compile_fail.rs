//! What `#[workflow]` and `#[task]` refuse to compile, and the messages users see
//! (`tests/ui/*.stderr`). Regenerate after a deliberate change with `TRYBUILD=overwrite`.

#[test]
fn unsupported_code_is_a_compile_error_at_its_span() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
