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

type TestEnv = crate::env::Env<
    SqliteState,
    patchflow_local::queue::SqliteQueues,
    patchflow_local::evidence::FsEvidenceStore,
    patchflow_sim::connectors::SimRmm<patchflow_core::ports::clock::ManualClock>,
    patchflow_sim::connectors::SimPsa,
    patchflow_sim::connectors::SimPager,
>;

fn test_env(dir: &std::path::Path) -> TestEnv {
    let clock = std::sync::Arc::new(patchflow_core::ports::clock::ManualClock::new(at(9)));
    crate::env::Env {
        state: SqliteState::in_memory().unwrap(),
        queues: patchflow_local::queue::SqliteQueues::in_memory(clock.clone(), 5).unwrap(),
        evidence: patchflow_local::evidence::FsEvidenceStore::open(dir).unwrap(),
        rmm: patchflow_sim::connectors::SimRmm::new(
            patchflow_sim::connectors::Outcomes {
                seed: 1,
                failure_rate: 0.0,
            },
            clock,
        ),
        psa: patchflow_sim::connectors::SimPsa::default(),
        pager: patchflow_sim::connectors::SimPager::default(),
        policy: patchflow_core::policy::Policy::default(),
        settings: crate::env::Settings::default(),
    }
}

async fn engineer_decides(state: &SqliteState, id: &str, decision: Decision, day: u32) {
    let before = state.get_approval(cycle(), &patch(id)).await.unwrap();
    let a = Approval {
        patch: patch(id),
        decision,
        reason: Cow::Borrowed("test"),
        node: Node::ManualApproval,
        review_due: None,
        target_by: None,
        sign_off: Some(patchflow_core::rules::approval::SignOff {
            engineer: patchflow_core::ids::Engineer::parse("alice").unwrap(),
            reason_code: patchflow_core::rules::approval::ReasonCode::parse("cab_approved")
                .unwrap(),
            at: at(day),
        }),
        recorded_at: Some(at(8)),
    };
    state
        .put_approval(cycle(), &a, before.map(|b| b.decision))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_batch_patch_approved_again_after_a_decline_is_written_again_for_its_deployed_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(dir.path());
    let state = &env.state;
    decide(state, "KB1", Decision::AutoApproved).await;
    seal_first(state, cycle(), at(9)).await.unwrap();
    let acme = ClientId::parse("acme").unwrap();
    let globex = ClientId::parse("globex").unwrap();
    let scope = |c: &ClientId| records::ScopeRef {
        client: c.clone(),
        shards: 1,
    };
    let pilot = tier("workstations.pilot.b2");
    let production = tier("workstations.production.b2");
    let b2 = Batch {
        batch: 2,
        patches: vec![patch("KB5")],
        sealed_at: Some(at(10)),
        tiers: Some(vec![
            BatchTier {
                tier: pilot.clone(),
                scopes: vec![scope(&acme)],
            },
            BatchTier {
                tier: production.clone(),
                scopes: vec![scope(&acme), scope(&globex)],
            },
        ]),
    };
    records::save(state, cycle(), BATCH_KIND, "2", &b2, None)
        .await
        .unwrap();
    for (t, s) in [
        (&pilot, TierState::Validated),
        (&production, TierState::Scheduled),
    ] {
        state
            .create_tier(&TierRecord {
                cycle: cycle(),
                tier: t.clone(),
                state: s,
                version: 0,
                endpoints: Vec::new(),
                updated_at: at(10),
                not_before: None,
            })
            .await
            .unwrap();
    }
    let all = records::list(state, cycle(), BATCH_KIND).await.unwrap();
    // Approved, then declined: nothing to write again while it is declined.
    engineer_decides(state, "KB5", Decision::Approved, 10).await;
    engineer_decides(state, "KB5", Decision::Declined, 11).await;
    assert_eq!(
        redecided(&env, cycle(), &all, &patch("KB5")).await.unwrap(),
        Some(0)
    );
    // Approved again: written for the deployed pilot's endpoints, not for production, which
    // is still scheduled (its deploy writes it), under keys of the new decision.
    engineer_decides(state, "KB5", Decision::Approved, 12).await;
    assert_eq!(
        redecided(&env, cycle(), &all, &patch("KB5")).await.unwrap(),
        Some(1)
    );
    let clients: BTreeSet<ClientId> = [acme.clone(), globex.clone()].into();
    let first = tier_pushes(&env, cycle(), &b2, &pilot, &clients, &[patch("KB5")])
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        first[0].idempotency_key.contains("approved@20261212"),
        "{}",
        first[0].idempotency_key
    );
    assert!(first[0].idempotency_key.contains("workstations.pilot.b2"));
    // A later re-approval is another key, never deduplicated away by the earlier one.
    engineer_decides(state, "KB5", Decision::Declined, 13).await;
    engineer_decides(state, "KB5", Decision::Approved, 14).await;
    let again = tier_pushes(&env, cycle(), &b2, &pilot, &clients, &[patch("KB5")])
        .await
        .unwrap();
    assert_ne!(again[0].idempotency_key, first[0].idempotency_key);
    // A patch of no opened later batch: nothing of this.
    assert_eq!(
        redecided(&env, cycle(), &all, &patch("KB1")).await.unwrap(),
        None
    );
}
