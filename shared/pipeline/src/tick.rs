//! The hourly tick (ring-promotion's schedule): for a cycle still opening, its coordinator
//! (`opening`); for every open cycle, a promotion decision for
//! each scheduled tier, an hour's work for each deploying one, the archive of each validated one
//! (a validated pilot still soaking gets its daily soak re-check instead, keyed by day, and is
//! archived once its soak has passed), and once a day the sweep for overdue reviews. Every
//! message is keyed by its hour (or day), so a tick that runs twice sends nothing twice; a
//! message of the day goes every [`DAY_MESSAGE_HOURS`] hours until its key is done (one read of
//! those keys), then not again that day.

use chrono::{DateTime, Timelike, Utc};
use patchflow_core::ids::ClientId;
use patchflow_core::ports::queue::{QueueSender, Stage};
use patchflow_core::ports::state::{DocStore, IdempotencyStore, TierId, TierStore};
use patchflow_core::tier::TierState;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::env::Ports;
use crate::error::HandlerError;
use crate::messages::{
    ArchiveTier, CheckSoak, ClientChanges, Message, OpenBatch, OpenCycle, PromoteTier, ReviewSweep,
    TierTick,
};
use crate::records::{self, cycles_around, CycleDoc};
use crate::rollout::SoakTick;
use crate::schedule::{CHANGES_LOOKBACK, WAITING_PHASES};

/// What a tick sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Open cycles seen.
    pub cycles: usize,
    /// Messages sent.
    pub messages: usize,
}

/// Every how many hours (UTC, from midnight) the tick sends the day's messages not handled yet:
/// the first goes in the day's first tick, a lost one again within six hours, and their keys are
/// read four times a day rather than every hour.
pub const DAY_MESSAGE_HOURS: u32 = 6;

/// Runs the tick at `now`.
pub async fn tick<X: Ports>(x: &X, now: DateTime<Utc>) -> Result<TickReport, HandlerError> {
    let env = x.env();
    let hour = now.format("%Y%m%dT%H").to_string();
    let mut report = TickReport::default();
    for cycle in cycles_around(now) {
        let Some(cycle_doc) = records::cycle_doc(&env.state, cycle).await? else {
            // An opening not finished yet (its last part's request to finish it lost, or a
            // part not written): its coordinator, each hour until the cycle is open.
            if crate::opening::is_opening(&env.state, cycle).await? {
                let open = OpenCycle { client: None }.envelope(
                    cycle,
                    format!("{cycle}/open/{hour}"),
                    None,
                );
                env.queues
                    .send_batch(OpenCycle::STAGE, std::slice::from_ref(&open))
                    .await?;
                report.messages += 1;
            }
            continue;
        };
        report.cycles += 1;
        let mut by_stage: Vec<(Stage, Vec<_>)> = Vec::new();
        let mut push = |stage: Stage, e| match by_stage.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, v)) => v.push(e),
            None => by_stage.push((stage, vec![e])),
        };
        let day = now.date_naive();
        // The day's messages: sent every DAY_MESSAGE_HOURS until handled (a lost one goes
        // again within those hours), not every hour of the day.
        let mut daily = vec![(
            ReviewSweep::STAGE,
            ReviewSweep { day }.envelope(cycle, format!("{cycle}/reviews/{day}"), None),
        )];
        // Once a tier has deployed, daily: an approval made after it that no batch took yet
        // (its approver's request lost) gets its batch (crate::batches).
        if crate::batches::first_sealed(&env.state, cycle).await? {
            daily.push((
                OpenBatch::STAGE,
                OpenBatch { patch: None }.envelope(cycle, format!("{cycle}/batches/{day}"), None),
            ));
        }
        let mut waiting = Vec::new();
        for t in env.state.list_tiers(cycle).await? {
            let tier = Some(&t.tier);
            if matches!(
                t.state,
                TierState::Deploying | TierState::Validating | TierState::Held | TierState::Blocked
            ) && env
                .state
                .any_doc_in_phase(cycle, &records::run_kind(&t.tier), WAITING_PHASES)
                .await?
            {
                waiting.push(t.tier.clone());
            }
            match t.state {
                // Before its soak gate nothing of a tier deploys: its decision (why it waits) is
                // made once a day, not every hour.
                TierState::Scheduled => {
                    let before_gate = t.not_before.is_some_and(|gate| now < gate);
                    let when = if before_gate {
                        day.to_string()
                    } else {
                        hour.clone()
                    };
                    let message = PromoteTier {
                        tier: t.tier.clone(),
                    }
                    .envelope(
                        cycle,
                        format!("{cycle}/promote/{}/{when}", t.tier),
                        tier,
                    );
                    if before_gate {
                        daily.push((PromoteTier::STAGE, message));
                    } else {
                        push(PromoteTier::STAGE, message);
                    }
                }
                TierState::Deploying
                | TierState::Validating
                | TierState::Held
                | TierState::Blocked => push(
                    TierTick::STAGE,
                    TierTick {
                        tier: t.tier.clone(),
                        after: None,
                    }
                    .envelope(
                        cycle,
                        format!("{cycle}/tick/{}/{hour}", t.tier),
                        tier,
                    ),
                ),
                TierState::Validated => {
                    match crate::rollout::tick_soak(x, &cycle_doc, &t.tier, now).await? {
                        SoakTick::CheckedToday => {}
                        SoakTick::Check => daily.push((
                            CheckSoak::STAGE,
                            CheckSoak {
                                tier: t.tier.clone(),
                                day,
                            }
                            .envelope(
                                cycle,
                                format!("{cycle}/soak/{}/{day}", t.tier),
                                tier,
                            ),
                        )),
                        SoakTick::Archive => push(
                            ArchiveTier::STAGE,
                            ArchiveTier {
                                tier: t.tier.clone(),
                                client: None,
                            }
                            .envelope(
                                cycle,
                                format!("{cycle}/archive/{}/{hour}", t.tier),
                                tier,
                            ),
                        ),
                    }
                }
                TierState::Closed => {}
            }
        }
        // Each client with runs waiting for an RMM report: one read of what changed on its
        // computers, for all its tiers.
        let since = now - CHANGES_LOOKBACK;
        for (client, tiers) in
            waiting_by_client(&env.state, &cycle_doc, waiting, since, now).await?
        {
            push(
                ClientChanges::STAGE,
                ClientChanges {
                    client: client.clone(),
                    tiers,
                    since,
                    endpoints: Vec::new(),
                }
                .envelope(cycle, format!("{cycle}/changes/{client}/{hour}"), None),
            );
        }
        if now.hour() % DAY_MESSAGE_HOURS == 0 && !daily.is_empty() {
            let keys: Vec<String> = daily
                .iter()
                .map(|(_, e)| e.idempotency_key.clone())
                .collect();
            let done = env.state.done(&keys, now).await?;
            for (stage, e) in daily {
                if done.binary_search(&e.idempotency_key).is_err() {
                    push(stage, e);
                }
            }
        }
        for (stage, messages) in &by_stage {
            report.messages += messages.len();
            env.queues.send_batch(*stage, messages).await?;
        }
    }
    Ok(report)
}

/// The tiers with runs waiting for an RMM report, by client: the clients watched in each in the
/// hour from `since` to `now` ([`crate::watch`]: those whose runs there can be reported on then),
/// one listing per waiting tier (at most its clients), never its runs.
async fn waiting_by_client(
    state: &impl DocStore,
    cycle_doc: &CycleDoc,
    waiting: Vec<TierId>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<BTreeMap<ClientId, Vec<TierId>>, HandlerError> {
    let mut out: BTreeMap<ClientId, Vec<TierId>> = BTreeMap::new();
    for tier in waiting {
        for client in crate::watch::watched(state, cycle_doc.cycle, &tier, since, now).await? {
            out.entry(client).or_default().push(tier.clone());
        }
    }
    Ok(out)
}
