//! On-call paging as a port (PagerDuty Events v2, or an SNS topic).

use std::future::Future;

use crate::ports::PortError;

/// Pages the on-call engineer.
///
/// Error contract: `Transient` for the pager's passing failures, `Permanent` for a refused
/// event. A trigger with a dedup key already open does not page twice.
pub trait Pager: Send + Sync {
    /// Pages, deduplicated by `dedup_key`.
    fn trigger(
        &self,
        dedup_key: &str,
        summary: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Resolves the page of `dedup_key`, if any.
    fn resolve(&self, dedup_key: &str) -> impl Future<Output = Result<(), PortError>> + Send;
}
