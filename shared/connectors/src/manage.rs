//! ConnectWise PSA (Manage) as the [`Psa`] port, over Manage's REST API (3.0), documented at
//! <https://developer.connectwise.com/Products/ConnectWise_PSA> (Manage REST).
//!
//! # Authentication
//!
//! Every call carries `Authorization: Basic base64("{company}+{public_key}:{private_key}")` (an
//! API member's keys, logged in under the company id), the developer `clientId` header and
//! `Accept: application/json`.
//!
//! # Mapping
//!
//! - A [`NewTicket`] becomes a service ticket, `POST /service/tickets` with `summary` (Manage
//!   holds at most 100 characters: longer summaries are cut on a character boundary), `board`
//!   `{name}` ([`ManageConfig::board`]), `company` `{identifier}` ([`ManageConfig::companies`],
//!   else the patchflow client id), `priority` `{name}` (P1-P3 through
//!   [`ManageConfig::priorities`]), `initialDescription` (the first "Discussion" entry; Manage
//!   accepts it on POST only) and `externalXRef`, which carries patchflow's external reference.
//! - Opening is idempotent through `externalXRef`: `GET /service/tickets` with
//!   `conditions=externalXRef="<ref>"` (string values in double quotes, `"` and `\` escaped with a
//!   backslash), `fields=id`, `orderBy=id asc`, `pageSize=1` returns the oldest ticket under the
//!   reference, and only when there is none is a ticket created.
//! - A note is a `ServiceNote`, `POST /service/tickets/{id}/notes` with `text` and
//!   `detailDescriptionFlag: true` (the ticket's Discussion). Its text ends with a marker line
//!   `[patchflow:{note_key}]`; before adding one, every page of `GET /service/tickets/{id}/notes`
//!   (`page`, `pageSize=1000`, until a short page) is read and a note already carrying the marker
//!   means it was added before.
//! - Closing is `PATCH /service/tickets/{id}` with a JSON Patch (RFC 6902) document,
//!   `[{"op":"replace","path":"status","value":{"name":"Closed"}}]`, the status name from
//!   [`ManageConfig::closed_status`] ([`ManagePsa::update_status`] sets any status the same way).
//!   Setting the status a ticket already has is not an error.
//! - An attachment (the tier's compliance summary image) is a document on the ticket, `POST
//!   /system/documents` as `multipart/form-data` with the fields `recordType` = `Ticket`,
//!   `recordId` (the ticket id), `title` and `file` (the file's name and media type in its part's
//!   headers); Manage answers 201 with the `DocumentInfo` (`id`). It is attached once per title:
//!   before posting, every page of `GET /system/documents?recordType=Ticket&recordId={id}`
//!   (`page`, `pageSize=1000`, `orderBy=id asc`, until a short page) is read, and a document
//!   already titled so is the answer. Both routes and the `DocumentFormData` and `DocumentInfo`
//!   shapes are those of Manage's published OpenAPI document (2025.8, operations
//!   `getSystemDocuments` and `postSystemDocuments`).
//!
//! The field names (`externalXRef`, `initialDescription`, the ServiceNote's `text` and
//! `detailDescriptionFlag`, the `company`/`board`/`priority` references) are those of Manage's
//! published OpenAPI document, as the generated SDKs show it (e.g. the `Ticket` and
//! `ServiceNote` models of `sowderca/connectwise-ruby-sdk`); `conditions`, `fields`, `orderBy`,
//! `page` and `pageSize` are Manage's documented query string parameters.
//!
//! # Retries and duplicates
//!
//! Reads and the status PATCH go through [`HttpClient::send`] and are retried (429 honouring
//! `Retry-After`, 5xx, timeouts). The two POSTs are sent once: a timeout or a 5xx may come after
//! Manage stored the ticket or note, and resending blindly would duplicate it. Their passing
//! failures are `Transient`; the caller's retry starts again with the lookup, which finds what
//! the first attempt stored. Two workers opening the same reference at the same instant can still
//! both create a ticket (Manage has no conditional create); the oldest then wins every later
//! lookup.

use std::collections::BTreeMap;

use patchflow_core::ids::ClientId;
use patchflow_core::model::Criticality;
use patchflow_core::ports::psa::{Attached, Attachment, NewTicket, NoteAdded, Psa};
use patchflow_core::ports::PortError;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};

use crate::http::{call, decode, error_text, join, HttpClient, RetryPolicy, Timeouts};
use crate::secrets::ManageCredentials;

/// The system's name in errors and logs.
pub const SYSTEM: &str = "ConnectWise PSA";

/// The longest summary Manage stores, in characters.
pub const MAX_SUMMARY_CHARS: usize = 100;

/// Notes asked for on each page (Manage's largest page).
const NOTES_PAGE_SIZE: usize = 1000;

/// A guard against a server that never returns a short page: 100 000 notes.
const MAX_NOTE_PAGES: usize = 100;

/// Documents asked for on each page (Manage's largest page).
const DOCUMENTS_PAGE_SIZE: usize = 1000;

/// A guard against a server that never returns a short page: 100 000 documents.
const MAX_DOCUMENT_PAGES: usize = 100;

/// Where and how tickets are opened in ConnectWise PSA.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManageConfig {
    /// The REST API's base, up to and including `apis/3.0`, e.g.
    /// `https://api-na.myconnectwise.net/v4_6_release/apis/3.0`.
    pub base_url: String,
    /// The service board tickets are opened on, by name.
    pub board: String,
    /// The board's priority names for P1-P3.
    #[serde(default)]
    pub priorities: ManagePriorities,
    /// The status that closes a ticket on the board (default `Closed`).
    #[serde(default = "default_closed_status")]
    pub closed_status: String,
    /// The Manage company identifier of each patchflow client; a client not listed is looked up
    /// under its patchflow id.
    #[serde(default)]
    pub companies: BTreeMap<ClientId, String>,
}

/// The names of the board's priorities for each criticality.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagePriorities {
    /// For P1 (default `Priority 1 - Emergency Response`).
    pub p1: String,
    /// For P2 (default `Priority 2 - Quick Response`).
    pub p2: String,
    /// For P3 (default `Priority 3 - Normal Response`).
    pub p3: String,
}

impl Default for ManagePriorities {
    fn default() -> Self {
        Self {
            p1: "Priority 1 - Emergency Response".to_owned(),
            p2: "Priority 2 - Quick Response".to_owned(),
            p3: "Priority 3 - Normal Response".to_owned(),
        }
    }
}

impl ManagePriorities {
    /// The priority name for `criticality`.
    pub fn name(&self, criticality: Criticality) -> &str {
        match criticality {
            Criticality::P1 => &self.p1,
            Criticality::P2 => &self.p2,
            Criticality::P3 => &self.p3,
        }
    }
}

fn default_closed_status() -> String {
    "Closed".to_owned()
}

impl ManageConfig {
    /// The Manage company identifier for `client`.
    pub fn company<'a>(&'a self, client: &'a ClientId) -> &'a str {
        self.companies
            .get(client)
            .map_or(client.as_str(), String::as_str)
    }
}

/// The ConnectWise PSA connector.
#[derive(Debug, Clone)]
pub struct ManagePsa {
    config: ManageConfig,
    credentials: ManageCredentials,
    http: HttpClient,
}

/// A record of which only the id was asked for.
#[derive(Debug, Deserialize)]
struct Id {
    id: u64,
}

/// A ServiceNote; only its text matters here.
#[derive(Debug, Deserialize)]
struct Note {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    text: Option<String>,
}

/// A `DocumentInfo`; only its id and title matter here.
#[derive(Debug, Deserialize)]
struct DocumentInfo {
    id: u64,
    #[serde(default)]
    title: Option<String>,
}

/// A reference to a record by name.
#[derive(Debug, Serialize)]
struct ByName<'a> {
    name: &'a str,
}

/// A reference to a company by identifier.
#[derive(Debug, Serialize)]
struct ByIdentifier<'a> {
    identifier: &'a str,
}

/// The body of `POST /service/tickets`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateTicket<'a> {
    summary: String,
    board: ByName<'a>,
    company: ByIdentifier<'a>,
    priority: ByName<'a>,
    initial_description: &'a str,
    #[serde(rename = "externalXRef")]
    external_x_ref: &'a str,
}

/// The body of `POST /service/tickets/{id}/notes`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateNote<'a> {
    text: &'a str,
    detail_description_flag: bool,
}

/// One JSON Patch operation.
#[derive(Debug, Serialize)]
struct PatchOp<T> {
    op: &'static str,
    path: &'static str,
    value: T,
}

impl ManagePsa {
    /// A connector with the default timeouts and retries.
    pub fn new(config: ManageConfig, credentials: ManageCredentials) -> Result<Self, PortError> {
        let http = HttpClient::new(SYSTEM, Timeouts::default(), RetryPolicy::default())?;
        Self::with_http(config, credentials, http)
    }

    /// A connector over `http` (its timeouts and retries; tests use fast ones). Fails when the
    /// base URL is not an http(s) URL.
    pub fn with_http(
        config: ManageConfig,
        credentials: ManageCredentials,
        http: HttpClient,
    ) -> Result<Self, PortError> {
        let url = url::Url::parse(&config.base_url).map_err(|e| {
            PortError::permanent(
                format!("{SYSTEM} configuration"),
                format!("base_url `{}`: {e}", config.base_url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PortError::permanent(
                format!("{SYSTEM} configuration"),
                format!("base_url `{}` is not an http(s) URL", config.base_url),
            ));
        }
        let http = http.redacting(credentials.private_key.expose());
        Ok(Self {
            config,
            credentials,
            http,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ManageConfig {
        &self.config
    }

    /// Sets a ticket's status by name (`PATCH /service/tickets/{id}`); an unknown ticket is
    /// `NotFound`, a status the board does not have is `Permanent`.
    pub async fn update_status(&self, ticket: &str, status: &str) -> Result<(), PortError> {
        let id = ticket_id(ticket)?;
        let path = format!("/service/tickets/{id}");
        let what = call(&Method::PATCH, &path);
        let patch = [PatchOp {
            op: "replace",
            path: "status",
            value: ByName { name: status },
        }];
        self.http
            .send(&what, || self.request(Method::PATCH, &path).json(&patch))
            .await?;
        tracing::info!(system = SYSTEM, ticket = id, status, "ticket status set");
        Ok(())
    }

    /// A request to `path` under the base URL, with the credentials and headers every call
    /// carries.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let c = &self.credentials;
        self.http
            .request(method, &join(&self.config.base_url, path))
            .basic_auth(
                format!("{}+{}", c.company, c.public_key),
                Some(c.private_key.expose()),
            )
            .header("clientId", &c.client_id)
            .header(ACCEPT, "application/json")
    }

    /// The oldest ticket whose `externalXRef` is `external_ref`.
    async fn find_ticket(&self, external_ref: &str) -> Result<Option<u64>, PortError> {
        let path = "/service/tickets";
        let what = call(&Method::GET, path);
        let conditions = format!("externalXRef={}", quote(external_ref));
        let found: Vec<Id> = self
            .http
            .json(&what, || {
                self.request(Method::GET, path).query(&[
                    ("conditions", conditions.as_str()),
                    ("fields", "id"),
                    ("orderBy", "id asc"),
                    ("pageSize", "1"),
                ])
            })
            .await?;
        Ok(found.first().map(|t| t.id))
    }

    /// The first row of `path` that `pick` takes, reading its pages in turn (`query`, then
    /// `page` from 1, `pageSize` = `size` and `orderBy=id asc`) until a short page; more than
    /// `max_pages` full pages is a permanent error counting them as `rows`.
    async fn find_in_pages<T: serde::de::DeserializeOwned, R>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        (size, max_pages, rows): (usize, usize, &str),
        mut pick: impl FnMut(&T) -> Option<R>,
    ) -> Result<Option<R>, PortError> {
        let what = call(&Method::GET, path);
        let size_no = size.to_string();
        for page in 1..=max_pages {
            let page_no = page.to_string();
            let batch: Vec<T> = self
                .http
                .json(&what, || {
                    self.request(Method::GET, path).query(query).query(&[
                        ("page", page_no.as_str()),
                        ("pageSize", size_no.as_str()),
                        ("orderBy", "id asc"),
                    ])
                })
                .await?;
            if let Some(found) = batch.iter().find_map(&mut pick) {
                return Ok(Some(found));
            }
            if batch.len() < size {
                return Ok(None);
            }
        }
        Err(PortError::permanent(
            format!("{SYSTEM} {what}"),
            format!("more than {max_pages} pages of {size} {rows}"),
        ))
    }

    /// The ticket's note carrying `marker`, reading every page of its notes: `Some(Some(id))`
    /// found with its id, `Some(None)` found but listed without an id (nothing confirms which
    /// note holds it), `None` not found.
    async fn find_note(&self, id: u64, marker: &str) -> Result<Option<Option<u64>>, PortError> {
        self.find_in_pages(
            &format!("/service/tickets/{id}/notes"),
            &[],
            (NOTES_PAGE_SIZE, MAX_NOTE_PAGES, "notes"),
            |n: &Note| {
                n.text
                    .as_deref()
                    .is_some_and(|t| t.contains(marker))
                    .then_some(n.id)
            },
        )
        .await
    }

    /// The oldest document of the ticket titled `title`, reading every page of its documents.
    async fn find_document(&self, id: u64, title: &str) -> Result<Option<u64>, PortError> {
        let record = id.to_string();
        self.find_in_pages(
            "/system/documents",
            &[("recordType", "Ticket"), ("recordId", record.as_str())],
            (DOCUMENTS_PAGE_SIZE, MAX_DOCUMENT_PAGES, "documents"),
            |d: &DocumentInfo| (d.title.as_deref() == Some(title)).then_some(d.id),
        )
        .await
    }

    /// Sends a create once and decodes the new record's id.
    async fn create(&self, what: &str, request: RequestBuilder) -> Result<u64, PortError> {
        let resp = self.http.send_once(what, request).await?;
        let body = resp.bytes().await.map_err(|e| {
            PortError::transient(
                format!("{SYSTEM} {what}"),
                format!("{} (the record may have been stored)", error_text(&e)),
            )
        })?;
        let created: Id = decode(SYSTEM, what, &body)?;
        Ok(created.id)
    }
}

impl Psa for ManagePsa {
    async fn open_ticket(&self, ticket: &NewTicket) -> Result<String, PortError> {
        if let Some(id) = self.find_ticket(&ticket.external_ref).await? {
            tracing::debug!(system = SYSTEM, ticket = id, external_ref = %ticket.external_ref, "ticket already open");
            return Ok(id.to_string());
        }
        let path = "/service/tickets";
        let what = call(&Method::POST, path);
        let body = CreateTicket {
            summary: truncate_chars(ticket.summary.trim(), MAX_SUMMARY_CHARS),
            board: ByName {
                name: &self.config.board,
            },
            company: ByIdentifier {
                identifier: self.config.company(&ticket.client),
            },
            priority: ByName {
                name: self.config.priorities.name(ticket.priority),
            },
            initial_description: &ticket.description,
            external_x_ref: &ticket.external_ref,
        };
        let id = self
            .create(&what, self.request(Method::POST, path).json(&body))
            .await?;
        tracing::info!(system = SYSTEM, ticket = id, external_ref = %ticket.external_ref, "ticket opened");
        Ok(id.to_string())
    }

    async fn add_note(
        &self,
        ticket: &str,
        note_key: &str,
        text: &str,
    ) -> Result<NoteAdded, PortError> {
        let id = ticket_id(ticket)?;
        let marker = note_marker(note_key);
        if let Some(note) = self.find_note(id, &marker).await? {
            tracing::debug!(system = SYSTEM, ticket = id, note_key, "note already added");
            // A note listed without its id is not confirmed: the empty id says so (the
            // archiver's closure then waits, naming the ticket update).
            return Ok(NoteAdded {
                note: note.map(|n| n.to_string()).unwrap_or_default(),
                added: false,
            });
        }
        let path = format!("/service/tickets/{id}/notes");
        let what = call(&Method::POST, &path);
        let text = format!("{}\n\n{marker}", text.trim_end());
        let body = CreateNote {
            text: &text,
            detail_description_flag: true,
        };
        let note = self
            .create(&what, self.request(Method::POST, &path).json(&body))
            .await?;
        tracing::info!(system = SYSTEM, ticket = id, note, note_key, "note added");
        Ok(NoteAdded {
            note: note.to_string(),
            added: true,
        })
    }

    async fn close_ticket(&self, ticket: &str) -> Result<(), PortError> {
        self.update_status(ticket, &self.config.closed_status).await
    }

    async fn attach(&self, ticket: &str, attachment: &Attachment) -> Result<Attached, PortError> {
        let id = ticket_id(ticket)?;
        let path = "/system/documents";
        let what = call(&Method::POST, path);
        let title = attachment.title.trim();
        if title.is_empty() {
            return Err(PortError::permanent(
                format!("{SYSTEM} {what}"),
                "field `title`: an attachment needs a title (it is how a repeat is found)",
            ));
        }
        if let Some(document) = self.find_document(id, title).await? {
            tracing::debug!(
                system = SYSTEM,
                ticket = id,
                document,
                title,
                "document already attached"
            );
            return Ok(Attached {
                document: document.to_string(),
                added: false,
            });
        }
        let record = id.to_string();
        let (content_type, body) = multipart(
            &[
                ("recordType", "Ticket"),
                ("recordId", &record),
                ("title", title),
            ],
            attachment,
        );
        let request = self
            .request(Method::POST, path)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        let document = self.create(&what, request).await?;
        tracing::info!(
            system = SYSTEM,
            ticket = id,
            document,
            title,
            bytes = attachment.bytes.len(),
            "document attached"
        );
        Ok(Attached {
            document: document.to_string(),
            added: true,
        })
    }
}

/// A `multipart/form-data` body (RFC 7578) of text fields and one file part named `file`, and
/// its content type with the boundary. The boundary is random and never occurs in the parts.
fn multipart(fields: &[(&str, &str)], file: &Attachment) -> (String, Vec<u8>) {
    let clean = |s: &str| s.replace(['"', '\r', '\n'], "_");
    loop {
        let boundary = format!("patchflow-{:032x}", rand::random::<u128>());
        let occurs = |hay: &[u8]| {
            hay.windows(boundary.len())
                .any(|w| w == boundary.as_bytes())
        };
        if occurs(&file.bytes) || fields.iter().any(|(_, v)| v.contains(&boundary)) {
            continue;
        }
        let mut body = Vec::with_capacity(file.bytes.len() + 512);
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
                 Content-Type: {}\r\n\r\n",
                clean(&file.file_name),
                clean(&file.content_type)
            )
            .as_bytes(),
        );
        body.extend_from_slice(&file.bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        return (format!("multipart/form-data; boundary={boundary}"), body);
    }
}

/// The marker line a note with this key carries.
pub fn note_marker(note_key: &str) -> String {
    format!("[patchflow:{note_key}]")
}

/// A string value for Manage's `conditions`: in double quotes, with `\` and `"` escaped by a
/// backslash.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The first `max` characters of `s` (never splitting a character).
fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// A ticket id as Manage numbers them; anything else cannot name a ticket.
fn ticket_id(ticket: &str) -> Result<u64, PortError> {
    ticket
        .trim()
        .parse()
        .map_err(|_| PortError::NotFound(format!("{SYSTEM} ticket `{ticket}`: not a ticket id")))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};
    use wiremock::matchers::{body_json, header, method, path, query_param};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    use super::*;
    use crate::secrets::Secret;

    fn fast() -> RetryPolicy {
        RetryPolicy::fast()
    }

    fn config(base: &str) -> ManageConfig {
        serde_json::from_value(json!({
            "base_url": format!("{base}/v4_6_release/apis/3.0"),
            "board": "Patching",
            "companies": {"acme": "AcmeCorp"}
        }))
        .unwrap()
    }

    fn psa(server: &MockServer) -> ManagePsa {
        let credentials = ManageCredentials {
            company: "msp".to_owned(),
            public_key: "pub".to_owned(),
            private_key: Secret::new("priv"),
            client_id: "cid".to_owned(),
        };
        let http = HttpClient::new(SYSTEM, Timeouts::default(), fast()).unwrap();
        ManagePsa::with_http(config(&server.uri()), credentials, http).unwrap()
    }

    fn ticket(external_ref: &str, client: &str, priority: Criticality) -> NewTicket {
        NewTicket {
            external_ref: external_ref.to_owned(),
            client: ClientId::parse(client).unwrap(),
            priority,
            summary: "Patch install failed on ws-001".to_owned(),
            description: "KB5040000 failed with 0x80070005".to_owned(),
        }
    }

    const TICKETS: &str = "/v4_6_release/apis/3.0/service/tickets";

    fn full_text(e: &PortError) -> String {
        match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        }
    }

    /// A server on which `list` (a `GET`) lists nothing and the first `POST` to it answers
    /// `created`.
    async fn listing_nothing_then(list: &str, created: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(list))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(list))
            .respond_with(created)
            .up_to_n_times(1)
            .mount(&server)
            .await;
        server
    }

    async fn requests(server: &MockServer, verb: &str) -> Vec<Request> {
        server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method.as_str() == verb)
            .collect()
    }

    /// The value of a `conditions=externalXRef="..."` query, unescaped as Manage reads it.
    fn wanted_ref(req: &Request) -> String {
        let conditions = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "conditions")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let quoted = conditions.strip_prefix("externalXRef=").unwrap();
        let inner = quoted.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' { chars.next().unwrap() } else { c });
        }
        out
    }

    /// A board that remembers the tickets created on it.
    #[derive(Clone, Default)]
    struct Board(Arc<Mutex<Vec<(u64, String)>>>);

    struct Lookup(Board);

    impl Respond for Lookup {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let wanted = wanted_ref(req);
            let found: Vec<Value> = self
                .0
                 .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, r)| *r == wanted)
                .map(|(id, _)| json!({"id": id}))
                .take(1)
                .collect();
            ResponseTemplate::new(200).set_body_json(found)
        }
    }

    struct Create(Board);

    impl Respond for Create {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let mut tickets = self.0 .0.lock().unwrap();
            let id = 1000 + tickets.len() as u64;
            tickets.push((id, body["externalXRef"].as_str().unwrap().to_owned()));
            ResponseTemplate::new(201).set_body_json(json!({
                "id": id,
                "summary": body["summary"],
                "board": {"id": 1, "name": body["board"]["name"]},
                "_info": {}
            }))
        }
    }

    async fn mount_board(server: &MockServer) -> Board {
        let board = Board::default();
        Mock::given(method("GET"))
            .and(path(TICKETS))
            .respond_with(Lookup(board.clone()))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path(TICKETS))
            .respond_with(Create(board.clone()))
            .mount(server)
            .await;
        board
    }

    /// A ticket's notes, served a page at a time.
    #[derive(Clone, Default)]
    struct Notes(Arc<Mutex<Vec<String>>>);

    struct ListNotes(Notes);

    impl Respond for ListNotes {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let param = |name: &str| -> usize {
                req.url
                    .query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap()
            };
            let (page, size) = (param("page"), param("pageSize"));
            let notes = self.0 .0.lock().unwrap();
            let items: Vec<Value> = notes
                .iter()
                .enumerate()
                .skip((page - 1) * size)
                .take(size)
                .map(|(i, t)| json!({"id": i + 1, "ticketId": 7, "text": t, "detailDescriptionFlag": true}))
                .collect();
            ResponseTemplate::new(200).set_body_json(items)
        }
    }

    struct AddNote(Notes);

    impl Respond for AddNote {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let mut notes = self.0 .0.lock().unwrap();
            notes.push(body["text"].as_str().unwrap().to_owned());
            ResponseTemplate::new(201).set_body_json(json!({"id": notes.len(), "ticketId": 7}))
        }
    }

    #[test]
    fn a_minimal_config_takes_the_default_priorities_and_closed_status() {
        let c = config("http://h");
        assert_eq!(c.closed_status, "Closed");
        assert_eq!(
            c.priorities.name(Criticality::P1),
            "Priority 1 - Emergency Response"
        );
        assert_eq!(
            c.priorities.name(Criticality::P3),
            "Priority 3 - Normal Response"
        );
        assert_eq!(c.company(&ClientId::parse("acme").unwrap()), "AcmeCorp");
        assert_eq!(c.company(&ClientId::parse("globex").unwrap()), "globex");
        let e = serde_json::from_value::<ManageConfig>(
            json!({"base_url": "https://x", "board": "B", "bord": "typo"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("bord"), "{e}");
        let e = serde_json::from_value::<ManageConfig>(
            json!({"base_url": "https://x", "board": "B", "priorities": {"p4": "x"}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("p4"), "{e}");
    }

    #[test]
    fn condition_values_are_quoted_and_escaped_and_summaries_cut_on_a_character() {
        assert_eq!(
            quote("2026-12/failure/ws-001"),
            r#""2026-12/failure/ws-001""#
        );
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        let long = "é".repeat(150);
        let cut = truncate_chars(&long, MAX_SUMMARY_CHARS);
        assert_eq!(cut.chars().count(), 100);
        assert_eq!(truncate_chars("short", 100), "short");
    }

    #[tokio::test]
    async fn every_call_carries_the_basic_credentials_and_the_client_id() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(TICKETS))
            .and(header("authorization", "Basic bXNwK3B1Yjpwcml2"))
            .and(header("clientId", "cid"))
            .and(header("accept", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 42}])))
            .expect(1)
            .mount(&server)
            .await;
        let id = psa(&server)
            .open_ticket(&ticket("r1", "acme", Criticality::P2))
            .await
            .unwrap();
        assert_eq!(id, "42");
    }

    #[tokio::test]
    async fn open_ticket_creates_a_ticket_on_the_board_when_none_has_the_reference() {
        let server = MockServer::start().await;
        let board = mount_board(&server).await;
        let psa = psa(&server);

        let mut t = ticket("2026-12/failure/ws-001", "acme", Criticality::P1);
        t.summary = "ü".repeat(120);
        assert_eq!(psa.open_ticket(&t).await.unwrap(), "1000");
        psa.open_ticket(&ticket("2026-12/review/globex", "globex", Criticality::P2))
            .await
            .unwrap();
        psa.open_ticket(&ticket("2026-12/record/acme", "acme", Criticality::P3))
            .await
            .unwrap();

        let posts = requests(&server, "POST").await;
        let bodies: Vec<Value> = posts
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        assert_eq!(
            bodies[0],
            json!({
                "summary": "ü".repeat(100),
                "board": {"name": "Patching"},
                "company": {"identifier": "AcmeCorp"},
                "priority": {"name": "Priority 1 - Emergency Response"},
                "initialDescription": "KB5040000 failed with 0x80070005",
                "externalXRef": "2026-12/failure/ws-001"
            })
        );
        assert_eq!(bodies[1]["company"], json!({"identifier": "globex"}));
        assert_eq!(
            bodies[1]["priority"],
            json!({"name": "Priority 2 - Quick Response"})
        );
        assert_eq!(
            bodies[2]["priority"],
            json!({"name": "Priority 3 - Normal Response"})
        );
        let gets = requests(&server, "GET").await;
        let q = |name: &str| {
            gets[0]
                .url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(
            q("conditions").as_deref(),
            Some(r#"externalXRef="2026-12/failure/ws-001""#)
        );
        assert_eq!(q("fields").as_deref(), Some("id"));
        assert_eq!(board.0.lock().unwrap().len(), 3);
        for r in server.received_requests().await.unwrap() {
            assert_eq!(r.headers["authorization"], "Basic bXNwK3B1Yjpwcml2");
            assert_eq!(r.headers["clientid"], "cid");
        }
    }

    #[tokio::test]
    async fn open_ticket_returns_the_ticket_already_under_the_reference_and_posts_nothing() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(TICKETS))
            .and(query_param(
                "conditions",
                r#"externalXRef="2026-12/failure/ws-001""#,
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 555}])))
            .mount(&server)
            .await;
        let id = psa(&server)
            .open_ticket(&ticket("2026-12/failure/ws-001", "acme", Criticality::P2))
            .await
            .unwrap();
        assert_eq!(id, "555");
        assert!(requests(&server, "POST").await.is_empty());
    }

    #[tokio::test]
    async fn opening_the_same_reference_twice_gives_one_ticket_even_with_quotes_in_it() {
        let server = MockServer::start().await;
        let board = mount_board(&server).await;
        let psa = psa(&server);
        let t = ticket(r#"2026-12/failure/"odd"\ref"#, "acme", Criticality::P2);
        let first = psa.open_ticket(&t).await.unwrap();
        let second = psa.open_ticket(&t).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(board.0.lock().unwrap().len(), 1);
        assert_eq!(requests(&server, "POST").await.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_create_is_not_resent_and_the_next_attempt_finds_what_it_stored() {
        let server = MockServer::start().await;
        let board = Board::default();
        Mock::given(method("GET"))
            .and(path(TICKETS))
            .respond_with(Lookup(board.clone()))
            .mount(&server)
            .await;
        // The ticket is stored, but the answer is a gateway error.
        struct StoredThenFailed(Board);
        impl Respond for StoredThenFailed {
            fn respond(&self, req: &Request) -> ResponseTemplate {
                let _ = Create(self.0.clone()).respond(req);
                ResponseTemplate::new(504)
            }
        }
        Mock::given(method("POST"))
            .and(path(TICKETS))
            .respond_with(StoredThenFailed(board.clone()))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let psa = psa(&server);
        let t = ticket("r-504", "acme", Criticality::P2);
        let e = psa.open_ticket(&t).await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(requests(&server, "POST").await.len(), 1);
        assert_eq!(psa.open_ticket(&t).await.unwrap(), "1000");
        assert_eq!(board.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn add_note_reads_every_page_of_notes_and_adds_each_key_once() {
        let server = MockServer::start().await;
        let notes = Notes::default();
        {
            let mut n = notes.0.lock().unwrap();
            for i in 0..2500 {
                n.push(format!("note {i}"));
            }
            n[2400] = "retry scheduled\n\n[patchflow:retry-1]".to_owned();
        }
        let notes_path = format!("{TICKETS}/7/notes");
        Mock::given(method("GET"))
            .and(path(notes_path.as_str()))
            .and(query_param("pageSize", "1000"))
            .respond_with(ListNotes(notes.clone()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(notes_path.as_str()))
            .respond_with(AddNote(notes.clone()))
            .mount(&server)
            .await;
        let psa = psa(&server);

        // A key already noted answers with that note's id, and nothing is sent.
        let found = psa
            .add_note("7", "retry-1", "retry scheduled")
            .await
            .unwrap();
        assert_eq!(
            found,
            NoteAdded {
                note: "2401".into(),
                added: false
            }
        );
        let pages: Vec<String> = requests(&server, "GET")
            .await
            .iter()
            .filter_map(|r| {
                r.url
                    .query_pairs()
                    .find(|(k, _)| k == "page")
                    .map(|(_, v)| v.into_owned())
            })
            .collect();
        assert_eq!(pages, ["1", "2", "3"]);
        assert!(requests(&server, "POST").await.is_empty());

        // The PSA's answer names the note it stored; the repeat finds it and adds nothing.
        let first = psa.add_note("7", "done", "installed").await.unwrap();
        assert_eq!(
            first,
            NoteAdded {
                note: "2501".into(),
                added: true
            }
        );
        let again = psa.add_note("7", "done", "installed").await.unwrap();
        assert_eq!(again.note, "2501");
        assert!(!again.added);
        let posts = requests(&server, "POST").await;
        assert_eq!(posts.len(), 1);
        let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
        assert_eq!(
            body,
            json!({"text": "installed\n\n[patchflow:done]", "detailDescriptionFlag": true})
        );
        assert_eq!(notes.0.lock().unwrap().len(), 2501);
    }

    #[tokio::test]
    async fn a_note_listed_without_its_id_is_not_confirmed() {
        let server = MockServer::start().await;
        let notes_path = format!("{TICKETS}/7/notes");
        // Manage lists the keyed note, but without the note's id.
        Mock::given(method("GET"))
            .and(path(notes_path.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"ticketId": 7, "text": "done\n\n[patchflow:done]", "detailDescriptionFlag": true}
            ])))
            .mount(&server)
            .await;
        let psa = psa(&server);
        let found = psa.add_note("7", "done", "done").await.unwrap();
        // No id the PSA never gave: the answer confirms nothing, and nothing is sent again.
        assert_eq!(
            found,
            NoteAdded {
                note: String::new(),
                added: false
            }
        );
        assert!(requests(&server, "POST").await.is_empty());
    }

    #[tokio::test]
    async fn close_ticket_patches_the_status_and_an_unknown_ticket_is_not_found() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path(format!("{TICKETS}/7")))
            .and(body_json(
                json!([{"op": "replace", "path": "status", "value": {"name": "Closed"}}]),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 7})))
            .expect(2)
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path(format!("{TICKETS}/999")))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({
                "code": "NotFound", "message": "Ticket ID 999 not found"
            })))
            .mount(&server)
            .await;
        let psa = psa(&server);
        psa.close_ticket("7").await.unwrap();
        // Closing a closed ticket is not an error.
        psa.close_ticket("7").await.unwrap();
        let e = psa.close_ticket("999").await.unwrap_err();
        assert!(matches!(e, PortError::NotFound(_)), "{e:?}");
        let e = psa.close_ticket("../companies").await.unwrap_err();
        assert!(matches!(e, PortError::NotFound(_)), "{e:?}");
        assert_eq!(requests(&server, "PATCH").await.len(), 3);
    }

    #[tokio::test]
    async fn update_status_sets_any_status_by_name() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path(format!("{TICKETS}/8")))
            .and(body_json(
                json!([{"op": "replace", "path": "status", "value": {"name": "Waiting Customer"}}]),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 8})))
            .expect(1)
            .mount(&server)
            .await;
        psa(&server)
            .update_status("8", "Waiting Customer")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_retried() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(TICKETS))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(TICKETS))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 9}])))
            .mount(&server)
            .await;
        let id = psa(&server)
            .open_ticket(&ticket("r", "acme", Criticality::P2))
            .await
            .unwrap();
        assert_eq!(id, "9");
        assert_eq!(requests(&server, "GET").await.len(), 2);
    }

    #[tokio::test]
    async fn a_401_is_permanent_and_names_connectwise_psa() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(TICKETS))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "code": "Unauthorized", "message": "Authentication failed"
            })))
            .mount(&server)
            .await;
        let e = psa(&server)
            .open_ticket(&ticket("r", "acme", Criticality::P2))
            .await
            .unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let text = full_text(&e);
        assert!(
            text.contains("ConnectWise PSA GET /service/tickets") && text.contains("401"),
            "{text}"
        );
        assert!(!text.contains("priv"), "{text}");
        assert_eq!(requests(&server, "GET").await.len(), 1);
    }

    #[tokio::test]
    async fn a_malformed_ticket_response_names_the_call_and_the_field() {
        let server = listing_nothing_then(
            TICKETS,
            ResponseTemplate::new(201).set_body_json(json!({"id": "T-1"})),
        )
        .await;
        let e = psa(&server)
            .open_ticket(&ticket("r", "acme", Criticality::P2))
            .await
            .unwrap_err();
        assert!(!e.is_retryable());
        let text = full_text(&e);
        assert!(
            text.contains("ConnectWise PSA POST /service/tickets") && text.contains("`id`"),
            "{text}"
        );

        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(TICKETS))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"summary": "x"}])))
            .mount(&server)
            .await;
        let e = psa(&server)
            .open_ticket(&ticket("r", "acme", Criticality::P2))
            .await
            .unwrap_err();
        let text = full_text(&e);
        assert!(
            text.contains("[0]") && text.contains("missing field `id`"),
            "{text}"
        );
    }

    const DOCUMENTS: &str = "/v4_6_release/apis/3.0/system/documents";

    /// A part of a multipart body: its headers (lower-cased names) and its bytes.
    struct Part {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Part {
        fn disposition(&self) -> &str {
            self.headers
                .iter()
                .find(|(k, _)| k == "content-disposition")
                .map(|(_, v)| v.as_str())
                .unwrap()
        }

        fn name(&self) -> String {
            let d = self.disposition();
            let start = d.find("name=\"").unwrap() + 6;
            d[start..].split('"').next().unwrap().to_owned()
        }
    }

    /// Splits a `multipart/form-data` request as a server would (RFC 7578).
    fn parts(req: &Request) -> Vec<Part> {
        let content_type = req.headers["content-type"].to_str().unwrap().to_owned();
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let delimiter = format!("--{boundary}");
        let body = &req.body;
        let mut starts = Vec::new();
        let mut i = 0;
        while i + delimiter.len() <= body.len() {
            if &body[i..i + delimiter.len()] == delimiter.as_bytes() {
                starts.push(i);
                i += delimiter.len();
            } else {
                i += 1;
            }
        }
        assert!(body.ends_with(format!("{delimiter}--\r\n").as_bytes()));
        starts
            .windows(2)
            .map(|w| {
                let part = &body[w[0] + delimiter.len() + 2..w[1] - 2];
                let split = part.windows(4).position(|x| x == b"\r\n\r\n").unwrap();
                let headers = String::from_utf8(part[..split].to_vec())
                    .unwrap()
                    .split("\r\n")
                    .map(|l| {
                        let (k, v) = l.split_once(": ").unwrap();
                        (k.to_ascii_lowercase(), v.to_owned())
                    })
                    .collect();
                Part {
                    headers,
                    body: part[split + 4..].to_vec(),
                }
            })
            .collect()
    }

    fn field(parts: &[Part], name: &str) -> String {
        let p = parts.iter().find(|p| p.name() == name).unwrap();
        String::from_utf8(p.body.clone()).unwrap()
    }

    /// Manage's documents: (id, recordId, title), listed per ticket, stored by the upload.
    #[derive(Clone, Default)]
    struct Documents(Arc<Mutex<Vec<(u64, u64, String)>>>);

    struct ListDocuments(Documents);

    impl Respond for ListDocuments {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let q = |name: &str| {
                req.url
                    .query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
                    .unwrap()
            };
            assert_eq!(q("recordType"), "Ticket");
            let record: u64 = q("recordId").parse().unwrap();
            let page: usize = q("page").parse().unwrap();
            let size: usize = q("pageSize").parse().unwrap();
            let docs: Vec<Value> = self
                .0
                 .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, r, _)| *r == record)
                .skip((page - 1) * size)
                .take(size)
                .map(|(id, _, title)| {
                    json!({"id": id, "title": title, "fileName": "summary.png",
                           "serverFileName": "x.png", "owner": "api", "imageFlag": true,
                           "size": 100, "_info": {}})
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(docs)
        }
    }

    struct Upload(Documents);

    impl Respond for Upload {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let parts = parts(req);
            let mut docs = self.0 .0.lock().unwrap();
            let id = 5000 + docs.len() as u64;
            let record: u64 = field(&parts, "recordId").parse().unwrap();
            let title = field(&parts, "title");
            docs.push((id, record, title.clone()));
            ResponseTemplate::new(201).set_body_json(json!({
                "id": id, "title": title, "fileName": "summary.png", "imageFlag": true,
                "publicFlag": false, "readOnlyFlag": false, "_info": {}
            }))
        }
    }

    async fn mount_documents(server: &MockServer) -> Documents {
        let docs = Documents::default();
        Mock::given(method("GET"))
            .and(path(DOCUMENTS))
            .respond_with(ListDocuments(docs.clone()))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path(DOCUMENTS))
            .respond_with(Upload(docs.clone()))
            .mount(server)
            .await;
        docs
    }

    fn summary_png() -> Attachment {
        // A PNG's signature, then bytes a careless encoder would mangle (CR, LF, NUL, 0xFF).
        let mut bytes = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
        bytes.extend((0..=255u8).cycle().take(4096));
        Attachment {
            title: "patchflow 2026-12 pilot-servers acme compliance summary".to_owned(),
            file_name: "summary.png".to_owned(),
            content_type: "image/png".to_owned(),
            bytes,
        }
    }

    #[tokio::test]
    async fn attach_uploads_the_file_to_the_ticket_once_and_a_repeat_attaches_nothing() {
        let server = MockServer::start().await;
        let docs = mount_documents(&server).await;
        let psa = psa(&server);
        let png = summary_png();

        let first = psa.attach("7", &png).await.unwrap();
        assert_eq!(
            first,
            Attached {
                document: "5000".to_owned(),
                added: true
            }
        );
        // A redelivery finds the document by its title on the ticket and posts nothing.
        let again = psa.attach("7", &png).await.unwrap();
        assert_eq!(
            again,
            Attached {
                document: "5000".to_owned(),
                added: false
            }
        );
        // The same title on another ticket is another document.
        assert!(psa.attach("8", &png).await.unwrap().added);

        let posts = requests(&server, "POST").await;
        assert_eq!(posts.len(), 2);
        assert_eq!(docs.0.lock().unwrap().len(), 2);
        let parts = parts(&posts[0]);
        assert_eq!(field(&parts, "recordType"), "Ticket");
        assert_eq!(field(&parts, "recordId"), "7");
        assert_eq!(field(&parts, "title"), png.title);
        let file = parts.iter().find(|p| p.name() == "file").unwrap();
        assert!(
            file.disposition().contains("filename=\"summary.png\""),
            "{}",
            file.disposition()
        );
        assert!(file
            .headers
            .contains(&("content-type".to_owned(), "image/png".to_owned())));
        assert_eq!(file.body, png.bytes, "the file arrives byte for byte");
        for r in server.received_requests().await.unwrap() {
            assert_eq!(r.headers["authorization"], "Basic bXNwK3B1Yjpwcml2");
            assert_eq!(r.headers["clientid"], "cid");
        }
    }

    #[tokio::test]
    async fn attach_reads_every_page_of_the_tickets_documents_before_uploading() {
        let server = MockServer::start().await;
        let docs = mount_documents(&server).await;
        {
            let mut d = docs.0.lock().unwrap();
            for i in 0..1500u64 {
                d.push((i + 1, 7, format!("photo {i}")));
            }
            d[1200].2 = summary_png().title;
        }
        let found = psa(&server).attach("7", &summary_png()).await.unwrap();
        assert_eq!(
            found,
            Attached {
                document: "1201".to_owned(),
                added: false
            }
        );
        let pages: Vec<String> = requests(&server, "GET")
            .await
            .iter()
            .map(|r| {
                r.url
                    .query_pairs()
                    .find(|(k, _)| k == "page")
                    .map(|(_, v)| v.into_owned())
                    .unwrap()
            })
            .collect();
        assert_eq!(pages, ["1", "2"]);
        assert!(requests(&server, "POST").await.is_empty());
    }

    #[tokio::test]
    async fn a_refused_attachment_is_a_permanent_error_and_a_failed_upload_is_not_resent() {
        let server = listing_nothing_then(
            DOCUMENTS,
            ResponseTemplate::new(400).set_body_json(json!({
                "code": "InvalidObject",
                "message": "documentFormData object is invalid",
                "errors": [{"code": "InvalidField", "message": "The file size exceeds the limit.", "resource": "document", "field": "file"}]
            })),
        )
        .await;
        let psa = psa(&server);
        let e = psa.attach("7", &summary_png()).await.unwrap_err();
        assert!(matches!(e, PortError::Permanent { .. }), "{e:?}");
        let text = full_text(&e);
        assert!(
            text.contains("ConnectWise PSA POST /system/documents")
                && text.contains("400")
                && text.contains("file size exceeds"),
            "{text}"
        );
        assert_eq!(requests(&server, "POST").await.len(), 1);

        // A gateway error after the upload may have been stored: transient, sent once.
        Mock::given(method("POST"))
            .and(path(DOCUMENTS))
            .respond_with(ResponseTemplate::new(502))
            .mount(&server)
            .await;
        let e = psa.attach("7", &summary_png()).await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(requests(&server, "POST").await.len(), 2);

        // A ticket that is not a Manage ticket id, and an attachment without a title.
        let e = psa.attach("T-1", &summary_png()).await.unwrap_err();
        assert!(matches!(e, PortError::NotFound(_)), "{e:?}");
        let mut untitled = summary_png();
        untitled.title = "  ".to_owned();
        let e = psa.attach("7", &untitled).await.unwrap_err();
        assert!(full_text(&e).contains("`title`"), "{e:?}");
        assert_eq!(requests(&server, "POST").await.len(), 2);
    }

    #[tokio::test]
    async fn an_upload_answer_without_an_id_is_an_error_naming_the_field() {
        let server = listing_nothing_then(
            DOCUMENTS,
            ResponseTemplate::new(201).set_body_json(json!({"title": "x"})),
        )
        .await;
        let e = psa(&server).attach("7", &summary_png()).await.unwrap_err();
        assert!(!e.is_retryable());
        assert!(full_text(&e).contains("missing field `id`"), "{e:?}");
    }
}
