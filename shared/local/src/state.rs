//! The state store in SQLite: the same records and the same conditional semantics as the
//! DynamoDB table, for the embedded default.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use patchflow_core::ids::{ClientId, CycleId, EndpointId, PatchId};
use patchflow_core::ports::evidence::EvidencePrefix;
use patchflow_core::ports::state::{
    due_of_sort_key, due_sort_key, due_upper_bound, next_tier_record, ApprovalStore, Claim,
    Completion, Doc, DocIndex, DocStore, DueCursor, EndpointStore, EvidenceIndex, EvidenceRecord,
    ExceptionStore, FailureRecord, FailureStore, IdempotencyStore, StoredEndpoint, SyncSummary,
    TierId, TierRecord, TierStore,
};
use patchflow_core::ports::PortError;
use patchflow_core::rules::approval::{Approval, Decision};
use patchflow_core::rules::exception::ExceptionEntry;
use patchflow_core::tier::TierEvent;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::db::{db_err, Db, StoreWork};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS endpoints (
    client TEXT NOT NULL,
    id     TEXT NOT NULL,
    hash   TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (client, id)
);
CREATE TABLE IF NOT EXISTS tiers (
    cycle   TEXT    NOT NULL,
    tier    TEXT    NOT NULL,
    version INTEGER NOT NULL,
    record  TEXT    NOT NULL,
    PRIMARY KEY (cycle, tier)
);
CREATE TABLE IF NOT EXISTS exceptions (
    subject TEXT NOT NULL,
    kind    TEXT NOT NULL,
    record  TEXT NOT NULL,
    PRIMARY KEY (subject, kind)
);
CREATE TABLE IF NOT EXISTS approvals (
    cycle    TEXT NOT NULL,
    patch    TEXT NOT NULL,
    decision TEXT NOT NULL,
    record   TEXT NOT NULL,
    PRIMARY KEY (cycle, patch)
);
CREATE TABLE IF NOT EXISTS failures (
    cycle   TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    version INTEGER NOT NULL,
    record  TEXT    NOT NULL,
    PRIMARY KEY (cycle, id)
);
CREATE TABLE IF NOT EXISTS evidence_index (
    cycle  TEXT NOT NULL,
    key    TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (cycle, key)
);
CREATE TABLE IF NOT EXISTS docs (
    cycle   TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT    NOT NULL,
    due_sk  TEXT,
    phase   TEXT,
    PRIMARY KEY (cycle, kind, id)
);
CREATE TABLE IF NOT EXISTS idempotency (
    key            TEXT PRIMARY KEY,
    done           INTEGER NOT NULL,
    outcome        TEXT,
    lease_until_ms INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL
);
";

/// The docs table's index columns, added to a database created before them (`migrate_docs`),
/// and their indexes: `due_sk` is `{instant}#{id}` (see `due_sort_key`), so (due, id) order.
const DOC_INDEX_COLUMNS: [&str; 2] = ["due_sk", "phase"];
const DOC_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS docs_due ON docs (cycle, kind, due_sk) WHERE due_sk IS NOT NULL;
CREATE INDEX IF NOT EXISTS docs_phase ON docs (cycle, kind, phase) WHERE phase IS NOT NULL;
";

/// Adds the docs table's index columns where missing (a database file from before them) and
/// creates their indexes, in one immediate transaction so two processes opening the same file
/// cannot both add a column.
fn migrate_docs(db: &Db) -> Result<(), PortError> {
    db.with(|conn| {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_err("begin the docs migration", e))?;
        let columns: Vec<String> = tx
            .prepare("SELECT name FROM pragma_table_info('docs')")
            .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| db_err("read the docs columns", e))?;
        for column in DOC_INDEX_COLUMNS {
            if !columns.iter().any(|c| c == column) {
                tx.execute_batch(&format!("ALTER TABLE docs ADD COLUMN {column} TEXT"))
                    .map_err(|e| db_err(format!("add column docs.{column}"), e))?;
            }
        }
        tx.execute_batch(DOC_INDEXES)
            .map_err(|e| db_err("create the docs indexes", e))?;
        tx.commit()
            .map_err(|e| db_err("commit the docs migration", e))
    })
}

/// The state store in one SQLite database.
#[derive(Clone)]
pub struct SqliteState {
    db: Db,
    /// A fault armed by [`SqliteState::fail_doc_write_after`]: the kind prefix and how many
    /// more matching writes go through first.
    fault: std::sync::Arc<std::sync::Mutex<Option<(String, usize)>>>,
}

impl std::fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteState").finish_non_exhaustive()
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, PortError> {
    serde_json::from_str(text)
        .map_err(|e| PortError::permanent(format!("stored {what} is unreadable"), e))
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<String, PortError> {
    serde_json::to_string(value).map_err(|e| PortError::permanent(format!("encode {what}"), e))
}

impl SqliteState {
    /// Opens (or creates) the store in a database file; a file from before the docs index
    /// columns gets them.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        let db = Db::open(Some(path), SCHEMA)?;
        migrate_docs(&db)?;
        Ok(Self {
            db,
            fault: Default::default(),
        })
    }

    /// A store in memory.
    pub fn in_memory() -> Result<Self, PortError> {
        let db = Db::open(None, SCHEMA)?;
        migrate_docs(&db)?;
        Ok(Self {
            db,
            fault: Default::default(),
        })
    }
}

impl EndpointStore for SqliteState {
    async fn sync_endpoints(&self, endpoints: &[StoredEndpoint]) -> Result<SyncSummary, PortError> {
        let rows = endpoints
            .iter()
            .map(|e| {
                Ok((
                    e.client.to_string(),
                    e.id.to_string(),
                    e.hash.to_hex(),
                    encode("endpoint", e)?,
                ))
            })
            .collect::<Result<Vec<_>, PortError>>()?;
        self.db.with(|conn| {
            let tx = conn.transaction().map_err(|e| db_err("begin sync", e))?;
            let mut summary = SyncSummary::default();
            {
                // Written only when new or changed: the WHERE on the upsert leaves equal hashes be.
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO endpoints (client, id, hash, record) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (client, id) DO UPDATE SET hash = excluded.hash, record = excluded.record
                         WHERE endpoints.hash <> excluded.hash",
                    )
                    .map_err(|e| db_err("prepare sync", e))?;
                for (client, id, hash, record) in &rows {
                    match upsert.execute(params![client, id, hash, record]).map_err(|e| db_err("sync endpoint", e))? {
                        0 => summary.unchanged += 1,
                        _ => summary.written += 1,
                    }
                }
            }
            tx.commit().map_err(|e| db_err("commit sync", e))?;
            Ok(summary)
        })
    }

    async fn get_endpoint(
        &self,
        client: &ClientId,
        id: &EndpointId,
    ) -> Result<Option<StoredEndpoint>, PortError> {
        let sql = "SELECT record FROM endpoints WHERE client = ?1 AND id = ?2";
        self.record("endpoint", sql, params![client.as_str(), id.as_str()])
    }

    async fn list_endpoints(&self, client: &ClientId) -> Result<Vec<StoredEndpoint>, PortError> {
        let sql = "SELECT record FROM endpoints WHERE client = ?1 ORDER BY id";
        self.records("endpoints", sql, params![client.as_str()])
    }
}

impl TierStore for SqliteState {
    async fn create_tier(&self, tier: &TierRecord) -> Result<(), PortError> {
        let record = encode("tier", tier)?;
        self.conditional(
            "tier",
            "INSERT INTO tiers (cycle, tier, version, record) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            params![tier.cycle.to_string(), tier.tier.as_str(), tier.version as i64, record],
            || format!("tier {} of {} exists", tier.tier, tier.cycle),
        )
    }

    async fn get_tier(
        &self,
        cycle: CycleId,
        tier: &TierId,
    ) -> Result<Option<TierRecord>, PortError> {
        let sql = "SELECT record FROM tiers WHERE cycle = ?1 AND tier = ?2";
        self.record("tier", sql, params![cycle.to_string(), tier.as_str()])
    }

    async fn transition_tier(
        &self,
        cycle: CycleId,
        tier: &TierId,
        expected_version: u64,
        event: TierEvent,
        at: DateTime<Utc>,
    ) -> Result<TierRecord, PortError> {
        let current = self.get_tier(cycle, tier).await?;
        let next = next_tier_record(current, cycle, tier, expected_version, event, at)?;
        self.write_transition(next, expected_version, None)
    }

    async fn transition_tier_once(
        &self,
        cycle: CycleId,
        tier: &TierId,
        expected_version: u64,
        event: TierEvent,
        at: DateTime<Utc>,
        done: &Completion,
    ) -> Result<TierRecord, PortError> {
        let current = self.get_tier(cycle, tier).await?;
        let next = next_tier_record(current, cycle, tier, expected_version, event, at)?;
        self.write_transition(next, expected_version, Some(done))
    }

    async fn list_tiers(&self, cycle: CycleId) -> Result<Vec<TierRecord>, PortError> {
        let sql = "SELECT record FROM tiers WHERE cycle = ?1 ORDER BY tier";
        self.records("tiers", sql, params![cycle.to_string()])
    }
}

impl IdempotencyStore for SqliteState {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Claim, PortError> {
        let now_ms = now.timestamp_millis();
        self.db.with(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| db_err("begin claim", e))?;
            let row: Option<(bool, Option<String>, i64, i64)> = tx
                .query_row(
                    "SELECT done, outcome, lease_until_ms, expires_at_ms FROM idempotency WHERE key = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(|e| db_err("read claim", e))?;
            let claim = match row {
                Some((_, _, _, expires)) if expires <= now_ms => None,
                Some((true, outcome, _, _)) => Some(Claim::Done(outcome.unwrap_or_default())),
                Some((false, _, lease_until, _)) if lease_until > now_ms => Some(Claim::InProgress),
                _ => None,
            };
            if let Some(answer) = claim {
                return Ok(answer);
            }
            tx.execute(
                "INSERT INTO idempotency (key, done, outcome, lease_until_ms, expires_at_ms) VALUES (?1, 0, NULL, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET done = 0, outcome = NULL, lease_until_ms = ?2, expires_at_ms = ?3",
                params![key, now_ms + lease.num_milliseconds(), now_ms + ttl.num_milliseconds()],
            )
            .map_err(|e| db_err("claim", e))?;
            tx.commit().map_err(|e| db_err("commit claim", e))?;
            Ok(Claim::Acquired)
        })
    }

    async fn abandon(&self, key: &str) -> Result<(), PortError> {
        self.db.with(|conn| {
            conn.execute(
                "DELETE FROM idempotency WHERE key = ?1 AND done = 0",
                params![key],
            )
            .map_err(|e| db_err("abandon idempotency key", e))?;
            Ok(())
        })
    }

    async fn complete(
        &self,
        key: &str,
        outcome: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(), PortError> {
        let expires = (now + ttl).timestamp_millis();
        self.db.with(|conn| {
            let n = conn
                .execute(
                    "UPDATE idempotency SET done = 1, outcome = ?2, expires_at_ms = ?3 WHERE key = ?1",
                    params![key, outcome, expires],
                )
                .map_err(|e| db_err("complete", e))?;
            if n == 0 {
                return Err(PortError::NotFound(format!("idempotency key {key} was never claimed")));
            }
            Ok(())
        })
    }

    async fn done(&self, keys: &[String], now: DateTime<Utc>) -> Result<Vec<String>, PortError> {
        let mut keys: Vec<&String> = keys.iter().collect();
        keys.sort();
        keys.dedup();
        let now_ms = now.timestamp_millis();
        let done = self.db.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT 1 FROM idempotency WHERE key = ?1 AND done = 1 AND expires_at_ms > ?2",
                )
                .map_err(|e| db_err("prepare done keys", e))?;
            let mut out = Vec::new();
            for key in keys {
                let found = stmt
                    .exists(params![key, now_ms])
                    .map_err(|e| db_err("read done keys", e))?;
                if found {
                    out.push(key.clone());
                }
            }
            Ok(out)
        })?;
        self.db.read(done.len());
        Ok(done)
    }
}

impl SqliteState {
    /// Writes a tier's next record if it is still at `expected_version`, and in the same
    /// transaction completes `done`'s key if given; nothing is written unless both conditions hold.
    fn write_transition(
        &self,
        next: TierRecord,
        expected_version: u64,
        done: Option<&Completion>,
    ) -> Result<TierRecord, PortError> {
        let record = encode("tier", &next)?;
        let (cycle, tier) = (next.cycle, next.tier.clone());
        self.db.with(|conn| {
            let tx = conn.transaction().map_err(|e| db_err("begin transition", e))?;
            // The version in the WHERE is the condition: of two racing writers, one updates a
            // row, the other none.
            let moved = tx
                .execute(
                    "UPDATE tiers SET version = ?1, record = ?2 WHERE cycle = ?3 AND tier = ?4 AND version = ?5",
                    params![next.version as i64, record, cycle.to_string(), tier.as_str(), expected_version as i64],
                )
                .map_err(|e| db_err("transition tier", e))?;
            if moved == 0 {
                return Err(PortError::Conflict(format!("tier {tier} of {cycle} moved past version {expected_version}")));
            }
            if let Some(done) = done {
                let expires = (next.updated_at + done.ttl).timestamp_millis();
                let completed = tx
                    .execute(
                        "UPDATE idempotency SET done = 1, outcome = ?2, expires_at_ms = ?3 WHERE key = ?1 AND done = 0",
                        params![done.key, done.outcome, expires],
                    )
                    .map_err(|e| db_err("complete idempotency key", e))?;
                if completed == 0 {
                    // Dropping the transaction rolls the tier back too.
                    return Err(PortError::Conflict(format!("idempotency key {} is not claimed and in progress", done.key)));
                }
            }
            tx.commit().map_err(|e| db_err("commit transition", e))?;
            Ok(next)
        })
    }

    /// The stored records a query returns, decoded.
    fn records<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<T>, PortError> {
        self.db.with(|conn| {
            let mut q = conn
                .prepare_cached(sql)
                .map_err(|e| db_err(format!("prepare list {what}"), e))?;
            let texts: Vec<String> = q
                .query_map(args, |r| r.get(0))
                .and_then(Iterator::collect)
                .map_err(|e| db_err(format!("list {what}"), e))?;
            self.db.read(texts.len());
            texts.iter().map(|t| decode(what, t)).collect()
        })
    }

    /// The one stored record a query returns, decoded.
    fn record<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Option<T>, PortError> {
        self.db.with(|conn| {
            let text: Option<String> = conn
                .query_row(sql, args, |r| r.get(0))
                .optional()
                .map_err(|e| db_err(format!("get {what}"), e))?;
            self.db.read(usize::from(text.is_some()));
            text.map(|t| decode(what, &t)).transpose()
        })
    }

    /// Runs a conditional write; no row changed means the condition did not hold.
    fn conditional(
        &self,
        what: &str,
        sql: &str,
        args: impl rusqlite::Params,
        conflict: impl FnOnce() -> String,
    ) -> Result<(), PortError> {
        self.db.with(|conn| {
            match conn
                .execute(sql, args)
                .map_err(|e| db_err(format!("write {what}"), e))?
            {
                0 => Err(PortError::Conflict(conflict())),
                _ => Ok(()),
            }
        })
    }
}

impl ExceptionStore for SqliteState {
    async fn record_exception(&self, entry: &ExceptionEntry) -> Result<bool, PortError> {
        let record = encode("exception", entry)?;
        let sql = "INSERT INTO exceptions (subject, kind, record) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
        let args = params![entry.subject, entry.kind.as_str(), record];
        match self.conditional("exception", sql, args, String::new) {
            Ok(()) => Ok(true),
            Err(PortError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_exceptions(&self) -> Result<Vec<ExceptionEntry>, PortError> {
        let sql = "SELECT record FROM exceptions ORDER BY subject, kind";
        self.records("exceptions", sql, [])
    }
}

impl ApprovalStore for SqliteState {
    async fn put_approval(
        &self,
        cycle: CycleId,
        approval: &Approval,
        expected: Option<Decision>,
    ) -> Result<(), PortError> {
        let record = encode("approval", approval)?;
        let (cycle_s, patch, new) = (
            cycle.to_string(),
            approval.patch.to_string(),
            approval.decision.as_str(),
        );
        let conflict = || format!("approval of {patch} in {cycle} is not {expected:?}");
        match expected {
            None => self.conditional(
                "approval",
                "INSERT INTO approvals (cycle, patch, decision, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![cycle_s, patch, new, record],
                conflict,
            ),
            Some(old) => self.conditional(
                "approval",
                "UPDATE approvals SET decision = ?3, record = ?4
                 WHERE cycle = ?1 AND patch = ?2 AND decision = ?5",
                params![cycle_s, patch, new, record, old.as_str()],
                conflict,
            ),
        }
    }

    async fn get_approval(
        &self,
        cycle: CycleId,
        patch: &PatchId,
    ) -> Result<Option<Approval>, PortError> {
        let sql = "SELECT record FROM approvals WHERE cycle = ?1 AND patch = ?2";
        self.record("approval", sql, params![cycle.to_string(), patch.as_str()])
    }

    async fn list_approvals(&self, cycle: CycleId) -> Result<Vec<Approval>, PortError> {
        let sql = "SELECT record FROM approvals WHERE cycle = ?1 ORDER BY patch";
        self.records("approvals", sql, params![cycle.to_string()])
    }
}

impl FailureStore for SqliteState {
    async fn open_failure(&self, failure: &FailureRecord) -> Result<(), PortError> {
        let record = encode(
            "failure",
            &FailureRecord {
                version: 0,
                ..failure.clone()
            },
        )?;
        self.conditional(
            "failure",
            "INSERT INTO failures (cycle, id, version, record) VALUES (?1, ?2, 0, ?3) ON CONFLICT DO NOTHING",
            params![failure.cycle.to_string(), failure.id, record],
            || format!("failure {} of {} exists", failure.id, failure.cycle),
        )
    }

    async fn save_failure(
        &self,
        failure: &FailureRecord,
        expected_version: u64,
    ) -> Result<FailureRecord, PortError> {
        let saved = FailureRecord {
            version: expected_version + 1,
            ..failure.clone()
        };
        let record = encode("failure", &saved)?;
        let result = self.conditional(
            "failure",
            "UPDATE failures SET version = ?3, record = ?4 WHERE cycle = ?1 AND id = ?2 AND version = ?5",
            params![failure.cycle.to_string(), failure.id, saved.version as i64, record, expected_version as i64],
            || format!("failure {} of {} moved past version {expected_version}", failure.id, failure.cycle),
        );
        match result {
            Err(PortError::Conflict(c))
                if self
                    .get_failure(failure.cycle, &failure.id)
                    .await?
                    .is_none() =>
            {
                Err(PortError::NotFound(c))
            }
            other => other.map(|()| saved),
        }
    }

    async fn get_failure(
        &self,
        cycle: CycleId,
        id: &str,
    ) -> Result<Option<FailureRecord>, PortError> {
        let sql = "SELECT record FROM failures WHERE cycle = ?1 AND id = ?2";
        self.record("failure", sql, params![cycle.to_string(), id])
    }

    async fn list_failures(&self, cycle: CycleId) -> Result<Vec<FailureRecord>, PortError> {
        let sql = "SELECT record FROM failures WHERE cycle = ?1 ORDER BY id";
        self.records("failures", sql, params![cycle.to_string()])
    }
}

impl EvidenceIndex for SqliteState {
    async fn index_evidence(&self, record: &EvidenceRecord) -> Result<(), PortError> {
        let body = encode("evidence record", record)?;
        let key = record.key.as_path();
        self.conditional(
            "evidence record",
            "INSERT INTO evidence_index (cycle, key, record) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![record.key.cycle().to_string(), key, body],
            || format!("{key} is indexed"),
        )
    }

    async fn list_evidence(&self, cycle: CycleId) -> Result<Vec<EvidenceRecord>, PortError> {
        let sql = "SELECT record FROM evidence_index WHERE cycle = ?1 ORDER BY key";
        self.records("evidence records", sql, params![cycle.to_string()])
    }

    async fn list_client_evidence(
        &self,
        cycle: CycleId,
        client: &ClientId,
    ) -> Result<Vec<EvidenceRecord>, PortError> {
        // The client's keys are those between its prefix and the prefix with its `/` moved on
        // to `0`, the next character: a range the primary key answers.
        let prefix = EvidencePrefix {
            cycle,
            client: Some(client.clone()),
            tier: None,
        }
        .as_path();
        let end = format!("{}0", prefix.trim_end_matches('/'));
        let sql = "SELECT record FROM evidence_index WHERE cycle = ?1 AND key >= ?2 AND key < ?3 \
                   ORDER BY key";
        self.records(
            "evidence records",
            sql,
            params![cycle.to_string(), prefix, end],
        )
    }

    async fn chain_head(&self, client: &ClientId) -> Result<Option<Doc>, PortError> {
        self.get_doc_row(OUTSIDE_CYCLES, CHAIN_KIND, client.as_str())
    }

    async fn put_chain_head(
        &self,
        client: &ClientId,
        body: &str,
        expected: Option<u64>,
    ) -> Result<u64, PortError> {
        let what = format!("the manifest chain of {client}");
        self.put_doc_row(
            OUTSIDE_CYCLES,
            CHAIN_KIND,
            client.as_str(),
            &what,
            body,
            expected,
            (None, None),
        )
    }
}

/// Chain heads are versioned rows of `docs` outside every cycle (no cycle is empty text).
const OUTSIDE_CYCLES: &str = "";
const CHAIN_KIND: &str = "chain";

impl SqliteState {
    /// Writes a versioned row of `docs`: creates it when `expected` is `None` (`Conflict` if it
    /// exists), else replaces it if its version is `expected` (`Conflict` if it moved,
    /// `NotFound` if there is none), with its index columns `(due_sk, phase)` (`None` clears).
    /// Returns the new version.
    #[allow(clippy::too_many_arguments)]
    fn put_doc_row(
        &self,
        cycle: &str,
        kind: &str,
        id: &str,
        what: &str,
        body: &str,
        expected: Option<u64>,
        (due_sk, phase): (Option<String>, Option<&str>),
    ) -> Result<u64, PortError> {
        self.injected_fault(kind, what)?;
        let result = match expected {
            None => self
                .conditional(
                    kind,
                    "INSERT INTO docs (cycle, kind, id, version, body, due_sk, phase)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6)
                     ON CONFLICT DO NOTHING",
                    params![cycle, kind, id, body, due_sk, phase],
                    || format!("{what} exists"),
                )
                .map(|()| 1),
            Some(v) => self
                .conditional(
                    kind,
                    "UPDATE docs SET version = ?5, body = ?4, due_sk = ?7, phase = ?8
                     WHERE cycle = ?1 AND kind = ?2 AND id = ?3 AND version = ?6",
                    params![
                        cycle,
                        kind,
                        id,
                        body,
                        (v + 1) as i64,
                        v as i64,
                        due_sk,
                        phase
                    ],
                    || format!("{what} moved past version {v}"),
                )
                .map(|()| v + 1),
        };
        match result {
            Err(PortError::Conflict(c))
                if expected.is_some() && self.get_doc_row(cycle, kind, id)?.is_none() =>
            {
                Err(PortError::NotFound(c))
            }
            other => other,
        }
    }

    fn get_doc_row(&self, cycle: &str, kind: &str, id: &str) -> Result<Option<Doc>, PortError> {
        let doc = self.db.with(|conn| {
            conn.query_row(
                "SELECT id, version, body FROM docs WHERE cycle = ?1 AND kind = ?2 AND id = ?3",
                params![cycle, kind, id],
                doc_row,
            )
            .optional()
            .map_err(|e| db_err(format!("get {kind} {id}"), e))
        })?;
        self.db.read(usize::from(doc.is_some()));
        Ok(doc)
    }

    /// Arms a one-time fault, as a process dying half-way through its writes would leave the
    /// store: the next `after` document writes of a kind starting with `kind_prefix` are made,
    /// the one after them fails as transient (not written), and later ones are made again.
    pub fn fail_doc_write_after(&self, kind_prefix: &str, after: usize) {
        *self
            .fault
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((kind_prefix.to_owned(), after));
    }

    fn injected_fault(&self, kind: &str, what: &str) -> Result<(), PortError> {
        let mut fault = self
            .fault
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match fault.as_mut() {
            Some((prefix, left)) if kind.starts_with(prefix.as_str()) => {
                if *left == 0 {
                    *fault = None;
                    return Err(PortError::transient(
                        format!("write {what}"),
                        "injected fault (fail_doc_write_after)",
                    ));
                }
                *left -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The requests made of the store since it was opened, and the records they read (what
    /// `patchflow simulate` reports of its largest invocation).
    pub fn work(&self) -> StoreWork {
        self.db.work()
    }
}

impl DocStore for SqliteState {
    async fn put_doc(
        &self,
        cycle: CycleId,
        kind: &str,
        id: &str,
        body: &str,
        expected: Option<u64>,
    ) -> Result<u64, PortError> {
        let what = format!("{kind} {id} of {cycle}");
        self.put_doc_row(
            &cycle.to_string(),
            kind,
            id,
            &what,
            body,
            expected,
            (None, None),
        )
    }

    async fn get_doc(
        &self,
        cycle: CycleId,
        kind: &str,
        id: &str,
    ) -> Result<Option<Doc>, PortError> {
        self.get_doc_row(&cycle.to_string(), kind, id)
    }

    async fn list_docs(&self, cycle: CycleId, kind: &str) -> Result<Vec<Doc>, PortError> {
        let docs: Vec<Doc> = self.db.with(|conn| {
            let mut q = conn
                .prepare_cached(
                    "SELECT id, version, body FROM docs WHERE cycle = ?1 AND kind = ?2 ORDER BY id",
                )
                .map_err(|e| db_err(format!("prepare list {kind}"), e))?;
            q.query_map(params![cycle.to_string(), kind], doc_row)
                .and_then(Iterator::collect)
                .map_err(|e| db_err(format!("list {kind}"), e))
        })?;
        self.db.read(docs.len());
        Ok(docs)
    }

    async fn put_doc_indexed(
        &self,
        cycle: CycleId,
        kind: &str,
        id: &str,
        body: &str,
        expected: Option<u64>,
        index: &DocIndex,
    ) -> Result<u64, PortError> {
        let what = format!("{kind} {id} of {cycle}");
        let keys = index.keys(id)?;
        self.put_doc_row(&cycle.to_string(), kind, id, &what, body, expected, keys)
    }

    async fn list_due_docs(
        &self,
        cycle: CycleId,
        kind: &str,
        until: DateTime<Utc>,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<(DueCursor, Doc)>, PortError> {
        let Some(upper) = due_upper_bound(until) else {
            return Ok(Vec::new());
        };
        // No key sorts below the empty text: without a cursor, every due key is after it.
        let lower = after
            .map(|a| due_sort_key(a.due, &a.id))
            .transpose()?
            .unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(Doc, String)> = self.db.with(|conn| {
            let mut q = conn
                .prepare_cached(
                    "SELECT id, version, body, due_sk FROM docs
                     WHERE cycle = ?1 AND kind = ?2 AND due_sk > ?3 AND due_sk < ?4
                     ORDER BY due_sk LIMIT ?5",
                )
                .map_err(|e| db_err(format!("prepare list due {kind}"), e))?;
            q.query_map(params![cycle.to_string(), kind, lower, upper, limit], |r| {
                Ok((doc_row(r)?, r.get::<_, String>(3)?))
            })
            .and_then(Iterator::collect)
            .map_err(|e| db_err(format!("list due {kind}"), e))
        })?;
        self.db.read(rows.len());
        rows.into_iter()
            .map(|(doc, key)| {
                let due = due_of_sort_key(&key)?;
                Ok((
                    DueCursor {
                        due,
                        id: doc.id.clone(),
                    },
                    doc,
                ))
            })
            .collect()
    }

    async fn any_doc_in_phase(
        &self,
        cycle: CycleId,
        kind: &str,
        phases: &[&str],
    ) -> Result<bool, PortError> {
        let cycle = cycle.to_string();
        self.db.with(|conn| {
            let mut q = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM docs WHERE cycle = ?1 AND kind = ?2 AND phase = ?3)",
                )
                .map_err(|e| db_err(format!("prepare phase of {kind}"), e))?;
            for phase in phases {
                let any: bool = q
                    .query_row(params![cycle, kind, phase], |r| r.get(0))
                    .map_err(|e| db_err(format!("{kind} in phase {phase}"), e))?;
                if any {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    async fn list_ids_in_phase(
        &self,
        cycle: CycleId,
        kind: &str,
        phase: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, PortError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids: Vec<String> = self.db.with(|conn| {
            let mut q = conn
                .prepare_cached(
                    "SELECT id FROM docs WHERE cycle = ?1 AND kind = ?2 AND phase = ?3 AND id > ?4
                     ORDER BY id LIMIT ?5",
                )
                .map_err(|e| db_err(format!("prepare {kind} in phase {phase}"), e))?;
            // No id sorts below the empty text.
            q.query_map(
                params![cycle.to_string(), kind, phase, after.unwrap_or(""), limit],
                |r| r.get(0),
            )
            .and_then(Iterator::collect)
            .map_err(|e| db_err(format!("list {kind} in phase {phase}"), e))
        })?;
        self.db.read(ids.len());
        Ok(ids)
    }

    async fn count_docs_in_phase(
        &self,
        cycle: CycleId,
        kind: &str,
        phase: &str,
    ) -> Result<u64, PortError> {
        let n = self.db.with(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM docs WHERE cycle = ?1 AND kind = ?2 AND phase = ?3",
                params![cycle.to_string(), kind, phase],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.unsigned_abs())
            .map_err(|e| db_err(format!("count {kind} in phase {phase}"), e))
        })?;
        // A count reads the whole phase (DynamoDB charges for every item it counts).
        self.db.read(usize::try_from(n).unwrap_or(usize::MAX));
        Ok(n)
    }

    async fn get_docs(
        &self,
        cycle: CycleId,
        kind: &str,
        ids: &[String],
    ) -> Result<Vec<Doc>, PortError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The ids travel as one JSON array parameter, so any number of them is one query.
        let ids = encode("document ids", &ids)?;
        self.db
            .with(|conn| {
                let mut q = conn
                    .prepare_cached(
                        "SELECT id, version, body FROM docs
                     WHERE cycle = ?1 AND kind = ?2 AND id IN (SELECT value FROM json_each(?3))
                     ORDER BY id",
                    )
                    .map_err(|e| db_err(format!("prepare get {kind}"), e))?;
                q.query_map(params![cycle.to_string(), kind, ids], doc_row)
                    .and_then(Iterator::collect)
                    .map_err(|e| db_err(format!("get {kind}"), e))
            })
            .inspect(|docs: &Vec<Doc>| self.db.read(docs.len()))
    }
}

fn doc_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Doc> {
    Ok(Doc {
        id: r.get(0)?,
        version: r.get::<_, i64>(1)? as u64,
        body: r.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(h: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-12-09T{h:02}:00:00Z"))
            .map(|t| t.with_timezone(&Utc))
            .unwrap()
    }

    #[tokio::test]
    async fn the_store_counts_its_requests_and_the_records_they_read() {
        let store = SqliteState::in_memory().unwrap();
        let cycle: CycleId = "2026-12".parse().unwrap();
        let start = store.work();
        for id in ["a", "b", "c"] {
            store.put_doc(cycle, "run.t", id, "{}", None).await.unwrap();
        }
        let written = store.work();
        assert_eq!(written.requests - start.requests, 3);
        assert_eq!(written.rows, start.rows, "a write reads nothing");
        // One list of three, one point read that finds one, one that finds none.
        assert_eq!(store.list_docs(cycle, "run.t").await.unwrap().len(), 3);
        assert!(store.get_doc(cycle, "run.t", "b").await.unwrap().is_some());
        assert!(store.get_doc(cycle, "run.t", "z").await.unwrap().is_none());
        let ids = vec!["a".to_owned(), "c".to_owned(), "z".to_owned()];
        assert_eq!(store.get_docs(cycle, "run.t", &ids).await.unwrap().len(), 2);
        let read = store.work();
        assert_eq!(read.requests - written.requests, 4);
        assert_eq!(read.rows - written.rows, 3 + 1 + 2);
    }

    #[tokio::test]
    async fn a_database_from_before_the_document_index_gets_its_columns_on_open() {
        let path = std::env::temp_dir().join(format!(
            "patchflow-docs-migration-{}-{}.db",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        // GIVEN a file whose docs table has no index columns, holding a document
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE docs (cycle TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
                 version INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (cycle, kind, id));
                 INSERT INTO docs VALUES ('2026-12', 'run.t', 'ws-old', 3, '{}');",
            )
            .unwrap();
        }
        let cycle: CycleId = "2026-12".parse().unwrap();
        // WHEN it is opened THEN the old document reads as before and is unindexed
        let store = SqliteState::open(&path).unwrap();
        let old = store
            .get_doc(cycle, "run.t", "ws-old")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.version, 3);
        assert!(!store
            .any_doc_in_phase(cycle, "run.t", &["pending"])
            .await
            .unwrap());
        // AND it can be indexed
        let index = DocIndex {
            due: Some(due(9)),
            phase: Some("pending".into()),
        };
        assert_eq!(
            store
                .put_doc_indexed(cycle, "run.t", "ws-old", "{}", Some(3), &index)
                .await
                .unwrap(),
            4
        );
        drop(store);
        // AND opening it again changes nothing, and the due listing uses its index
        let store = SqliteState::open(&path).unwrap();
        let listed = store
            .list_due_docs(cycle, "run.t", due(10), None, 10)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.due, due(9));
        let plan: Vec<String> = store
            .db
            .with(|conn| {
                let mut q = conn
                    .prepare(
                        "EXPLAIN QUERY PLAN SELECT id, version, body, due_sk FROM docs
                         WHERE cycle = ?1 AND kind = ?2 AND due_sk > ?3 AND due_sk < ?4
                         ORDER BY due_sk LIMIT ?5",
                    )
                    .map_err(|e| db_err("plan", e))?;
                q.query_map(params!["2026-12", "run.t", "", "9", 10], |r| r.get(3))
                    .and_then(Iterator::collect)
                    .map_err(|e| db_err("plan", e))
            })
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("docs_due")),
            "{plan:?}"
        );
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
