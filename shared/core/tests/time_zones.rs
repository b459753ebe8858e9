//! Windows in the zones an MSP actually meets, across spring-forward gaps, fall-back repeats,
//! midnight crossings and transitions inside a window. Every expected instant was worked out by
//! hand from the zone's rules (and cross-checked against an independent tz implementation).

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use patchflow_core::ids::CycleId;
use patchflow_core::policy::Policy;
use patchflow_core::schedule::{nth_weekday, resolve_local, DailyWindow, Weekdays, Window};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}

fn regular() -> DailyWindow {
    Policy::default().workstation.regular_window
}

fn server() -> DailyWindow {
    Policy::default().server.window
}

fn daytime() -> DailyWindow {
    Policy::default().workstation.daytime_window
}

fn win(start: &str, end: &str) -> Window {
    Window {
        start: at(start),
        end: at(end),
    }
}

fn local(zone: &str, text: &str) -> DateTime<Utc> {
    resolve_local(tz(zone), text.parse().unwrap())
}

#[test]
fn a_local_time_in_a_spring_forward_gap_resolves_to_the_first_instant_after_it() {
    // New York skips 02:00-03:00 on 2026-03-08: 02:30 becomes 03:00 EDT, not 03:30.
    assert_eq!(
        local("America/New_York", "2026-03-08T02:30:00"),
        at("2026-03-08T07:00:00Z")
    );
    // Santiago skips midnight to 01:00 on 2026-09-06.
    assert_eq!(
        local("America/Santiago", "2026-09-06T00:30:00"),
        at("2026-09-06T04:00:00Z")
    );
    // Chatham skips 02:45-03:45 on 2026-09-27.
    assert_eq!(
        local("Pacific/Chatham", "2026-09-27T03:00:00"),
        at("2026-09-26T14:00:00Z")
    );
    // Lord Howe skips only half an hour, 02:00-02:30, on 2026-10-04.
    assert_eq!(
        local("Australia/Lord_Howe", "2026-10-04T02:10:00"),
        at("2026-10-03T15:30:00Z")
    );
}

#[test]
fn a_local_time_repeated_by_a_fall_back_resolves_to_the_earlier_instant() {
    assert_eq!(
        local("America/New_York", "2026-11-01T01:30:00"),
        at("2026-11-01T05:30:00Z")
    );
    assert_eq!(
        local("Europe/London", "2026-10-25T01:30:00"),
        at("2026-10-25T00:30:00Z")
    );
    // Dublin's winter time is "negative DST" in the tz database; wall clocks behave like London's.
    assert_eq!(
        local("Europe/Dublin", "2026-10-25T01:30:00"),
        at("2026-10-25T00:30:00Z")
    );
    assert_eq!(
        local("America/St_Johns", "2026-11-01T01:30:00"),
        at("2026-11-01T04:00:00Z")
    );
    assert_eq!(
        local("Australia/Lord_Howe", "2026-04-05T01:45:00"),
        at("2026-04-04T14:45:00Z")
    );
    assert_eq!(
        local("Pacific/Chatham", "2026-04-05T03:00:00"),
        at("2026-04-04T13:15:00Z")
    );
    assert_eq!(
        local("America/Santiago", "2026-04-04T23:30:00"),
        at("2026-04-05T02:30:00Z")
    );
}

#[test]
fn windows_on_spring_forward_nights_are_shorter() {
    let cases = [
        (
            "America/New_York",
            "2026-03-08",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z",
        ),
        (
            "America/Chicago",
            "2026-03-08",
            "2026-03-08T08:00:00Z",
            "2026-03-08T09:00:00Z",
        ),
        (
            "Europe/Berlin",
            "2026-03-29",
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00Z",
        ),
        (
            "America/St_Johns",
            "2026-03-08",
            "2026-03-08T05:30:00Z",
            "2026-03-08T06:30:00Z",
        ),
        (
            "Australia/Sydney",
            "2026-10-04",
            "2026-10-03T16:00:00Z",
            "2026-10-03T17:00:00Z",
        ),
        // Half-hour DST: the 02:00-04:00 window loses 30 minutes.
        (
            "Australia/Lord_Howe",
            "2026-10-04",
            "2026-10-03T15:30:00Z",
            "2026-10-03T17:00:00Z",
        ),
        // Chatham's gap is 02:45-03:45: the start exists, the window loses an hour.
        (
            "Pacific/Chatham",
            "2026-09-27",
            "2026-09-26T13:15:00Z",
            "2026-09-26T14:15:00Z",
        ),
    ];
    for (zone, day, start, end) in cases {
        assert_eq!(
            regular().on(tz(zone), date(day)),
            win(start, end),
            "{zone} {day}"
        );
    }
}

#[test]
fn windows_on_fall_back_nights_start_at_the_earlier_instant_and_are_longer() {
    let cases = [
        // Berlin repeats 02:00-03:00: start at 02:00 CEST, end at 04:00 CET, three hours.
        (
            "Europe/Berlin",
            "2026-10-25",
            "2026-10-25T00:00:00Z",
            "2026-10-25T03:00:00Z",
        ),
        (
            "Australia/Sydney",
            "2026-04-05",
            "2026-04-04T15:00:00Z",
            "2026-04-04T18:00:00Z",
        ),
        (
            "Pacific/Chatham",
            "2026-04-05",
            "2026-04-04T12:15:00Z",
            "2026-04-04T15:15:00Z",
        ),
        // New York repeats 01:00-02:00, before the window: 02:00-04:00 EST is a plain two hours.
        (
            "America/New_York",
            "2026-11-01",
            "2026-11-01T07:00:00Z",
            "2026-11-01T09:00:00Z",
        ),
        // Lord Howe repeats 01:30-02:00: 02:00 exists once, the window is two hours.
        (
            "Australia/Lord_Howe",
            "2026-04-05",
            "2026-04-04T15:30:00Z",
            "2026-04-04T17:30:00Z",
        ),
    ];
    for (zone, day, start, end) in cases {
        assert_eq!(
            regular().on(tz(zone), date(day)),
            win(start, end),
            "{zone} {day}"
        );
    }
}

#[test]
fn the_server_window_crosses_midnight_and_stretches_or_shrinks_over_a_transition() {
    let cases = [
        // Anchored to the local start date; ends 03:20 the next local day.
        (
            "America/New_York",
            "2026-12-08",
            "2026-12-09T02:20:00Z",
            "2026-12-09T08:20:00Z",
            6 * 60,
        ),
        (
            "America/New_York",
            "2026-10-31",
            "2026-11-01T01:20:00Z",
            "2026-11-01T08:20:00Z",
            7 * 60,
        ),
        (
            "Europe/London",
            "2026-03-28",
            "2026-03-28T21:20:00Z",
            "2026-03-29T02:20:00Z",
            5 * 60,
        ),
        (
            "Europe/London",
            "2026-10-24",
            "2026-10-24T20:20:00Z",
            "2026-10-25T03:20:00Z",
            7 * 60,
        ),
        (
            "Europe/Dublin",
            "2026-10-24",
            "2026-10-24T20:20:00Z",
            "2026-10-25T03:20:00Z",
            7 * 60,
        ),
        (
            "America/Santiago",
            "2026-09-05",
            "2026-09-06T01:20:00Z",
            "2026-09-06T06:20:00Z",
            5 * 60,
        ),
        (
            "America/Santiago",
            "2026-04-04",
            "2026-04-05T00:20:00Z",
            "2026-04-05T07:20:00Z",
            7 * 60,
        ),
        (
            "Australia/Lord_Howe",
            "2026-04-04",
            "2026-04-04T10:20:00Z",
            "2026-04-04T16:50:00Z",
            6 * 60 + 30,
        ),
        (
            "Asia/Kathmandu",
            "2026-12-08",
            "2026-12-08T15:35:00Z",
            "2026-12-08T21:35:00Z",
            6 * 60,
        ),
        (
            "Asia/Kolkata",
            "2026-12-08",
            "2026-12-08T15:50:00Z",
            "2026-12-08T21:50:00Z",
            6 * 60,
        ),
    ];
    for (zone, day, start, end, minutes) in cases {
        let w = server().on(tz(zone), date(day));
        assert_eq!(w, win(start, end), "{zone} {day}");
        assert_eq!(w.duration().num_minutes(), minutes, "{zone} {day}");
    }
}

#[test]
fn half_hour_and_45_minute_zones_keep_their_offsets() {
    assert_eq!(
        regular().on(tz("Asia/Kolkata"), date("2026-12-09")).start,
        at("2026-12-08T20:30:00Z")
    );
    assert_eq!(
        regular().on(tz("Asia/Kathmandu"), date("2026-12-09")).start,
        at("2026-12-08T20:15:00Z")
    );
    assert_eq!(
        regular()
            .on(tz("America/St_Johns"), date("2026-12-09"))
            .start,
        at("2026-12-09T05:30:00Z")
    );
    assert_eq!(
        regular()
            .on(tz("Pacific/Chatham"), date("2026-12-09"))
            .start,
        at("2026-12-08T12:15:00Z")
    );
}

#[test]
fn the_first_window_starts_at_or_after_the_instant_never_before() {
    let ny = tz("America/New_York");
    // Exactly at a window's start: that window.
    assert_eq!(
        server()
            .first_starting_at_or_after(ny, at("2026-12-09T02:20:00Z"))
            .start,
        at("2026-12-09T02:20:00Z")
    );
    // One second later: the next night's.
    assert_eq!(
        server()
            .first_starting_at_or_after(ny, at("2026-12-09T02:20:01Z"))
            .start,
        at("2026-12-10T02:20:00Z")
    );
    // Inside a window that already started: the next one, not the current one.
    assert_eq!(
        regular()
            .first_starting_at_or_after(ny, at("2026-12-09T07:30:00Z"))
            .start,
        at("2026-12-10T07:00:00Z")
    );
}

#[test]
fn the_daytime_window_skips_weekends() {
    let berlin = tz("Europe/Berlin");
    // Friday 2026-12-11 18:00 CET -> Monday 2026-12-14 09:00 CET.
    let w = daytime().first_starting_at_or_after(berlin, at("2026-12-11T17:00:00Z"));
    assert_eq!(w, win("2026-12-14T08:00:00Z", "2026-12-14T16:00:00Z"));
}

#[test]
fn a_window_on_chosen_days_only_opens_on_those_days() {
    let w = DailyWindow::parse("22:00-02:00", Weekdays::of(&[chrono::Weekday::Sat])).unwrap();
    let sydney = tz("Australia/Sydney");
    let first = w.first_starting_at_or_after(sydney, at("2026-12-07T00:00:00Z"));
    assert_eq!(
        first
            .start
            .with_timezone(&sydney)
            .format("%a %H:%M")
            .to_string(),
        "Sat 22:00"
    );
}

#[test]
fn patch_tuesday_is_the_second_tuesday_of_the_month() {
    let cases = [
        ("2026-12", "2026-12-08"),
        ("2026-09", "2026-09-08"),
        ("2027-01", "2027-01-12"),
        ("2026-11", "2026-11-10"),
        ("2027-06", "2027-06-08"),
    ];
    for (cycle, day) in cases {
        let c: CycleId = cycle.parse().unwrap();
        assert_eq!(
            nth_weekday(c, chrono::Weekday::Tue, 2),
            date(day),
            "{cycle}"
        );
    }
}

#[test]
fn the_release_is_ten_am_pacific_whether_or_not_daylight_time_is_in_force() {
    let p = Policy::default();
    let dec = patchflow_core::plan::Release::of("2026-12".parse().unwrap(), &p, None);
    assert_eq!(dec.released_at, at("2026-12-08T18:00:00Z"));
    let jun = patchflow_core::plan::Release::of("2026-06".parse().unwrap(), &p, None);
    assert_eq!(jun.released_at, at("2026-06-09T17:00:00Z"));
    let oob = patchflow_core::plan::Release::of(
        "2026-06".parse().unwrap(),
        &p,
        Some(at("2026-06-20T05:00:00Z")),
    );
    assert_eq!(
        (oob.patch_tuesday, oob.released_at),
        (date("2026-06-09"), at("2026-06-20T05:00:00Z"))
    );
}
