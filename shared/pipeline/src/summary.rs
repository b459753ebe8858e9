//! A cycle's state per client and tier, for people: each endpoint counted in its category (the
//! one definition the compliance report uses too, [`patchflow_core::rules::outcome`]: patched,
//! patched after retry, up to date, failed, awaiting approval, held, in progress, excluded),
//! tickets, pages and evidence, and each tier's last decision (a promotion's wait, a closure
//! requirement that failed).

use std::collections::BTreeMap;

use patchflow_core::ids::CycleId;
use patchflow_core::ports::state::StateStore;
use patchflow_core::rules::outcome::{categorize, Category, Counts, OutcomeFacts};
use patchflow_core::tier::TierState;
use serde::Serialize;

use crate::error::HandlerError;
use crate::records::{self, Excluded, Run, RunStatus, TierPlan, EXCLUDED_KIND, TIER_KIND};

/// A run's category, by the definition the compliance report uses: its tier's state says
/// whether a run not yet on its way is held (the tier held, blocked or not yet deploying).
pub fn run_category(run: &Run, tier: TierState) -> Category {
    categorize(&OutcomeFacts {
        up_to_date: run.up_to_date,
        validated: run.status == RunStatus::Validated,
        failed: run.status == RunStatus::Failed,
        awaiting_approval: run.status == RunStatus::AwaitingApproval,
        retried: !run.failures.is_empty() || run.attempt > 0,
        tier_waiting: matches!(
            tier,
            TierState::Held | TierState::Blocked | TierState::Scheduled
        ),
    })
}

/// One client's part of one tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The client.
    pub client: String,
    /// The tier (`-` for the client's out-of-scope endpoints).
    pub tier: String,
    /// The tier's state.
    pub state: String,
    /// Patched and validated on the first attempt.
    pub patched: usize,
    /// Patched and validated on a later attempt, after a failure and its root cause.
    pub patched_after_retry: usize,
    /// Nothing approved missing (nothing sent).
    pub up_to_date: usize,
    /// Failed (ticketed, waiting for a root cause or a retry).
    pub failed: usize,
    /// Critical servers waiting for an engineer's approval.
    pub awaiting_approval: usize,
    /// Not patched because the tier is held, blocked or not yet deploying.
    pub held: usize,
    /// Still on their way.
    pub in_progress: usize,
    /// Out of scope (disabled, client-excluded, do-not-patch).
    pub excluded: usize,
    /// Failure tickets opened.
    pub tickets: usize,
    /// On-call pages.
    pub pages: usize,
    /// Evidence objects written.
    pub evidence: usize,
    /// The tier's last decision in words (a promotion's wait, a closure requirement that
    /// failed); empty when there is none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub decision: String,
}

impl Row {
    fn slot(&mut self, c: Category) -> &mut usize {
        match c {
            Category::Patched => &mut self.patched,
            Category::PatchedAfterRetry => &mut self.patched_after_retry,
            Category::UpToDate => &mut self.up_to_date,
            Category::Failed => &mut self.failed,
            Category::AwaitingApproval => &mut self.awaiting_approval,
            Category::Held => &mut self.held,
            Category::InProgress => &mut self.in_progress,
            Category::Excluded => &mut self.excluded,
        }
    }

    /// The count of one category.
    pub fn get(&self, c: Category) -> usize {
        match c {
            Category::Patched => self.patched,
            Category::PatchedAfterRetry => self.patched_after_retry,
            Category::UpToDate => self.up_to_date,
            Category::Failed => self.failed,
            Category::AwaitingApproval => self.awaiting_approval,
            Category::Held => self.held,
            Category::InProgress => self.in_progress,
            Category::Excluded => self.excluded,
        }
    }

    /// The row's endpoint counts, as the compliance report counts them.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for cat in Category::ALL {
            for _ in 0..self.get(cat) {
                c.add(cat);
            }
        }
        c
    }

    /// The in-scope endpoints counted (every category but excluded).
    pub fn in_scope(&self) -> usize {
        Category::ALL
            .iter()
            .filter(|c| **c != Category::Excluded)
            .map(|c| self.get(*c))
            .sum()
    }
}

/// A cycle's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The cycle.
    pub cycle: Option<CycleId>,
    /// Rows by client, then tier.
    pub rows: Vec<Row>,
    /// The cycle's update batches: each one's patches, tiers and state (empty before the
    /// first deployment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<crate::batches::BatchStatus>,
}

impl Summary {
    /// The totals over every row.
    pub fn total(&self) -> Row {
        let mut t = Row {
            client: "total".into(),
            tier: String::new(),
            state: String::new(),
            ..Row::default()
        };
        for r in &self.rows {
            for c in Category::ALL {
                *t.slot(c) += r.get(c);
            }
            t.tickets += r.tickets;
            t.pages += r.pages;
            t.evidence += r.evidence;
        }
        t
    }
}

/// Summarizes a cycle.
pub async fn summarize(state: &impl StateStore, cycle: CycleId) -> Result<Summary, HandlerError> {
    let Some(doc) = records::cycle_doc(state, cycle).await? else {
        return Ok(Summary::default());
    };
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    let failures = state.list_failures(cycle).await?;
    let evidence = state.list_evidence(cycle).await?;
    let decisions: BTreeMap<String, String> = records::list::<TierPlan>(state, cycle, TIER_KIND)
        .await?
        .into_iter()
        .filter_map(|(p, _)| Some((p.tier.to_string(), p.last_decision?)))
        .collect();
    for t in state.list_tiers(cycle).await? {
        let decision = match t.state {
            TierState::Closed => String::new(),
            _ => decisions.get(t.tier.as_str()).cloned().unwrap_or_default(),
        };
        // A client at a time: what is held is one client's runs and the rows.
        let parts = records::RunParts::of(state, cycle, &t.tier).await?;
        for i in 0..parts.len() {
            for (run, _) in parts.runs(state, cycle, &t.tier, i).await? {
                let row = rows
                    .entry((run.client.to_string(), t.tier.to_string()))
                    .or_insert_with(|| Row {
                        client: run.client.to_string(),
                        tier: t.tier.to_string(),
                        state: t.state.to_string(),
                        decision: decision.clone(),
                        ..Row::default()
                    });
                *row.slot(run_category(&run, t.state)) += 1;
            }
        }
    }
    for f in &failures {
        if let Some(row) = rows.get_mut(&(f.client.to_string(), f.tier.to_string())) {
            row.tickets += usize::from(f.ticket.is_some());
            row.pages += usize::from(f.paged);
        }
    }
    for e in &evidence {
        if let Some(row) = rows.get_mut(&(e.key.client().to_owned(), e.key.tier().to_owned())) {
            row.evidence += 1;
        }
    }
    for client in &doc.clients {
        let n = records::load::<Vec<Excluded>>(state, cycle, EXCLUDED_KIND, &client.id)
            .await?
            .map_or(0, |(list, _)| list.len());
        if n > 0 {
            rows.insert(
                (client.id.clone(), "~".into()),
                Row {
                    client: client.id.clone(),
                    tier: "-".into(),
                    state: "out of scope".into(),
                    excluded: n,
                    ..Row::default()
                },
            );
        }
    }
    let tiers = state.list_tiers(cycle).await?;
    Ok(Summary {
        cycle: Some(cycle),
        rows: rows.into_values().collect(),
        batches: crate::batches::status(state, cycle, &tiers).await?,
    })
}
