//! A cycle's state per client and tier, for people: patched, failed, held, in progress,
//! excluded, tickets, pages and evidence.

use std::collections::BTreeMap;

use patchflow_core::ids::CycleId;
use patchflow_core::ports::state::StateStore;
use patchflow_core::tier::TierState;
use serde::Serialize;

use crate::error::HandlerError;
use crate::records::{self, run_kind, Excluded, Run, RunStatus, EXCLUDED_KIND};

/// One client's part of one tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The client.
    pub client: String,
    /// The tier (`-` for the client's out-of-scope endpoints).
    pub tier: String,
    /// The tier's state.
    pub state: String,
    /// Patched and validated.
    pub patched: usize,
    /// Failed (ticketed, waiting for a root cause or a retry).
    pub failed: usize,
    /// Not patched because the tier is held or blocked, or waiting for an engineer.
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
}

/// A cycle's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The cycle.
    pub cycle: Option<CycleId>,
    /// Rows by client, then tier.
    pub rows: Vec<Row>,
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
            t.patched += r.patched;
            t.failed += r.failed;
            t.held += r.held;
            t.in_progress += r.in_progress;
            t.excluded += r.excluded;
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
    for t in state.list_tiers(cycle).await? {
        let held_tier = matches!(t.state, TierState::Held | TierState::Blocked);
        let runs: Vec<(Run, u64)> = records::list(state, cycle, &run_kind(&t.tier)).await?;
        for (run, _) in runs {
            let row = rows
                .entry((run.client.to_string(), t.tier.to_string()))
                .or_insert_with(|| Row {
                    client: run.client.to_string(),
                    tier: t.tier.to_string(),
                    state: t.state.to_string(),
                    ..Row::default()
                });
            match run.status {
                RunStatus::Validated => row.patched += 1,
                RunStatus::Failed => row.failed += 1,
                RunStatus::AwaitingApproval => row.held += 1,
                _ if held_tier || t.state == TierState::Scheduled => row.held += 1,
                _ => row.in_progress += 1,
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
    Ok(Summary {
        cycle: Some(cycle),
        rows: rows.into_values().collect(),
    })
}
