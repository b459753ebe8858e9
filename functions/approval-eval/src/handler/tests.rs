//! approval-eval on the embedded adapters, invoked with the checked-in SQS events.

use chrono::Duration;
use patchflow_core::ports::queue::Envelope;
use patchflow_core::ports::state::{ApprovalStore, Claim, ExceptionStore, IdempotencyStore};
use patchflow_core::rules::approval::Decision;
use patchflow_lambda::testing::{fixture, release, Embedded};
use patchflow_lambda::BatchItemFailure;

use super::*;
use patchflow_core::ports::queue::QueueConsumer;
use patchflow_lambda::{SqsBatchResponse, SqsEvent, Stage};

fn event(name: &str) -> SqsEvent {
    fixture(name).unwrap()
}

fn ids(event: &SqsEvent) -> Vec<String> {
    event
        .records
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect()
}

async fn invoke(p: &Embedded, event: SqsEvent) -> SqsBatchResponse {
    p.invoke(&ApprovalEval, event).await.unwrap()
}

/// The cycle opened, its own evaluation messages taken off the queue.
async fn opened() -> Embedded {
    let p = Embedded::new(release() + Duration::seconds(10)).unwrap();
    p.open_cycle().await.unwrap();
    assert_eq!(p.take(Stage::Approval).await.unwrap().len(), 12);
    p
}

#[tokio::test]
async fn evaluations_are_stored_and_a_duplicate_is_done_twice_changing_nothing_twice() {
    let p = opened().await;
    let mut e = event("sqs-approval-eval.json");
    p.deliver(Stage::Approval, &mut e).await.unwrap();
    let resp = invoke(&p, e).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    assert!(p
        .queues
        .dead_letters(Stage::Approval)
        .await
        .unwrap()
        .is_empty());

    let cycle = "2026-12".parse().unwrap();
    let approvals = p.env.state.list_approvals(cycle).await.unwrap();
    let decision = |id: &str| {
        approvals
            .iter()
            .find(|a| a.patch.as_str() == id)
            .map(|a| a.decision)
    };
    assert_eq!(approvals.len(), 2);
    assert_eq!(decision("KB5071001"), Some(Decision::AutoApproved));
    assert_eq!(decision("KB5071007"), Some(Decision::Declined));
    let declined = |x: &Vec<patchflow_core::rules::exception::ExceptionEntry>| {
        x.iter().filter(|x| x.subject == "KB5071007").count()
    };
    let exceptions = p.env.state.list_exceptions().await.unwrap();
    assert_eq!(declined(&exceptions), 1, "{exceptions:?}");
    // Both deliveries of the driver's evaluation are done, with its one outcome.
    let key = "2026-12/evaluate/KB5071007";
    let claim = p
        .env
        .state
        .claim(key, p.now(), Duration::minutes(5), Duration::days(1))
        .await
        .unwrap();
    // Its outcome names the decision and the RMM approval pushes it queued (one per client).
    assert_eq!(
        claim,
        Claim::Done("KB5071007 declined, 4 RMM approval push(es)".into())
    );

    // The whole batch again (a redelivery): done, and nothing written twice.
    let mut again = event("sqs-approval-eval.json");
    p.deliver(Stage::Approval, &mut again).await.unwrap();
    assert!(invoke(&p, again).await.batch_item_failures.is_empty());
    assert_eq!(p.env.state.list_approvals(cycle).await.unwrap().len(), 2);
    let exceptions = p.env.state.list_exceptions().await.unwrap();
    assert_eq!(declined(&exceptions), 1);
    // The delivered records are deleted; what is left on the queue is the approvals' pushes to
    // the RMM, each once per patch and client (the duplicate evaluations sent the same keys).
    let left = p.take(Stage::Approval).await.unwrap();
    assert!(
        left.iter().all(|m| m.kind == "push_approval"),
        "delivered records are deleted: {left:?}"
    );
    let keys: std::collections::BTreeSet<&str> =
        left.iter().map(|m| m.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 2 * 4, "two patches, four clients: {keys:?}");
    assert!(
        keys.contains("2026-12/approval/andes/KB5071007/declined/push"),
        "{keys:?}"
    );
}

#[tokio::test]
async fn poison_records_end_in_the_dead_letter_queue_with_their_reasons_not_as_failures() {
    let p = opened().await;
    let mut e = event("sqs-approval-poison.json");
    p.deliver(Stage::Approval, &mut e).await.unwrap();
    let bodies: Vec<String> = e.records.iter().map(|r| r.body.clone().unwrap()).collect();
    let resp = invoke(&p, e).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");

    let dead = p.queues.dead_letters(Stage::Approval).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.body.clone()).collect::<Vec<_>>(),
        bodies
    );
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert!(
        reasons[0].contains("not a patchflow envelope"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("does not handle `frobnicate_patch` messages"),
        "{}",
        reasons[1]
    );
    assert!(
        reasons[2].contains("`evaluate_patch` payload does not fit its kind"),
        "{}",
        reasons[2]
    );
    assert!(
        reasons[3].contains("schema version 2 is not supported"),
        "{}",
        reasons[3]
    );
    assert!(
        p.take(Stage::Approval).await.unwrap().is_empty(),
        "nothing left to redeliver"
    );
    assert!(p
        .env
        .state
        .list_approvals("2026-12".parse().unwrap())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_poison_record_that_cannot_be_dead_lettered_is_reported_for_redelivery() {
    let p = opened().await;
    // Receipt handles from the fixture, which the queue does not know (as after the visibility
    // timeout passed and the message went to another consumer): the move fails.
    let e = event("sqs-approval-poison.json");
    let expected: Vec<BatchItemFailure> = ids(&e)
        .into_iter()
        .map(|item_identifier| BatchItemFailure { item_identifier })
        .collect();
    let resp = invoke(&p, e).await;
    assert_eq!(resp.batch_item_failures, expected);
    assert!(p
        .queues
        .dead_letters(Stage::Approval)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_evaluation_before_its_cycle_opens_is_handed_back_then_done() {
    let p = Embedded::new(release()).unwrap();
    let mut e = event("sqs-approval-eval.json");
    e.records.truncate(1);
    let id = ids(&e).remove(0);
    p.deliver(Stage::Approval, &mut e).await.unwrap();
    let resp = invoke(&p, e.clone()).await;
    assert_eq!(
        resp.batch_item_failures,
        vec![BatchItemFailure {
            item_identifier: id
        }]
    );
    assert!(p
        .queues
        .dead_letters(Stage::Approval)
        .await
        .unwrap()
        .is_empty());

    p.open_cycle().await.unwrap();
    let resp = invoke(&p, e).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    let approval = p
        .env
        .state
        .get_approval(
            "2026-12".parse().unwrap(),
            &patchflow_core::ids::PatchId::parse("KB5071001").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(approval.map(|a| a.decision), Some(Decision::AutoApproved));
}

#[test]
fn the_fixture_bodies_are_envelopes_of_the_approval_stage() {
    let e = event("sqs-approval-eval.json");
    for r in &e.records {
        let env = Envelope::from_body(r.body.as_deref().unwrap()).unwrap();
        assert!(["evaluate_patch", "review_sweep"].contains(&env.kind.as_str()));
        assert_eq!(r.event_source.as_deref(), Some("aws:sqs"));
        assert!(r
            .event_source_arn
            .as_deref()
            .unwrap()
            .ends_with(":patchflow-approval"));
        assert!(r.attributes.contains_key("ApproximateReceiveCount"));
    }
}

#[test]
fn the_wiring_table_names_this_function_and_its_queue() {
    let w = patchflow_lambda::wiring::function(<ApprovalEval as patchflow_lambda::SqsStage>::NAME)
        .expect("in the wiring table");
    assert_eq!(
        w.consumes,
        Some(<ApprovalEval as patchflow_lambda::SqsStage>::STAGE)
    );
    assert!(!w.scheduled);
}
