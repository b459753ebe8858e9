//! `patchflow audit` against an Object-Lock bucket on moto: an intact bucket verifies with every
//! lock read; an object overwritten by a new version, or locked for less than the policy, fails;
//! a pulled copy verifies on its own; and every request list, pull and verify make is one the
//! read-only auditor role of infra/template.yaml allows.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::primitives::{ByteStream, DateTime as SmithyDateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode};
use base64::Engine as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use patchflow_aws::config::sdk_config;
use patchflow_aws::s3::S3EvidenceStore;
use patchflow_cli::audit::{
    list_from, pull_from, verify_in, AuditCommand, PullArgs, SourceArgs, VerifyArgs,
};
use patchflow_cli::{run, Cli, Command};
use patchflow_core::ids::{ClientId, CycleId};
use patchflow_core::ports::evidence::{
    EvidenceKey, EvidenceStore, LockMode, NewEvidence, Retention, Sha256Digest,
};
use patchflow_evidence::verify::{verify, Expectations, Scope};
use patchflow_local::evidence::FsEvidenceStore;
use serde_yaml::Value;

use crate::support::s3_store;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
const CLIENTS: [&str; 2] = ["contoso", "fabrikam"];

/// A client's bundles in the order they closed.
fn bundles(client: &str) -> [(CycleId, String); 3] {
    let (nov, dec) = ("2026-11".parse().unwrap(), "2026-12".parse().unwrap());
    [
        (nov, format!("servers.{client}.pilot")),
        (nov, "workstations.production".to_owned()),
        (dec, format!("servers.{client}.pilot")),
    ]
}

fn key(cycle: CycleId, client: &str, bundle: &str, name: &str) -> EvidenceKey {
    EvidenceKey::new(cycle, &ClientId::parse(client).unwrap(), bundle, name).unwrap()
}

fn closed_at(client: usize, bundle: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 6, 0, 0).unwrap()
        + Duration::days(12 * bundle as i64)
        + Duration::hours(client as i64)
}

/// A new bucket holding two clients' chains of three bundles across 2026-11 and 2026-12, locked
/// for the default seven years (the bundle `short`, if any, for one year only).
async fn evidence_bucket(short: Option<(usize, usize)>) -> S3EvidenceStore {
    let store = s3_store().await;
    for (c, client) in CLIENTS.iter().enumerate() {
        let mut previous = None;
        for (b, bundle) in bundles(client).iter().enumerate() {
            let days = if short == Some((c, b)) {
                365
            } else {
                patchflow_evidence::DEFAULT_RETENTION_DAYS
            };
            let (cycle, bundle) = bundle;
            previous = Some(
                patchflow_evidence::testing::write_bundle(
                    &store,
                    *cycle,
                    client,
                    bundle,
                    closed_at(c, b),
                    days,
                    b as u64 + 1,
                    previous,
                )
                .await
                .unwrap(),
            );
        }
    }
    store
}

async fn verify_all(store: &S3EvidenceStore) -> patchflow_evidence::verify::Report {
    verify(
        store,
        &Scope::everything(),
        &Expectations::default(),
        |_| {},
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_intact_bucket_verifies_and_every_lock_is_read_from_s3() {
    let store = evidence_bucket(None).await;
    let report = verify_all(&store).await;
    assert!(report.is_clean(), "{:#?}", report.problems);
    assert_eq!((report.bundles.len(), report.objects), (6, 30));
    assert_eq!(report.locks, 30, "S3 reports every object's lock");
    assert_eq!(report.chains.len(), 2);

    // AND the CLI's report says so
    let mut out = Vec::new();
    let source = format!("s3://{}", store.bucket());
    verify_in(
        &store,
        &source,
        &Scope::everything(),
        None,
        &Expectations::default(),
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.ends_with("verified: 30 objects in 6 bundles\n"),
        "{text}"
    );
}

#[tokio::test]
async fn an_object_overwritten_by_a_new_version_is_caught_and_its_locked_original_survives() {
    // GIVEN an artifact overwritten by a raw PutObject: a new version with a valid checksum and
    // its own lock, over the locked original
    let store = evidence_bucket(None).await;
    let (cycle, bundle) = &bundles("contoso")[2];
    let k = key(*cycle, "contoso", bundle, "outcomes.csv");
    let original = store.get(&k).await.unwrap().0;
    let versions = |store: &S3EvidenceStore| {
        let (client, bucket, prefix) = (
            store.client().clone(),
            store.bucket().to_owned(),
            k.as_path(),
        );
        async move {
            let listed = client
                .list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .unwrap();
            listed
                .versions()
                .iter()
                .filter_map(|v| v.version_id().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    let before = versions(&store).await;
    assert_eq!(before.len(), 1);
    let old = before[0].clone();
    let forged = b"endpoint,outcome\ncontoso-1,failed\n".to_vec();
    store
        .client()
        .put_object()
        .bucket(store.bucket())
        .key(k.as_path())
        .body(ByteStream::from(forged.clone()))
        .content_type("text/csv")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(
            base64::engine::general_purpose::STANDARD.encode(Sha256Digest::of(&forged).bytes()),
        )
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(SmithyDateTime::from_secs(
            (closed_at(0, 2) + Duration::days(3000)).timestamp(),
        ))
        .send()
        .await
        .expect("Object Lock does not stop a new version over a locked one");

    // WHEN verified THEN the overwritten object is the first bad one
    let report = verify_all(&store).await;
    let first = report.first_problem().expect("the overwrite is caught");
    assert_eq!(first.key, k.as_path());
    assert!(first.why.contains("does not match the manifest"), "{first}");
    // AND its second version is named too: what still shows an overwrite whose latest version
    // and every later manifest were rewritten to agree
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.key == k.as_path() && p.why.starts_with("2 versions")),
        "{:#?}",
        report.problems
    );

    // AND the locked original is still there, and cannot be deleted
    let after = versions(&store).await;
    assert_eq!(after.len(), 2);
    assert!(after.contains(&old));
    let kept = store
        .client()
        .get_object()
        .bucket(store.bucket())
        .key(k.as_path())
        .version_id(&old)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(kept.as_ref(), original.as_slice());
    let deleted = store
        .client()
        .delete_object()
        .bucket(store.bucket())
        .key(k.as_path())
        .version_id(&old)
        .send()
        .await;
    assert!(
        deleted.is_err(),
        "COMPLIANCE mode refuses deleting the original"
    );
}

#[tokio::test]
async fn objects_locked_for_less_than_the_policy_fail_verification() {
    // GIVEN fabrikam's December bundle locked for a year, as its manifest declares
    let store = evidence_bucket(Some((1, 2))).await;
    let report = verify_all(&store).await;
    let (cycle, bundle) = &bundles("fabrikam")[2];
    let folder = format!("evidence/{cycle}/fabrikam/{bundle}/");
    assert_eq!(report.problems.len(), 5, "{:#?}", report.problems);
    for p in &report.problems {
        assert!(p.key.starts_with(&folder), "{p}");
        assert!(p.why.contains("2555 days after the bundle closed"), "{p}");
    }
}

/// Runs the CLI as a user would, off the async runtime (the CLI starts its own).
async fn cli(command: AuditCommand) -> (Result<(), patchflow_cli::CliError>, String) {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let result = run(
            Cli {
                command: Command::Audit(command),
            },
            &mut out,
        );
        (result, String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_cycle_pulled_from_the_bucket_verifies_on_its_own() {
    let store = evidence_bucket(None).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pulled");

    // WHEN December is pulled with the bucket named on the command line
    let (pulled, text) = cli(AuditCommand::Pull(PullArgs {
        cycle: "2026-12".parse().unwrap(),
        client: None,
        out: out.clone(),
        source: SourceArgs {
            bucket: Some(store.bucket().to_owned()),
            state: None,
        },
    }))
    .await;
    pulled.unwrap();
    assert!(text.contains("pulled 10 objects"), "{text}");

    // THEN the folder verifies, its chains anchored at the November manifests pulled with it
    let (verified, text) = cli(AuditCommand::Verify(VerifyArgs {
        target: out.display().to_string(),
        min_retention_days: patchflow_evidence::DEFAULT_RETENTION_DAYS,
    }))
    .await;
    verified.unwrap();
    assert!(
        text.contains("anchored at evidence/2026-11/contoso/"),
        "{text}"
    );
    assert!(
        text.ends_with("verified: 10 objects in 2 bundles\n"),
        "{text}"
    );

    // AND it holds what S3 reported of each object
    let local = FsEvidenceStore::open(&out).unwrap();
    let k = key(
        "2026-12".parse().unwrap(),
        "fabrikam",
        "servers.fabrikam.pilot",
        "report.html",
    );
    let (remote, local_head) = (store.head(&k).await.unwrap(), local.head(&k).await.unwrap());
    assert_eq!(local_head.sha256, remote.sha256);
    assert_eq!(local_head.retention, remote.retention);
    assert_eq!(local_head.content_type.as_deref(), Some("text/html"));

    // AND the same verification straight against the bucket passes too
    let (direct, text) = cli(AuditCommand::Verify(VerifyArgs {
        target: format!("s3://{}/evidence/2026-12", store.bucket()),
        min_retention_days: patchflow_evidence::DEFAULT_RETENTION_DAYS,
    }))
    .await;
    direct.unwrap();
    assert!(
        text.ends_with("verified: 10 objects in 2 bundles\n"),
        "{text}"
    );
}

/// Every S3 request a client makes, as the operation it is.
#[derive(Debug, Clone, Default)]
struct Requests(Arc<Mutex<Vec<String>>>);

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "Requests"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request();
        let uri = req.uri().to_owned();
        let (path, query) = uri.split_once('?').unwrap_or((uri.as_str(), ""));
        // Path style: `http://host/bucket[/key]`.
        let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
        let has_key = after_host
            .split_once('/')
            .is_some_and(|(_, k)| !k.is_empty());
        let params: Vec<&str> = query.split('&').collect();
        let has = |p: &str| {
            params
                .iter()
                .any(|q| *q == p || q.starts_with(&format!("{p}=")))
        };
        let named = params
            .iter()
            .find_map(|q| q.strip_prefix("x-id="))
            .map(str::to_owned);
        let op = match (req.method(), has_key) {
            (_, _) if named.is_some() => named.unwrap_or_default(),
            ("HEAD", true) => "HeadObject".to_owned(),
            ("HEAD", false) => "HeadBucket".to_owned(),
            ("GET", true) if has("retention") => "GetObjectRetention".to_owned(),
            ("GET", true) if has("legal-hold") => "GetObjectLegalHold".to_owned(),
            ("GET", false) if has("list-type") => "ListObjectsV2".to_owned(),
            ("GET", false) if has("versions") => "ListObjectVersions".to_owned(),
            (method, _) => format!("{method} {after_host}?{query}"),
        };
        let versioned = if has("versionId") { "+version" } else { "" };
        self.0.lock().unwrap().push(format!("{op}{versioned}"));
        Ok(())
    }
}

/// The IAM action that authorizes an S3 operation, for the operations the audit may make.
fn action(op: &str) -> Option<&'static str> {
    Some(match op {
        "GetObject" | "HeadObject" => "s3:GetObject",
        "GetObject+version" | "HeadObject+version" => "s3:GetObjectVersion",
        "ListObjectsV2" => "s3:ListBucket",
        "ListObjectVersions" => "s3:ListBucketVersions",
        "GetObjectRetention" => "s3:GetObjectRetention",
        "GetObjectLegalHold" => "s3:GetObjectLegalHold",
        _ => return None,
    })
}

/// The S3 actions the template's AuditorRole allows.
fn auditor_actions() -> BTreeSet<String> {
    let text = std::fs::read_to_string(TEMPLATE).expect("infra/template.yaml");
    let doc: Value = serde_yaml::from_str(&text).expect("the template is YAML");
    let role = &doc["Resources"]["AuditorRole"];
    assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"));
    let mut actions = BTreeSet::new();
    for policy in role["Properties"]["Policies"].as_sequence().unwrap() {
        for stmt in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
            if stmt["Effect"].as_str() != Some("Allow") {
                continue;
            }
            match &stmt["Action"] {
                Value::Sequence(list) => {
                    actions.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                Value::String(one) => {
                    actions.insert(one.clone());
                }
                _ => {}
            }
        }
    }
    actions
}

/// The store over `bucket` with a client that records its requests.
async fn recorded(bucket: &str, requests: &Requests) -> S3EvidenceStore {
    let sdk = sdk_config().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .interceptor(requests.clone())
            .build(),
    );
    S3EvidenceStore::new(client, bucket)
}

#[tokio::test]
async fn list_pull_and_verify_make_only_requests_the_auditor_role_allows() {
    // GIVEN a bucket of evidence, read through a client that records every request
    let writer = evidence_bucket(None).await;
    let requests = Requests::default();
    let store = recorded(writer.bucket(), &requests).await;
    let source = format!("s3://{}", store.bucket());
    let dir = tempfile::tempdir().unwrap();

    // WHEN an auditor lists, pulls a cycle, and verifies a cycle and the whole bucket
    let mut out = Vec::new();
    list_from(&store, &source, &Scope::everything(), &mut out)
        .await
        .unwrap();
    let december = Scope::new(Some("2026-12".parse().unwrap()), None, None).unwrap();
    pull_from(
        &store,
        &source,
        &december,
        &dir.path().join("pulled"),
        &mut out,
    )
    .await
    .unwrap();
    for scope in [december, Scope::everything()] {
        verify_in(
            &store,
            &source,
            &scope,
            None,
            &Expectations::default(),
            &mut out,
        )
        .await
        .unwrap();
    }

    // THEN every request maps to an action the AuditorRole allows (no write, no bucket
    // configuration read), and list, get and head were all exercised
    let allowed = auditor_actions();
    let made = requests.0.lock().unwrap().clone();
    let ops: BTreeSet<&str> = made.iter().map(String::as_str).collect();
    for op in &ops {
        let needs =
            action(op).unwrap_or_else(|| panic!("{op}: not an operation the audit may make"));
        assert!(
            allowed.contains(needs),
            "{op} needs {needs}, which AuditorRole does not allow ({allowed:?})"
        );
    }
    for expected in ["ListObjectsV2", "GetObject", "HeadObject"] {
        assert!(ops.contains(expected), "{expected} in {ops:?}");
    }

    // AND the recorder tells a write apart: one made through the same client is not allowed
    requests.0.lock().unwrap().clear();
    let (cycle, bundle) = &bundles("contoso")[2];
    let extra = store
        .put(NewEvidence {
            key: key(*cycle, "contoso", bundle, "late.json"),
            bytes: b"{}".to_vec(),
            content_type: "application/json".into(),
            retention: Retention {
                mode: LockMode::Compliance,
                retain_until: closed_at(0, 2) + Duration::days(3000),
            },
        })
        .await;
    extra.unwrap();
    let made = requests.0.lock().unwrap().clone();
    assert_eq!(made, ["PutObject"]);
    assert_eq!(action(&made[0]), None);
}
