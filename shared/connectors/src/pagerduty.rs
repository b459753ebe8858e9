//! On-call paging through PagerDuty's Events API v2: the [`Pager`] port over HTTP.
//!
//! Public references (PagerDuty developer documentation, Events API v2):
//!
//! - "Send an Alert Event"
//!   (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>): an event is a JSON
//!   object POSTed to the enqueue endpoint `https://events.pagerduty.com/v2/enqueue`, with the
//!   integration's `routing_key`, an `event_action` (`trigger`, `acknowledge` or `resolve`), a
//!   `dedup_key` (at most 255 characters) and, for a trigger, a `payload` of `summary` (at most
//!   1024 characters), `source` and `severity` (`critical`, `error`, `warning` or `info`), all
//!   required, and `timestamp`, `component`, `group` and `class`, optional. A resolve carries only
//!   the routing key, the action and the dedup key.
//! - Alert de-duplication (same page): events with the `dedup_key` of an open alert apply to that
//!   alert, so a second trigger with an open key does not open a second alert or incident; once
//!   the alert is resolved, a trigger with the key opens a new one and a resolve is dropped.
//!   patchflow always sends its own key (a trigger without one would always open a new alert).
//! - "Events API v2 Overview", response codes and retry logic
//!   (<https://developer.pagerduty.com/docs/events-api-v2/overview/>): `202` accepted, answered
//!   with `{"status":"success","message":"Event processed","dedup_key":"..."}`; `400` bad request,
//!   answered with `{"status":"invalid event","message":"Event object is invalid","errors":[...]}`,
//!   not to be retried; `429` too many calls and `5xx` server errors, to be retried after a
//!   while.
//! - "Events API Rate Limits"
//!   (<https://developer.pagerduty.com/docs/events-api-v2/rate-limits/>): about 120 events a
//!   minute per integration key; over it, `429` and the event is not ingested.
//!
//! Retries (429 honouring `Retry-After`, 5xx, timeouts) are the shared [`HttpClient`]'s. A refused
//! event (400) is `Permanent` and its error carries PagerDuty's `errors`; a 202 whose body is not
//! the documented shape is `Permanent` and names the field. The routing key is the credential: it
//! is sent in the body and never appears in an error or a log line.

use patchflow_core::ports::pager::Pager;
use patchflow_core::ports::{error_chain, PortError};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::http::{self, HttpClient, RetryPolicy, Timeouts};
use crate::secrets::PagerDutyCredentials;

/// The system's name in errors and logs.
const SYSTEM: &str = "PagerDuty";

/// PagerDuty's limit on `payload.summary`.
pub const MAX_SUMMARY_LEN: usize = 1024;

/// PagerDuty's limit on `dedup_key`, in characters.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;

/// The `payload.class` of every page patchflow sends.
pub const EVENT_CLASS: &str = "patch-failure";

/// The severity of the pages, as PagerDuty's `payload.severity`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `critical` (the default).
    #[default]
    Critical,
    /// `error`.
    Error,
    /// `warning`.
    Warning,
    /// `info`.
    Info,
}

impl Severity {
    /// The value PagerDuty expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = PortError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "critical" => Ok(Severity::Critical),
            "error" => Ok(Severity::Error),
            "warning" => Ok(Severity::Warning),
            "info" => Ok(Severity::Info),
            other => Err(PortError::permanent(
                "PagerDuty configuration",
                format!(
                    "severity `{other}` is not one of PagerDuty's: critical, error, warning, info"
                ),
            )),
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How patchflow pages through PagerDuty (the routing key is a credential, in
/// [`PagerDutyCredentials`], not here). Every field has a default; an unknown field or a
/// severity other than `critical`, `error`, `warning` or `info` is an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The Events API v2 enqueue endpoint (default `https://events.pagerduty.com/v2/enqueue`;
    /// an EU account uses `https://events.eu.pagerduty.com/v2/enqueue`).
    pub events_url: String,
    /// `payload.source`: the system the pages are about (default `patchflow`).
    pub source: String,
    /// `payload.severity` (default `critical`).
    pub severity: Severity,
    /// `payload.component`, if any.
    pub component: Option<String>,
    /// `payload.group`, if any.
    pub group: Option<String>,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            events_url: "https://events.pagerduty.com/v2/enqueue".to_owned(),
            source: "patchflow".to_owned(),
            severity: Severity::Critical,
            component: None,
            group: None,
        }
    }
}

impl PagerDutyConfig {
    /// Checks what deserializing cannot: `events_url` is an http(s) URL and `source` is not
    /// empty. Returns the endpoint's path, for errors and logs.
    pub fn validate(&self) -> Result<String, PortError> {
        let context = "PagerDuty configuration";
        let url = url::Url::parse(&self.events_url).map_err(|e| {
            PortError::permanent(
                context,
                format!("events_url `{}` is not a URL: {e}", self.events_url),
            )
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(PortError::permanent(
                context,
                format!("events_url `{}` is not an http(s) URL", self.events_url),
            ));
        }
        if self.source.trim().is_empty() {
            return Err(PortError::permanent(
                context,
                "source is empty (PagerDuty requires payload.source)",
            ));
        }
        Ok(url.path().to_owned())
    }
}

/// The [`Pager`] port over PagerDuty's Events API v2.
#[derive(Debug, Clone)]
pub struct PagerDutyPager {
    config: PagerDutyConfig,
    credentials: PagerDutyCredentials,
    http: HttpClient,
    /// The endpoint's path, for errors and logs.
    path: String,
}

impl PagerDutyPager {
    /// A pager with this configuration, routing key and HTTP client. Fails when the
    /// configuration is invalid (see [`PagerDutyConfig::validate`]) or the routing key is empty.
    pub fn with_http(
        config: PagerDutyConfig,
        credentials: PagerDutyCredentials,
        http: HttpClient,
    ) -> Result<Self, PortError> {
        let path = config.validate()?;
        if credentials.routing_key.expose().trim().is_empty() {
            return Err(PortError::permanent(
                "PagerDuty credentials",
                "routing_key is empty",
            ));
        }
        let http = http.redacting(credentials.routing_key.expose());
        Ok(Self {
            config,
            credentials,
            http,
            path,
        })
    }

    /// A pager with the default timeouts and retries ([`Timeouts::default`],
    /// [`RetryPolicy::default`]).
    pub fn new(
        config: PagerDutyConfig,
        credentials: PagerDutyCredentials,
    ) -> Result<Self, PortError> {
        let http = HttpClient::new(SYSTEM, Timeouts::default(), RetryPolicy::default())?;
        Self::with_http(config, credentials, http)
    }

    /// The configuration.
    pub fn config(&self) -> &PagerDutyConfig {
        &self.config
    }

    /// Sends one event and checks PagerDuty's answer.
    async fn enqueue(
        &self,
        action: &str,
        dedup_key: &str,
        event: &Event<'_>,
    ) -> Result<(), PortError> {
        let what = format!(
            "{} {action} `{dedup_key}`",
            http::call(&Method::POST, &self.path)
        );
        check_dedup_key(&what, dedup_key)?;
        let url = self.config.events_url.as_str();
        let answer: Result<Accepted, _> = self
            .http
            .json(&what, || self.http.request(Method::POST, url).json(event))
            .await;
        let accepted = match answer {
            Ok(accepted) => accepted,
            Err(e) => {
                let error = match e.status {
                    Some(StatusCode::BAD_REQUEST) => refused(&what, e.body.as_deref(), e.error),
                    // A 404 is a wrong events_url: not a missing page, and retrying cannot help.
                    Some(StatusCode::NOT_FOUND) => {
                        PortError::permanent(format!("{SYSTEM} {what}"), e.error.to_string())
                    }
                    _ => e.error,
                };
                let error = self.redact(error);
                tracing::warn!(system = SYSTEM, call = %what, error = %error_chain(&error), "page not sent");
                return Err(error);
            }
        };
        if accepted.status != "success" {
            return Err(self.redact(PortError::permanent(
                format!("{SYSTEM} {what}"),
                format!(
                    "PagerDuty answered status `{}` ({}), not `success`",
                    accepted.status, accepted.message
                ),
            )));
        }
        if accepted.dedup_key != dedup_key {
            return Err(self.redact(PortError::permanent(
                format!("{SYSTEM} {what}"),
                format!(
                    "PagerDuty answered for dedup key `{}`, not `{dedup_key}`: the event would not \
                     deduplicate with ours",
                    accepted.dedup_key
                ),
            )));
        }
        tracing::info!(system = SYSTEM, action, dedup_key, "page event accepted");
        Ok(())
    }

    /// The error with every occurrence of the routing key replaced (PagerDuty may quote what it
    /// was sent).
    fn redact(&self, error: PortError) -> PortError {
        let key = self.credentials.routing_key.expose();
        if key.is_empty() || !error_chain(&error).contains(key) {
            return error;
        }
        let scrub = |s: &str| s.replace(key, "[redacted]");
        match error {
            PortError::Conflict(m) => PortError::Conflict(scrub(&m)),
            PortError::NotFound(m) => PortError::NotFound(scrub(&m)),
            PortError::Transient { context, source } => {
                PortError::transient(scrub(&context), scrub(&error_chain(source.as_ref())))
            }
            PortError::Permanent { context, source } => {
                PortError::permanent(scrub(&context), scrub(&error_chain(source.as_ref())))
            }
        }
    }
}

impl Pager for PagerDutyPager {
    async fn trigger(&self, dedup_key: &str, summary: &str) -> Result<(), PortError> {
        let fallback;
        let summary = if summary.trim().is_empty() {
            // PagerDuty refuses an empty summary; a page with a plain one beats no page.
            fallback = format!("patchflow: {dedup_key}");
            fallback.as_str()
        } else {
            summary
        };
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let event = Event {
            routing_key: self.credentials.routing_key.expose(),
            event_action: "trigger",
            dedup_key,
            payload: Some(Payload {
                summary: truncate(summary, MAX_SUMMARY_LEN),
                source: &self.config.source,
                severity: self.config.severity,
                timestamp,
                component: self.config.component.as_deref(),
                group: self.config.group.as_deref(),
                class: EVENT_CLASS,
            }),
        };
        self.enqueue("trigger", dedup_key, &event).await
    }

    async fn resolve(&self, dedup_key: &str) -> Result<(), PortError> {
        let event = Event {
            routing_key: self.credentials.routing_key.expose(),
            event_action: "resolve",
            dedup_key,
            payload: None,
        };
        self.enqueue("resolve", dedup_key, &event).await
    }
}

/// An alert event, as sent (it holds the routing key: never logged, never in an error).
#[derive(Serialize)]
struct Event<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
}

/// A trigger's `payload`.
#[derive(Serialize)]
struct Payload<'a> {
    summary: &'a str,
    source: &'a str,
    severity: Severity,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    class: &'static str,
}

/// The 202 answer.
#[derive(Debug, Deserialize)]
struct Accepted {
    status: String,
    message: String,
    dedup_key: String,
}

/// The 400 answer.
#[derive(Debug, Deserialize)]
struct Invalid {
    status: String,
    message: String,
    #[serde(default)]
    errors: Vec<String>,
}

/// A dedup key PagerDuty would refuse (too long) or replace (empty: a trigger would always open a
/// new alert) is refused before sending.
fn check_dedup_key(what: &str, dedup_key: &str) -> Result<(), PortError> {
    if dedup_key.is_empty() {
        return Err(PortError::permanent(
            format!("{SYSTEM} {what}"),
            "the dedup key is empty (PagerDuty would open a new alert on every trigger)",
        ));
    }
    let chars = dedup_key.chars().count();
    if chars > MAX_DEDUP_KEY_CHARS {
        return Err(PortError::permanent(
            format!("{SYSTEM} {what}"),
            format!("the dedup key has {chars} characters; PagerDuty allows {MAX_DEDUP_KEY_CHARS}"),
        ));
    }
    Ok(())
}

/// A 400: PagerDuty refused the event. The error keeps its `status`, `message` and `errors`
/// when the body has the documented shape, else the body's first words.
fn refused(what: &str, body: Option<&str>, error: PortError) -> PortError {
    let detail = match &error {
        PortError::Permanent { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    let text = match serde_json::from_str::<Invalid>(body.unwrap_or_default()) {
        Ok(invalid) if invalid.errors.is_empty() => {
            format!(
                "PagerDuty refused the event (HTTP 400 {}): {}",
                invalid.status, invalid.message
            )
        }
        Ok(invalid) => format!(
            "PagerDuty refused the event (HTTP 400 {}): {}; errors: {}",
            invalid.status,
            invalid.message,
            invalid.errors.join("; ")
        ),
        Err(_) => format!("PagerDuty refused the event: {detail}"),
    };
    PortError::permanent(format!("{SYSTEM} {what}"), text)
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {

    use serde_json::json;
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::secrets::Secret;

    const KEY: &str = "R0UT1NGK3Y0123456789abcdef012345";

    fn fast() -> RetryPolicy {
        RetryPolicy::fast()
    }

    fn pager(server: &MockServer, config: PagerDutyConfig) -> PagerDutyPager {
        let config = PagerDutyConfig {
            events_url: http::join(&server.uri(), "/v2/enqueue"),
            ..config
        };
        let credentials = PagerDutyCredentials {
            routing_key: Secret::new(KEY),
        };
        let client = HttpClient::new(SYSTEM, Timeouts::default(), fast()).unwrap();
        PagerDutyPager::with_http(config, credentials, client).unwrap()
    }

    fn accepted(dedup_key: &str) -> ResponseTemplate {
        ResponseTemplate::new(202).set_body_json(json!({
            "status": "success",
            "message": "Event processed",
            "dedup_key": dedup_key,
        }))
    }

    /// The error as a reader sees it: the message and its causes.
    fn text(e: &PortError) -> String {
        error_chain(e)
    }

    async fn sent_bodies(server: &MockServer) -> Vec<serde_json::Value> {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_trigger_sends_the_documented_alert_event() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/enqueue"))
            .and(body_partial_json(json!({
                "routing_key": KEY,
                "event_action": "trigger",
                "dedup_key": "2024-06/f-1",
                "payload": {
                    "summary": "KB5039212 failed on 3 endpoints of Contoso",
                    "source": "patchflow-test",
                    "severity": "warning",
                    "component": "windows-update",
                    "group": "contoso",
                    "class": "patch-failure",
                },
            })))
            .respond_with(accepted("2024-06/f-1"))
            .expect(1)
            .mount(&server)
            .await;
        let p = pager(
            &server,
            PagerDutyConfig {
                source: "patchflow-test".into(),
                severity: Severity::Warning,
                component: Some("windows-update".into()),
                group: Some("contoso".into()),
                ..PagerDutyConfig::default()
            },
        );
        p.trigger("2024-06/f-1", "KB5039212 failed on 3 endpoints of Contoso")
            .await
            .unwrap();
        let body = &sent_bodies(&server).await[0];
        let stamp = body["payload"]["timestamp"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    }

    #[tokio::test]
    async fn a_trigger_without_component_or_group_leaves_them_out() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(accepted("k"))
            .mount(&server)
            .await;
        let p = pager(&server, PagerDutyConfig::default());
        p.trigger("k", "failed").await.unwrap();
        let payload = &sent_bodies(&server).await[0]["payload"];
        assert_eq!(payload["severity"], "critical");
        assert_eq!(payload["source"], "patchflow");
        assert!(payload.get("component").is_none() && payload.get("group").is_none());
    }

    #[tokio::test]
    async fn a_resolve_sends_the_resolve_action_with_the_dedup_key_and_no_payload() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/enqueue"))
            .and(body_partial_json(json!({
                "routing_key": KEY,
                "event_action": "resolve",
                "dedup_key": "2024-06/f-1",
            })))
            .respond_with(accepted("2024-06/f-1"))
            .expect(1)
            .mount(&server)
            .await;
        let p = pager(&server, PagerDutyConfig::default());
        p.resolve("2024-06/f-1").await.unwrap();
        assert!(sent_bodies(&server).await[0].get("payload").is_none());
    }

    #[tokio::test]
    async fn a_429_with_retry_after_zero_is_retried_and_then_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(accepted("k"))
            .mount(&server)
            .await;
        let p = pager(&server, PagerDutyConfig::default());
        p.trigger("k", "failed").await.unwrap();
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_400_invalid_event_is_permanent_names_pagerduty_and_its_errors_but_never_the_key() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": [
                    "'payload.severity' is invalid (must be one of the following: 'critical', \
                     'warning', 'error' or 'info')",
                    format!("routing_key '{KEY}' is not known"),
                ],
            })))
            .mount(&server)
            .await;
        let p = pager(&server, PagerDutyConfig::default());
        let e = p.trigger("k", "failed").await.unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let t = text(&e);
        assert!(t.contains("PagerDuty"), "{t}");
        assert!(t.contains("Event object is invalid; errors: "), "{t}");
        assert!(t.contains("'payload.severity' is invalid"), "{t}");
        assert!(t.contains("is not known"), "{t}");
        assert!(!t.contains(KEY) && !format!("{e:?}").contains(KEY), "{t}");
        // Refused at once: not retried.
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn no_error_ever_carries_the_routing_key() {
        let server = MockServer::start().await;
        Mock::given(path("/v2/enqueue"))
            .respond_with(ResponseTemplate::new(503).set_body_string(format!("down for {KEY}")))
            .mount(&server)
            .await;
        let p = pager(&server, PagerDutyConfig::default());
        let e = p.resolve("k").await.unwrap_err();
        assert!(
            !text(&e).contains(KEY) && !format!("{e:?}").contains(KEY),
            "{e:?}"
        );
        assert!(e.is_retryable());
    }

    #[tokio::test]
    async fn a_malformed_202_body_names_the_field() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({
                "status": "success",
                "message": "Event processed",
                "dedup_key": 42,
            })))
            .mount(&server)
            .await;
        let p = pager(&server, PagerDutyConfig::default());
        let e = p.trigger("k", "failed").await.unwrap_err();
        assert!(!e.is_retryable(), "{e:?}");
        let t = text(&e);
        assert!(
            t.contains("PagerDuty") && t.contains("malformed") && t.contains("dedup_key"),
            "{t}"
        );
    }

    #[tokio::test]
    async fn a_202_for_another_dedup_key_is_permanent_and_says_so() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(accepted("a-key-pagerduty-made"))
            .mount(&server)
            .await;
        let p = pager(&server, PagerDutyConfig::default());
        let e = p.trigger("ours", "failed").await.unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let t = text(&e);
        assert!(
            t.contains("a-key-pagerduty-made") && t.contains("ours"),
            "{t}"
        );
    }

    #[tokio::test]
    async fn a_500_that_persists_exhausts_the_retries_as_a_transient_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500).set_body_string("internal error"))
            .mount(&server)
            .await;
        let p = pager(&server, PagerDutyConfig::default());
        let e = p.trigger("k", "failed").await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        let t = text(&e);
        assert!(
            t.contains("PagerDuty") && t.contains("after 3 attempts"),
            "{t}"
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_wrong_events_url_is_permanent() {
        let server = MockServer::start().await;
        let p = pager(&server, PagerDutyConfig::default());
        let e = p.trigger("k", "failed").await.unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn an_empty_or_overlong_dedup_key_is_refused_before_sending() {
        let server = MockServer::start().await;
        let p = pager(&server, PagerDutyConfig::default());
        let e = p.trigger("", "failed").await.unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let e = p.resolve(&"k".repeat(256)).await.unwrap_err();
        assert!(text(&e).contains("255"), "{e:?}");
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[test]
    fn summary_truncation_keeps_valid_utf8_within_1024_bytes() {
        let long = format!("x{}", "é🦀".repeat(400));
        let cut = truncate(&long, MAX_SUMMARY_LEN);
        assert!(cut.len() <= MAX_SUMMARY_LEN && cut.len() > MAX_SUMMARY_LEN - 4);
        assert!(long.starts_with(cut));
        assert!(std::str::from_utf8(cut.as_bytes()).is_ok());
        assert_eq!(truncate("short", MAX_SUMMARY_LEN), "short");
        assert_eq!(truncate(&"a".repeat(1024), MAX_SUMMARY_LEN).len(), 1024);
    }

    #[tokio::test]
    async fn a_long_summary_is_sent_truncated() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(accepted("k"))
            .mount(&server)
            .await;
        let p = pager(&server, PagerDutyConfig::default());
        p.trigger("k", &"ü".repeat(2000)).await.unwrap();
        let body = &sent_bodies(&server).await[0];
        let summary = body["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.len(), 1024);
        assert!(summary.chars().all(|c| c == 'ü'));
    }

    #[test]
    fn the_configuration_has_defaults_and_refuses_unknown_fields_and_severities() {
        let c: PagerDutyConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, PagerDutyConfig::default());
        assert_eq!(c.events_url, "https://events.pagerduty.com/v2/enqueue");
        assert_eq!(
            (c.source.as_str(), c.severity),
            ("patchflow", Severity::Critical)
        );
        assert_eq!(c.validate().unwrap(), "/v2/enqueue");

        let c: PagerDutyConfig =
            serde_json::from_str(r#"{"severity":"info","group":"contoso"}"#).unwrap();
        assert_eq!(
            (c.severity, c.group.as_deref()),
            (Severity::Info, Some("contoso"))
        );

        let e = serde_json::from_str::<PagerDutyConfig>(r#"{"severity":"fatal"}"#).unwrap_err();
        let t = e.to_string();
        assert!(
            t.contains("fatal") && t.contains("critical") && t.contains("info"),
            "{t}"
        );
        let e = serde_json::from_str::<PagerDutyConfig>(r#"{"routing_key":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        assert!("fatal".parse::<Severity>().is_err());
        assert_eq!("warning".parse::<Severity>().unwrap(), Severity::Warning);

        let bad = PagerDutyConfig {
            events_url: "events.pagerduty.com".into(),
            ..PagerDutyConfig::default()
        };
        assert!(text(&bad.validate().unwrap_err()).contains("events_url"));
        let creds = PagerDutyCredentials {
            routing_key: Secret::new(""),
        };
        let client = HttpClient::new(SYSTEM, Timeouts::default(), fast()).unwrap();
        assert!(PagerDutyPager::with_http(PagerDutyConfig::default(), creds, client).is_err());
    }
}
