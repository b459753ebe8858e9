//! Durable local queues in SQLite, with the semantics of SQS standard queues: at-least-once
//! delivery, a visibility timeout, a receive count, and after `max_receives` receives without an
//! acknowledgement, the message moves to the stage's dead-letter queue.

use std::path::Path;
use std::sync::Arc;

use chrono::Duration;
use patchflow_core::ports::clock::Clock;
use patchflow_core::ports::queue::{
    DeadLetter, Delivery, Envelope, QueueConsumer, QueueSender, Stage,
};
use patchflow_core::ports::PortError;
use rand::RngCore;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::db::{db_err, Db};

/// Queues in one SQLite database.
#[derive(Clone)]
pub struct SqliteQueues {
    db: Db,
    clock: Arc<dyn Clock>,
    max_receives: u32,
}

impl std::fmt::Debug for SqliteQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueues")
            .field("max_receives", &self.max_receives)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    stage         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (stage, visible_at_ms, id);
CREATE TABLE IF NOT EXISTS queue_dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    stage         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    receive_count INTEGER NOT NULL
);
";

impl SqliteQueues {
    /// Opens (or creates) the queues in a database file. `max_receives` is the redrive
    /// threshold, like SQS's `maxReceiveCount`.
    pub fn open(path: &Path, clock: Arc<dyn Clock>, max_receives: u32) -> Result<Self, PortError> {
        Ok(Self {
            db: Db::open(Some(path), SCHEMA)?,
            clock,
            max_receives: max_receives.max(1),
        })
    }

    /// Queues in memory (tests, one-shot runs).
    pub fn in_memory(clock: Arc<dyn Clock>, max_receives: u32) -> Result<Self, PortError> {
        Ok(Self {
            db: Db::open(None, SCHEMA)?,
            clock,
            max_receives: max_receives.max(1),
        })
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

fn new_receipt() -> String {
    let mut raw = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

impl QueueSender for SqliteQueues {
    async fn send_batch(&self, stage: Stage, messages: &[Envelope]) -> Result<(), PortError> {
        let now = self.now_ms();
        self.db.with(|conn| {
            let tx = conn.transaction().map_err(|e| db_err("begin send", e))?;
            {
                let mut insert = tx
                    .prepare_cached("INSERT INTO queue_messages (stage, body, visible_at_ms) VALUES (?1, ?2, ?3)")
                    .map_err(|e| db_err("prepare send", e))?;
                for m in messages {
                    insert.execute(params![stage.as_str(), m.to_body(), now]).map_err(|e| db_err(format!("send to {stage}"), e))?;
                }
            }
            tx.commit().map_err(|e| db_err("commit send", e))
        })
    }
}

impl QueueConsumer for SqliteQueues {
    async fn receive(
        &self,
        stage: Stage,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, PortError> {
        let now = self.now_ms();
        let hidden_until = now + visibility.num_milliseconds().max(0);
        let max_receives = i64::from(self.max_receives);
        self.db.with(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| db_err("begin receive", e))?;
            let mut out = Vec::new();
            // Read only as many rows as are still wanted, in id order, each round after the last
            // row seen (a row just received with no visibility timeout is still visible); a
            // round that reads nothing ends it.
            let mut after = i64::MIN;
            while out.len() < max {
                let mut select = tx
                    .prepare_cached(
                        "SELECT id, body, receive_count FROM queue_messages
                         WHERE stage = ?1 AND visible_at_ms <= ?2 AND id > ?4 ORDER BY id LIMIT ?3",
                    )
                    .map_err(|e| db_err("prepare receive", e))?;
                let want = (max - out.len()) as i64;
                let rows: Vec<(i64, String, i64)> = select
                    .query_map(params![stage.as_str(), now, want, after], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .and_then(Iterator::collect)
                    .map_err(|e| db_err(format!("receive from {stage}"), e))?;
                if rows.is_empty() {
                    break;
                }
                for (id, body, count) in rows {
                    after = id;
                    if count >= max_receives {
                        // Like SQS's redrive policy: a message received max_receives times without
                        // an acknowledgement moves to the dead-letter queue on its next receive.
                        tx.execute(
                            "INSERT INTO queue_dead_letters (stage, body, reason, receive_count) VALUES (?1, ?2, ?3, ?4)",
                            params![stage.as_str(), body, format!("received {count} times without being processed"), count],
                        )
                        .and_then(|_| tx.execute("DELETE FROM queue_messages WHERE id = ?1", params![id]))
                        .map_err(|e| db_err("redrive", e))?;
                        continue;
                    }
                    let receipt = new_receipt();
                    tx.execute(
                        "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at_ms = ?1, receipt = ?2 WHERE id = ?3",
                        params![hidden_until, receipt, id],
                    )
                    .map_err(|e| db_err("mark received", e))?;
                    out.push(Delivery { body, receipt, receive_count: (count + 1) as u32 });
                }
            }
            tx.commit().map_err(|e| db_err("commit receive", e))?;
            Ok(out)
        })
    }

    async fn ack(&self, stage: Stage, receipt: &str) -> Result<(), PortError> {
        self.db.with(|conn| {
            let n = conn
                .execute(
                    "DELETE FROM queue_messages WHERE stage = ?1 AND receipt = ?2",
                    params![stage.as_str(), receipt],
                )
                .map_err(|e| db_err("ack", e))?;
            if n == 0 {
                return Err(PortError::Conflict(format!(
                    "receipt {receipt} on {stage} is no longer current"
                )));
            }
            Ok(())
        })
    }

    async fn release(&self, stage: Stage, receipt: &str) -> Result<(), PortError> {
        let now = self.now_ms();
        self.db.with(|conn| {
            let n = conn
                .execute(
                    "UPDATE queue_messages SET visible_at_ms = ?3 WHERE stage = ?1 AND receipt = ?2",
                    params![stage.as_str(), receipt, now],
                )
                .map_err(|e| db_err("release", e))?;
            if n == 0 {
                return Err(PortError::Conflict(format!(
                    "receipt {receipt} on {stage} is no longer current"
                )));
            }
            Ok(())
        })
    }

    async fn dead_letter(
        &self,
        stage: Stage,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<(), PortError> {
        self.db.with(|conn| {
            let tx = conn.transaction().map_err(|e| db_err("begin dead-letter", e))?;
            let found: Option<i64> = tx
                .query_row(
                    "SELECT id FROM queue_messages WHERE stage = ?1 AND receipt = ?2",
                    params![stage.as_str(), delivery.receipt],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| db_err("dead-letter", e))?;
            let Some(id) = found else {
                return Err(PortError::Conflict(format!("receipt {} on {stage} is no longer current", delivery.receipt)));
            };
            tx.execute(
                "INSERT INTO queue_dead_letters (stage, body, reason, receive_count) VALUES (?1, ?2, ?3, ?4)",
                params![stage.as_str(), delivery.body, reason, delivery.receive_count],
            )
            .and_then(|_| tx.execute("DELETE FROM queue_messages WHERE id = ?1", params![id]))
            .map_err(|e| db_err("dead-letter", e))?;
            tx.commit().map_err(|e| db_err("commit dead-letter", e))
        })
    }

    async fn dead_letters(&self, stage: Stage) -> Result<Vec<DeadLetter>, PortError> {
        self.db.with(|conn| {
            let mut select = conn
                .prepare_cached(
                    "SELECT body, reason FROM queue_dead_letters WHERE stage = ?1 ORDER BY id",
                )
                .map_err(|e| db_err("prepare dead letters", e))?;
            select
                .query_map(params![stage.as_str()], |r| {
                    Ok(DeadLetter {
                        body: r.get(0)?,
                        reason: r.get(1)?,
                    })
                })
                .and_then(Iterator::collect)
                .map_err(|e| db_err(format!("read {stage} dead letters"), e))
        })
    }
}
