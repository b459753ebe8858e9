//! Ports: the narrow traits through which handlers reach state, queues and evidence. Adapters
//! (AWS in `shared/aws`, the embedded default in `shared/local`) implement them; one contract test
//! suite runs against every adapter of a port.
//!
//! The error contract, shared by every port: `Conflict` (a condition did not hold: the key
//! exists, another writer moved the record first), `NotFound`, `Transient` (throttling, a 5xx, a
//! timeout: retry, or hand the message back to the queue) and `Permanent` (bad request, access
//! denied, corrupt data: retrying cannot help; the message goes to the dead-letter queue with
//! this reason).

pub mod clock;
pub mod evidence;
pub mod pager;
pub mod psa;
pub mod queue;
pub mod rmm;
pub mod sources;
pub mod state;

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error and its causes, on one line (`context: cause: cause`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What went wrong at a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A condition did not hold: the key already exists, or another writer got there first.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Nothing is stored under the key.
    #[error("not found: {0}")]
    NotFound(String),
    /// A passing failure (throttling, 5xx, timeout): retry.
    #[error("transient failure: {context}")]
    Transient {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A failure retrying cannot fix (bad request, access denied, corrupt data).
    #[error("permanent failure: {context}")]
    Permanent {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

impl PortError {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Transient { .. })
    }

    /// A transient failure with its cause.
    pub fn transient(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        PortError::Transient {
            context: context.into(),
            source: source.into(),
        }
    }

    /// A permanent failure with its cause.
    pub fn permanent(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        PortError::Permanent {
            context: context.into(),
            source: source.into(),
        }
    }
}
