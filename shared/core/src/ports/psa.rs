//! The PSA (ConnectWise Manage) as a port: tickets for failures, overdue reviews and each tier's
//! compliance record.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::ids::ClientId;
use crate::model::Criticality;
use crate::ports::PortError;

/// A ticket to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTicket {
    /// patchflow's reference for it (e.g. `2026-12/failure/ws-001.install.0`): opening the same
    /// reference twice returns the first ticket.
    pub external_ref: String,
    /// The client (the PSA company).
    pub client: ClientId,
    /// P1-P3.
    pub priority: Criticality,
    /// One line.
    pub summary: String,
    /// The details.
    pub description: String,
}

/// Tickets in the PSA.
///
/// Error contract: `Transient` for the PSA's passing failures, `Permanent` for a refused
/// request, `NotFound` for an unknown ticket.
pub trait Psa: Send + Sync {
    /// Opens a ticket, or returns the one already open under the same external reference.
    fn open_ticket(
        &self,
        ticket: &NewTicket,
    ) -> impl Future<Output = Result<String, PortError>> + Send;

    /// Adds a note, once per `note_key` (a redelivered message does not add it again).
    fn add_note(
        &self,
        ticket: &str,
        note_key: &str,
        text: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Closes a ticket (closing a closed ticket is not an error).
    fn close_ticket(&self, ticket: &str) -> impl Future<Output = Result<(), PortError>> + Send;
}
