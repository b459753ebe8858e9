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

/// A file to attach to a ticket (the seed's "screenshot of patch compliance report attached").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its title in the PSA, unique per ticket: attaching a title the ticket already has
    /// attaches nothing (e.g. `patchflow 2026-12 pilot-servers acme compliance summary`).
    pub title: String,
    /// The file's name (e.g. `summary.png`).
    pub file_name: String,
    /// Its media type (e.g. `image/png`).
    pub content_type: String,
    /// The file.
    pub bytes: Vec<u8>,
}

/// The PSA's answer to an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// The PSA's id of the document on the ticket.
    pub document: String,
    /// Whether this call attached it (`false`: an earlier call had, and nothing was sent).
    pub added: bool,
}

/// The PSA's answer to a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteAdded {
    /// The PSA's id of the note on the ticket (the one this call added, or the one an earlier
    /// call added under the same key); empty when the PSA listed the note without an id, which
    /// confirms nothing.
    pub note: String,
    /// Whether this call added it (`false`: an earlier call had, and nothing was sent).
    pub added: bool,
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

    /// Adds a note, once per `note_key` (a redelivered message does not add it again). `Ok`
    /// only when the PSA holds the note: its answer names the note, so a caller that must know
    /// the ticket was updated (the tier's completion note) decides from it.
    fn add_note(
        &self,
        ticket: &str,
        note_key: &str,
        text: &str,
    ) -> impl Future<Output = Result<NoteAdded, PortError>> + Send;

    /// Closes a ticket (closing a closed ticket is not an error).
    fn close_ticket(&self, ticket: &str) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Attaches a file to a ticket, once per title: a ticket that already has a document with
    /// the title answers with it and nothing is sent. `Ok` only when the PSA holds the document.
    fn attach(
        &self,
        ticket: &str,
        attachment: &Attachment,
    ) -> impl Future<Output = Result<Attached, PortError>> + Send;
}
