//! The CSV views of a record: per-endpoint outcomes (`outcomes.csv`) and the 3.14.1 clocks per
//! flaw (`sla.csv`).
//!
//! RFC 4180 with a header row and `\n` line ends; a field is quoted only when it needs to be
//! (a comma, a quote or a line break). Instants are RFC 3339 UTC with `Z`; an absent instant is an
//! empty field. The same record always gives the same bytes.

use chrono::{DateTime, Utc};
use patchflow_core::schedule::utc;

use crate::record::{SlaSection, StandingLine, TierRecord};

/// The header of [`outcomes`].
pub const OUTCOMES_HEADER: [&str; 12] = [
    "endpoint",
    "hostname",
    "status",
    "attempts",
    "installed_at",
    "reboot_confirmed_at",
    "reminders",
    "forced_reboot",
    "validated_at",
    "failures",
    "applicability",
    "category",
];

/// The header of [`flaws`].
pub const FLAWS_HEADER: [&str; 19] = [
    "endpoint",
    "patch",
    "severity",
    "released_at",
    "identify_status",
    "identify_due",
    "identified_at",
    "report_status",
    "report_due",
    "reported_at",
    "correct_status",
    "correct_due",
    "corrected_at",
    "applicability",
    "auto_approved",
    "time_to_patch_status",
    "time_to_patch_due",
    "time_to_patch_at",
    "time_to_patch_hours",
];

/// Why a CSV could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The writer failed on a record.
    #[error("writing CSV failed: {0}")]
    Write(#[from] ::csv::Error),
    /// Flushing the writer failed.
    #[error("flushing CSV failed: {0}")]
    Flush(#[from] std::io::Error),
    /// The output was not UTF-8 (only possible if a field was not).
    #[error("CSV output is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// Per-endpoint outcomes: endpoint,hostname,status,attempts,installed_at,reboot_confirmed_at,
/// reminders,forced_reboot,validated_at,failures (the failure ids joined with spaces, oldest
/// first; `forced_reboot` is `true` or `false`),applicability,category (the category the report
/// and `patchflow status` count it in: `patched`, `patched_after_retry`, `up_to_date`, ...).
pub fn outcomes(record: &TierRecord) -> Result<String, CsvError> {
    let mut w = writer();
    w.write_record(OUTCOMES_HEADER)?;
    for o in &record.outcomes {
        w.write_record([
            o.endpoint.as_str(),
            o.hostname.as_str(),
            o.status.as_str(),
            &o.attempts.to_string(),
            &instant(o.installed_at.as_ref()),
            &instant(o.reboot_confirmed_at.as_ref()),
            &o.reminders.to_string(),
            if o.forced_reboot { "true" } else { "false" },
            &instant(o.validated_at.as_ref()),
            &o.failures.join(" "),
            o.applicability.as_str(),
            o.category().as_str(),
        ])?;
    }
    finish(w)
}

/// Per flaw: endpoint,patch,severity,released_at, then status, due and done-at instant of
/// identify [b], report [d] and correct [f] in turn, applicability, then for an auto-approved
/// patch (`auto_approved` `true`) its time to patch: status (`met`, `missed`, `running`), due
/// (release plus the target), the install instant and the whole hours from release to it
/// (empty for other patches).
pub fn flaws(sla: &SlaSection) -> Result<String, CsvError> {
    let mut w = writer();
    w.write_record(FLAWS_HEADER)?;
    for f in &sla.flaws {
        let mut row = vec![
            f.endpoint.clone(),
            f.patch.clone(),
            f.severity.clone(),
            utc::format(&f.released_at),
        ];
        for s in [&f.identify, &f.report, &f.correct] {
            row.extend(standing(s));
        }
        row.push(f.applicability.clone());
        row.push(if f.auto_approved { "true" } else { "false" }.to_owned());
        match &f.time_to_patch {
            Some(t) => row.extend([
                t.status.clone(),
                utc::format(&t.due),
                instant(t.at.as_ref()),
                t.hours.map(|h| h.to_string()).unwrap_or_default(),
            ]),
            None => row.extend(std::iter::repeat_n(String::new(), 4)),
        }
        w.write_record(&row)?;
    }
    finish(w)
}

fn writer() -> ::csv::Writer<Vec<u8>> {
    ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::Any(b'\n'))
        .quote_style(::csv::QuoteStyle::Necessary)
        .from_writer(Vec::new())
}

fn finish(w: ::csv::Writer<Vec<u8>>) -> Result<String, CsvError> {
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes)?)
}

fn instant(t: Option<&DateTime<Utc>>) -> String {
    t.map(utc::format).unwrap_or_default()
}

fn standing(s: &StandingLine) -> [String; 3] {
    [
        s.status.clone(),
        utc::format(&s.due),
        instant(s.at.as_ref()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::tests::{sla_fixture, tier_fixture, HOSTILE};

    fn read(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let mut r = ::csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let header = r
            .headers()
            .expect("header")
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = r
            .records()
            .map(|rec| {
                rec.expect("record")
                    .iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        (header, rows)
    }

    #[test]
    fn outcomes_have_a_header_and_one_row_per_endpoint() {
        let record = tier_fixture();
        let text = outcomes(&record).expect("csv");
        let first = text.lines().next().expect("header line");
        assert_eq!(
            first,
            "endpoint,hostname,status,attempts,installed_at,reboot_confirmed_at,reminders,\
             forced_reboot,validated_at,failures,applicability,category"
        );
        assert!(text.ends_with('\n'));
        assert!(!text.contains('\r'));
        assert_eq!(text.lines().count(), 1 + record.outcomes.len());
        assert!(text.contains(
            "\nep-dc-01,ACME-DC01,validated,1,2026-12-10T03:10:00Z,2026-12-10T03:40:00Z,0,false,\
             2026-12-10T04:30:00Z,,reported,patched\n"
        ));

        let (header, rows) = read(&text);
        assert_eq!(header, OUTCOMES_HEADER);
        assert_eq!(rows.len(), record.outcomes.len());
        for (row, o) in rows.iter().zip(&record.outcomes) {
            assert_eq!(row[0], o.endpoint);
            assert_eq!(row[1], o.hostname);
            assert_eq!(row[2], o.status);
            assert_eq!(row[3], o.attempts.to_string());
        }
        // Failures joined with spaces; empty optional instants are empty fields.
        assert_eq!(
            rows[1],
            [
                "ep-sql-02",
                "ACME-SQL02, primary \"prod\"",
                "failed",
                "2",
                "",
                "",
                "2",
                "true",
                "",
                "f-0001 f-0002",
                "reported",
                "failed"
            ]
        );
    }

    #[test]
    fn fields_with_a_comma_and_a_quote_are_quoted_and_round_trip() {
        let mut record = tier_fixture();
        record.outcomes[0].hostname = "ACME, \"lab\" box".into();
        record.outcomes[2].hostname = HOSTILE.into();
        record.outcomes[2].status = "line\nbreak".into();
        let text = outcomes(&record).expect("csv");
        assert!(text.contains("\nep-dc-01,\"ACME, \"\"lab\"\" box\",validated,"));
        assert!(text.contains(",\"ACME-SQL02, primary \"\"prod\"\"\",failed,"));
        assert!(text.contains("\"line\nbreak\""));
        let (_, rows) = read(&text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][1], "ACME, \"lab\" box");
        assert_eq!(rows[2][1], HOSTILE);
        assert_eq!(rows[2][2], "line\nbreak");
    }

    #[test]
    fn flaws_have_a_header_and_one_row_per_flaw() {
        let sla = sla_fixture();
        let text = flaws(&sla).expect("csv");
        assert_eq!(
            text.lines().next().expect("header line"),
            "endpoint,patch,severity,released_at,identify_status,identify_due,identified_at,\
             report_status,report_due,reported_at,correct_status,correct_due,corrected_at,\
             applicability,auto_approved,time_to_patch_status,time_to_patch_due,time_to_patch_at,\
             time_to_patch_hours"
        );
        let (header, rows) = read(&text);
        assert_eq!(header, FLAWS_HEADER);
        assert_eq!(rows.len(), sla.flaws.len());
        assert_eq!(
            rows[1],
            [
                "ep-sql-02",
                "KB5050001",
                "critical",
                "2026-12-08T18:00:00Z",
                "met",
                "2026-12-09T18:00:00Z",
                "2026-12-09T02:00:00Z",
                "met",
                "2026-12-10T02:00:00Z",
                "2026-12-09T03:15:00Z",
                "breached",
                "2026-12-11T18:00:00Z",
                "",
                "reported",
                "true",
                "missed",
                "2026-12-10T18:00:00Z",
                "",
                ""
            ]
        );
        assert_eq!(rows[2][10], "running");
        assert_eq!(rows[2][12], "");
        // An auto-approved flaw installed within the target: met, with its hours.
        assert_eq!(
            rows[0][14..],
            [
                "true",
                "met",
                "2026-12-10T18:00:00Z",
                "2026-12-10T04:30:00Z",
                "35"
            ]
        );
        // Not auto-approved: no time to patch.
        assert_eq!(rows[2][14..], ["false", "", "", "", ""]);
        for (row, f) in rows.iter().zip(&sla.flaws) {
            assert_eq!((&row[0], &row[1]), (&f.endpoint, &f.patch));
        }
    }

    #[test]
    fn empty_records_give_the_header_only() {
        let mut record = tier_fixture();
        record.outcomes.clear();
        record.sla.flaws.clear();
        assert_eq!(
            outcomes(&record).expect("csv"),
            format!("{}\n", OUTCOMES_HEADER.join(","))
        );
        assert_eq!(
            flaws(&record.sla).expect("csv"),
            format!("{}\n", FLAWS_HEADER.join(","))
        );
    }

    #[test]
    fn flaw_ids_with_commas_round_trip() {
        let mut sla = sla_fixture();
        sla.flaws[0].patch = "KB1, \"third\"".into();
        let text = flaws(&sla).expect("csv");
        assert!(text.contains("\"KB1, \"\"third\"\"\""));
        let (_, rows) = read(&text);
        assert_eq!(rows[0][1], "KB1, \"third\"");
        assert_eq!(rows.len(), sla.flaws.len());
    }
}
