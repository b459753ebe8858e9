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

/// The work done so far by the stores and systems an invocation drives, read before and after
/// each delivery to measure that delivery's share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Work {
    /// Requests made of the state store.
    pub state_requests: u64,
    /// Records the state store read.
    pub records_read: u64,
    /// Calls made of the RMM.
    pub rmm_calls: u64,
}

impl Work {
    /// The larger of each measure.
    fn max(self, o: Work) -> Work {
        Work {
            state_requests: self.state_requests.max(o.state_requests),
            records_read: self.records_read.max(o.records_read),
            rmm_calls: self.rmm_calls.max(o.rmm_calls),
        }
    }

    fn since(self, before: Work) -> Work {
        Work {
            state_requests: self.state_requests.saturating_sub(before.state_requests),
            records_read: self.records_read.saturating_sub(before.records_read),
            rmm_calls: self.rmm_calls.saturating_sub(before.rmm_calls),
        }
    }
}

/// The largest one delivery's handling came to by one measure, and the stage it was of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Peak {
    /// How much.
    pub value: u64,
    /// The stage of the delivery, if there was one.
    pub stage: Option<Stage>,
}

impl Peak {
    fn offer(&mut self, value: u64, stage: Stage) {
        if value > self.value || self.stage.is_none() {
            *self = Peak {
                value,
                stage: Some(stage),
            };
        }
    }

    fn merge(&mut self, o: Peak) {
        if let Some(stage) = o.stage {
            self.offer(o.value, stage);
        }
    }
}

/// The largest single delivery (one handler invocation of one message), by each measure: what
/// no invocation may let grow with the fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Largest {
    /// Records read from the state store.
    pub records_read: Peak,
    /// Requests made of the state store.
    pub state_requests: Peak,
    /// Calls made of the RMM.
    pub rmm_calls: Peak,
    /// Per stage (in [`Stage::ALL`]'s order), the largest of each measure one of its
    /// deliveries came to.
    pub by_stage: [Work; Stage::ALL.len()],
}

impl Largest {
    fn offer(&mut self, w: Work, stage: Stage) {
        self.records_read.offer(w.records_read, stage);
        self.state_requests.offer(w.state_requests, stage);
        self.rmm_calls.offer(w.rmm_calls, stage);
        if let Some(i) = Stage::ALL.iter().position(|s| *s == stage) {
            self.by_stage[i] = self.by_stage[i].max(w);
        }
    }

    /// The larger of each measure.
    pub fn merge(&mut self, o: Largest) {
        self.records_read.merge(o.records_read);
        self.state_requests.merge(o.state_requests);
        self.rmm_calls.merge(o.rmm_calls);
        for (mine, theirs) in self.by_stage.iter_mut().zip(o.by_stage) {
            *mine = mine.max(theirs);
        }
    }

    /// The largest of each measure one delivery of `stage` came to.
    pub fn of(&self, stage: Stage) -> Work {
        Stage::ALL
            .iter()
            .position(|s| *s == stage)
            .map(|i| self.by_stage[i])
            .unwrap_or_default()
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
    /// The largest single delivery, as the pump's probe measured it (all zero without one).
    pub largest: Largest,
}

impl PumpStats {
    /// Adds another pump's figures to these (the larger of each peak).
    pub fn add(&mut self, o: PumpStats) {
        self.received += o.received;
        self.done += o.done;
        self.retried += o.retried;
        self.dead_lettered += o.dead_lettered;
        self.largest.merge(o.largest);
    }
}

/// A probe that measures nothing.
fn no_probe() -> Work {
    Work::default()
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
    drain_probed(x, consumer, stage, now, opts, &no_probe).await
}

/// [`drain`], measuring each delivery with `probe` (the work done so far, read before and after
/// it) into [`PumpStats::largest`].
pub async fn drain_probed<X: Ports, C: QueueConsumer>(
    x: &X,
    consumer: &C,
    stage: Stage,
    now: DateTime<Utc>,
    opts: PumpOptions,
    probe: &(dyn Fn() -> Work + Sync),
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
            let before = probe();
            let mut outcome = handle(x, stage, &d.body, now).await;
            stats.largest.offer(probe().since(before), stage);
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
    drain_all_probed(x, consumer, now, opts, &no_probe).await
}

/// [`drain_all`], measuring each delivery with `probe` (see [`drain_probed`]).
pub async fn drain_all_probed<X: Ports, C: QueueConsumer>(
    x: &X,
    consumer: &C,
    now: DateTime<Utc>,
    opts: PumpOptions,
    probe: &(dyn Fn() -> Work + Sync),
) -> Result<PumpStats, PortError> {
    let mut total = PumpStats::default();
    loop {
        let mut pass = PumpStats::default();
        for stage in Stage::ALL {
            pass.add(drain_probed(x, consumer, stage, now, opts, probe).await?);
        }
        total.add(pass);
        if pass.done == 0 && pass.dead_lettered == 0 {
            return Ok(total);
        }
    }
}
