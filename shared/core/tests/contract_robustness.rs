//! Nothing lost, no panics: whatever an inventory or catalog file holds, parsing it either
//! succeeds or fails with an error that names the file, and the record and field when the error
//! is inside one.

use patchflow_core::contract::{parse_catalog, parse_inventory};
use proptest::prelude::*;
use serde_json::{json, Value};

fn base_inventory() -> Value {
    json!({
        "clients": [
            {"id": "acme", "timezone": "America/New_York", "locations": [{"id": "hq"}]},
            {"id": "globex", "timezone": "Europe/Berlin"}
        ],
        "endpoints": [
            {"id": "a1", "client": "acme", "location": "hq", "kind": "server", "role": "sql",
             "policy_group": "auto_install_auto_reboot", "unattended_reboot_approved": true},
            {"id": "a2", "client": "acme", "kind": "workstation", "track": "daytime", "ring": "pilot"},
            {"id": "g1", "client": "globex", "kind": "workstation", "timezone": "Asia/Kathmandu"}
        ]
    })
}

const FIELDS: &[&str] = &[
    "id",
    "client",
    "location",
    "hostname",
    "kind",
    "timezone",
    "patching_disabled",
    "client_excluded",
    "exclusion_ref",
    "policy_group",
    "role",
    "criticality",
    "ring",
    "track",
    "unattended_reboot_approved",
    "critical",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "server",
            "workstation",
            "pilot",
            "regular",
            "p1",
            "daytime",
            "do_not_patch",
            "standard",
            "acme",
            "hq",
            "Mars/Olympus",
            "Australia/Lord_Howe",
            "a1",
            "\u{0}",
            "x\ny",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Set {
        endpoint: usize,
        field: usize,
        value: Value,
    },
    Remove {
        endpoint: usize,
        field: usize,
    },
    ReplaceRecord {
        endpoint: usize,
        value: Value,
    },
    ReplaceTop {
        key: usize,
        value: Value,
    },
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0..3usize, 0..FIELDS.len(), any_json()).prop_map(|(endpoint, field, value)| Mutation::Set { endpoint, field, value }),
        2 => (0..3usize, 0..FIELDS.len()).prop_map(|(endpoint, field)| Mutation::Remove { endpoint, field }),
        1 => (0..3usize, any_json()).prop_map(|(endpoint, value)| Mutation::ReplaceRecord { endpoint, value }),
        1 => (0..2usize, any_json()).prop_map(|(key, value)| Mutation::ReplaceTop { key, value }),
    ]
}

fn apply(doc: &mut Value, m: &Mutation) {
    match m {
        Mutation::Set {
            endpoint,
            field,
            value,
        } => {
            if let Some(Value::Object(o)) =
                doc.get_mut("endpoints").and_then(|e| e.get_mut(endpoint))
            {
                o.insert(FIELDS[*field].to_owned(), value.clone());
            }
        }
        Mutation::Remove { endpoint, field } => {
            if let Some(Value::Object(o)) =
                doc.get_mut("endpoints").and_then(|e| e.get_mut(endpoint))
            {
                o.remove(FIELDS[*field]);
            }
        }
        Mutation::ReplaceRecord { endpoint, value } => {
            if let Some(r) = doc.get_mut("endpoints").and_then(|e| e.get_mut(endpoint)) {
                *r = value.clone();
            }
        }
        Mutation::ReplaceTop { key, value } => doc[["clients", "endpoints"][*key]] = value.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn a_mutated_inventory_parses_or_names_file_record_and_field(mutations in prop::collection::vec(any_mutation(), 1..4)) {
        let mut doc = base_inventory();
        for m in &mutations {
            apply(&mut doc, m);
        }
        if let Err(e) = parse_inventory("fleet.json", &doc.to_string()) {
            prop_assert_eq!(&e.source_name, "fleet.json");
            prop_assert!(!e.message.is_empty());
            if e.record.is_some() && e.field.is_none() {
                prop_assert!(e.message.starts_with("the record must be a JSON object"), "{}", e);
            }
            prop_assert!(!e.message.starts_with("malformed JSON"), "the document is well-formed JSON: {}", e);
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_parsers(text in "\\PC{0,200}") {
        prop_assert!(parse_inventory("i.json", &text).is_err() || text.contains("clients"));
        if let Err(e) = parse_catalog("c.json", &text) {
            prop_assert_eq!(e.source_name, "c.json");
        }
    }

    #[test]
    fn a_mutated_catalog_parses_or_names_the_patch_and_field(
        field in prop::sample::select(vec!["id", "title", "vendor", "classification", "severity", "released", "cves"]),
        value in any_json(),
    ) {
        let mut doc = json!({"patches": [{"id": "KB1", "vendor": "microsoft", "classification": "security", "severity": "critical", "released": "2026-12-08T18:00:00Z"}]});
        doc["patches"][0][field] = value;
        if let Err(e) = parse_catalog("cat.json", &doc.to_string()) {
            prop_assert_eq!(&e.source_name, "cat.json");
            prop_assert!(e.record.is_some() && e.field.is_some(), "{}", e);
        }
    }
}
