//! The system clock, for the embedded default's wiring.

use chrono::{DateTime, Utc};
use patchflow_core::ports::clock::Clock;

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
