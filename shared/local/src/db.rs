//! One SQLite database behind a mutex, shared by the local queues and state store.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use patchflow_core::ports::PortError;
use rusqlite::Connection;

/// A SQLite failure mapped onto the port contract: a busy or locked database is transient.
pub(crate) fn db_err(context: impl Into<String>, e: rusqlite::Error) -> PortError {
    match e {
        rusqlite::Error::SqliteFailure(ref f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            PortError::transient(context, e)
        }
        other => PortError::permanent(context, other),
    }
}

/// An open database with its schema applied.
#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
    work: Arc<Counters>,
}

/// What a store has done since it was opened: the requests made of it (each a round trip to
/// DynamoDB in AWS) and the records they read.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    rows: AtomicU64,
}

/// A store's requests and the records they read, counted from its opening.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreWork {
    /// Requests (reads and writes).
    pub requests: u64,
    /// Records read.
    pub rows: u64,
}

impl Db {
    /// Opens a database file, or memory when `path` is `None`, and applies `schema`.
    pub(crate) fn open(path: Option<&Path>, schema: &str) -> Result<Self, PortError> {
        let conn = match path {
            Some(p) => {
                Connection::open(p).map_err(|e| db_err(format!("open {}", p.display()), e))?
            }
            None => {
                Connection::open_in_memory().map_err(|e| db_err("open an in-memory database", e))?
            }
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| db_err("busy timeout", e))?;
        // WAL: readers never block the writer; NORMAL sync is durable across process crashes.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(|e| db_err("configure", e))?;
        conn.execute_batch(schema)
            .map_err(|e| db_err("create the tables", e))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            work: Arc::default(),
        })
    }

    /// Runs `f` with the connection. Calls are short and never await, so a plain mutex serves.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        self.work.requests.fetch_add(1, Ordering::Relaxed);
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn)
    }

    /// Counts `n` records read.
    pub(crate) fn read(&self, n: usize) {
        self.work.rows.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The requests and records read so far.
    pub(crate) fn work(&self) -> StoreWork {
        StoreWork {
            requests: self.work.requests.load(Ordering::Relaxed),
            rows: self.work.rows.load(Ordering::Relaxed),
        }
    }
}
