//! A tier's closure recorded in Automate, where a technician sees it: one line in the client's
//! `Comment` (Automate's client record, shown with the client in Automate's client screen), written
//! with `PATCH /cwa/api/v1/Clients/{clientId}` after `GET /cwa/api/v1/Clients/{clientId}`
//! (`LabTech.Models.Client`: `Id`, `Name`, `Comment`; the body a list of
//! `LabTech.RESTApi.Models.PatchOperation` `{Op, Path, Value}`), both in Automate's published
//! OpenAPI document (25.0.5, `Company.json`: `Clients_GetClient`, `Clients_PatchClient`).
//!
//! Why the client's record: the specification has no route that writes a client's extra data
//! field (`GET /Clients/{clientId}/ExtraFields` only reads them; writes exist for locations only)
//! and none that creates a ticket (`/Tickets` is read-only); a script run (`POST
//! /Batch/ScriptExecute`) targets computers, so a closure would run once per endpoint and what
//! it shows would depend on an MSP script. The client's record is written once per client and
//! tier, by patchflow alone, and read back from the write's answer.
//!
//! The same line, on the same record, documents a failed patch's next retry window (the seed's
//! "Failed patches tracked in RMM with next retry window documented"): one line per failure,
//! written when the failure is escalated, beginning `patchflow retry`.
//!
//! Each line ends with the marker `[patchflow:{key}]`. The read comes first: a comment already
//! carrying the marker means the closure is recorded, and nothing is written (a redelivery, or a
//! write whose answer was lost). The technician's own text is kept as it is; of patchflow's
//! closure lines the latest [`KEEP_LINES`] are kept, of its retry lines the latest
//! [`KEEP_RETRY_LINES`].

use patchflow_core::ids::ClientId;
use patchflow_core::ports::rmm::{RetryNote, TierClosure};
use patchflow_core::ports::PortError;
use patchflow_core::schedule::utc;
use reqwest::Method;
use serde::Deserialize;

use super::{slug, Automate, Id, API, SYSTEM};

/// patchflow's closure lines kept in a client's comment (two years of three tiers a month).
pub const KEEP_LINES: usize = 72;

/// patchflow's retry lines kept in a client's comment (apart from its closure lines, so a month
/// of failures never pushes a closure out).
pub const KEEP_RETRY_LINES: usize = 48;

/// The start of each of patchflow's lines in a client's comment.
const LINE_PREFIX: &str = "patchflow ";

/// The start of a retry line.
const RETRY_PREFIX: &str = "patchflow retry ";

/// A client as `GET /Clients` and `GET /Clients/{clientId}` return it (what the closure reads).
#[derive(Debug, Deserialize)]
struct ClientRecord {
    #[serde(rename = "Id")]
    id: Id,
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "Comment", default)]
    comment: Option<String>,
}

/// The marker a closure line with this key ends with.
pub fn closure_marker(key: &str) -> String {
    format!("[patchflow:{key}]")
}

/// The comment with `line` added: the other text unchanged, patchflow's lines of the new line's
/// kind (closure or retry) cut to the latest [`KEEP_LINES`] or [`KEEP_RETRY_LINES`] (the new one
/// included), the comment's own line ending kept.
fn with_line(comment: &str, line: &str) -> String {
    let eol = if comment.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let retry = |l: &str| l.starts_with(RETRY_PREFIX);
    let kind = retry(line);
    let keep = if kind { KEEP_RETRY_LINES } else { KEEP_LINES };
    let ours =
        |l: &str| l.starts_with(LINE_PREFIX) && l.contains("[patchflow:") && retry(l) == kind;
    let mut lines: Vec<&str> = comment.lines().collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines.push(line);
    let mut surplus = lines
        .iter()
        .filter(|l| ours(l))
        .count()
        .saturating_sub(keep);
    lines.retain(|l| {
        if surplus > 0 && ours(l) {
            surplus -= 1;
            false
        } else {
            true
        }
    });
    lines.join(eol)
}

/// One line: no line breaks, at most 500 characters before the marker.
fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(500) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

impl Automate {
    /// The Automate `Client.Id` of a patchflow client: the `automate.clients` entry giving it
    /// that id, else the one client (`GET /Clients`) whose name is it as a slug and which no
    /// entry gives another id.
    pub(super) async fn automate_client(&self, client: &ClientId) -> Result<u64, PortError> {
        let configured: Vec<&String> = self
            .config
            .clients
            .iter()
            .filter(|(_, m)| m.id.as_deref() == Some(client.as_str()))
            .map(|(k, _)| k)
            .collect();
        match configured.as_slice() {
            [one] => {
                return one.trim().parse().map_err(|_| {
                    PortError::permanent(
                        SYSTEM,
                        format!("automate.clients key `{one}` is not an Automate client id"),
                    )
                })
            }
            [] => {}
            many => {
                return Err(PortError::permanent(
                    SYSTEM,
                    format!(
                        "automate.clients gives patchflow id `{client}` to {} Automate clients",
                        many.len()
                    ),
                ))
            }
        }
        let clients: Vec<ClientRecord> = self.all("Clients", None).await?;
        let found: Vec<u64> = clients
            .iter()
            .filter(|c| {
                self.config
                    .clients
                    .get(&c.id.0.to_string())
                    .is_none_or(|m| m.id.is_none())
            })
            .filter(|c| c.name.as_deref().map(slug).as_deref() == Some(client.as_str()))
            .map(|c| c.id.0)
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(PortError::permanent(
                format!("{SYSTEM} GET /{API}/Clients"),
                format!("no Automate client is patchflow client `{client}` (by automate.clients or by name)"),
            )),
            many => Err(PortError::permanent(
                format!("{SYSTEM} GET /{API}/Clients"),
                format!(
                    "{} Automate clients are named `{client}` as a slug: give one its id in automate.clients",
                    many.len()
                ),
            )),
        }
    }

    /// Records a tier's closure in the client's comment, once per key (see the module's
    /// documentation). `Ok(true)` when written now, `Ok(false)` when the comment had it.
    pub(super) async fn record_tier_closure(
        &self,
        key: &str,
        closure: &TierClosure,
    ) -> Result<bool, PortError> {
        let line = format!(
            "{LINE_PREFIX}{} {} closed {}: {}",
            closure.cycle,
            closure.tier,
            utc::format(&closure.closed_at),
            one_line(&closure.summary)
        );
        self.record_client_line(&closure.client, key, &line, "closure")
            .await
    }

    /// Records a failure's next retry window in the client's comment, once per key.
    pub(super) async fn record_retry_window(
        &self,
        key: &str,
        note: &RetryNote,
    ) -> Result<bool, PortError> {
        let kbs = if note.patches.is_empty() {
            String::new()
        } else {
            let ids: Vec<&str> = note.patches.iter().map(|p| p.as_str()).collect();
            format!(" ({})", ids.join(", "))
        };
        let ticket = note
            .ticket
            .as_deref()
            .map(|t| format!(", PSA ticket {t}"))
            .unwrap_or_default();
        let line = format!(
            "{RETRY_PREFIX}{} {} ({}): {} failed{kbs}; next retry window {} to {}{ticket}",
            note.cycle,
            one_line(&note.hostname),
            note.endpoint,
            note.stage,
            utc::format(&note.next_retry.start),
            utc::format(&note.next_retry.end),
        );
        self.record_client_line(&note.client, key, &line, "retry window")
            .await
    }

    /// Adds `line` with the key's marker to the client's comment unless the comment carries the
    /// marker already; the write's answer must carry it.
    async fn record_client_line(
        &self,
        client: &ClientId,
        key: &str,
        line: &str,
        what: &str,
    ) -> Result<bool, PortError> {
        let id = self.automate_client(client).await?;
        let path = format!("Clients/{id}");
        let marker = closure_marker(key);
        let current: ClientRecord = self.call(Method::GET, &path, &[], None).await?;
        let comment = current.comment.unwrap_or_default();
        if comment.contains(&marker) {
            tracing::debug!(system = SYSTEM, client = id, key, "{what} already recorded");
            return Ok(false);
        }
        let line = format!("{line} {marker}");
        let body = serde_json::json!([{
            "Op": "replace",
            "Path": "/Comment",
            "Value": with_line(&comment, &line),
        }]);
        let written: ClientRecord = self.call(Method::PATCH, &path, &[], Some(&body)).await?;
        if !written.comment.unwrap_or_default().contains(&marker) {
            return Err(PortError::permanent(
                format!("{SYSTEM} PATCH /{API}/{path}"),
                format!(
                    "the answer's `Comment` does not carry {marker}: the {what} was not recorded"
                ),
            ));
        }
        tracing::info!(
            system = SYSTEM,
            client = id,
            key,
            "{what} recorded on the client"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::TimeZone;
    use patchflow_core::ids::CycleId;
    use patchflow_core::ports::rmm::Rmm;
    use patchflow_core::ports::state::TierId;
    use serde_json::{json, Value};
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    use super::*;
    use crate::automate::AutomateConfig;
    use crate::http::{HttpClient, RetryPolicy, Timeouts};
    use crate::secrets::{AutomateCredentials, Secret};

    const CLIENT: &str = "/cwa/api/v1/Clients/5";

    fn automate(server: &MockServer, clients: Value) -> Automate {
        let config: AutomateConfig = serde_json::from_value(json!({
            "base_url": server.uri(),
            "page_size": 2,
            "clients": clients,
        }))
        .unwrap();
        let credentials = AutomateCredentials {
            username: "patchflow-api".into(),
            password: Secret::new("pa55"),
            client_id: "cid-123".into(),
            two_factor_passcode: None,
        };
        let http = HttpClient::new(SYSTEM, Timeouts::default(), RetryPolicy::fast()).unwrap();
        Automate::with_http(config, credentials, http).unwrap()
    }

    async fn mount_token(server: &MockServer) {
        Mock::given(method("POST"))
            .and(path("/cwa/api/v1/apitoken"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "AccessToken": "t1", "TokenType": "Bearer",
                "ExpirationDate": "2099-01-01T00:00:00", "IsTwoFactorRequired": false
            })))
            .mount(server)
            .await;
    }

    /// Automate's client 5, whose `Comment` the PATCH replaces (JSON Patch `replace` of
    /// `/Comment`, as `LabTech.RESTApi.Models.PatchOperation` spells it).
    #[derive(Clone)]
    struct Client5(Arc<Mutex<String>>);

    impl Client5 {
        fn record(&self) -> Value {
            json!({"Id": "5", "Name": "Acme Dental, P.C.", "Company": "Acme Dental",
                   "Comment": *self.0.lock().unwrap(), "Locations": []})
        }
    }

    struct Read(Client5);

    impl Respond for Read {
        fn respond(&self, _: &Request) -> ResponseTemplate {
            ResponseTemplate::new(200).set_body_json(self.0.record())
        }
    }

    /// Applies the patch; `then` is the status answered after storing it.
    struct Write(Client5, u16);

    impl Respond for Write {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let ops: Vec<Value> = serde_json::from_slice(&req.body).unwrap();
            for op in ops {
                assert_eq!(op["Op"], "replace");
                assert_eq!(op["Path"], "/Comment");
                *self.0 .0.lock().unwrap() = op["Value"].as_str().unwrap().to_owned();
            }
            match self.1 {
                200 => ResponseTemplate::new(200).set_body_json(self.0.record()),
                other => ResponseTemplate::new(other),
            }
        }
    }

    async fn mount_client(server: &MockServer, comment: &str, status: u16) -> Client5 {
        let client = Client5(Arc::new(Mutex::new(comment.to_owned())));
        Mock::given(method("GET"))
            .and(path(CLIENT))
            .and(header("Authorization", "Bearer t1"))
            .and(header("ClientId", "cid-123"))
            .respond_with(Read(client.clone()))
            .mount(server)
            .await;
        Mock::given(method("PATCH"))
            .and(path(CLIENT))
            .and(header("Authorization", "Bearer t1"))
            .respond_with(Write(client.clone(), status))
            .mount(server)
            .await;
        client
    }

    fn closure() -> TierClosure {
        TierClosure {
            client: ClientId::parse("acme").unwrap(),
            cycle: CycleId::new(2026, 12).unwrap(),
            tier: TierId::parse("servers.pilot").unwrap(),
            closed_at: chrono::Utc.with_ymd_and_hms(2026, 12, 10, 4, 0, 0).unwrap(),
            summary: "3 of 3 patched\nand validated; PSA ticket 1234".to_owned(),
        }
    }

    const KEY: &str = "2026-12/closure/servers.pilot/acme";

    async fn count(server: &MockServer, verb: &str) -> usize {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == verb)
            .count()
    }

    #[tokio::test]
    async fn a_closure_is_one_line_on_the_client_written_once_and_a_repeat_writes_nothing() {
        let server = MockServer::start().await;
        mount_token(&server).await;
        let client = mount_client(&server, "Front desk: ask for Ann", 200).await;
        let rmm = automate(&server, json!({"5": {"id": "acme"}}));

        assert!(rmm.record_closure(KEY, &closure()).await.unwrap());
        assert_eq!(
            *client.0.lock().unwrap(),
            "Front desk: ask for Ann\npatchflow 2026-12 servers.pilot closed \
             2026-12-10T04:00:00Z: 3 of 3 patched and validated; PSA ticket 1234 \
             [patchflow:2026-12/closure/servers.pilot/acme]"
        );
        // A redelivery reads the client, finds the marker and writes nothing.
        assert!(!rmm.record_closure(KEY, &closure()).await.unwrap());
        assert_eq!(count(&server, "PATCH").await, 1);
        assert_eq!(count(&server, "GET").await, 2);

        // Another tier is another line, after the first.
        let mut next = closure();
        next.tier = TierId::parse("servers.production").unwrap();
        assert!(rmm
            .record_closure("2026-12/closure/servers.production/acme", &next)
            .await
            .unwrap());
        let comment = client.0.lock().unwrap().clone();
        assert_eq!(comment.lines().count(), 3, "{comment}");
        assert!(comment
            .lines()
            .last()
            .unwrap()
            .contains("servers.production"));
        assert_eq!(count(&server, "PATCH").await, 2);
    }

    #[tokio::test]
    async fn a_client_not_in_the_connectors_file_is_found_by_its_name_as_a_slug() {
        let server = MockServer::start().await;
        mount_token(&server).await;
        let client = mount_client(&server, "", 200).await;
        for (page, rows) in [
            (
                1,
                json!([{"Id": 3, "Name": "Birch & Cole LLP"}, {"Id": "5", "Name": "Acme"}]),
            ),
            (2, json!([{"Id": 9, "Name": "Globex"}])),
        ] {
            Mock::given(method("GET"))
                .and(path("/cwa/api/v1/Clients"))
                .and(query_param("page", page.to_string()))
                .and(query_param("pageSize", "2"))
                .respond_with(ResponseTemplate::new(200).set_body_json(rows))
                .mount(&server)
                .await;
        }
        let rmm = automate(&server, json!({}));
        assert!(rmm.record_closure(KEY, &closure()).await.unwrap());
        assert!(client.0.lock().unwrap().ends_with(&closure_marker(KEY)));

        // No client of that name: an error naming the client, nothing written.
        let mut unknown = closure();
        unknown.client = ClientId::parse("initech").unwrap();
        let e = rmm.record_closure("k2", &unknown).await.unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(text.contains("`initech`"), "{text}");
        assert_eq!(count(&server, "PATCH").await, 1);
    }

    #[tokio::test]
    async fn an_answer_without_the_line_is_an_error_and_a_lost_answer_is_retried_by_reading() {
        // A server that answers the PATCH without applying it.
        let server = MockServer::start().await;
        mount_token(&server).await;
        Mock::given(method("GET"))
            .and(path(CLIENT))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"Id": 5, "Comment": null})),
            )
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path(CLIENT))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Id": 5, "Comment": ""})))
            .mount(&server)
            .await;
        let rmm = automate(&server, json!({"5": {"id": "acme"}}));
        let e = rmm.record_closure(KEY, &closure()).await.unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            text.contains("PATCH /cwa/api/v1/Clients/5") && text.contains("`Comment`"),
            "{text}"
        );

        // A write stored whose answer is a 503: transient and not resent; the retry reads the
        // client, finds the line and writes nothing more.
        let server = MockServer::start().await;
        mount_token(&server).await;
        let client = mount_client(&server, "", 503).await;
        let rmm = automate(&server, json!({"5": {"id": "acme"}}));
        let e = rmm.record_closure(KEY, &closure()).await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(count(&server, "PATCH").await, 1);
        assert!(!rmm.record_closure(KEY, &closure()).await.unwrap());
        assert_eq!(count(&server, "PATCH").await, 1);
        assert_eq!(client.0.lock().unwrap().lines().count(), 1);
    }

    #[test]
    fn a_line_is_added_after_the_technicians_text_and_old_lines_of_ours_give_way() {
        assert_eq!(
            with_line("", "patchflow a [patchflow:a]"),
            "patchflow a [patchflow:a]"
        );
        assert_eq!(
            with_line("Front desk: call Ann\r\n\r\n", "patchflow a [patchflow:a]"),
            "Front desk: call Ann\r\npatchflow a [patchflow:a]"
        );
        let mut comment = String::from("Keep me");
        for i in 0..KEEP_LINES {
            comment = with_line(&comment, &format!("patchflow {i} [patchflow:{i}]"));
        }
        let next = with_line(&comment, "patchflow new [patchflow:new]");
        let lines: Vec<&str> = next.lines().collect();
        assert_eq!(lines.len(), KEEP_LINES + 1);
        assert_eq!(lines[0], "Keep me");
        assert_eq!(lines[1], "patchflow 1 [patchflow:1]");
        assert_eq!(lines[KEEP_LINES], "patchflow new [patchflow:new]");
        // A technician's line that merely starts like ours is kept.
        assert!(with_line("patchflow is great", "patchflow x [patchflow:x]")
            .starts_with("patchflow is great\n"));
    }

    fn retry_note() -> RetryNote {
        let at = |h| chrono::Utc.with_ymd_and_hms(2026, 12, 11, h, 0, 0).unwrap();
        RetryNote {
            client: ClientId::parse("acme").unwrap(),
            cycle: CycleId::new(2026, 12).unwrap(),
            endpoint: patchflow_core::ids::EndpointId::parse("ep-7").unwrap(),
            hostname: "ACME-SQL01".into(),
            failure: "2026-12.servers.pilot.ep-7.install.0".into(),
            stage: "install".into(),
            patches: vec![patchflow_core::ids::PatchId::parse("KB5071001").unwrap()],
            next_retry: patchflow_core::schedule::Window {
                start: at(2),
                end: at(8),
            },
            ticket: Some("1234".into()),
        }
    }

    #[tokio::test]
    async fn a_retry_window_is_one_line_on_the_client_once_per_failure_and_keeps_the_closures() {
        let server = MockServer::start().await;
        mount_token(&server).await;
        let client = mount_client(&server, "Front desk: ask for Ann", 200).await;
        let rmm = automate(&server, json!({"5": {"id": "acme"}}));
        assert!(rmm.record_closure(KEY, &closure()).await.unwrap());

        let key = "2026-12/retry/2026-12.servers.pilot.ep-7.install.0";
        assert!(rmm.record_retry(key, &retry_note()).await.unwrap());
        let comment = client.0.lock().unwrap().clone();
        assert_eq!(
            comment.lines().last().unwrap(),
            "patchflow retry 2026-12 ACME-SQL01 (ep-7): install failed (KB5071001); next retry \
             window 2026-12-11T02:00:00Z to 2026-12-11T08:00:00Z, PSA ticket 1234 \
             [patchflow:2026-12/retry/2026-12.servers.pilot.ep-7.install.0]"
        );
        // A redelivery writes nothing.
        assert!(!rmm.record_retry(key, &retry_note()).await.unwrap());
        assert_eq!(count(&server, "PATCH").await, 2);

        // A month of failures gives way among themselves, never pushing a closure out.
        for i in 0..KEEP_RETRY_LINES + 5 {
            rmm.record_retry(&format!("k{i}"), &retry_note())
                .await
                .unwrap();
        }
        let comment = client.0.lock().unwrap().clone();
        assert!(comment.starts_with("Front desk: ask for Ann\n"));
        assert!(comment.contains(&closure_marker(KEY)), "{comment}");
        let retries = comment
            .lines()
            .filter(|l| l.starts_with("patchflow retry "))
            .count();
        assert_eq!(retries, KEEP_RETRY_LINES);
    }

    #[test]
    fn a_summary_is_one_bounded_line() {
        assert_eq!(one_line("a\r\nb\t c"), "a b c");
        assert!(one_line(&"é".repeat(900)).chars().count() <= 503);
    }
}
