//! Verification of stored evidence: every hash recomputed, every chain walked, every lock read.
//! (Being written.)
