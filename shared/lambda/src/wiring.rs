//! How the six functions are wired, as the code sees it: what triggers each, which stage queues
//! it sends to, which variables it cannot start without. `infra/template.yaml` must agree (a
//! test in `tests/e2e/infra.rs` holds it to this table, and a whole simulated cycle holds this
//! table to what the handlers really send); each function's own tests check its entry.

use crate::config::{
    dlq_url_variable, queue_url_variable, CATALOG_PATH, INVENTORY_PATH, PAGER_SECRET_ARN,
    PAGER_TOPIC_ARN, PSA_SECRET_ARN, REQUIRED, RMM_SECRET_ARN,
};
use patchflow_core::ports::queue::Stage;

/// One function's wiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wiring {
    /// The function (its package is `patchflow-{name}`, its binary `name`).
    pub name: &'static str,
    /// The stage queue whose event source invokes it.
    pub consumes: Option<Stage>,
    /// Whether a schedule invokes it.
    pub scheduled: bool,
    /// The stage queues it sends to (besides its own queue's dead-letter queue).
    pub sends: &'static [Stage],
    /// Variables it needs beyond [`REQUIRED`].
    pub requires: &'static [&'static str],
    /// Whether it writes evidence to S3.
    pub writes_evidence: bool,
    /// The systems around patchflow it talks to (and whose credentials it alone may read).
    pub talks_to: &'static [System],
}

/// A system around patchflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    /// The RMM (ConnectWise Automate): commands, reports, the inventory.
    Rmm,
    /// The PSA (ConnectWise PSA): tickets.
    Psa,
    /// On-call paging (PagerDuty, or an SNS topic).
    Pager,
}

impl System {
    /// The variable naming its credentials' secret.
    pub fn secret_variable(self) -> &'static str {
        match self {
            System::Rmm => RMM_SECRET_ARN,
            System::Psa => PSA_SECRET_ARN,
            System::Pager => PAGER_SECRET_ARN,
        }
    }

    /// Every variable that locates it, its secret included.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            System::Rmm => &[RMM_SECRET_ARN],
            System::Psa => &[PSA_SECRET_ARN],
            System::Pager => &[PAGER_SECRET_ARN, PAGER_TOPIC_ARN],
        }
    }
}

impl Wiring {
    /// Every variable it cannot start without: [`REQUIRED`], its own, and the URL of each
    /// stage queue it sends to or consumes (with its own queue's dead-letter queue).
    pub fn required(&self) -> impl Iterator<Item = &'static str> + '_ {
        REQUIRED
            .iter()
            .chain(self.requires)
            .copied()
            .chain(self.queue_variables())
    }

    /// The variables of the stage queues' URLs it needs, in stage order.
    pub fn queue_variables(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for stage in Stage::ALL {
            if self.sends.contains(&stage) || self.consumes == Some(stage) {
                out.push(queue_url_variable(stage));
            }
            if self.consumes == Some(stage) {
                out.push(dlq_url_variable(stage));
            }
        }
        out
    }
}

/// The six functions.
pub const FUNCTIONS: [Wiring; 6] = [
    Wiring {
        name: "inventory-sync",
        consumes: None,
        scheduled: true,
        // The cycle's opening: one message per client to ring promotion, which plans it.
        sends: &[Stage::Rollout],
        requires: &[INVENTORY_PATH, CATALOG_PATH],
        writes_evidence: false,
        talks_to: &[System::Rmm],
    },
    Wiring {
        name: "approval-eval",
        consumes: Some(Stage::Approval),
        scheduled: false,
        // Each decision fans out to one message per client and scope shard on its own queue.
        sends: &[Stage::Approval],
        requires: &[],
        writes_evidence: false,
        // The RMM's approval policy (written and read back); overdue reviews ticketed.
        talks_to: &[System::Rmm, System::Psa],
    },
    Wiring {
        name: "ring-promotion",
        consumes: Some(Stage::Rollout),
        scheduled: true,
        // A pilot that turns unhealthy during its soak is escalated like a failed install.
        sends: &[
            Stage::Approval,
            Stage::Rollout,
            Stage::Schedule,
            Stage::Failure,
            Stage::Evidence,
        ],
        requires: &[],
        writes_evidence: false,
        // The soak's daily health re-checks of the pilot endpoints; the compliance ticket
        // opened when a tier deploys.
        talks_to: &[System::Rmm, System::Psa],
    },
    Wiring {
        name: "reboot-scheduler",
        consumes: Some(Stage::Schedule),
        scheduled: false,
        // A full page of due runs sends the next page, a long change list its later parts, on
        // its own queue.
        sends: &[Stage::Schedule, Stage::Failure],
        requires: &[],
        writes_evidence: false,
        // Commands and reports; the compliance ticket's notes as its tier moves on.
        talks_to: &[System::Rmm, System::Psa],
    },
    Wiring {
        name: "failure-escalation",
        consumes: Some(Stage::Failure),
        scheduled: false,
        sends: &[],
        requires: &[],
        writes_evidence: false,
        // The ticket and the page; the failure's next retry window written to the RMM.
        talks_to: &[System::Rmm, System::Psa, System::Pager],
    },
    Wiring {
        name: "evidence-archiver",
        consumes: Some(Stage::Evidence),
        scheduled: false,
        // A tier's archive fans out to one part per client, and the roll-up to one message per
        // client, on its own queue.
        sends: &[Stage::Evidence],
        requires: &[],
        writes_evidence: true,
        talks_to: &[System::Rmm, System::Psa, System::Pager],
    },
];

/// A function's wiring by name.
pub fn function(name: &str) -> Option<&'static Wiring> {
    FUNCTIONS.iter().find(|w| w.name == name)
}

/// The function whose event source a stage's queue feeds.
pub fn consumer_of(stage: Stage) -> Option<&'static Wiring> {
    FUNCTIONS.iter().find(|w| w.consumes == Some(stage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_exactly_one_consumer() {
        for stage in Stage::ALL {
            let n = FUNCTIONS
                .iter()
                .filter(|w| w.consumes == Some(stage))
                .count();
            assert_eq!(n, 1, "{stage}");
        }
    }
}
