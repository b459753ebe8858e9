//! The compliance report: one self-contained HTML page per bundle (no external assets).
//! (Being written.)
