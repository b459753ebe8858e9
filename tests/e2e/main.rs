//! Cross-crate tests: what must hold of every plan, for any fleet, cycle and release.

mod plan_invariants;
