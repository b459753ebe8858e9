//! The HTTP layer every web connector shares: a timeout on every call, retries with exponential
//! backoff and full jitter for 429 (honouring `Retry-After`) and 5xx and for connection failures
//! and timeouts, and responses decoded with errors that name the system, the endpoint and the
//! field. Errors map onto the ports' contract: what retrying may fix is `Transient`, the rest is
//! `Permanent`, a 404 is `NotFound`.

use std::time::Duration;

use patchflow_core::ports::PortError;
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::secrets::Secret;

/// How a connector retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The first backoff; each retry doubles it, up to `max_delay`.
    pub base_delay: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Three attempts a millisecond apart: the retries without the waiting, for tests.
    #[cfg(test)]
    pub(crate) fn fast() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    /// The wait before retry number `retry` (1 for the first retry): the server's `Retry-After`
    /// when it gave one (capped), else a random wait up to the exponential backoff ("full
    /// jitter", so many functions retrying at once spread out).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        let millis = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }
}

/// Timeouts for every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting.
    pub connect: Duration,
    /// The whole request, response body included.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
        }
    }
}

/// A client for one external system, named in every error (`ConnectWise Automate`, ...).
#[derive(Debug, Clone)]
pub struct HttpClient {
    system: &'static str,
    client: reqwest::Client,
    retry: RetryPolicy,
    /// Values never to appear in an error or a log (a key the system may echo back).
    redact: Vec<Secret>,
}

/// Why a call failed after its retries, with what the connector needs to decide (the status).
#[derive(Debug)]
pub struct CallError {
    /// The HTTP status, when the system answered.
    pub status: Option<StatusCode>,
    /// The body of the refusal (its first 64 KiB), for connectors that read the system's own
    /// error shape.
    pub body: Option<String>,
    /// The port error to return.
    pub error: PortError,
}

impl From<CallError> for PortError {
    fn from(e: CallError) -> Self {
        e.error
    }
}

/// The process's HTTP clients, one per set of timeouts. Building one loads the TLS root store
/// (every certificate of the system's store read and parsed: about 10 ms), so the connectors of a
/// function share one, and with it its connection pools; its requests are independent.
static CLIENTS: std::sync::Mutex<Vec<(Timeouts, reqwest::Client)>> =
    std::sync::Mutex::new(Vec::new());

fn shared_client(timeouts: Timeouts) -> Result<reqwest::Client, reqwest::Error> {
    let mut clients = CLIENTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, c)) = clients.iter().find(|(t, _)| *t == timeouts) {
        return Ok(c.clone());
    }
    let client = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .user_agent(concat!("patchflow/", env!("CARGO_PKG_VERSION")))
        .build()?;
    clients.push((timeouts, client.clone()));
    Ok(client)
}

impl HttpClient {
    /// A client for `system` with these timeouts and retries (the HTTP client underneath shared
    /// with every other of the same timeouts in the process).
    pub fn new(
        system: &'static str,
        timeouts: Timeouts,
        retry: RetryPolicy,
    ) -> Result<Self, PortError> {
        let client = shared_client(timeouts)
            .map_err(|e| PortError::permanent(format!("{system}: build the HTTP client"), e))?;
        Ok(Self {
            system,
            client,
            retry,
            redact: Vec::new(),
        })
    }

    /// The same client, scrubbing `secret` from every error and log it writes.
    pub fn redacting(mut self, secret: &str) -> Self {
        if !secret.is_empty() {
            self.redact.push(Secret::new(secret));
        }
        self
    }

    fn scrub(&self, text: String) -> String {
        self.redact
            .iter()
            .fold(text, |t, secret| t.replace(secret.expose(), "[redacted]"))
    }

    /// The system's name.
    pub fn system(&self) -> &'static str {
        self.system
    }

    /// A request builder for `method url` (the caller adds headers and a body).
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends the request `build` makes (called again for each attempt), retrying passing
    /// failures. Returns the first response with a success status; any other final answer is an
    /// error naming the system, the method and the endpoint, with the body's first words.
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, CallError> {
        let mut retry = 0;
        loop {
            let (transient, failed, retry_after) = match self.attempt(build()).await {
                Ok(resp) => return Ok(resp),
                Err(f) => f,
            };
            retry += 1;
            if transient && retry < self.retry.attempts {
                let wait = self.retry.delay(retry, retry_after);
                tracing::warn!(
                    system = self.system,
                    call = what,
                    retry,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    detail = %failed.detail,
                    "retrying"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let note = if transient {
                format!(" (after {retry} attempts)")
            } else {
                String::new()
            };
            return Err(self.fail(what, transient, failed, &note));
        }
    }

    /// Sends a request that must not be repeated blindly (a create: a timeout or a 5xx may come
    /// after the system stored it) exactly once. Failures map as in [`HttpClient::send`]; the
    /// caller's own retry should look the record up first.
    pub async fn send_once(
        &self,
        what: &str,
        request: RequestBuilder,
    ) -> Result<Response, CallError> {
        match self.attempt(request).await {
            Ok(resp) => Ok(resp),
            Err((transient, failed, _)) => Err(self.fail(
                what,
                transient,
                failed,
                " (not resent: it may have been stored)",
            )),
        }
    }

    /// One request: the response, or whether retrying may help, what failed, and `Retry-After`.
    async fn attempt(
        &self,
        request: RequestBuilder,
    ) -> Result<Response, (bool, Failed, Option<Duration>)> {
        match request.send().await {
            Ok(resp) if resp.status().is_success() => Ok(resp),
            Ok(resp) => {
                let status = resp.status();
                let retry_after = retry_after(resp.headers());
                let body = self.scrub(resp.text().await.unwrap_or_default());
                let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                let detail = format!("HTTP {status}: {}", excerpt(&body));
                let body: String = body.chars().take(65_536).collect();
                Err((
                    transient,
                    Failed {
                        status: Some(status),
                        body: Some(body),
                        detail,
                    },
                    retry_after,
                ))
            }
            Err(e) => Err((
                e.is_timeout() || e.is_connect() || e.is_request(),
                Failed {
                    status: None,
                    body: None,
                    detail: self.scrub(error_text(&e)),
                },
                None,
            )),
        }
    }

    fn fail(&self, what: &str, transient: bool, failed: Failed, note: &str) -> CallError {
        let context = format!("{} {what}", self.system);
        let detail = format!("{}{note}", failed.detail);
        let error = match failed.status {
            Some(StatusCode::NOT_FOUND) => PortError::NotFound(format!("{context}: {detail}")),
            _ if transient => PortError::transient(context, detail),
            _ => PortError::permanent(context, detail),
        };
        CallError {
            status: failed.status,
            body: failed.body,
            error,
        }
    }

    /// Sends and decodes a JSON response (see [`decode`]).
    pub async fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<T, CallError> {
        let resp = self.send(what, build).await?;
        self.decode_response(what, resp).await
    }

    /// Sends once (see [`HttpClient::send_once`]) and decodes a JSON response.
    pub async fn json_once<T: DeserializeOwned>(
        &self,
        what: &str,
        request: RequestBuilder,
    ) -> Result<T, CallError> {
        let resp = self.send_once(what, request).await?;
        self.decode_response(what, resp).await
    }

    async fn decode_response<T: DeserializeOwned>(
        &self,
        what: &str,
        resp: Response,
    ) -> Result<T, CallError> {
        let body = resp.bytes().await.map_err(|e| CallError {
            status: None,
            body: None,
            error: PortError::transient(
                format!("{} {what}", self.system),
                self.scrub(error_text(&e)),
            ),
        })?;
        decode(self.system, what, &body).map_err(|error| CallError {
            status: None,
            body: None,
            // serde quotes the values it cannot read: keep secrets out of them.
            error: match error {
                PortError::Permanent { context, source } => {
                    PortError::permanent(context, self.scrub(source.to_string()))
                }
                other => other,
            },
        })
    }
}

/// A failed attempt.
struct Failed {
    status: Option<StatusCode>,
    body: Option<String>,
    detail: String,
}

/// Decodes a JSON body; a body that is not the documented shape is a permanent error naming the
/// system, the call and the field's path (`[3].Client.Name: invalid type: null, expected a
/// string`).
pub fn decode<T: DeserializeOwned>(system: &str, what: &str, body: &[u8]) -> Result<T, PortError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!("field `{path}`: ")
        };
        PortError::permanent(
            format!("{system} {what}"),
            format!("malformed response: {field}{inner}"),
        )
    })
}

/// `Retry-After` as seconds (the HTTP-date form is read as "soon": one second).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    Some(match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => Duration::from_secs(1),
    })
}

/// The first 300 characters of a body, on one line.
pub(crate) fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None if one_line.is_empty() => "(empty body)".to_owned(),
        None => one_line,
    }
}

/// A reqwest error with its causes, the URL shortened to its path (a query may carry secrets).
pub(crate) fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), url.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Joins a base URL and a path with exactly one `/` between them.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// The method and path of a call, for errors and logs.
pub fn call(method: &Method, path: &str) -> String {
    format!("{method} {path}")
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    fn fast() -> RetryPolicy {
        RetryPolicy::fast()
    }

    fn client(retry: RetryPolicy) -> HttpClient {
        HttpClient::new("Test System", Timeouts::default(), retry).unwrap()
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for retry in 1..10 {
            let d = p.delay(retry, None);
            let cap = Duration::from_millis(100 * (1 << (retry - 1))).min(p.max_delay);
            assert!(d <= cap, "retry {retry}: {d:?} > {cap:?}");
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
    }

    #[tokio::test]
    async fn a_429_then_a_5xx_are_retried_until_success() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/x"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/x"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/x"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"a": 1})))
            .mount(&server)
            .await;
        let c = client(fast());
        let url = join(&server.uri(), "/x");
        let v: serde_json::Value = c
            .json("GET /x", || c.request(Method::GET, &url))
            .await
            .unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn retries_run_out_as_a_transient_error_and_a_400_is_permanent_at_once() {
        let server = MockServer::start().await;
        Mock::given(path("/busy"))
            .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
            .mount(&server)
            .await;
        Mock::given(path("/bad"))
            .respond_with(ResponseTemplate::new(400).set_body_string("{\"message\":\"no\"}"))
            .mount(&server)
            .await;
        let c = client(fast());
        let busy = join(&server.uri(), "busy");
        let e = c
            .send("GET /busy", || c.request(Method::GET, &busy))
            .await
            .unwrap_err();
        assert!(e.error.is_retryable());
        let text = format!(
            "{}: {}",
            e.error,
            std::error::Error::source(&e.error).unwrap()
        );
        assert!(
            text.contains("Test System GET /busy") && text.contains("502"),
            "{text}"
        );
        assert!(text.contains("after 3 attempts"), "{text}");

        let bad = join(&server.uri(), "bad");
        let e = c
            .send("GET /bad", || c.request(Method::GET, &bad))
            .await
            .unwrap_err();
        assert!(
            matches!(e.error, PortError::Permanent { .. }),
            "{:?}",
            e.error
        );
        assert_eq!(e.status, Some(StatusCode::BAD_REQUEST));
        // 3 to /busy, 1 to /bad.
        assert_eq!(server.received_requests().await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_slow_system_times_out_and_is_retried() {
        let server = MockServer::start().await;
        Mock::given(path("/slow"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
            .mount(&server)
            .await;
        let c = HttpClient::new(
            "Test System",
            Timeouts {
                connect: Duration::from_secs(1),
                request: Duration::from_millis(100),
            },
            RetryPolicy {
                attempts: 2,
                ..fast()
            },
        )
        .unwrap();
        let url = join(&server.uri(), "slow");
        let e = c
            .send("GET /slow", || c.request(Method::GET, &url))
            .await
            .unwrap_err();
        assert!(e.error.is_retryable(), "{:?}", e.error);
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_create_is_sent_once_and_its_refusal_keeps_the_body_without_the_secret() {
        let server = MockServer::start().await;
        Mock::given(path("/create"))
            .respond_with(ResponseTemplate::new(503).set_body_string("{\"echo\":\"key-S3CR3T\"}"))
            .mount(&server)
            .await;
        let c = client(fast()).redacting("key-S3CR3T");
        let url = join(&server.uri(), "create");
        let e = c
            .send_once("POST /create", c.request(Method::POST, &url))
            .await
            .unwrap_err();
        assert!(e.error.is_retryable());
        let text = format!(
            "{}: {}",
            e.error,
            std::error::Error::source(&e.error).unwrap()
        );
        assert!(text.contains("not resent"), "{text}");
        assert!(!text.contains("S3CR3T"), "{text}");
        assert_eq!(e.body.as_deref(), Some("{\"echo\":\"[redacted]\"}"));
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        assert!(!format!("{c:?}").contains("S3CR3T"));
    }

    #[test]
    fn a_malformed_body_names_the_system_the_call_and_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Item {
            #[serde(rename = "Name")]
            name: String,
        }
        let e = decode::<Vec<Item>>(
            "ConnectWise Automate",
            "GET /cwa/api/v1/computers",
            br#"[{"Name":"a"},{"Name":null}]"#,
        )
        .unwrap_err();
        let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            text.contains("ConnectWise Automate GET /cwa/api/v1/computers")
                && text.contains("[1].Name"),
            "{text}"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("a\n  b"), "a b");
        assert_eq!(excerpt(""), "(empty body)");
        assert!(excerpt(&"x".repeat(1000)).len() < 310);
        assert_eq!(join("http://h/", "/a"), "http://h/a");
    }
}
