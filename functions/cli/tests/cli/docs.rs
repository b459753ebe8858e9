//! The docs that are generated from the code stay identical to it.

use std::path::PathBuf;

use crate::helpers::patchflow;

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let begin = text
        .find(&format!("<!-- BEGIN {name} "))
        .unwrap_or_else(|| panic!("no BEGIN {name}"));
    let body = begin + text[begin..].find("-->\n").unwrap() + 4;
    let end = text
        .find(&format!("<!-- END {name} -->"))
        .unwrap_or_else(|| panic!("no END {name}"));
    &text[body..end]
}

fn generated(args: &[&str]) -> String {
    let out = patchflow().args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_node_table_in_the_docs_is_the_one_the_code_generates() {
    assert_eq!(
        section(&doc("flow.md"), "nodes"),
        generated(&["explain", "nodes", "--markdown"]),
        "docs/flow.md is stale: regenerate it with `patchflow explain nodes --markdown`"
    );
}

#[test]
fn the_reason_table_in_the_docs_is_the_one_the_code_generates() {
    assert_eq!(
        section(&doc("flow.md"), "reasons"),
        generated(&["explain", "reasons", "--markdown"]),
        "docs/flow.md is stale: regenerate it with `patchflow explain reasons --markdown`"
    );
}

#[test]
fn the_policy_reference_shows_the_defaults_the_code_uses() {
    assert_eq!(
        section(&doc("policy.md"), "policy"),
        format!("```toml\n{}```\n", generated(&["policy", "show"])),
        "docs/policy.md is stale: regenerate it with `patchflow policy show`"
    );
}
