use std::borrow::Cow;

use chrono::TimeZone;
use patchflow_core::rules::approval::{Approval, Decision};
use patchflow_core::trace::Node;
use patchflow_local::state::SqliteState;

use super::*;

fn cycle() -> CycleId {
    "2026-12".parse().unwrap()
}

fn tier(s: &str) -> TierId {
    TierId::parse(s).unwrap()
}

fn patch(s: &str) -> PatchId {
    PatchId::parse(s).unwrap()
}

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, day, 12, 0, 0).unwrap()
}

async fn decide(state: &SqliteState, id: &str, decision: Decision) {
    let a = Approval {
        patch: patch(id),
        decision,
        reason: Cow::Borrowed("test"),
        node: Node::ManualApproval,
        review_due: None,
        target_by: None,
        sign_off: None,
        recorded_at: Some(at(8)),
    };
    let before = state.get_approval(cycle(), &a.patch).await.unwrap();
    state
        .put_approval(cycle(), &a, before.map(|b| b.decision))
        .await
        .unwrap();
}

#[test]
fn a_later_batch_tier_is_its_cycle_tier_with_the_batch_number_and_keys_apart() {
    let base = tier("servers.contoso.pilot");
    assert_eq!(batch_of(&base), 1);
    assert_eq!(batch_tier(&base, 1).unwrap(), base);
    let b2 = batch_tier(&base, 2).unwrap();
    assert_eq!(b2.as_str(), "servers.contoso.pilot.b2");
    assert_eq!(batch_of(&b2), 2);
    assert_eq!(batch_of(&tier("workstations.production.b12")), 12);
    // Nothing else looks like a batch: a client slug ending in b-digits keeps its wave last.
    assert_eq!(batch_of(&tier("servers.b2.production")), 1);
    assert_eq!(batch_of(&tier("workstations.pilot.b1")), 1);
    // A longest client slug (48 characters and a hash) still makes a valid tier id.
    let long = tier(&format!("servers.{}-abcdef.production", "x".repeat(48)));
    assert!(batch_tier(&long, 999).is_ok());
    // An endpoint's runs in two batches never share a key.
    let e = EndpointId::parse("ws-1").unwrap();
    assert_eq!(deploy_key(cycle(), &base, &e, 0), "2026-12/deploy/ws-1/0");
    assert_eq!(deploy_key(cycle(), &b2, &e, 1), "2026-12/deploy/ws-1/b2/1");
    assert_eq!(key_segment(&b2), "b2/");
}

#[tokio::test]
async fn an_approval_before_the_first_deployment_is_batch_1_and_one_after_it_is_not() {
    let state = SqliteState::in_memory().unwrap();
    decide(&state, "KB1", Decision::AutoApproved).await;
    decide(&state, "KB9", Decision::Declined).await;
    // An engineer approves KB2 before anything deployed: batch 1 takes it (and once only).
    decide(&state, "KB2", Decision::Approved).await;
    assert_eq!(
        join_first(&state, cycle(), &patch("KB2")).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        join_first(&state, cycle(), &patch("KB2")).await.unwrap(),
        Some(1)
    );
    // The first deployment seals batch 1: every patch deploying then, nothing declined.
    let sealed = seal_first(&state, cycle(), at(9)).await.unwrap();
    assert_eq!(sealed.patches, vec![patch("KB1"), patch("KB2")]);
    assert_eq!(sealed.sealed_at, Some(at(9)));
    // Sealing again (a second deployment, a redelivery) changes nothing.
    decide(&state, "KB3", Decision::Approved).await;
    assert_eq!(seal_first(&state, cycle(), at(10)).await.unwrap(), sealed);
    // KB3 approved after it: not batch 1; KB1, already in it, stays there.
    assert_eq!(
        join_first(&state, cycle(), &patch("KB3")).await.unwrap(),
        None
    );
    assert_eq!(
        join_first(&state, cycle(), &patch("KB1")).await.unwrap(),
        Some(1)
    );
    // A cycle tier's installs carry batch 1's approved patches only.
    let approved = vec![patch("KB1"), patch("KB2"), patch("KB3")];
    assert_eq!(
        tier_patches(
            &state,
            cycle(),
            &tier("workstations.production"),
            approved.clone()
        )
        .await
        .unwrap(),
        vec![patch("KB1"), patch("KB2")]
    );
    // A later batch not recorded is an error, never every approved patch.
    assert!(
        tier_patches(&state, cycle(), &tier("workstations.pilot.b2"), approved)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_approval_racing_the_first_deployment_lands_in_batch_1_or_after_it_never_in_neither() {
    // The approval stored before the seal, its batch write after: the seal listed it.
    let state = SqliteState::in_memory().unwrap();
    decide(&state, "KB2", Decision::Approved).await;
    seal_first(&state, cycle(), at(9)).await.unwrap();
    assert_eq!(
        join_first(&state, cycle(), &patch("KB2")).await.unwrap(),
        Some(1)
    );
    // The engineer's batch write first, the approval not stored yet when the seal lists them:
    // the seal keeps what the engineer put into batch 1.
    let state = SqliteState::in_memory().unwrap();
    assert_eq!(
        join_first(&state, cycle(), &patch("KB2")).await.unwrap(),
        Some(1)
    );
    let sealed = seal_first(&state, cycle(), at(9)).await.unwrap();
    assert_eq!(sealed.patches, vec![patch("KB2")]);
    // Before any deployment, a cycle tier's installs carry every approved patch.
    let state = SqliteState::in_memory().unwrap();
    assert_eq!(
        tier_patches(
            &state,
            cycle(),
            &tier("workstations.pilot"),
            vec![patch("KB7")]
        )
        .await
        .unwrap(),
        vec![patch("KB7")]
    );
}
