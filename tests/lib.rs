//! Cross-crate tests live in `e2e/`; fixtures in `fixtures/`.
