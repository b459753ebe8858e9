//! The event-source pump: feeds each stage's queue to its handler the way Lambda's SQS event
//! source mapping does (batches, partial batch failures, redelivery, dead-letter after the
//! queue's maximum receives). The local runner and the end-to-end tests drive the pipeline with
//! it; in AWS, Lambda does this itself.

use chrono::{DateTime, Duration, Utc};
use patchflow_core::ports::queue::{QueueConsumer, Stage};
use patchflow_core::ports::PortError;
use serde::Serialize;

use crate::batch::{handle, Outcome};
use crate::env::Ports;

/// How the pump delivers.
#[derive(Debug, Clone, Copy)]
pub struct PumpOptions {
    /// Messages per batch (SQS: at most 10).
    pub batch: usize,
    /// Visibility timeout of a received batch.
    pub visibility: Duration,
    /// Deliver every message twice, as at-least-once delivery may.
    pub deliver_twice: bool,
}

impl Default for PumpOptions {
    fn default() -> Self {
        Self {
            batch: 10,
            visibility: Duration::seconds(60),
            deliver_twice: false,
        }
    }
}

/// What a pump did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PumpStats {
    /// Deliveries received.
    pub received: usize,
    /// Handled (deleted).
    pub done: usize,
    /// Handed back for redelivery (partial batch failures).
    pub retried: usize,
    /// Moved to a dead-letter queue by the handler.
    pub dead_lettered: usize,
}

impl PumpStats {
    fn add(&mut self, o: PumpStats) {
        self.received += o.received;
        self.done += o.done;
        self.retried += o.retried;
        self.dead_lettered += o.dead_lettered;
    }
}

/// Drains one stage's queue: batch after batch until a receive comes back empty. Messages handed
/// back are released at the end (their visibility timeout has passed, on a simulated clock), so
/// they are redelivered on the next drain, not in a loop within this one.
pub async fn drain<X: Ports, C: QueueConsumer>(
    x: &X,
    consumer: &C,
    stage: Stage,
    now: DateTime<Utc>,
    opts: PumpOptions,
) -> Result<PumpStats, PortError> {
    let mut stats = PumpStats::default();
    let mut handed_back = Vec::new();
    loop {
        let batch = consumer.receive(stage, opts.batch, opts.visibility).await?;
        if batch.is_empty() {
            break;
        }
        for d in batch {
            stats.received += 1;
            let mut outcome = handle(x, stage, &d.body, now).await;
            if opts.deliver_twice {
                // The duplicate arrives while the first is done: it must change nothing.
                outcome = handle(x, stage, &d.body, now).await;
            }
            match outcome {
                Outcome::Done(_) => {
                    stats.done += 1;
                    match consumer.ack(stage, &d.receipt).await {
                        Ok(()) | Err(PortError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Outcome::Retry(_) => {
                    stats.retried += 1;
                    handed_back.push(d.receipt);
                }
                Outcome::Poison(reason) => {
                    stats.dead_lettered += 1;
                    consumer.dead_letter(stage, &d, &reason).await?;
                }
            }
        }
    }
    for receipt in handed_back {
        match consumer.release(stage, &receipt).await {
            Ok(()) | Err(PortError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(stats)
}

/// Drains every stage, in pipeline order, until a whole pass finds nothing (a handler's messages
/// to a later stage are handled in the same call).
pub async fn drain_all<X: Ports, C: QueueConsumer>(
    x: &X,
    consumer: &C,
    now: DateTime<Utc>,
    opts: PumpOptions,
) -> Result<PumpStats, PortError> {
    let mut total = PumpStats::default();
    loop {
        let mut pass = PumpStats::default();
        for stage in Stage::ALL {
            pass.add(drain(x, consumer, stage, now, opts).await?);
        }
        total.add(pass);
        if pass.done == 0 && pass.dead_lettered == 0 {
            return Ok(total);
        }
    }
}
