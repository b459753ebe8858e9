//! One SQLite database behind a mutex, shared by the local queues and state store.

use std::path::Path;
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
        })
    }

    /// Runs `f` with the connection. Calls are short and never await, so a plain mutex serves.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn)
    }
}
