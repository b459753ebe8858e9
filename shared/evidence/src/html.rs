//! The compliance report: one self-contained HTML page per bundle (no external assets).
//!
//! The page is a view of the bundle's `record.json` for a human reader (an engineer, the client,
//! a CMMC assessor). It holds everything it shows: the style sheet is inline, the summary PNG is
//! a `data:` URI, there are no scripts, fonts or links out, and a Content-Security-Policy forbids
//! loading anything else. Every text taken from the record is HTML-escaped, since host names,
//! reasons, engineer names and ticket ids come from outside systems.
//!
//! The sections carry fixed ids (`summary`, `outcomes`, `reboots`, `approvals`, `exceptions`,
//! `excluded`, `tickets`, `sla`, `integrity` for a tier; `summary`, `tiers`, `exceptions`, `sla`,
//! `integrity` for a cycle's roll-up) so readers and checks can point at them. The output depends
//! on its inputs only: the same record gives the same bytes.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use patchflow_core::schedule::utc;

use crate::names;
use patchflow_core::rules::outcome::Category;

use crate::record::{
    Counts, CycleRecord, ExceptionLine, ObjectiveTally, SlaSection, TierRecord, TimeFrames,
};

/// The page's style sheet: plain, printable, with status colours.
const STYLE: &str = "\
:root { color-scheme: light; }
body { font-family: -apple-system, \"Segoe UI\", Roboto, Helvetica, Arial, sans-serif; \
font-size: 14px; line-height: 1.4; color: #1a1a1a; background: #fff; margin: 0 auto; \
max-width: 1200px; padding: 16px 24px; }
header h1 { font-size: 22px; margin: 0 0 4px 0; }
header p { margin: 0 0 8px 0; color: #444; }
nav { margin: 8px 0 16px 0; font-size: 13px; }
nav a { margin-right: 12px; color: #1f4e8c; }
section { margin: 0 0 24px 0; }
h2 { font-size: 18px; border-bottom: 2px solid #1f4e8c; padding-bottom: 2px; margin: 16px 0 8px 0; }
h3 { font-size: 15px; margin: 12px 0 6px 0; }
table { border-collapse: collapse; margin: 4px 0 8px 0; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
th, td { border: 1px solid #999; padding: 3px 6px; text-align: left; vertical-align: top; }
thead th { background: #e8edf4; }
table.facts th { background: #f3f3f3; font-weight: normal; color: #333; }
code { font-family: Consolas, \"Liberation Mono\", Menlo, monospace; font-size: 12px; \
word-break: break-all; }
p.none { color: #555; font-style: italic; }
p.note { color: #444; font-size: 13px; }
p.ok { color: #17632a; font-weight: bold; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; border: 1px solid #999; \
white-space: nowrap; }
.good { background: #dff3e3; border-color: #2e8540; color: #17632a; }
.bad { background: #fbe3e3; border-color: #c62828; color: #8e1b1b; }
.warn { background: #fff3d6; border-color: #c78c00; color: #6b4b00; }
.neutral { background: #eef1f5; border-color: #8a96a8; color: #2f3a4a; }
tr.declined td { background: #fdf0f0; }
tr.breach td { background: #fdf0f0; }
img.summary { max-width: 100%; height: auto; border: 1px solid #ccc; margin: 8px 0; }
footer { border-top: 1px solid #999; margin-top: 24px; padding-top: 6px; font-size: 12px; \
color: #444; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  nav { display: none; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; }
  tr, img { break-inside: avoid; }
  thead { display: table-header-group; }
}
";

/// Shown for an absent value.
const ABSENT: &str = "\u{2014}";

/// The order severities are listed in, `none` for patches without one.
const SEVERITY_ORDER: [&str; 5] = ["critical", "important", "moderate", "low", "none"];

/// One client's part of a closed tier.
///
/// `summary_png` is the bundle's `summary.png`, embedded as a `data:` URI (left out, with a note,
/// when empty). The page does not depend on the bundle's place in the client's chain of
/// manifests, so it is written before that place is taken.
pub fn tier_report(record: &TierRecord, summary_png: &[u8]) -> String {
    let counts = record.counts();
    let mut body = String::new();
    nav(
        &mut body,
        &[
            ("summary", "Summary"),
            ("outcomes", "Outcomes"),
            ("reboots", "Reboots"),
            ("approvals", "Approvals"),
            ("exceptions", "Exceptions"),
            ("excluded", "Excluded"),
            ("tickets", "Tickets"),
            ("sla", "3.14.1 time frames"),
            ("integrity", "Integrity"),
        ],
    );

    open_section(&mut body, "summary", "Summary");
    facts(
        &mut body,
        &[
            ("Cycle", text(&record.cycle.to_string())),
            ("Client", text(&record.client)),
            ("Tier", code(&record.tier)),
            ("Kind", text(&record.kind)),
            ("Ring", text(&record.wave)),
            ("Release", when(&record.released_at)),
            ("Opened (identification)", when(&record.opened_at)),
            ("Validated", when(&record.validated_at)),
            ("3.14.1 standings as of", when(&record.sla.as_of)),
            ("Breaches", record.sla.breaches.len().to_string()),
        ],
    );
    counts_table(&mut body, &counts);
    body.push_str(CATEGORY_NOTE);
    let alt = format!(
        "Summary chart of cycle {} for {}, tier {}: {} endpoints; {}",
        record.cycle,
        record.client,
        record.tier,
        counts_alt(&counts),
        tallies_alt(&record.sla.tallies)
    );
    summary_image(&mut body, summary_png, &alt);
    close_section(&mut body);

    open_section(&mut body, "outcomes", "Outcomes per endpoint");
    let rows = record
        .outcomes
        .iter()
        .map(|o| Row {
            class: None,
            cells: vec![
                text(&o.hostname),
                code(&o.endpoint),
                category_badge(o.category()),
                badge(&o.status),
                o.attempts.to_string(),
                when_or(o.installed_at.as_ref(), ABSENT),
                when_or(o.reboot_confirmed_at.as_ref(), ABSENT),
                o.reminders.to_string(),
                yes_no(o.forced_reboot).to_owned(),
                when_or(o.validated_at.as_ref(), ABSENT),
                if o.failures.is_empty() {
                    ABSENT.to_owned()
                } else {
                    o.failures
                        .iter()
                        .map(|f| code(f))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
                if o.applicability.is_empty() {
                    ABSENT.to_owned()
                } else {
                    text(&o.applicability)
                },
            ],
        })
        .collect::<Vec<_>>();
    table(
        &mut body,
        None,
        &[
            "Host name",
            "Endpoint",
            "Category",
            "Status",
            "Attempts",
            "Installed at",
            "Reboot confirmed at",
            "Reminders",
            "Forced reboot",
            "Validated at",
            "Failures",
            "Applicability",
        ],
        &rows,
    );
    close_section(&mut body);

    open_section(&mut body, "reboots", "Reboot confirmations");
    if !record.outcomes.is_empty() {
        let confirmed = record
            .outcomes
            .iter()
            .filter(|o| o.reboot_confirmed_at.is_some())
            .count();
        let forced = record.outcomes.iter().filter(|o| o.forced_reboot).count();
        body.push_str(&format!(
            "<p>{confirmed} of {} reboot(s) confirmed; {forced} forced.</p>\n",
            record.outcomes.len()
        ));
    }
    let rows = record
        .outcomes
        .iter()
        .map(|o| Row {
            class: None,
            cells: vec![
                text(&o.hostname),
                code(&o.endpoint),
                when_or(o.reboot_confirmed_at.as_ref(), "not confirmed"),
                if o.forced_reboot {
                    badge_as("forced", "warn")
                } else {
                    "no".to_owned()
                },
                o.reminders.to_string(),
            ],
        })
        .collect::<Vec<_>>();
    table(
        &mut body,
        None,
        &[
            "Host name",
            "Endpoint",
            "Reboot confirmed at",
            "Forced",
            "Reminders",
        ],
        &rows,
    );
    close_section(&mut body);

    open_section(&mut body, "approvals", "Approvals and declines");
    if !record.approvals.is_empty() {
        let count = |d: &str| record.approvals.iter().filter(|a| a.decision == d).count();
        let others = record
            .approvals
            .iter()
            .filter(|a| {
                !matches!(
                    a.decision.as_str(),
                    "approved" | "declined" | "pending_review"
                )
            })
            .count();
        let mut line = format!(
            "<p>{} patch(es): {} approved, {} declined, {} pending review",
            record.approvals.len(),
            count("approved"),
            count("declined"),
            count("pending_review")
        );
        if others > 0 {
            line.push_str(&format!(", {others} other"));
        }
        line.push_str(".</p>\n");
        body.push_str(&line);
    }
    let rows = record
        .approvals
        .iter()
        .map(|a| {
            let declined = a.decision == "declined";
            Row {
                class: declined.then_some("declined"),
                cells: vec![
                    code(&a.patch),
                    text(&a.title),
                    opt_text(a.severity.as_deref(), "none"),
                    if declined {
                        format!("<strong>{}</strong>", badge(&a.decision))
                    } else {
                        badge(&a.decision)
                    },
                    code(&a.reason),
                    text(&a.node),
                    when_or(a.recorded_at.as_ref(), ABSENT),
                    opt_text(a.engineer.as_deref(), ABSENT),
                    a.reason_code
                        .as_deref()
                        .map_or_else(|| ABSENT.to_owned(), code),
                    when_or(a.signed_at.as_ref(), ABSENT),
                ],
            }
        })
        .collect::<Vec<_>>();
    table(
        &mut body,
        None,
        &[
            "Patch",
            "Title",
            "Severity",
            "Decision",
            "Reason code",
            "Node",
            "Recorded at",
            "Engineer",
            "Engineer's reason code",
            "Signed at",
        ],
        &rows,
    );
    close_section(&mut body);

    exceptions_section(&mut body, &record.exceptions);

    open_section(&mut body, "excluded", "Excluded endpoints");
    let rows = record
        .excluded
        .iter()
        .map(|e| Row {
            class: None,
            cells: vec![text(&e.hostname), code(&e.endpoint), code(&e.reason)],
        })
        .collect::<Vec<_>>();
    table(&mut body, None, &["Host name", "Endpoint", "Reason"], &rows);
    close_section(&mut body);

    open_section(&mut body, "tickets", "Failure tickets");
    let rows = record
        .tickets
        .iter()
        .map(|t| Row {
            class: None,
            cells: vec![
                code(&t.failure),
                code(&t.endpoint),
                text(&t.stage),
                badge_as(&t.priority, priority_class(&t.priority)),
                t.ticket
                    .as_deref()
                    .map_or_else(|| "not opened".to_owned(), code),
                badge(&t.status),
                yes_no(t.paged).to_owned(),
                when(&t.failed_at),
                opt_text(t.root_cause.as_deref(), "pending"),
            ],
        })
        .collect::<Vec<_>>();
    table(
        &mut body,
        None,
        &[
            "Failure",
            "Endpoint",
            "Stage",
            "Priority",
            "PSA ticket",
            "Status",
            "Paged",
            "Failed at",
            "Root cause",
        ],
        &rows,
    );
    close_section(&mut body);

    sla_section(&mut body, &record.sla);

    integrity_section(
        &mut body,
        "Every artifact of this bundle (the record, this report, the summary image and the CSV \
         files) is listed in",
    );

    let title = format!(
        "Patch compliance report {} \u{2014} {} \u{2014} tier {}",
        record.cycle, record.client, record.tier
    );
    let subtitle = format!(
        "One client's part of a closed tier: {} {} ring, validated {}.",
        record.kind,
        record.wave,
        utc::format(&record.validated_at)
    );
    document(&title, &subtitle, &body, record.schema)
}

/// A client's roll-up of a cycle.
///
/// `summary_png` as for [`tier_report`].
pub fn cycle_report(record: &CycleRecord, summary_png: &[u8]) -> String {
    let totals = record
        .tiers
        .iter()
        .fold(Counts::default(), |t, line| t.plus(&line.counts));
    let mut body = String::new();
    nav(
        &mut body,
        &[
            ("summary", "Summary"),
            ("tiers", "Tiers"),
            ("exceptions", "Exceptions"),
            ("sla", "3.14.1 time frames"),
            ("integrity", "Integrity"),
        ],
    );

    open_section(&mut body, "summary", "Summary");
    facts(
        &mut body,
        &[
            ("Cycle", text(&record.cycle.to_string())),
            ("Client", text(&record.client)),
            ("Release", when(&record.released_at)),
            ("Opened (identification)", when(&record.opened_at)),
            ("Closed", when(&record.closed_at)),
            ("Tiers", record.tiers.len().to_string()),
            ("3.14.1 standings as of", when(&record.sla.as_of)),
            ("Breaches", record.sla.breaches.len().to_string()),
        ],
    );
    body.push_str("<p>Endpoint counts over all tiers of the cycle:</p>\n");
    counts_table(&mut body, &totals);
    body.push_str(CATEGORY_NOTE);
    let alt = format!(
        "Summary chart of cycle {} for {}: {} tier(s), {} endpoints; {}",
        record.cycle,
        record.client,
        record.tiers.len(),
        counts_alt(&totals),
        tallies_alt(&record.sla.tallies)
    );
    summary_image(&mut body, summary_png, &alt);
    close_section(&mut body);

    open_section(&mut body, "tiers", "Tiers");
    body.push_str(
        "<p class=\"note\">Each tier has its own bundle and report; its manifest's key and \
         SHA-256 are listed here so the roll-up can be checked against them.</p>\n",
    );
    let rows = record
        .tiers
        .iter()
        .map(|t| Row {
            class: None,
            cells: vec![
                code(&t.tier),
                text(&t.kind),
                text(&t.wave),
                when(&t.validated_at),
                t.counts.patched.to_string(),
                t.counts.patched_after_retry.to_string(),
                t.counts.up_to_date.to_string(),
                t.counts.failed.to_string(),
                t.counts.awaiting_approval.to_string(),
                t.counts.held.to_string(),
                t.counts.in_progress.to_string(),
                t.counts.excluded.to_string(),
                code(&t.manifest),
                code(&t.manifest_sha256),
            ],
        })
        .collect::<Vec<_>>();
    table(
        &mut body,
        None,
        &[
            "Tier",
            "Kind",
            "Ring",
            "Validated at",
            "Patched",
            "Patched (after retry)",
            "Up to date",
            "Failed",
            "Awaiting approval",
            "Held",
            "In progress",
            "Excluded",
            "Manifest key",
            "Manifest SHA-256",
        ],
        &rows,
    );
    close_section(&mut body);

    exceptions_section(&mut body, &record.exceptions);
    sla_section(&mut body, &record.sla);
    integrity_section(
        &mut body,
        "Every artifact of this roll-up (the record, this report, the summary image and the \
         per-flaw CSV) is listed in",
    );

    let title = format!(
        "Patch compliance report {} \u{2014} {} \u{2014} cycle roll-up",
        record.cycle, record.client
    );
    let subtitle = format!(
        "A client's roll-up of a cycle: {} tier(s), closed {}.",
        record.tiers.len(),
        utc::format(&record.closed_at)
    );
    document(&title, &subtitle, &body, record.schema)
}

/// Escapes a text for HTML content and quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A text cell.
fn text(s: &str) -> String {
    escape(s)
}

/// An identifier (endpoint id, patch id, ticket, hash, key).
fn code(s: &str) -> String {
    format!("<code>{}</code>", escape(s))
}

/// An optional text, or `absent`.
fn opt_text(s: Option<&str>, absent: &str) -> String {
    escape(s.unwrap_or(absent))
}

/// An instant, RFC 3339 UTC.
fn when(t: &DateTime<Utc>) -> String {
    let s = escape(&utc::format(t));
    format!("<time datetime=\"{s}\">{s}</time>")
}

/// An optional instant, or `absent`.
fn when_or(t: Option<&DateTime<Utc>>, absent: &str) -> String {
    t.map_or_else(|| escape(absent), when)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The colour of a status, decision or standing.
fn status_class(s: &str) -> &'static str {
    match s {
        "validated" | "approved" | "met" | "closed" | "patched" => "good",
        "failed" | "declined" | "breached" | "rolled_back" => "bad",
        "awaiting_approval" | "pending_review" | "running" | "open" | "held" | "in_progress" => {
            "warn"
        }
        _ => "neutral",
    }
}

/// The colour of a ticket priority.
fn priority_class(p: &str) -> &'static str {
    match p {
        "P1" | "p1" => "bad",
        "P2" | "p2" => "warn",
        _ => "neutral",
    }
}

/// A coloured status.
fn badge(s: &str) -> String {
    badge_as(s, status_class(s))
}

/// A text in a badge of a given colour class.
fn badge_as(s: &str, class: &'static str) -> String {
    format!("<span class=\"badge {class}\">{}</span>", escape(s))
}

/// A table row: its cells are HTML already escaped.
struct Row {
    class: Option<&'static str>,
    cells: Vec<String>,
}

/// A table with a header row, or "None." when there are no rows.
fn table(out: &mut String, caption: Option<&str>, headers: &[&str], rows: &[Row]) {
    if let Some(c) = caption {
        if rows.is_empty() {
            out.push_str(&format!("<h3>{}</h3>\n", escape(c)));
        }
    }
    if rows.is_empty() {
        out.push_str("<p class=\"none\">None.</p>\n");
        return;
    }
    out.push_str("<table>\n");
    if let Some(c) = caption {
        out.push_str(&format!("<caption>{}</caption>\n", escape(c)));
    }
    out.push_str("<thead><tr>");
    for h in headers {
        out.push_str(&format!("<th scope=\"col\">{}</th>", escape(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        match row.class {
            Some(class) => out.push_str(&format!("<tr class=\"{class}\">")),
            None => out.push_str("<tr>"),
        }
        for cell in &row.cells {
            out.push_str("<td>");
            out.push_str(cell);
            out.push_str("</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A two-column table of named values (values are HTML already escaped).
fn facts(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<table class=\"facts\">\n<tbody>\n");
    for (name, value) in rows {
        out.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{value}</td></tr>\n",
            escape(name)
        ));
    }
    out.push_str("</tbody>\n</table>\n");
}

fn open_section(out: &mut String, id: &'static str, title: &str) {
    out.push_str(&format!(
        "<section id=\"{id}\">\n<h2>{}</h2>\n",
        escape(title)
    ));
}

fn close_section(out: &mut String) {
    out.push_str("</section>\n");
}

/// In-page links to the sections.
fn nav(out: &mut String, sections: &[(&str, &str)]) {
    out.push_str("<nav>");
    for (id, title) in sections {
        out.push_str(&format!("<a href=\"#{id}\">{}</a>", escape(title)));
    }
    out.push_str("</nav>\n");
}

/// What each category means, under the counts.
const CATEGORY_NOTE: &str = "<p class=\"note\">Patched: validated on the first attempt. Patched \
     (after retry): validated on a later attempt, after a failure was ticketed and its root cause \
     recorded. Up to date: its patch scan showed nothing approved missing, so nothing was sent. \
     Failed: its latest attempt failed. Awaiting approval: a critical server waiting for an \
     engineer. Held: its tier is held, blocked or not yet deploying. In progress: on its way. \
     Excluded: out of scope. <code>patchflow status</code> counts by the same definition.</p>\n";

fn category_class(c: Category) -> &'static str {
    match c {
        Category::Patched | Category::PatchedAfterRetry | Category::UpToDate => "good",
        Category::Failed => "bad",
        Category::AwaitingApproval | Category::Held | Category::InProgress => "warn",
        Category::Excluded => "neutral",
    }
}

fn category_badge(c: Category) -> String {
    badge_as(c.label(), category_class(c))
}

/// The counts in words, for the image's alternative text.
fn counts_alt(c: &Counts) -> String {
    Category::ALL
        .iter()
        .map(|cat| format!("{} {}", c.get(*cat), cat.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The chart counts, one column per category.
fn counts_table(out: &mut String, c: &Counts) {
    let mut headers: Vec<String> = Category::ALL
        .iter()
        .map(|cat| {
            let mut l = cat.label().to_owned();
            if let Some(first) = l.get(..1) {
                l = format!("{}{}", first.to_uppercase(), l.get(1..).unwrap_or_default());
            }
            l
        })
        .collect();
    headers.push("In scope".to_owned());
    headers.push("Total".to_owned());
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut cells: Vec<String> = Category::ALL
        .iter()
        .map(|cat| badge_as(&c.get(*cat).to_string(), category_class(*cat)))
        .collect();
    cells.push(c.in_scope().to_string());
    cells.push(c.in_scope().saturating_add(c.excluded).to_string());
    table(out, None, &headers, &[Row { class: None, cells }]);
}

/// The summary image as a `data:` URI, or a note when there is none.
fn summary_image(out: &mut String, png: &[u8], alt: &str) {
    if png.is_empty() {
        out.push_str("<p class=\"none\">Summary image not available.</p>\n");
        return;
    }
    out.push_str(&format!(
        "<img class=\"summary\" src=\"data:image/png;base64,{}\" alt=\"{}\">\n",
        STANDARD.encode(png),
        escape(alt)
    ));
}

/// The [b] [d] [f] tallies in words, for the image's alt text.
fn tallies_alt(tallies: &[ObjectiveTally]) -> String {
    if tallies.is_empty() {
        return "no 3.14.1 figures".to_owned();
    }
    let parts = tallies
        .iter()
        .map(|t| {
            format!(
                "3.14.1[{}] {}: {} met, {} breached, {} running",
                t.letter, t.objective, t.met, t.breached, t.running
            )
        })
        .collect::<Vec<_>>();
    parts.join("; ")
}

/// The share of decided flaws (met or breached) that met the time frame, to one decimal,
/// rounded down so a single breach never shows as 100.0.
fn percent_met(met: u64, breached: u64) -> String {
    crate::record::percent_met(met, breached).unwrap_or_else(|| ABSENT.to_owned())
}

/// The exception register entries.
fn exceptions_section(out: &mut String, exceptions: &[ExceptionLine]) {
    open_section(out, "exceptions", "Exception register");
    let rows = exceptions
        .iter()
        .map(|e| Row {
            class: None,
            cells: vec![
                code(&e.subject),
                text(&e.kind),
                code(&e.reason),
                opt_text(e.client.as_deref(), "all clients"),
                e.reference
                    .as_deref()
                    .map_or_else(|| ABSENT.to_owned(), code),
                opt_text(e.engineer.as_deref(), ABSENT),
                opt_text(e.engineer_reason.as_deref(), ABSENT),
                when_or(e.signed_at.as_ref(), ABSENT),
                text(&e.change_requires),
                text(if e.signed { "yes" } else { "no" }),
                opt_text(Some(e.lifted_by.as_str()).filter(|l| !l.is_empty()), ABSENT),
            ],
        })
        .collect::<Vec<_>>();
    table(
        out,
        None,
        &[
            "Subject",
            "Kind",
            "Reason code",
            "Client",
            "Reference",
            "Engineer",
            "Engineer's reason",
            "Signed at",
            "Lifting requires",
            "Signed",
            "Lifted by",
        ],
        &rows,
    );
    close_section(out);
}

/// The severities of the time frames: the usual order, then any others the maps name.
fn severities(frames: &TimeFrames) -> Vec<String> {
    let mut out: Vec<String> = SEVERITY_ORDER.iter().map(|s| (*s).to_owned()).collect();
    for key in frames.report_hours.keys().chain(frames.correct_days.keys()) {
        if !out.contains(key) {
            out.push(key.clone());
        }
    }
    out
}

/// The NIST SP 800-171A 3.14.1 section: time frames, tallies, breaches.
fn sla_section(out: &mut String, sla: &SlaSection) {
    open_section(
        out,
        "sla",
        "NIST SP 800-171A 3.14.1: flaw remediation time frames",
    );
    out.push_str(&format!(
        "<p>Standings as of {}. Each flaw is a patch on an endpoint. 3.14.1[a], [c] and [e] are \
         the time frames the policy sets to identify, report and correct a flaw; [b], [d] and \
         [f] are whether each flaw was identified, reported and corrected within them.</p>\n",
        when(&sla.as_of)
    ));

    let frames = &sla.time_frames;
    let hours = |v: Option<&i64>, unit: &str| {
        v.map_or_else(|| ABSENT.to_owned(), |v| format!("{v} {unit}"))
    };
    let rows = severities(frames)
        .iter()
        .map(|s| Row {
            class: None,
            cells: vec![
                text(s),
                format!("{} hours", frames.identify_hours),
                hours(frames.report_hours.get(s), "hours"),
                hours(frames.correct_days.get(s), "days"),
            ],
        })
        .collect::<Vec<_>>();
    table(
        out,
        Some("Time frames"),
        &[
            "Severity",
            "[a] Identify (from release)",
            "[c] Report (from identification)",
            "[e] Correct (from release)",
        ],
        &rows,
    );

    let rows = sla
        .tallies
        .iter()
        .map(|t| Row {
            class: None,
            cells: vec![
                format!("[{}] {}", escape(&t.letter), escape(&t.objective)),
                t.met.to_string(),
                t.breached.to_string(),
                t.running.to_string(),
                t.met
                    .saturating_add(t.breached)
                    .saturating_add(t.running)
                    .to_string(),
                percent_met(t.met, t.breached),
            ],
        })
        .collect::<Vec<_>>();
    table(
        out,
        Some("Tallies per objective"),
        &["Objective", "Met", "Breached", "Running", "Total", "% met"],
        &rows,
    );
    out.push_str(
        "<p class=\"note\">% met is met over met plus breached; running flaws are neither done \
         nor due yet.</p>\n",
    );

    out.push_str("<h3>Breaches</h3>\n");
    if sla.breaches.is_empty() {
        out.push_str("<p class=\"ok\">No breaches.</p>\n");
    } else {
        out.push_str(&format!(
            "<p>{} breach(es) of a time frame.</p>\n",
            sla.breaches.len()
        ));
        let rows = sla
            .breaches
            .iter()
            .map(|b| Row {
                class: Some("breach"),
                cells: vec![
                    format!("[{}] {}", escape(&b.letter), escape(&b.objective)),
                    code(&b.endpoint),
                    code(&b.patch),
                    when(&b.due),
                    b.at.as_ref().map_or_else(|| badge_as("open", "bad"), when),
                    b.late_by_hours.to_string(),
                ],
            })
            .collect::<Vec<_>>();
        table(
            out,
            None,
            &[
                "Objective",
                "Endpoint",
                "Patch",
                "Due",
                "Done at",
                "Hours late",
            ],
            &rows,
        );
    }
    time_to_patch_section(out, sla);
    out.push_str(&format!(
        "<p class=\"note\">{} flaw(s) judged; every flaw's three standings are in <code>{}</code> \
         and <code>{}</code>.</p>\n",
        sla.flaws.len(),
        names::SLA,
        names::RECORD
    ));
    close_section(out);
}

/// The 48-hour time to patch of the auto-approved flaws: the tally, per patch, and each miss
/// with its hours.
fn time_to_patch_section(out: &mut String, sla: &SlaSection) {
    out.push_str("<h3 id=\"time-to-patch\">Time to patch (auto-approved patches)</h3>\n");
    let Some(t) = &sla.time_to_patch else {
        out.push_str("<p class=\"none\">Not measured in this record (schema 1).</p>\n");
        return;
    };
    out.push_str(&format!(
        "<p>Target: installed within {} hours of the release (the RMM's confirmed install, as \
         for [f]). Met: {}. Missed: {}. Running: {}. % met: {}. Longest: {}.</p>\n",
        t.target_hours,
        t.met,
        t.missed,
        t.running,
        percent_met(t.met, t.missed),
        t.longest_hours
            .map_or_else(|| ABSENT.to_owned(), |h| format!("{h} hours"))
    ));
    let mut per_patch: BTreeMap<&str, (u64, u64, u64, Option<i64>)> = BTreeMap::new();
    for f in &sla.flaws {
        let Some(ttp) = &f.time_to_patch else {
            continue;
        };
        let e = per_patch.entry(f.patch.as_str()).or_default();
        match ttp.status.as_str() {
            "met" => e.0 += 1,
            "missed" => e.1 += 1,
            _ => e.2 += 1,
        }
        if let Some(h) = ttp.hours {
            e.3 = Some(e.3.map_or(h, |l: i64| l.max(h)));
        }
    }
    if per_patch.is_empty() {
        out.push_str("<p class=\"none\">No auto-approved flaw.</p>\n");
        return;
    }
    let rows = per_patch
        .iter()
        .map(|(patch, (met, missed, running, longest))| Row {
            class: (*missed > 0).then_some("breach"),
            cells: vec![
                code(patch),
                met.to_string(),
                missed.to_string(),
                running.to_string(),
                longest.map_or_else(|| ABSENT.to_owned(), |h| h.to_string()),
            ],
        })
        .collect::<Vec<_>>();
    table(
        out,
        Some("Per auto-approved patch"),
        &["Patch", "Met", "Missed", "Running", "Longest (hours)"],
        &rows,
    );
    let missed: Vec<Row> = sla
        .flaws
        .iter()
        .filter_map(|f| {
            let ttp = f.time_to_patch.as_ref()?;
            (ttp.status == "missed").then(|| Row {
                class: Some("breach"),
                cells: vec![
                    code(&f.endpoint),
                    code(&f.patch),
                    when(&f.released_at),
                    when(&ttp.due),
                    ttp.at
                        .as_ref()
                        .map_or_else(|| badge_as("open", "bad"), when),
                    ttp.hours
                        .map_or_else(|| ABSENT.to_owned(), |h| h.to_string()),
                ],
            })
        })
        .collect();
    if missed.is_empty() {
        out.push_str("<p class=\"ok\">No auto-approved flaw missed the target.</p>\n");
    } else {
        table(
            out,
            Some("Missed the time-to-patch target"),
            &[
                "Endpoint",
                "Patch",
                "Released",
                "Due",
                "Installed at",
                "Hours",
            ],
            &missed,
        );
    }
}

/// How to verify the page against the stored evidence.
fn integrity_section(out: &mut String, artifacts: &str) {
    open_section(out, "integrity", "Integrity and verification");
    out.push_str(&format!(
        "<p>This page is a view of <code>{record}</code>, the machine record of this bundle. \
         {artifacts} <code>{manifest}</code> with its SHA-256, size and retention. The manifest \
         is chained to the client's previous manifest: its <code>previous</code> field names \
         that manifest's key, sequence and SHA-256 (none for sequence 1, the first of the \
         chain).</p>\n",
        record = names::RECORD,
        manifest = names::MANIFEST,
        artifacts = escape(artifacts),
    ));
    out.push_str(
        "<p>To verify, run <code>patchflow audit verify</code>: it recomputes the SHA-256 of \
         every artifact and compares it with the manifest, and walks the chain of manifests \
         back to the first, reporting any changed, missing or reordered object.</p>\n",
    );
    close_section(out);
}

/// The whole page around a body.
fn document(title: &str, subtitle: &str, body: &str, schema: u32) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         img-src data:; style-src 'unsafe-inline'\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"generator\" content=\"patchflow\">\n");
    out.push_str(&format!("<title>{}</title>\n", escape(title)));
    out.push_str("<style>\n");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<header>\n");
    out.push_str(&format!("<h1>{}</h1>\n", escape(title)));
    out.push_str(&format!("<p>{}</p>\n", escape(subtitle)));
    out.push_str("</header>\n<main>\n");
    out.push_str(body);
    out.push_str("</main>\n<footer>\n");
    out.push_str(&format!(
        "<p>Record schema version {schema}. Generated by patchflow from <code>{}</code>; this \
         page is self-contained and loads no scripts, fonts or other resources.</p>\n",
        names::RECORD
    ));
    out.push_str("</footer>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
pub(crate) mod tests {

    use chrono::TimeZone;
    use patchflow_core::ports::evidence::Sha256Digest;

    use super::*;
    use crate::record::{
        ApprovalLine, BreachLine, EndpointOutcome, ExcludedEndpoint, FlawLine, StandingLine,
        TicketLine, TierLine, TimeToPatchLine, TimeToPatchTally, SCHEMA,
    };

    pub(crate) const HOSTILE: &str = "<script>alert(1)</script>&\"'";

    pub(crate) fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, hour, minute, 0)
            .single()
            .expect("valid test instant")
    }

    fn standing(status: &str, due: DateTime<Utc>, done: Option<DateTime<Utc>>) -> StandingLine {
        StandingLine {
            status: status.to_owned(),
            due,
            at: done,
        }
    }

    pub(crate) fn sla_fixture() -> SlaSection {
        let severities = ["critical", "important", "moderate", "low", "none"];
        SlaSection {
            as_of: at(12, 6, 0),
            time_frames: TimeFrames {
                identify_hours: 24,
                report_hours: severities
                    .iter()
                    .zip([24, 48, 72, 168, 168])
                    .map(|(s, h)| ((*s).to_owned(), h))
                    .collect::<BTreeMap<_, _>>(),
                correct_days: severities
                    .iter()
                    .zip([3, 14, 30, 90, 90])
                    .map(|(s, d)| ((*s).to_owned(), d))
                    .collect::<BTreeMap<_, _>>(),
                time_to_patch_hours: Some(48),
            },
            time_to_patch: Some(TimeToPatchTally {
                target_hours: 48,
                met: 1,
                missed: 1,
                running: 0,
                longest_hours: Some(35),
            }),
            tallies: vec![
                ObjectiveTally {
                    objective: "identify".into(),
                    letter: "b".into(),
                    met: 4,
                    breached: 0,
                    running: 0,
                },
                ObjectiveTally {
                    objective: "report".into(),
                    letter: "d".into(),
                    met: 4,
                    breached: 0,
                    running: 0,
                },
                ObjectiveTally {
                    objective: "correct".into(),
                    letter: "f".into(),
                    met: 2,
                    breached: 1,
                    running: 1,
                },
            ],
            breaches: vec![BreachLine {
                letter: "f".into(),
                objective: "correct".into(),
                endpoint: "ep-sql-02".into(),
                patch: "KB5050001".into(),
                due: at(11, 18, 0),
                at: None,
                late_by_hours: 12,
            }],
            flaws: vec![
                FlawLine {
                    endpoint: "ep-dc-01".into(),
                    patch: "KB5050001".into(),
                    severity: "critical".into(),
                    released_at: at(8, 18, 0),
                    identify: standing("met", at(9, 18, 0), Some(at(9, 2, 0))),
                    report: standing("met", at(10, 2, 0), Some(at(9, 3, 15))),
                    correct: standing("met", at(11, 18, 0), Some(at(10, 4, 30))),
                    applicability: "reported".into(),
                    auto_approved: true,
                    time_to_patch: Some(TimeToPatchLine {
                        status: "met".into(),
                        due: at(10, 18, 0),
                        at: Some(at(10, 4, 30)),
                        hours: Some(35),
                    }),
                },
                FlawLine {
                    endpoint: "ep-sql-02".into(),
                    patch: "KB5050001".into(),
                    severity: "critical".into(),
                    released_at: at(8, 18, 0),
                    identify: standing("met", at(9, 18, 0), Some(at(9, 2, 0))),
                    report: standing("met", at(10, 2, 0), Some(at(9, 3, 15))),
                    correct: standing("breached", at(11, 18, 0), None),
                    applicability: "reported".into(),
                    auto_approved: true,
                    time_to_patch: Some(TimeToPatchLine {
                        status: "missed".into(),
                        due: at(10, 18, 0),
                        at: None,
                        hours: None,
                    }),
                },
                FlawLine {
                    endpoint: "ep-app-03".into(),
                    patch: "KB5050002".into(),
                    severity: "important".into(),
                    released_at: at(8, 18, 0),
                    identify: standing("met", at(9, 18, 0), Some(at(9, 2, 0))),
                    report: standing("met", at(11, 2, 0), Some(at(9, 3, 15))),
                    correct: standing("running", at(22, 18, 0), None),
                    applicability: "reported".into(),
                    auto_approved: false,
                    time_to_patch: None,
                },
                FlawLine {
                    endpoint: "ep-dc-01".into(),
                    patch: "KB5050002".into(),
                    severity: "important".into(),
                    released_at: at(8, 18, 0),
                    identify: standing("met", at(9, 18, 0), Some(at(9, 2, 0))),
                    report: standing("met", at(11, 2, 0), Some(at(9, 3, 15))),
                    correct: standing("met", at(22, 18, 0), Some(at(10, 4, 30))),
                    applicability: "reported".into(),
                    auto_approved: false,
                    time_to_patch: None,
                },
            ],
        }
    }

    /// A servers pilot tier of one client: one endpoint validated, one failed with a ticket,
    /// one awaiting approval; one excluded; a declined patch; an exception; a breach.
    pub(crate) fn tier_fixture() -> TierRecord {
        TierRecord {
            schema: SCHEMA,
            cycle: "2026-12".parse().expect("valid cycle"),
            client: "acme-dental".into(),
            tier: "servers.acme-dental.pilot".into(),
            kind: "server".into(),
            wave: "pilot".into(),
            released_at: at(8, 18, 0),
            opened_at: at(9, 2, 0),
            validated_at: at(12, 6, 0),
            outcomes: vec![
                EndpointOutcome {
                    endpoint: "ep-dc-01".into(),
                    hostname: "ACME-DC01".into(),
                    status: "validated".into(),
                    attempts: 1,
                    installed_at: Some(at(10, 3, 10)),
                    reboot_confirmed_at: Some(at(10, 3, 40)),
                    reminders: 0,
                    forced_reboot: false,
                    validated_at: Some(at(10, 4, 30)),
                    failures: vec![],
                    applicability: "reported".into(),
                },
                EndpointOutcome {
                    endpoint: "ep-sql-02".into(),
                    hostname: "ACME-SQL02, primary \"prod\"".into(),
                    status: "failed".into(),
                    attempts: 2,
                    installed_at: None,
                    reboot_confirmed_at: None,
                    reminders: 2,
                    forced_reboot: true,
                    validated_at: None,
                    failures: vec!["f-0001".into(), "f-0002".into()],
                    applicability: "reported".into(),
                },
                EndpointOutcome {
                    endpoint: "ep-app-03".into(),
                    hostname: "ACME-APP03".into(),
                    status: "awaiting_approval".into(),
                    attempts: 0,
                    installed_at: None,
                    reboot_confirmed_at: None,
                    reminders: 0,
                    forced_reboot: false,
                    validated_at: None,
                    failures: vec![],
                    applicability: "reported".into(),
                },
            ],
            excluded: vec![ExcludedEndpoint {
                endpoint: "ep-lab-09".into(),
                hostname: "ACME-LAB09".into(),
                reason: "decommissioning".into(),
            }],
            approvals: vec![
                ApprovalLine {
                    patch: "KB5050001".into(),
                    title: "2026-12 Cumulative Update for Windows Server 2022".into(),
                    severity: Some("critical".into()),
                    decision: "approved".into(),
                    reason: "security_auto_approve".into(),
                    node: "approval_eval".into(),
                    recorded_at: Some(at(9, 3, 15)),
                    engineer: None,
                    reason_code: None,
                    signed_at: None,
                },
                ApprovalLine {
                    patch: "KB5050003".into(),
                    title: "Preview of .NET Framework update".into(),
                    severity: None,
                    decision: "declined".into(),
                    reason: "engineer_decline".into(),
                    node: "engineer".into(),
                    recorded_at: Some(at(9, 5, 0)),
                    engineer: Some("dana.reyes".into()),
                    reason_code: Some("LOB_APP_INCOMPATIBLE".into()),
                    signed_at: Some(at(9, 4, 55)),
                },
            ],
            exceptions: vec![ExceptionLine {
                subject: "KB5050003".into(),
                kind: "patch_decline".into(),
                reason: "LOB_APP_INCOMPATIBLE".into(),
                client: Some("acme-dental".into()),
                reference: Some("CHG-4411".into()),
                engineer: Some("dana.reyes".into()),
                engineer_reason: Some("Dental imaging suite fails on preview".into()),
                signed_at: Some(at(9, 4, 55)),
                change_requires: "vendor certification of the update".into(),
                signed: true,
                lifted_by: "an engineer's approval with sign-off and reason code".into(),
            }],
            tickets: vec![TicketLine {
                failure: "f-0002".into(),
                endpoint: "ep-sql-02".into(),
                stage: "install".into(),
                priority: "P1".into(),
                ticket: Some("PSA-88120".into()),
                status: "open".into(),
                paged: true,
                failed_at: at(11, 3, 20),
                root_cause: None,
            }],
            sla: sla_fixture(),
        }
    }

    fn cycle_fixture() -> CycleRecord {
        let tier = tier_fixture();
        CycleRecord {
            schema: SCHEMA,
            cycle: tier.cycle,
            client: tier.client.clone(),
            released_at: tier.released_at,
            opened_at: tier.opened_at,
            closed_at: at(20, 6, 0),
            tiers: vec![
                TierLine {
                    tier: tier.tier.clone(),
                    kind: "server".into(),
                    wave: "pilot".into(),
                    validated_at: tier.validated_at,
                    manifest:
                        "evidence/2026-12/acme-dental/servers.acme-dental.pilot/manifest.json"
                            .into(),
                    manifest_sha256: Sha256Digest::of(b"pilot manifest").to_hex(),
                    counts: tier.counts(),
                },
                TierLine {
                    tier: "servers.acme-dental.production".into(),
                    kind: "server".into(),
                    wave: "production".into(),
                    validated_at: at(19, 6, 0),
                    manifest:
                        "evidence/2026-12/acme-dental/servers.acme-dental.production/manifest.json"
                            .into(),
                    manifest_sha256: Sha256Digest::of(b"production manifest").to_hex(),
                    counts: Counts {
                        patched: 7,
                        excluded: 1,
                        ..Counts::default()
                    },
                },
            ],
            exceptions: tier.exceptions.clone(),
            sla: tier.sla,
        }
    }

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot really an image but bytes all the same";

    /// The text of a section, from its opening tag to its closing one.
    fn section<'a>(html: &'a str, id: &str) -> &'a str {
        let open = format!("<section id=\"{id}\">");
        let start = html
            .find(&open)
            .unwrap_or_else(|| panic!("no section {id}"));
        let len = html[start..].find("</section>").expect("section closed");
        &html[start..start + len]
    }

    fn section_ids(html: &str) -> Vec<&str> {
        html.match_indices("<section id=\"")
            .map(|(i, m)| {
                let rest = &html[i + m.len()..];
                &rest[..rest.find('"').expect("closing quote")]
            })
            .collect()
    }

    #[test]
    fn escape_replaces_every_special_character() {
        assert_eq!(escape("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
        assert_eq!(escape("plain ACME-DC01 é"), "plain ACME-DC01 é");
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn tier_report_has_every_section_in_order() {
        let html = tier_report(&tier_fixture(), PNG);
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.trim_end().ends_with("</html>"));
        assert_eq!(
            section_ids(&html),
            [
                "summary",
                "outcomes",
                "reboots",
                "approvals",
                "exceptions",
                "excluded",
                "tickets",
                "sla",
                "integrity"
            ]
        );
        for id in section_ids(&html) {
            assert!(section(&html, id).contains("<h2>"), "{id} has a heading");
        }
        assert_eq!(
            html.matches("<section ").count(),
            html.matches("</section>").count()
        );
    }

    #[test]
    fn cycle_report_has_its_sections_in_order() {
        let html = cycle_report(&cycle_fixture(), PNG);
        assert_eq!(
            section_ids(&html),
            ["summary", "tiers", "exceptions", "sla", "integrity"]
        );
        let tiers = section(&html, "tiers");
        assert!(tiers.contains("servers.acme-dental.production/manifest.json"));
        assert!(tiers.contains(&Sha256Digest::of(b"production manifest").to_hex()));
        // Totals over both tiers: 1 + 7 patched, 2 excluded.
        let summary = section(&html, "summary");
        assert!(summary.contains("<span class=\"badge good\">8</span>"));
        assert!(summary.contains("<span class=\"badge neutral\">2</span>"));
    }

    #[test]
    fn a_retried_endpoint_is_patched_after_retry_in_the_counts_and_its_row() {
        let mut record = tier_fixture();
        // ep-sql-02 failed twice, then validated on its third attempt.
        record.outcomes[1].status = "validated".into();
        record.outcomes[1].validated_at = Some(at(14, 4, 0));
        let counts = record.counts();
        assert_eq!(counts.patched, 1);
        assert_eq!(counts.patched_after_retry, 1);
        assert_eq!(counts.failed, 0);
        assert_eq!(counts.awaiting_approval, 1);
        let html = tier_report(&record, PNG);
        let summary = section(&html, "summary");
        assert!(summary.contains("<th scope=\"col\">Patched (after retry)</th>"));
        assert!(
            summary.contains("1 patched (after retry)"),
            "the image's alt text"
        );
        let outcomes = section(&html, "outcomes");
        assert!(outcomes.contains("<span class=\"badge good\">patched (after retry)</span>"));
    }

    #[test]
    fn time_to_patch_shows_the_target_each_patch_and_each_miss_with_its_hours() {
        let html = tier_report(&tier_fixture(), PNG);
        let sla = section(&html, "sla");
        assert!(sla.contains("Time to patch (auto-approved patches)"));
        assert!(sla.contains("installed within 48 hours of the release"));
        assert!(sla.contains("Met: 1. Missed: 1. Running: 0. % met: 50.0. Longest: 35 hours."));
        // The miss is listed: ep-sql-02 never installed, due 48 h after the release.
        let missed = sla
            .split("Missed the time-to-patch target")
            .nth(1)
            .expect("a table of misses");
        assert!(missed.contains("<code>ep-sql-02</code>"));
        assert!(missed.contains("2026-12-10T18:00:00Z"));
        assert!(!missed.contains("<code>ep-dc-01</code>"));
        // A schema-1 record says it did not measure it.
        let mut old = tier_fixture();
        old.sla.time_to_patch = None;
        let html = tier_report(&old, PNG);
        assert!(section(&html, "sla").contains("Not measured in this record (schema 1)."));
    }

    #[test]
    fn summary_shows_record_fields_and_counts() {
        let html = tier_report(&tier_fixture(), PNG);
        let summary = section(&html, "summary");
        for expected in [
            "2026-12",
            "acme-dental",
            "servers.acme-dental.pilot",
            "pilot",
            "2026-12-08T18:00:00Z",
            "2026-12-09T02:00:00Z",
            "2026-12-12T06:00:00Z",
            "<span class=\"badge good\">1</span>",
            "<span class=\"badge bad\">1</span>",
            "<span class=\"badge warn\">1</span>",
            "<span class=\"badge neutral\">1</span>",
        ] {
            assert!(summary.contains(expected), "summary lacks {expected}");
        }
        assert!(html.contains(&format!("Record schema version {SCHEMA}.")));
        assert!(html.contains("Generated by patchflow"));
    }

    #[test]
    fn hostile_text_is_escaped() {
        let mut record = tier_fixture();
        record.client = HOSTILE.into();
        record.outcomes[0].hostname = HOSTILE.into();
        record.outcomes[1].failures.push(HOSTILE.into());
        record.excluded[0].reason = HOSTILE.into();
        record.approvals[1].engineer = Some(HOSTILE.into());
        record.exceptions[0].engineer_reason = Some(HOSTILE.into());
        record.tickets[0].ticket = Some(HOSTILE.into());
        record.tickets[0].root_cause = Some(HOSTILE.into());
        record.sla.breaches[0].endpoint = HOSTILE.into();
        let mut cycle = cycle_fixture();
        cycle.client = HOSTILE.into();
        cycle.tiers[0].manifest = HOSTILE.into();
        cycle.exceptions[0].subject = HOSTILE.into();
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;";
        for html in [tier_report(&record, PNG), cycle_report(&cycle, PNG)] {
            assert!(!html.contains(HOSTILE));
            assert!(!html.contains("<script"));
            assert!(!html.contains("alert(1)</script>"));
            assert!(html.contains(escaped));
        }
        let html = tier_report(&record, PNG);
        assert!(section(&html, "outcomes").contains(escaped));
        assert!(section(&html, "excluded").contains(escaped));
        assert!(section(&html, "tickets").contains(escaped));
        assert!(section(&html, "sla").contains(escaped));
        // The alt text of the image carries the client too, escaped inside the attribute.
        let img = &html[html.find("<img").expect("image")..];
        let img = &img[..img.find('>').expect("tag end")];
        assert!(img.contains("alt=\"Summary chart of cycle 2026-12 for &lt;script&gt;"));
    }

    #[test]
    fn no_external_references_and_png_is_a_data_uri() {
        let tier = tier_report(&tier_fixture(), PNG);
        let cycle = cycle_report(&cycle_fixture(), PNG);
        let uri = format!("data:image/png;base64,{}", STANDARD.encode(PNG));
        for html in [&tier, &cycle] {
            let expected = format!("<img class=\"summary\" src=\"{uri}\" alt=\"");
            assert!(html.contains(&expected));
            assert_eq!(html.matches("<img").count(), 1);
            let outside = html.replace(&uri, "");
            let lower = outside.to_ascii_lowercase();
            for banned in [
                "http://",
                "https://",
                "src=\"//",
                "href=\"//",
                "src=\"http",
                "<script",
                "<link",
                "<iframe",
                "<object",
                "<embed",
                "@import",
                "url(",
                "ftp://",
                "file:",
            ] {
                assert!(!lower.contains(banned), "found {banned}");
            }
            // Every src is a data URI; every href is an in-page anchor.
            for (i, _) in lower.match_indices("src=\"") {
                assert!(html[i..].starts_with("src=\"data:image/png;base64,"));
            }
            for (i, _) in lower.match_indices("href=\"") {
                assert!(lower[i..].starts_with("href=\"#"));
            }
            assert!(lower.contains("<style>"));
            assert!(lower.contains("content-security-policy"));
        }
    }

    #[test]
    fn empty_png_is_left_out_with_a_note() {
        let html = tier_report(&tier_fixture(), &[]);
        assert!(!html.contains("<img"));
        assert!(section(&html, "summary").contains("Summary image not available."));
    }

    #[test]
    fn breach_appears_with_hours_late() {
        let html = tier_report(&tier_fixture(), PNG);
        let sla = section(&html, "sla");
        assert!(!sla.contains("No breaches"));
        let row = sla
            .lines()
            .find(|l| l.starts_with("<tr class=\"breach\">"))
            .expect("a breach row");
        assert!(row.contains("[f] correct"));
        assert!(row.contains("<code>ep-sql-02</code>"));
        assert!(row.contains("<code>KB5050001</code>"));
        assert!(row.contains("2026-12-11T18:00:00Z"));
        assert!(row.contains("<span class=\"badge bad\">open</span>"));
        assert!(row.ends_with("<td>12</td></tr>"));
        assert!(sla.contains("Hours late"));

        let mut cycle = cycle_fixture();
        cycle.sla.breaches[0].at = Some(at(12, 2, 0));
        cycle.sla.breaches[0].late_by_hours = 8;
        let html = cycle_report(&cycle, PNG);
        let sla = section(&html, "sla");
        let row = sla
            .lines()
            .find(|l| l.starts_with("<tr class=\"breach\">"))
            .expect("a breach row");
        assert!(row.contains("2026-12-12T02:00:00Z"));
        assert!(!row.contains(">open<"));
        assert!(row.ends_with("<td>8</td></tr>"));
    }

    #[test]
    fn no_breaches_says_so() {
        let mut record = tier_fixture();
        record.sla.breaches.clear();
        let html = tier_report(&record, PNG);
        let sla = section(&html, "sla");
        assert!(sla.contains("No breaches."));
        assert!(!sla.contains("Hours late"));
        let mut cycle = cycle_fixture();
        cycle.sla.breaches.clear();
        assert!(section(&cycle_report(&cycle, PNG), "sla").contains("No breaches."));
    }

    #[test]
    fn sla_tables_show_time_frames_and_tallies() {
        let html = tier_report(&tier_fixture(), PNG);
        let sla = section(&html, "sla");
        assert!(sla.contains(
            "<tr><td>critical</td><td>24 hours</td><td>24 hours</td><td>3 days</td></tr>"
        ));
        assert!(sla
            .contains("<tr><td>none</td><td>24 hours</td><td>168 hours</td><td>90 days</td></tr>"));
        assert!(sla.contains(
            "<tr><td>[f] correct</td><td>2</td><td>1</td><td>1</td><td>4</td><td>66.6</td></tr>"
        ));
        assert!(sla.contains(
            "<tr><td>[b] identify</td><td>4</td><td>0</td><td>0</td><td>4</td><td>100.0</td></tr>"
        ));
    }

    #[test]
    fn percent_met_rounds_down() {
        assert_eq!(percent_met(1999, 1), "99.9");
        assert_eq!(percent_met(19999, 1), "99.9");
        assert_eq!(percent_met(5, 0), "100.0");
        assert_eq!(percent_met(0, 3), "0.0");
        assert_eq!(percent_met(0, 0), ABSENT);
        assert_eq!(percent_met(u64::MAX, u64::MAX), "50.0");
    }

    #[test]
    fn decline_shows_engineer_and_reason_code() {
        let html = tier_report(&tier_fixture(), PNG);
        let approvals = section(&html, "approvals");
        let row = approvals
            .lines()
            .find(|l| l.contains("KB5050003"))
            .expect("the declined patch");
        assert!(row.starts_with("<tr class=\"declined\">"));
        assert!(row.contains("<strong><span class=\"badge bad\">declined</span></strong>"));
        assert!(row.contains("dana.reyes"));
        assert!(row.contains("<code>LOB_APP_INCOMPATIBLE</code>"));
        assert!(row.contains("2026-12-09T04:55:00Z"));
        let approved = approvals
            .lines()
            .find(|l| l.contains("KB5050001"))
            .expect("the approved patch");
        assert!(approved.starts_with("<tr>"));
        assert!(approvals.contains("2 patch(es): 1 approved, 1 declined, 0 pending review."));
    }

    #[test]
    fn integrity_names_the_record_the_manifest_and_its_chain() {
        for html in [
            tier_report(&tier_fixture(), PNG),
            cycle_report(&cycle_fixture(), PNG),
        ] {
            let integrity = section(&html, "integrity");
            assert!(integrity.contains("<code>record.json</code>"));
            assert!(integrity.contains("<code>manifest.json</code>"));
            assert!(integrity.contains("<code>previous</code> field"));
            assert!(integrity.contains("<code>patchflow audit verify</code>"));
        }
    }

    #[test]
    fn empty_tables_render_none() {
        let mut record = tier_fixture();
        record.outcomes.clear();
        record.excluded.clear();
        record.approvals.clear();
        record.exceptions.clear();
        record.tickets.clear();
        let html = tier_report(&record, PNG);
        for id in [
            "outcomes",
            "reboots",
            "approvals",
            "exceptions",
            "excluded",
            "tickets",
        ] {
            let s = section(&html, id);
            assert!(s.contains("<p class=\"none\">None.</p>"), "{id}");
            assert!(!s.contains("<table"), "{id}");
        }
        // Non-empty ones keep their tables.
        let html = tier_report(&tier_fixture(), PNG);
        for id in [
            "outcomes",
            "reboots",
            "approvals",
            "exceptions",
            "excluded",
            "tickets",
        ] {
            let s = section(&html, id);
            assert!(s.contains("<table>"), "{id}");
            assert!(!s.contains("None."), "{id}");
        }
        let mut cycle = cycle_fixture();
        cycle.tiers.clear();
        cycle.exceptions.clear();
        let html = cycle_report(&cycle, PNG);
        assert!(section(&html, "tiers").contains("<p class=\"none\">None.</p>"));
        assert!(section(&html, "exceptions").contains("<p class=\"none\">None.</p>"));
    }

    #[test]
    fn outcomes_and_reboots_show_each_endpoint() {
        let html = tier_report(&tier_fixture(), PNG);
        let outcomes = section(&html, "outcomes");
        assert_eq!(outcomes.matches("<tr>").count(), 4); // header + 3 endpoints
        assert!(outcomes.contains("ACME-SQL02, primary &quot;prod&quot;"));
        assert!(outcomes.contains("<code>f-0001</code> <code>f-0002</code>"));
        assert!(outcomes.contains("<span class=\"badge bad\">failed</span>"));
        let reboots = section(&html, "reboots");
        assert!(reboots.contains("1 of 3 reboot(s) confirmed; 1 forced."));
        assert!(reboots.contains("2026-12-10T03:40:00Z"));
        assert!(reboots.contains("not confirmed"));
        assert!(reboots.contains("<span class=\"badge warn\">forced</span>"));
        let tickets = section(&html, "tickets");
        assert!(tickets.contains("<span class=\"badge bad\">P1</span>"));
        assert!(tickets.contains("<code>PSA-88120</code>"));
        assert!(tickets.contains("pending"));
    }

    #[test]
    fn output_is_deterministic() {
        let record = tier_fixture();
        assert_eq!(tier_report(&record, PNG), tier_report(&record.clone(), PNG));
        let cycle = cycle_fixture();
        assert_eq!(cycle_report(&cycle, PNG), cycle_report(&cycle.clone(), PNG));
    }
}
