//! A tier's closure in the simulated PSA and RMM: the compliance ticket of each client and tier
//! gets the summary image the evidence holds, once, and the closure is recorded in the RMM once.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::small_fleet;
use crate::simulate::simulate;

fn read(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_client_and_tier_gets_its_summary_attached_once_and_its_closure_recorded_once() {
    let tmp = tempfile::tempdir().unwrap();
    let inventory = tmp.path().join("fleet.json");
    small_fleet(&inventory);
    let out = tmp.path().join("cycle");
    // Every message delivered twice: still one summary and one RMM closure per client and tier.
    simulate(&inventory, &out)
        .arg("--deliver-twice")
        .assert()
        .success();

    // The (client, tier) pairs whose tier closed with endpoints of the client in it.
    let summary = read(&out.join("summary.json"));
    let closed: BTreeSet<(String, String)> = summary["summary"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "closed" && r["tier"] != "-")
        .filter(|r| {
            [
                "patched",
                "patched_after_retry",
                "up_to_date",
                "failed",
                "awaiting_approval",
                "held",
                "in_progress",
            ]
            .iter()
            .any(|k| r[*k].as_u64().unwrap() > 0)
        })
        .map(|r| {
            (
                r["client"].as_str().unwrap().to_owned(),
                r["tier"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(closed.len() >= 4, "{closed:?}");

    let tickets: BTreeMap<String, Value> = read(&out.join("psa-tickets.json"))
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t.clone()))
        .collect();
    let attachments = read(&out.join("psa-attachments.json"));
    let documents = attachments["documents"].as_array().unwrap();
    let mut attached = BTreeSet::new();
    for d in documents {
        let ticket = &tickets[d["ticket"].as_str().unwrap()];
        // The compliance ticket of a client and tier: `2026-12/compliance/<tier>/<client>`.
        let reference = ticket["external_ref"].as_str().unwrap();
        let (tier, client) = reference
            .strip_prefix("2026-12/compliance/")
            .and_then(|rest| rest.rsplit_once('/'))
            .unwrap_or_else(|| panic!("attached to {reference}, not a compliance ticket"));
        assert_eq!(
            d["title"],
            format!("patchflow 2026-12 {tier} {client} compliance summary")
        );
        assert_eq!(d["content_type"], "image/png");
        // Byte for byte the image the evidence holds under its lock.
        let png = std::fs::read(out.join(format!("evidence/2026-12/{client}/{tier}/summary.png")))
            .unwrap();
        assert_eq!(d["sha256"], hex(&png), "{reference}");
        assert_eq!(d["size"], png.len());
        assert_eq!(ticket["closed"], true, "{reference}");
        let notes = ticket["notes"].as_object().unwrap();
        let id = d["id"].as_str().unwrap();
        assert!(
            notes
                .values()
                .any(|n| n.as_str().unwrap().contains(&format!("(document {id})"))),
            "{reference}: the completion note names the attachment"
        );
        assert!(
            attached.insert((client.to_owned(), tier.to_owned())),
            "{reference} has two summaries"
        );
    }
    assert_eq!(attached, closed, "one summary per client and tier");

    let closures = read(&out.join("rmm-closures.json"));
    let recorded: BTreeSet<(String, String)> = closures["closures"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, c)| {
            let tier = c["tier"].as_str().unwrap().to_owned();
            let client = c["client"].as_str().unwrap().to_owned();
            assert_eq!(key, &format!("2026-12/closure/{tier}/{client}"));
            assert!(
                c["summary"]
                    .as_str()
                    .unwrap()
                    .contains("PSA compliance ticket"),
                "{c}"
            );
            (client, tier)
        })
        .collect();
    assert_eq!(recorded, closed, "one RMM closure per client and tier");
}
