//! What an endpoint's cycle came to, in the words every count uses: `patchflow status`, the
//! compliance report (HTML, PNG, CSV and `record.json`) and the PSA's ticket all count endpoints
//! by [`categorize`], so their figures agree on the same state.

use serde::{Deserialize, Serialize};

/// The category an endpoint is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Installed, rebooted and validated on the first attempt.
    Patched,
    /// Validated on a later attempt, after a failure was escalated and its root cause recorded.
    PatchedAfterRetry,
    /// Its RMM patch scan showed nothing approved missing: nothing was sent to it.
    UpToDate,
    /// Its latest attempt failed: ticketed, waiting for a root cause and a retry.
    Failed,
    /// A critical server waiting for an engineer's approval before anything installs.
    AwaitingApproval,
    /// Not patched because its tier is held, blocked or not yet deploying.
    Held,
    /// On its way (commands sent, installed, rebooted, not yet validated).
    InProgress,
    /// Out of scope (disabled, client excluded, do not patch).
    Excluded,
}

impl Category {
    /// Every category, in the order reports list them.
    pub const ALL: [Category; 8] = [
        Category::Patched,
        Category::PatchedAfterRetry,
        Category::UpToDate,
        Category::Failed,
        Category::AwaitingApproval,
        Category::Held,
        Category::InProgress,
        Category::Excluded,
    ];

    /// The category's machine name (as in `record.json` and the CSVs).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Patched => "patched",
            Category::PatchedAfterRetry => "patched_after_retry",
            Category::UpToDate => "up_to_date",
            Category::Failed => "failed",
            Category::AwaitingApproval => "awaiting_approval",
            Category::Held => "held",
            Category::InProgress => "in_progress",
            Category::Excluded => "excluded",
        }
    }

    /// The category in words, for people (`patched (after retry)`).
    pub fn label(self) -> &'static str {
        match self {
            Category::Patched => "patched",
            Category::PatchedAfterRetry => "patched (after retry)",
            Category::UpToDate => "up to date",
            Category::Failed => "failed",
            Category::AwaitingApproval => "awaiting approval",
            Category::Held => "held",
            Category::InProgress => "in progress",
            Category::Excluded => "excluded",
        }
    }

    /// Whether the endpoint ends the cycle compliant (patched, after a retry or not, or up to
    /// date).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            Category::Patched | Category::PatchedAfterRetry | Category::UpToDate
        )
    }
}

/// Where an in-scope endpoint's run stands, as the facts [`categorize`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutcomeFacts {
    /// Its scan showed nothing approved missing (nothing sent).
    pub up_to_date: bool,
    /// Its post-reboot checks passed on the current attempt.
    pub validated: bool,
    /// Its current attempt failed.
    pub failed: bool,
    /// A critical server waiting for an engineer's approval.
    pub awaiting_approval: bool,
    /// It failed before (a failure on record, or an attempt after the first).
    pub retried: bool,
    /// Its tier is held, blocked or not yet deploying.
    pub tier_waiting: bool,
}

/// The one definition of an endpoint's category.
pub fn categorize(f: &OutcomeFacts) -> Category {
    if f.up_to_date {
        Category::UpToDate
    } else if f.validated {
        if f.retried {
            Category::PatchedAfterRetry
        } else {
            Category::Patched
        }
    } else if f.failed {
        Category::Failed
    } else if f.awaiting_approval {
        Category::AwaitingApproval
    } else if f.tier_waiting {
        Category::Held
    } else {
        Category::InProgress
    }
}

/// Endpoint counts per category (the report's chart, the status table, the roll-up's tiers).
/// Every field defaults to 0, so counts written before a category existed still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    /// [`Category::Patched`].
    #[serde(default)]
    pub patched: u64,
    /// [`Category::PatchedAfterRetry`].
    #[serde(default)]
    pub patched_after_retry: u64,
    /// [`Category::UpToDate`].
    #[serde(default)]
    pub up_to_date: u64,
    /// [`Category::Failed`].
    #[serde(default)]
    pub failed: u64,
    /// [`Category::AwaitingApproval`].
    #[serde(default)]
    pub awaiting_approval: u64,
    /// [`Category::Held`].
    #[serde(default)]
    pub held: u64,
    /// [`Category::InProgress`].
    #[serde(default)]
    pub in_progress: u64,
    /// [`Category::Excluded`].
    #[serde(default)]
    pub excluded: u64,
}

impl Counts {
    fn slot(&mut self, c: Category) -> &mut u64 {
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

    /// Counts one endpoint.
    pub fn add(&mut self, c: Category) {
        let slot = self.slot(c);
        *slot = slot.saturating_add(1);
    }

    /// The count of a category.
    pub fn get(&self, c: Category) -> u64 {
        let mut copy = *self;
        *copy.slot(c)
    }

    /// The sum of two counts, category by category.
    pub fn plus(&self, other: &Counts) -> Counts {
        let mut out = *self;
        for c in Category::ALL {
            let slot = out.slot(c);
            *slot = slot.saturating_add(other.get(c));
        }
        out
    }

    /// Every in-scope endpoint (all but the excluded).
    pub fn in_scope(&self) -> u64 {
        Category::ALL
            .iter()
            .filter(|c| **c != Category::Excluded)
            .fold(0u64, |n, c| n.saturating_add(self.get(*c)))
    }

    /// The compliant endpoints: patched (after a retry or not) and up to date.
    pub fn done(&self) -> u64 {
        Category::ALL
            .iter()
            .filter(|c| c.is_done())
            .fold(0u64, |n, c| n.saturating_add(self.get(*c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_endpoint_validated_since_is_patched_after_retry_not_failed() {
        let f = OutcomeFacts {
            validated: true,
            retried: true,
            ..OutcomeFacts::default()
        };
        assert_eq!(categorize(&f), Category::PatchedAfterRetry);
        assert_eq!(Category::PatchedAfterRetry.label(), "patched (after retry)");
        let first = OutcomeFacts {
            validated: true,
            ..OutcomeFacts::default()
        };
        assert_eq!(categorize(&first), Category::Patched);
    }

    #[test]
    fn up_to_date_wins_and_a_failed_attempt_counts_failed_until_validated() {
        let f = OutcomeFacts {
            up_to_date: true,
            validated: true,
            ..OutcomeFacts::default()
        };
        assert_eq!(categorize(&f), Category::UpToDate);
        let failed = OutcomeFacts {
            failed: true,
            retried: true,
            tier_waiting: true,
            ..OutcomeFacts::default()
        };
        assert_eq!(categorize(&failed), Category::Failed);
        let waiting = OutcomeFacts {
            awaiting_approval: true,
            tier_waiting: true,
            ..OutcomeFacts::default()
        };
        assert_eq!(categorize(&waiting), Category::AwaitingApproval);
        let held = OutcomeFacts {
            tier_waiting: true,
            ..OutcomeFacts::default()
        };
        assert_eq!(categorize(&held), Category::Held);
        assert_eq!(categorize(&OutcomeFacts::default()), Category::InProgress);
    }

    #[test]
    fn counts_add_sum_and_read_back_records_without_the_newer_categories() {
        let mut c = Counts::default();
        for cat in Category::ALL {
            c.add(cat);
        }
        c.add(Category::PatchedAfterRetry);
        assert_eq!(c.get(Category::PatchedAfterRetry), 2);
        assert_eq!(c.in_scope(), 8);
        assert_eq!(c.done(), 4);
        assert_eq!(c.plus(&c).get(Category::Excluded), 2);
        let old: Counts =
            serde_json::from_str(r#"{"patched":3,"failed":1,"held":0,"excluded":2}"#).unwrap();
        assert_eq!(old.patched, 3);
        assert_eq!(old.patched_after_retry, 0);
        assert_eq!(old.excluded, 2);
    }
}
