//! Queues between the stages: typed, versioned envelopes, at-least-once delivery, and a
//! dead-letter queue per stage for what cannot be processed.

use std::fmt;
use std::future::Future;

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::ids::CycleId;
use crate::ports::PortError;

/// The pipeline's stages, each fed by its own queue (and dead-letter queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Approval governance for the month's catalog.
    Approval,
    /// Ring promotion: tiers, soak and health gates.
    Rollout,
    /// Install and reboot scheduling, reminders, forced reboots, validation results.
    Schedule,
    /// Failure escalation: tickets, paging, retries.
    Failure,
    /// Evidence archiving and tier closure.
    Evidence,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 5] = [
        Stage::Approval,
        Stage::Rollout,
        Stage::Schedule,
        Stage::Failure,
        Stage::Evidence,
    ];

    /// The stage's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Approval => "approval",
            Stage::Rollout => "rollout",
            Stage::Schedule => "schedule",
            Stage::Failure => "failure",
            Stage::Evidence => "evidence",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The schema version of envelopes this build writes; consumers refuse versions they do not know.
pub const SCHEMA_VERSION: u32 = 1;

/// A message between stages. The payload is the stage's message type, serialized; producers and
/// consumers share those types (the `messages` of each stage), so the envelope stays the same for
/// every queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// What kind of message (e.g. `evaluate_patch`), naming the payload's type.
    pub kind: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// A redelivered or re-sent message carries the same key, so its effect happens once.
    pub idempotency_key: String,
    /// The cycle it belongs to.
    pub cycle: CycleId,
    /// The tier, where the message concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The payload.
    pub payload: serde_json::Value,
}

/// Why an envelope cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON, or not an envelope.
    #[error("not a patchflow envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A schema this build does not know.
    #[error(
        "envelope schema version {found} is not supported (this build reads {SCHEMA_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
}

impl Envelope {
    /// The envelope as a message body.
    pub fn to_body(&self) -> String {
        // An envelope is plain data (strings, numbers, a JSON value): serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a message body, refusing schema versions this build does not know.
    pub fn from_body(body: &str) -> Result<Self, EnvelopeError> {
        let env: Envelope = serde_json::from_str(body)?;
        if env.schema_version != SCHEMA_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: env.schema_version,
            });
        }
        Ok(env)
    }
}

/// A received message, invisible to other consumers until acknowledged or its visibility timeout
/// passes.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The raw body (kept so a malformed one can be dead-lettered as it came).
    pub body: String,
    /// The handle that acknowledges or dead-letters this delivery.
    pub receipt: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// A message in a dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The body as it was.
    pub body: String,
    /// Why it is there (the handler's reason, or the redrive after too many receives).
    pub reason: String,
}

/// Sending to a stage's queue.
///
/// Error contract: `Permanent` for a message the queue refuses (too large, invalid); `Transient`
/// when some messages could not be sent after retries (sending is at-least-once: resending the
/// whole batch is safe, consumers are idempotent).
pub trait QueueSender: Send + Sync {
    /// Sends messages, in as few requests as the queue's limits allow.
    fn send_batch(
        &self,
        stage: Stage,
        messages: &[Envelope],
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Consuming a stage's queue, as an event source does for a function.
///
/// Error contract: `ack` and `dead_letter` return `Conflict` for a receipt that is no longer
/// current (the message was redelivered to someone else); any call may return `Transient`.
pub trait QueueConsumer: Send + Sync {
    /// Receives up to `max` visible messages, hiding each for `visibility`.
    fn receive(
        &self,
        stage: Stage,
        max: usize,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, PortError>> + Send;

    /// Deletes a processed message.
    fn ack(
        &self,
        stage: Stage,
        receipt: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Ends a delivery's visibility timeout now, so the message is received again: what the
    /// timeout's passing does, for a runner whose clock is simulated.
    fn release(
        &self,
        stage: Stage,
        receipt: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Moves a message that can never be processed to the stage's dead-letter queue, with why.
    fn dead_letter(
        &self,
        stage: Stage,
        delivery: &Delivery,
        reason: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Reads the stage's dead-letter queue without consuming it.
    fn dead_letters(
        &self,
        stage: Stage,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, PortError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Envelope {
        Envelope {
            kind: "evaluate_patch".into(),
            schema_version: SCHEMA_VERSION,
            idempotency_key: "2026-12/KB1".into(),
            cycle: "2026-12".parse().unwrap(),
            tier: None,
            payload: serde_json::json!({"patch": "KB1"}),
        }
    }

    #[test]
    fn an_envelope_round_trips_through_a_message_body() {
        let e = env();
        assert_eq!(Envelope::from_body(&e.to_body()).unwrap(), e);
    }

    #[test]
    fn an_unknown_schema_version_or_a_foreign_body_is_refused() {
        let mut e = env();
        e.schema_version = 99;
        assert!(matches!(
            Envelope::from_body(&e.to_body()),
            Err(EnvelopeError::UnsupportedVersion { found: 99 })
        ));
        assert!(matches!(
            Envelope::from_body("hello"),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
