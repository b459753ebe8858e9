//! How a handler fails: hand the message back to the queue, or give up on it.

use patchflow_core::ports::PortError;

/// A handler's failure.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Passing: the message goes back to its queue and is retried (and, after the queue's maximum
    /// receive count, lands in its dead-letter queue).
    #[error("retry: {0}")]
    Retry(String),
    /// Retrying cannot help: the message goes to the dead-letter queue with this reason.
    #[error("poison: {0}")]
    Poison(String),
}

impl From<PortError> for HandlerError {
    fn from(e: PortError) -> Self {
        let text = error_chain(&e);
        match e {
            // Another writer moved first: re-reading on the retry sees its work.
            PortError::Conflict(_) | PortError::Transient { .. } => HandlerError::Retry(text),
            PortError::NotFound(_) | PortError::Permanent { .. } => HandlerError::Poison(text),
        }
    }
}

pub use patchflow_core::ports::error_chain;

/// A stored record that cannot be read back is corrupt: permanent.
pub fn corrupt(what: &str, e: serde_json::Error) -> HandlerError {
    HandlerError::Poison(format!("stored {what} is unreadable: {e}"))
}
