//! The report's summary as a PNG image, rendered in pure Rust with an embedded font.
//! (Being written.)
