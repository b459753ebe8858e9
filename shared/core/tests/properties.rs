//! Properties of the window arithmetic that must hold for every zone and every instant.

use chrono::{DateTime, Duration, LocalResult, TimeZone, Utc};
use chrono_tz::{Tz, TZ_VARIANTS};
use patchflow_core::policy::Policy;
use patchflow_core::schedule::DailyWindow;
use proptest::prelude::*;

fn any_zone() -> impl Strategy<Value = Tz> {
    (0..TZ_VARIANTS.len()).prop_map(|i| TZ_VARIANTS[i])
}

/// 2016-2040: after the last whole-day skips in the tz database (Samoa 2011), so every window has
/// a length.
fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    (1_451_606_400i64..2_240_524_800i64).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
}

fn any_window() -> impl Strategy<Value = DailyWindow> {
    let p = Policy::default();
    prop_oneof![
        Just(p.server.window),
        Just(p.workstation.regular_window),
        Just(p.workstation.daytime_window),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_next_window_starts_at_or_after_the_instant_and_has_a_length(
        tz in any_zone(), t in any_instant(), w in any_window()
    ) {
        let next = w.first_starting_at_or_after(tz, t);
        prop_assert!(next.start >= t);
        prop_assert!(next.end > next.start, "{:?}", next);
        // Nothing earlier qualifies: a window anchored a day before would start before `t`.
        prop_assert!(next.start - t < Duration::days(4), "{:?} after {}", next, t);
    }

    #[test]
    fn a_window_starts_at_its_configured_local_time_unless_that_time_fell_in_a_gap(
        tz in any_zone(), t in any_instant(), w in any_window()
    ) {
        let next = w.first_starting_at_or_after(tz, t);
        let local = next.start.with_timezone(&tz);
        if local.time() != w.start().time() {
            // The configured start did not exist on that day: the clock sprang over it.
            let anchor = local.date_naive().and_time(w.start().time());
            let day_before = (local.date_naive() - Duration::days(1)).and_time(w.start().time());
            let gap = |n| matches!(tz.from_local_datetime(&n), LocalResult::None);
            prop_assert!(gap(anchor) || gap(day_before), "{} in {} starts at {}", w, tz.name(), local);
        }
    }

    #[test]
    fn consecutive_windows_never_overlap(tz in any_zone(), t in any_instant(), w in any_window()) {
        let first = w.first_starting_at_or_after(tz, t);
        let second = w.first_starting_at_or_after(tz, first.start + Duration::seconds(1));
        prop_assert!(second.start > first.start);
        prop_assert!(!first.overlaps(&second), "{:?} overlaps {:?}", first, second);
    }

    #[test]
    fn an_instant_inside_a_window_finds_that_window(tz in any_zone(), t in any_instant(), w in any_window()) {
        let next = w.first_starting_at_or_after(tz, t);
        let mid = next.start + (next.end - next.start) / 2;
        prop_assert_eq!(w.containing(tz, mid), Some(next));
    }
}
