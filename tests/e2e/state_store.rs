//! One contract suite for the state store ports, run against DynamoDB (on moto) and SQLite; then
//! racing writers, and DynamoDB's batch limits held at the SDK layer.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::body::SdkBody;
use chrono::{Duration, TimeZone, Utc};
use patchflow_core::contract::EndpointDoc;
use patchflow_core::ids::{ClientId, CycleId, EndpointId, Engineer, PatchId};
use patchflow_core::model::{Classification, Criticality, EndpointKind, Patch, Ring, Vendor};
use patchflow_core::policy::Policy;
use patchflow_core::ports::evidence::{EvidenceKey, LockMode, Retention, Sha256Digest};
use patchflow_core::ports::state::{
    ApprovalStore, Claim, Completion, DocIndex, DocStore, DueCursor, EndpointStore, EvidenceIndex,
    EvidenceRecord, ExceptionStore, FailureRecord, FailureStore, IdempotencyStore, StoredEndpoint,
    TierId, TierRecord, TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::approval::{
    apply_engineer_decision, evaluate, Decision, EngineerDecision, ReasonCode, SignOff,
};
use patchflow_core::rules::exception::{ExceptionEntry, ExceptionKind};
use patchflow_core::rules::failure::{FailureStage, RootCause};
use patchflow_core::schedule::Window;
use patchflow_core::tier::{TierEvent, TierState};
use patchflow_core::trace::Node;

use crate::support::{dynamo_state, dynamo_state_with, sqlite_state, unique};

fn doc(client: &str, id: &str, ring: Ring) -> EndpointDoc {
    EndpointDoc {
        id: id.into(),
        client: client.into(),
        location: None,
        hostname: Some(id.to_uppercase()),
        kind: EndpointKind::Workstation,
        timezone: Some("America/Chicago".into()),
        patching_disabled: None,
        client_excluded: None,
        exclusion_ref: None,
        policy_group: None,
        role: None,
        criticality: None,
        ring: Some(ring),
        track: None,
        unattended_reboot_approved: None,
        critical: None,
        applicable: None,
        os: None,
        needed: None,
        impact: None,
    }
}

fn fleet(client: &str, n: usize, ring: Ring) -> Vec<StoredEndpoint> {
    (0..n)
        .map(|i| StoredEndpoint::from_doc(doc(client, &format!("ws-{i:03}"), ring)).unwrap())
        .collect()
}

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

fn at(h: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 9, h, 0, 0).unwrap()
}

fn tier(name: &str) -> TierRecord {
    TierRecord {
        cycle: cycle(),
        tier: TierId::parse(name).unwrap(),
        state: TierState::Scheduled,
        version: 0,
        endpoints: vec![EndpointId::parse("ws-001").unwrap()],
        updated_at: at(0),
        // Kept through every transition, on both stores.
        not_before: Some(at(5)),
    }
}

async fn contract<S: EndpointStore + TierStore + IdempotencyStore>(store: &S) {
    let client = unique("client");
    let client_id = ClientId::parse(client.as_str()).unwrap();

    // GIVEN 60 endpoints synced (three batches of writes on DynamoDB)
    let first = fleet(&client, 60, Ring::Production);
    let s = store.sync_endpoints(&first).await.unwrap();
    assert_eq!((s.written, s.unchanged), (60, 0));
    // WHEN the same inventory syncs again THEN nothing is rewritten
    let s = store.sync_endpoints(&first).await.unwrap();
    assert_eq!((s.written, s.unchanged), (0, 60));
    // WHEN five endpoints change ring THEN only those five are written
    let mut second = first.clone();
    for e in second.iter_mut().take(5) {
        *e = StoredEndpoint::from_doc(doc(&client, e.id.as_str(), Ring::Pilot)).unwrap();
    }
    let s = store.sync_endpoints(&second).await.unwrap();
    assert_eq!((s.written, s.unchanged), (5, 55));
    let got = store
        .get_endpoint(&client_id, &EndpointId::parse("ws-000").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.doc.ring, Some(Ring::Pilot));
    assert_eq!(got, second[0]);
    let listed = store.list_endpoints(&client_id).await.unwrap();
    assert_eq!(listed.len(), 60);
    assert!(
        listed.windows(2).all(|w| w[0].id < w[1].id),
        "listed in id order"
    );
    assert!(store
        .get_endpoint(&client_id, &EndpointId::parse("nope").unwrap())
        .await
        .unwrap()
        .is_none());

    // GIVEN a tier THEN creating it again is a conflict
    let t = tier("servers.acme.pilot");
    store.create_tier(&t).await.unwrap();
    assert!(matches!(
        store.create_tier(&t).await,
        Err(PortError::Conflict(_))
    ));
    // AND transitions move it one version at a time
    let t1 = store
        .transition_tier(cycle(), &t.tier, 0, TierEvent::Deploy, at(1))
        .await
        .unwrap();
    assert_eq!(
        (t1.state, t1.version, t1.updated_at),
        (TierState::Deploying, 1, at(1))
    );
    // AND a stale version is a conflict, an event the state machine refuses is permanent
    assert!(matches!(
        store
            .transition_tier(cycle(), &t.tier, 0, TierEvent::InstallsReported, at(2))
            .await,
        Err(PortError::Conflict(_))
    ));
    assert!(matches!(
        store
            .transition_tier(cycle(), &t.tier, 1, TierEvent::Close, at(2))
            .await,
        Err(PortError::Permanent { .. })
    ));
    let missing = TierId::parse("workstations.nowhere").unwrap();
    assert!(matches!(
        store
            .transition_tier(cycle(), &missing, 0, TierEvent::Deploy, at(2))
            .await,
        Err(PortError::NotFound(_))
    ));
    assert_eq!(store.get_tier(cycle(), &t.tier).await.unwrap().unwrap(), t1);
    store
        .create_tier(&tier("workstations.pilot"))
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_tiers(cycle())
        .await
        .unwrap()
        .iter()
        .map(|t| t.tier.to_string())
        .collect();
    assert_eq!(names, ["servers.acme.pilot", "workstations.pilot"]);
    assert!(store
        .list_tiers(cycle().next().unwrap())
        .await
        .unwrap()
        .is_empty());

    // GIVEN a message that moves a tier THEN the move and "handled" land together, or neither
    let msg = unique("msg");
    let (lease, ttl) = (Duration::minutes(5), Duration::days(14));
    let done = Completion {
        key: msg.clone(),
        outcome: "deployed".into(),
        ttl,
    };
    let w = tier("workstations.production");
    store.create_tier(&w).await.unwrap();
    // Not claimed: refused, and the tier did not move.
    assert!(matches!(
        store
            .transition_tier_once(cycle(), &w.tier, 0, TierEvent::Deploy, at(2), &done)
            .await,
        Err(PortError::Conflict(_))
    ));
    assert_eq!(
        store
            .get_tier(cycle(), &w.tier)
            .await
            .unwrap()
            .unwrap()
            .version,
        0
    );
    assert_eq!(
        store.claim(&msg, at(2), lease, ttl).await.unwrap(),
        Claim::Acquired
    );
    let moved = store
        .transition_tier_once(cycle(), &w.tier, 0, TierEvent::Deploy, at(2), &done)
        .await
        .unwrap();
    assert_eq!((moved.state, moved.version), (TierState::Deploying, 1));
    // A redelivery finds the message handled; replaying the write is a conflict, not a second move.
    assert_eq!(
        store.claim(&msg, at(3), lease, ttl).await.unwrap(),
        Claim::Done("deployed".into())
    );
    assert!(matches!(
        store
            .transition_tier_once(cycle(), &w.tier, 0, TierEvent::Deploy, at(3), &done)
            .await,
        Err(PortError::Conflict(_))
    ));
    assert_eq!(
        store
            .get_tier(cycle(), &w.tier)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );

    // GIVEN an idempotency key claimed by one delivery
    let key = unique("msg");
    let (lease, ttl) = (Duration::minutes(5), Duration::days(14));
    assert_eq!(
        store.claim(&key, at(3), lease, ttl).await.unwrap(),
        Claim::Acquired
    );
    // THEN a redelivery during the lease waits, and after completion skips with the outcome
    assert_eq!(
        store
            .claim(&key, at(3) + Duration::minutes(1), lease, ttl)
            .await
            .unwrap(),
        Claim::InProgress
    );
    store
        .complete(&key, "ticket T-42", at(3) + Duration::minutes(2), ttl)
        .await
        .unwrap();
    assert_eq!(
        store.claim(&key, at(4), lease, ttl).await.unwrap(),
        Claim::Done("ticket T-42".into())
    );
    // AND a crashed attempt's expired lease can be taken over
    let crashed = unique("msg");
    assert_eq!(
        store.claim(&crashed, at(5), lease, ttl).await.unwrap(),
        Claim::Acquired
    );
    assert_eq!(
        store
            .claim(&crashed, at(5) + Duration::minutes(6), lease, ttl)
            .await
            .unwrap(),
        Claim::Acquired
    );
    // AND an expired record is as good as absent (TTL deletes lazily)
    assert_eq!(
        store
            .claim(&key, at(4) + Duration::days(15), lease, ttl)
            .await
            .unwrap(),
        Claim::Acquired
    );
    assert!(matches!(
        store.complete(&unique("never"), "x", at(6), ttl).await,
        Err(PortError::NotFound(_))
    ));
}

fn patch(id: &str, vendor: &str, class: Classification) -> Patch {
    Patch {
        id: PatchId::parse(id).unwrap(),
        title: String::new(),
        vendor: Vendor::parse(vendor),
        classification: class,
        severity: None,
        released: None,
        cves: vec![],
        products: vec![],
    }
}

fn failure(id: &str) -> FailureRecord {
    FailureRecord {
        id: id.into(),
        cycle: cycle(),
        tier: TierId::parse("servers.acme.pilot").unwrap(),
        endpoint: EndpointId::parse("acme-dc1").unwrap(),
        client: ClientId::parse("acme").unwrap(),
        stage: FailureStage::Validation,
        priority: Criticality::P1,
        paged: true,
        failed_at: at(4),
        next_retry: Window {
            start: at(22),
            end: at(23),
        },
        ticket: None,
        root_cause: None,
        version: 0,
    }
}

async fn records_contract<S: ExceptionStore + ApprovalStore + FailureStore + EvidenceIndex>(
    store: &S,
) {
    // The exception register keeps the first entry per subject and kind.
    let entry = |subject: &str, kind: ExceptionKind, reference: &str| ExceptionEntry {
        subject: subject.into(),
        kind,
        reason: "client_exclusion".into(),
        node: Node::ClientExcluded,
        client: Some(ClientId::parse("acme").unwrap()),
        reference: Some(reference.into()),
        engineer: None,
        engineer_reason: None,
        signed_at: None,
        change_requires: "signed client approval".into(),
        signed: true,
        approval_ref: Some(reference.into()),
        lifted_by: format!("client signed change ({reference})").into(),
    };
    assert!(store
        .record_exception(&entry("ws-9", ExceptionKind::ClientExcluded, "SIGNED-1"))
        .await
        .unwrap());
    assert!(!store
        .record_exception(&entry("ws-9", ExceptionKind::ClientExcluded, "SIGNED-2"))
        .await
        .unwrap());
    assert!(store
        .record_exception(&entry("ws-1", ExceptionKind::DoNotPatch, "-"))
        .await
        .unwrap());
    let register = store.list_exceptions().await.unwrap();
    assert_eq!(
        register
            .iter()
            .map(|e| e.subject.as_str())
            .collect::<Vec<_>>(),
        ["ws-1", "ws-9"]
    );
    assert_eq!(register[1].reference.as_deref(), Some("SIGNED-1"));

    // Approvals: the evaluator writes once; an engineer's decision lands only over the state it saw.
    let released = Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap();
    let policy = Policy::default().approval;
    let chrome = patch("CHROME-1", "google", Classification::Update);
    let held = evaluate(&chrome, released, &policy);
    store.put_approval(cycle(), &held, None).await.unwrap();
    assert!(matches!(
        store.put_approval(cycle(), &held, None).await,
        Err(PortError::Conflict(_))
    ));
    let sign = SignOff {
        engineer: Engineer::parse("jdoe").unwrap(),
        reason_code: ReasonCode::parse("cve_reviewed").unwrap(),
        at: at(9),
    };
    let approved = apply_engineer_decision(&held, &chrome, EngineerDecision::Approve(sign.clone()))
        .unwrap()
        .approval;
    store
        .put_approval(cycle(), &approved, Some(Decision::PendingReview))
        .await
        .unwrap();
    // A second engineer working from the stale pending state loses.
    let declined = apply_engineer_decision(&held, &chrome, EngineerDecision::Decline(sign))
        .unwrap()
        .approval;
    assert!(matches!(
        store
            .put_approval(cycle(), &declined, Some(Decision::PendingReview))
            .await,
        Err(PortError::Conflict(_))
    ));
    assert_eq!(
        store.get_approval(cycle(), &chrome.id).await.unwrap(),
        Some(approved.clone())
    );
    let kb = evaluate(
        &patch("KB1", "microsoft", Classification::Driver),
        released,
        &policy,
    );
    store.put_approval(cycle(), &kb, None).await.unwrap();
    let all = store.list_approvals(cycle()).await.unwrap();
    assert_eq!(all, [approved, kb]);

    // Failures: opened once, saved only over the version read.
    let f = failure("acme-dc1.validation.1");
    store.open_failure(&f).await.unwrap();
    assert!(matches!(
        store.open_failure(&f).await,
        Err(PortError::Conflict(_))
    ));
    let ticketed = store
        .save_failure(
            &FailureRecord {
                ticket: Some("T-100".into()),
                ..f.clone()
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(ticketed.version, 1);
    let rc = RootCause {
        text: "DNS service hung after KB install".into(),
        engineer: "jdoe".into(),
        recorded_at: at(8),
    };
    assert!(matches!(
        store
            .save_failure(
                &FailureRecord {
                    root_cause: Some(rc.clone()),
                    ..f.clone()
                },
                0
            )
            .await,
        Err(PortError::Conflict(_))
    ));
    let fixed = store
        .save_failure(
            &FailureRecord {
                root_cause: Some(rc),
                ..ticketed.clone()
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_failure(cycle(), &f.id).await.unwrap(),
        Some(fixed.clone())
    );
    assert_eq!(fixed.ticket.as_deref(), Some("T-100"));
    assert!(matches!(
        store.save_failure(&failure("nope"), 0).await,
        Err(PortError::NotFound(_))
    ));
    assert_eq!(store.list_failures(cycle()).await.unwrap(), [fixed]);

    // The evidence index takes each key once.
    let record = EvidenceRecord {
        key: EvidenceKey::new(
            cycle(),
            &ClientId::parse("acme").unwrap(),
            "server-pilot",
            "report.html",
        )
        .unwrap(),
        sha256: Sha256Digest::of(b"<html/>"),
        size: 7,
        retention: Retention {
            mode: LockMode::Compliance,
            retain_until: Utc.with_ymd_and_hms(2033, 1, 1, 0, 0, 0).unwrap(),
        },
    };
    store.index_evidence(&record).await.unwrap();
    assert!(matches!(
        store.index_evidence(&record).await,
        Err(PortError::Conflict(_))
    ));
    assert_eq!(store.list_evidence(cycle()).await.unwrap(), [record]);
    assert!(store
        .list_evidence(cycle().next().unwrap())
        .await
        .unwrap()
        .is_empty());
}

async fn chain_contract<S: EvidenceIndex>(store: &S) {
    let client = ClientId::parse(unique("chain")).unwrap();
    let other = ClientId::parse(unique("chain")).unwrap();
    // GIVEN a client without manifests THEN it has no chain head
    assert!(store.chain_head(&client).await.unwrap().is_none());
    // WHEN its first head is created THEN at version 1, once
    assert_eq!(
        store
            .put_chain_head(&client, "{\"n\":1}", None)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        store.put_chain_head(&client, "{\"n\":9}", None).await,
        Err(PortError::Conflict(_))
    ));
    // AND of two writers moving it from version 1, exactly one wins
    assert_eq!(
        store
            .put_chain_head(&client, "{\"n\":2}", Some(1))
            .await
            .unwrap(),
        2
    );
    assert!(matches!(
        store.put_chain_head(&client, "{\"n\":3}", Some(1)).await,
        Err(PortError::Conflict(_))
    ));
    let head = store.chain_head(&client).await.unwrap().unwrap();
    assert_eq!(
        (head.id.as_str(), head.version, head.body.as_str()),
        (client.as_str(), 2, "{\"n\":2}")
    );
    // AND another client's chain is its own, and moving a head that is not there is NotFound
    assert!(store.chain_head(&other).await.unwrap().is_none());
    assert!(matches!(
        store.put_chain_head(&other, "{}", Some(1)).await,
        Err(PortError::NotFound(_))
    ));
}

async fn docs_contract<S: DocStore + IdempotencyStore>(store: &S) {
    let c = cycle();
    let kind = format!("run.{}", unique("t"));
    // GIVEN a new document THEN it is created at version 1, once
    assert_eq!(
        store
            .put_doc(c, &kind, "ws-2", "{\"n\":1}", None)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        store.put_doc(c, &kind, "ws-2", "{\"n\":9}", None).await,
        Err(PortError::Conflict(_))
    ));
    // WHEN two writers update from version 1 THEN exactly one wins
    assert_eq!(
        store
            .put_doc(c, &kind, "ws-2", "{\"n\":2}", Some(1))
            .await
            .unwrap(),
        2
    );
    assert!(matches!(
        store.put_doc(c, &kind, "ws-2", "{\"n\":3}", Some(1)).await,
        Err(PortError::Conflict(_))
    ));
    // AND updating a document that does not exist is NotFound, not Conflict
    assert!(matches!(
        store.put_doc(c, &kind, "ghost", "{}", Some(1)).await,
        Err(PortError::NotFound(_))
    ));
    store
        .put_doc(c, &kind, "ws-1", "{\"n\":1}", None)
        .await
        .unwrap();
    let got = store.get_doc(c, &kind, "ws-2").await.unwrap().unwrap();
    assert_eq!((got.version, got.body.as_str()), (2, "{\"n\":2}"));
    // AND a kind lists in id order, and only its own documents
    let ids: Vec<String> = store
        .list_docs(c, &kind)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["ws-1", "ws-2"]);
    assert!(store
        .list_docs(c, &format!("{kind}x"))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .get_doc(c.next().unwrap(), &kind, "ws-1")
        .await
        .unwrap()
        .is_none());

    // GIVEN a claimed key WHEN the handler gives it up THEN the redelivery claims it at once
    let key = unique("abandon");
    let (lease, ttl) = (Duration::minutes(5), Duration::days(1));
    assert_eq!(
        store.claim(&key, at(1), lease, ttl).await.unwrap(),
        Claim::Acquired
    );
    assert_eq!(
        store.claim(&key, at(1), lease, ttl).await.unwrap(),
        Claim::InProgress
    );
    store.abandon(&key).await.unwrap();
    assert_eq!(
        store.claim(&key, at(1), lease, ttl).await.unwrap(),
        Claim::Acquired
    );
    // AND a done key is not given up
    store.complete(&key, "ok", at(1), ttl).await.unwrap();
    store.abandon(&key).await.unwrap();
    assert_eq!(
        store.claim(&key, at(1), lease, ttl).await.unwrap(),
        Claim::Done("ok".into())
    );
    // AND `done` names the done keys among those asked (once each), not a claimed one nor an
    // unknown one, and none once expired
    let claimed = unique("claimed");
    store.claim(&claimed, at(1), lease, ttl).await.unwrap();
    let asked = [claimed.clone(), key.clone(), "ghost".into(), key.clone()];
    assert_eq!(
        store.done(&asked, at(2)).await.unwrap(),
        std::slice::from_ref(&key)
    );
    assert!(store
        .done(&asked, at(1) + ttl + Duration::hours(1))
        .await
        .unwrap()
        .is_empty());
    assert!(store.done(&[], at(2)).await.unwrap().is_empty());
}

fn indexed(due: Option<chrono::DateTime<Utc>>, phase: Option<&str>) -> DocIndex {
    DocIndex {
        due,
        phase: phase.map(str::to_owned),
    }
}

/// The ids a due listing returned, checking each cursor names its document.
fn due_ids(listed: &[(DueCursor, patchflow_core::ports::state::Doc)]) -> Vec<String> {
    listed
        .iter()
        .map(|(cursor, doc)| {
            assert_eq!(cursor.id, doc.id);
            doc.id.clone()
        })
        .collect()
}

async fn due_index_contract<S: DocStore>(store: &S) {
    let c = cycle();
    let kind = format!("run.{}", unique("due"));
    let other_kind = format!("{kind}x");
    let pending = Some("pending");
    // GIVEN runs due at 09:00 (two, ids out of order), 10:00, 10:00 and a microsecond, 12:00,
    // one unindexed run, one in another kind and one in another cycle, all due early
    let plan = [
        ("ws-b", at(9)),
        ("ws-a", at(9)),
        ("ws-c", at(10)),
        ("ws-d", at(10) + Duration::microseconds(1)),
        ("ws-e", at(12)),
    ];
    for (id, due) in plan {
        assert_eq!(
            store
                .put_doc_indexed(c, &kind, id, "{}", None, &indexed(Some(due), pending))
                .await
                .unwrap(),
            1
        );
    }
    store
        .put_doc(c, &kind, "ws-plain", "{}", None)
        .await
        .unwrap();
    store
        .put_doc_indexed(
            c,
            &other_kind,
            "ws-a",
            "{}",
            None,
            &indexed(Some(at(1)), pending),
        )
        .await
        .unwrap();
    store
        .put_doc_indexed(
            c.next().unwrap(),
            &kind,
            "ws-a",
            "{}",
            None,
            &indexed(Some(at(1)), pending),
        )
        .await
        .unwrap();

    // WHEN the tick lists what is due by 10:00 THEN exactly those, in (due, id) order
    let listed = store
        .list_due_docs(c, &kind, at(10), None, 100)
        .await
        .unwrap();
    assert_eq!(due_ids(&listed), ["ws-a", "ws-b", "ws-c"]);
    assert_eq!(
        listed[0].0,
        DueCursor {
            due: at(9),
            id: "ws-a".into()
        }
    );
    assert_eq!((listed[2].0.due, listed[2].1.version), (at(10), 1));
    // AND a microsecond later the next run is due too, and by noon all five
    let ids = due_ids(
        &store
            .list_due_docs(c, &kind, at(10) + Duration::microseconds(1), None, 100)
            .await
            .unwrap(),
    );
    assert_eq!(ids, ["ws-a", "ws-b", "ws-c", "ws-d"]);
    let all = store
        .list_due_docs(c, &kind, at(23), None, 100)
        .await
        .unwrap();
    assert_eq!(due_ids(&all), ["ws-a", "ws-b", "ws-c", "ws-d", "ws-e"]);
    assert!(store
        .list_due_docs(c, &kind, at(8), None, 100)
        .await
        .unwrap()
        .is_empty());
    // AND pages of two, each after the last cursor, cover the same list once
    let mut pages = Vec::new();
    let mut after: Option<DueCursor> = None;
    loop {
        let page = store
            .list_due_docs(c, &kind, at(23), after.as_ref(), 2)
            .await
            .unwrap();
        assert!(page.len() <= 2, "{page:?}");
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        pages.push(due_ids(&page));
    }
    assert_eq!(
        pages,
        [vec!["ws-a", "ws-b"], vec!["ws-c", "ws-d"], vec!["ws-e"]]
    );
    assert!(store
        .list_due_docs(c, &kind, at(23), None, 0)
        .await
        .unwrap()
        .is_empty());
    // AND a cursor between documents (ws-a's due, a later id) resumes at the next one
    let between = DueCursor {
        due: at(9),
        id: "ws-aa".into(),
    };
    assert_eq!(
        due_ids(
            &store
                .list_due_docs(c, &kind, at(10), Some(&between), 100)
                .await
                .unwrap()
        ),
        ["ws-b", "ws-c"]
    );

    // WHEN a run's due moves later THEN it leaves the earlier listing and joins the later one
    store
        .put_doc_indexed(
            c,
            &kind,
            "ws-a",
            "{\"n\":2}",
            Some(1),
            &indexed(Some(at(11)), pending),
        )
        .await
        .unwrap();
    let ids = due_ids(
        &store
            .list_due_docs(c, &kind, at(10), None, 100)
            .await
            .unwrap(),
    );
    assert_eq!(ids, ["ws-b", "ws-c"]);
    let moved = store
        .list_due_docs(c, &kind, at(11), None, 100)
        .await
        .unwrap();
    assert_eq!(due_ids(&moved), ["ws-b", "ws-c", "ws-d", "ws-a"]);
    assert_eq!(
        (moved[3].0.due, moved[3].1.version, moved[3].1.body.as_str()),
        (at(11), 2, "{\"n\":2}")
    );
    // AND a cursor on a document that has since moved still resumes after its old position
    let stale = DueCursor {
        due: at(9),
        id: "ws-a".into(),
    };
    assert_eq!(
        due_ids(
            &store
                .list_due_docs(c, &kind, at(10), Some(&stale), 100)
                .await
                .unwrap()
        ),
        ["ws-b", "ws-c"]
    );
    // WHEN a run's due is cleared, or it is rewritten with a plain put THEN it is not due
    store
        .put_doc_indexed(c, &kind, "ws-b", "{}", Some(1), &indexed(None, pending))
        .await
        .unwrap();
    store
        .put_doc(c, &kind, "ws-c", "{}", Some(1))
        .await
        .unwrap();
    assert_eq!(
        due_ids(
            &store
                .list_due_docs(c, &kind, at(23), None, 100)
                .await
                .unwrap()
        ),
        ["ws-d", "ws-a", "ws-e"]
    );
    // AND the other kind and cycle kept their own
    assert_eq!(
        due_ids(
            &store
                .list_due_docs(c, &other_kind, at(23), None, 100)
                .await
                .unwrap()
        ),
        ["ws-a"]
    );

    // GIVEN the conditions of put_doc THEN put_doc_indexed keeps them
    assert!(matches!(
        store
            .put_doc_indexed(c, &kind, "ws-d", "{}", None, &indexed(Some(at(1)), pending))
            .await,
        Err(PortError::Conflict(_))
    ));
    assert!(matches!(
        store
            .put_doc_indexed(
                c,
                &kind,
                "ws-d",
                "{}",
                Some(7),
                &indexed(Some(at(1)), pending)
            )
            .await,
        Err(PortError::Conflict(_))
    ));
    assert!(matches!(
        store
            .put_doc_indexed(
                c,
                &kind,
                "ghost",
                "{}",
                Some(1),
                &indexed(Some(at(1)), pending)
            )
            .await,
        Err(PortError::NotFound(_))
    ));
    // AND a refused write changed nothing: ws-d is still due at 10:00 and a microsecond
    let still = store
        .list_due_docs(c, &kind, at(10) + Duration::microseconds(1), None, 100)
        .await
        .unwrap();
    assert_eq!(due_ids(&still), ["ws-d"]);
    // AND an index the store cannot hold is refused
    assert!(matches!(
        store
            .put_doc_indexed(c, &kind, "bad", "{}", None, &indexed(None, Some("a#b")))
            .await,
        Err(PortError::Permanent { .. })
    ));
    assert!(matches!(
        store
            .put_doc_indexed(c, &kind, "bad", "{}", None, &indexed(None, Some("")))
            .await,
        Err(PortError::Permanent { .. })
    ));
    assert!(store.get_doc(c, &kind, "bad").await.unwrap().is_none());
}

async fn phase_index_contract<S: DocStore>(store: &S) {
    let c = cycle();
    let kind = format!("run.{}", unique("phase"));
    // GIVEN a kind with no documents THEN no phase has any
    assert!(!store
        .any_doc_in_phase(c, &kind, &["pending", "reported"])
        .await
        .unwrap());
    assert_eq!(
        store
            .count_docs_in_phase(c, &kind, "pending")
            .await
            .unwrap(),
        0
    );
    // GIVEN three pending runs, one reported, one unindexed, and a pending one of another kind
    for id in ["ws-1", "ws-2", "ws-3"] {
        store
            .put_doc_indexed(
                c,
                &kind,
                id,
                "{}",
                None,
                &indexed(Some(at(9)), Some("pending")),
            )
            .await
            .unwrap();
    }
    store
        .put_doc_indexed(
            c,
            &kind,
            "ws-4",
            "{}",
            None,
            &indexed(None, Some("reported")),
        )
        .await
        .unwrap();
    store.put_doc(c, &kind, "ws-5", "{}", None).await.unwrap();
    store
        .put_doc_indexed(
            c,
            &format!("{kind}x"),
            "ws-9",
            "{}",
            None,
            &indexed(None, Some("failed")),
        )
        .await
        .unwrap();
    // THEN the phases answer and count
    assert!(store
        .any_doc_in_phase(c, &kind, &["pending"])
        .await
        .unwrap());
    assert!(store
        .any_doc_in_phase(c, &kind, &["failed", "reported"])
        .await
        .unwrap());
    assert!(!store
        .any_doc_in_phase(c, &kind, &["failed", "validated"])
        .await
        .unwrap());
    assert!(!store.any_doc_in_phase(c, &kind, &[]).await.unwrap());
    assert!(!store
        .any_doc_in_phase(c.next().unwrap(), &kind, &["pending"])
        .await
        .unwrap());
    assert_eq!(
        store
            .count_docs_in_phase(c, &kind, "pending")
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .count_docs_in_phase(c, &kind, "reported")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.count_docs_in_phase(c, &kind, "failed").await.unwrap(),
        0
    );
    // AND the phase lists its ids in order, a page at a time, and nothing of another kind
    assert_eq!(
        store
            .list_ids_in_phase(c, &kind, "pending", None, 10)
            .await
            .unwrap(),
        ["ws-1", "ws-2", "ws-3"]
    );
    assert_eq!(
        store
            .list_ids_in_phase(c, &kind, "pending", None, 2)
            .await
            .unwrap(),
        ["ws-1", "ws-2"]
    );
    assert_eq!(
        store
            .list_ids_in_phase(c, &kind, "pending", Some("ws-2"), 2)
            .await
            .unwrap(),
        ["ws-3"]
    );
    assert!(store
        .list_ids_in_phase(c, &kind, "failed", None, 10)
        .await
        .unwrap()
        .is_empty());
    // WHEN the runs move on (validated, failed, and one rewritten with a plain put)
    store
        .put_doc_indexed(
            c,
            &kind,
            "ws-1",
            "{}",
            Some(1),
            &indexed(None, Some("validated")),
        )
        .await
        .unwrap();
    store
        .put_doc_indexed(
            c,
            &kind,
            "ws-2",
            "{}",
            Some(1),
            &indexed(None, Some("failed")),
        )
        .await
        .unwrap();
    assert!(store
        .any_doc_in_phase(c, &kind, &["pending"])
        .await
        .unwrap());
    store
        .put_doc(c, &kind, "ws-3", "{}", Some(1))
        .await
        .unwrap();
    // THEN no run is pending any more, and the counts follow
    assert!(!store
        .any_doc_in_phase(c, &kind, &["pending"])
        .await
        .unwrap());
    assert!(store
        .any_doc_in_phase(c, &kind, &["pending", "failed"])
        .await
        .unwrap());
    assert_eq!(
        store
            .count_docs_in_phase(c, &kind, "pending")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .count_docs_in_phase(c, &kind, "validated")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.count_docs_in_phase(c, &kind, "failed").await.unwrap(),
        1
    );
    assert_eq!(
        store
            .list_ids_in_phase(c, &kind, "failed", None, 10)
            .await
            .unwrap(),
        ["ws-2"]
    );
    assert!(store
        .list_ids_in_phase(c, &kind, "pending", None, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn bulk_get_contract<S: DocStore>(store: &S) {
    let c = cycle();
    let kind = format!("run.{}", unique("bulk"));
    // GIVEN 130 documents (more than one BatchGetItem of 100 keys)
    for i in 0..130 {
        store
            .put_doc(
                c,
                &kind,
                &format!("ws-{i:03}"),
                &format!("{{\"i\":{i}}}"),
                None,
            )
            .await
            .unwrap();
    }
    store
        .put_doc(c, &kind, "ws-000", "{\"i\":0,\"v\":2}", Some(1))
        .await
        .unwrap();
    // WHEN all of them are asked for, in reverse, with missing ids and a repeat among them
    let mut ids: Vec<String> = (0..130).rev().map(|i| format!("ws-{i:03}")).collect();
    ids.extend([
        "ghost-1".to_owned(),
        "ws-007".to_owned(),
        "ghost-2".to_owned(),
    ]);
    let got = store.get_docs(c, &kind, &ids).await.unwrap();
    // THEN each that exists, once, by id, with its latest version and body
    let want: Vec<String> = (0..130).map(|i| format!("ws-{i:03}")).collect();
    assert_eq!(got.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), want);
    assert_eq!(
        (got[0].version, got[0].body.as_str()),
        (2, "{\"i\":0,\"v\":2}")
    );
    assert_eq!(
        (got[129].version, got[129].body.as_str()),
        (1, "{\"i\":129}")
    );
    // AND a few, or none
    let few = store
        .get_docs(c, &kind, &["ws-120".into(), "nope".into(), "ws-003".into()])
        .await
        .unwrap();
    assert_eq!(
        few.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["ws-003", "ws-120"]
    );
    assert!(store.get_docs(c, &kind, &[]).await.unwrap().is_empty());
    assert!(store
        .get_docs(c, &format!("{kind}x"), &["ws-001".into()])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_dynamodb_store_keeps_the_document_index_contract() {
    let store = dynamo_state().await;
    due_index_contract(&store).await;
    phase_index_contract(&store).await;
    bulk_get_contract(&store).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_document_index_contract() {
    let store = sqlite_state();
    due_index_contract(&store).await;
    phase_index_contract(&store).await;
    bulk_get_contract(&store).await;
}

#[tokio::test]
async fn the_dynamodb_store_keeps_the_state_contract() {
    let store = dynamo_state().await;
    contract(&store).await;
    records_contract(&store).await;
    docs_contract(&store).await;
    chain_contract(&store).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_state_contract() {
    let store = sqlite_state();
    contract(&store).await;
    records_contract(&store).await;
    docs_contract(&store).await;
    chain_contract(&store).await;
}

async fn race<S: TierStore + Clone + 'static>(store: S) {
    let t = tier(&format!("race.{}", unique("t")));
    store.create_tier(&t).await.unwrap();
    // Two writers read version 0 and both try to move the tier.
    let (a, b) = (store.clone(), store.clone());
    let (ta, tb) = (t.tier.clone(), t.tier.clone());
    let one = tokio::spawn(async move {
        a.transition_tier(cycle(), &ta, 0, TierEvent::Deploy, at(1))
            .await
    });
    let two = tokio::spawn(async move {
        b.transition_tier(cycle(), &tb, 0, TierEvent::Deploy, at(1))
            .await
    });
    let results = [one.await.unwrap(), two.await.unwrap()];
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(PortError::Conflict(_))))
        .count();
    assert_eq!((wins, conflicts), (1, 1), "{results:?}");
    assert_eq!(
        store
            .get_tier(cycle(), &t.tier)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_writers_racing_on_a_dynamodb_tier_exactly_one_wins() {
    for _ in 0..5 {
        race(dynamo_state().await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_writers_racing_on_a_sqlite_tier_exactly_one_wins() {
    let store = sqlite_state();
    for _ in 0..20 {
        race(store.clone()).await;
    }
}

/// moto takes a 26-item BatchWriteItem and never returns UnprocessedItems; this interceptor
/// fails any batch over DynamoDB's limit and rewrites chosen responses so that some items come
/// back unprocessed (they were in fact written; the retry rewrites them, which puts make safe).
#[derive(Debug, Clone, Default)]
struct BatchWriteLimits {
    sizes: Arc<Mutex<Vec<usize>>>,
    over_limit: Arc<Mutex<usize>>,
    /// Attempts (0-based) whose response reports their last `n` items unprocessed.
    unprocessed: Arc<Mutex<Vec<(usize, usize)>>>,
    in_flight: Arc<Mutex<Option<serde_json::Value>>>,
}

impl Intercept for BatchWriteLimits {
    fn name(&self) -> &'static str {
        "BatchWriteLimits"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request();
        let is_batch = req
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with(".BatchWriteItem"));
        let mut in_flight = self.in_flight.lock().unwrap();
        *in_flight = None;
        if !is_batch {
            return Ok(());
        }
        let body: serde_json::Value =
            serde_json::from_slice(req.body().bytes().unwrap_or_default())?;
        let count: usize = body["RequestItems"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_array()).map(Vec::len).sum())
            .unwrap_or(0);
        self.sizes.lock().unwrap().push(count);
        if count > 25 {
            *self.over_limit.lock().unwrap() += 1;
            return Err(format!("DynamoDB would refuse a BatchWriteItem of {count} items").into());
        }
        *in_flight = Some(body);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(body) = self.in_flight.lock().unwrap().take() else {
            return Ok(());
        };
        let attempt = self.sizes.lock().unwrap().len() - 1;
        let Some(&(_, n)) = self
            .unprocessed
            .lock()
            .unwrap()
            .iter()
            .find(|(a, _)| *a == attempt)
        else {
            return Ok(());
        };
        let mut unprocessed = serde_json::Map::new();
        for (table, requests) in body["RequestItems"].as_object().into_iter().flatten() {
            let list = requests.as_array().cloned().unwrap_or_default();
            let tail: Vec<_> = list[list.len().saturating_sub(n)..].to_vec();
            unprocessed.insert(table.clone(), serde_json::Value::Array(tail));
        }
        *ctx.response_mut().body_mut() =
            SdkBody::from(serde_json::json!({ "UnprocessedItems": unprocessed }).to_string());
        Ok(())
    }
}

#[tokio::test]
async fn batch_writes_stay_within_25_items_and_unprocessed_items_all_land() {
    let limits = BatchWriteLimits::default();
    // The first batch returns 7 of its 25 unprocessed; the retry of those 7 returns 2 again.
    limits.unprocessed.lock().unwrap().extend([(0, 7), (1, 2)]);
    let interceptor = limits.clone();
    let store = dynamo_state_with(move |b| b.interceptor(interceptor)).await;
    let client = unique("client");
    let s = store
        .sync_endpoints(&fleet(&client, 60, Ring::Production))
        .await
        .unwrap();
    assert_eq!(s.written, 60);
    assert_eq!(*limits.over_limit.lock().unwrap(), 0);
    assert_eq!(*limits.sizes.lock().unwrap(), [25, 7, 2, 25, 10]);
    assert_eq!(
        store
            .list_endpoints(&ClientId::parse(client.as_str()).unwrap())
            .await
            .unwrap()
            .len(),
        60
    );
}

/// A body of about `n` bytes of run-like JSON (repetitive, as a run's is).
fn run_like_body(n: usize, tag: &str) -> String {
    let mut body = format!("{{\"tag\":\"{tag}\",\"checks\":[");
    let mut i = 0;
    while body.len() < n {
        body.push_str(&format!(
            "{{\"check\":\"service-{i}\",\"passed\":true,\"at\":\"2026-12-09T02:{:02}:00Z\"}},",
            i % 60
        ));
        i += 1;
    }
    body.push_str("{}]}");
    body
}

#[tokio::test]
async fn a_large_dynamodb_document_is_stored_deflated_and_reads_back_by_every_path() {
    crate::support::require_aws_endpoint();
    let sdk = patchflow_aws::config::sdk_config().await;
    let raw = patchflow_aws::config::dynamodb_client(&sdk);
    let table = unique("pf-packed");
    patchflow_aws::dynamodb::create_state_table(&raw, &table)
        .await
        .expect("create the state table");
    let store = patchflow_aws::dynamodb::DynamoState::new(raw.clone(), table.clone());
    let c = cycle();
    let kind = format!("run.{}", unique("packed"));
    let (large, small) = (run_like_body(3_000, "large"), "{\"n\":1}".to_owned());
    // GIVEN a 3 KB document, indexed by due and phase, and a small one
    let due = at(3);
    store
        .put_doc_indexed(
            c,
            &kind,
            "ws-1",
            &large,
            None,
            &indexed(Some(due), Some("active")),
        )
        .await
        .unwrap();
    store.put_doc(c, &kind, "ws-2", &small, None).await.unwrap();
    // THEN on the wire the large one is a binary attribute a third of its size or less, with
    // no string body, and the small one is kept as it is
    let item = |id: &str| {
        let raw = raw.clone();
        let (table, kind) = (table.clone(), kind.clone());
        let id = id.to_owned();
        async move {
            raw.get_item()
                .table_name(table)
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("CYCLE#{c}#{kind}")),
                )
                .key(
                    "sk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("DOC#{id}")),
                )
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    let packed = item("ws-1").await;
    assert!(!packed.contains_key("body"));
    let z = packed["bodyz"]
        .as_b()
        .expect("a binary body")
        .as_ref()
        .len();
    assert!(
        z * 3 <= large.len(),
        "{z} bytes deflated of {}",
        large.len()
    );
    assert_eq!(item("ws-2").await["body"].as_s().unwrap(), &small);
    // AND every read gives the body back as written: one, a kind, a batch, the due index
    let one = store.get_doc(c, &kind, "ws-1").await.unwrap().unwrap();
    assert_eq!((one.version, one.body.as_str()), (1, large.as_str()));
    let listed = store.list_docs(c, &kind).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(),
        [large.as_str(), small.as_str()]
    );
    let batch = store
        .get_docs(c, &kind, &["ws-1".into(), "ws-2".into()])
        .await
        .unwrap();
    assert_eq!(batch[0].body, large);
    let due_docs = store
        .list_due_docs(c, &kind, at(4), None, 10)
        .await
        .unwrap();
    assert_eq!(due_ids(&due_docs), ["ws-1"]);
    assert_eq!(due_docs[0].1.body, large);
    // AND an update replaces it (a small body again a string, the deflated one gone)
    store
        .put_doc(c, &kind, "ws-1", &small, Some(1))
        .await
        .unwrap();
    let after = item("ws-1").await;
    assert!(!after.contains_key("bodyz"));
    assert_eq!(
        store.get_doc(c, &kind, "ws-1").await.unwrap().unwrap().body,
        small
    );
}
