//! Evidence in S3 under Object Lock: every object written once (`If-None-Match: *`, so a second
//! write of a key is refused, never an overwrite), with its SHA-256 sent as
//! `x-amz-checksum-sha256` for S3 to verify, and COMPLIANCE retention set on the object version.
//! Reads verify the bytes against the recorded checksum, so corruption (or a store that did not
//! verify the upload) is caught on the way out.

use aws_sdk_s3::primitives::{ByteStream, DateTime as SmithyDateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, DefaultRetention,
    ObjectLockConfiguration, ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus,
    ObjectLockMode, ObjectLockRetentionMode, ObjectLockRule,
};
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use patchflow_core::ids::CycleId;
use patchflow_core::ports::evidence::{
    EvidenceHead, EvidenceKey, EvidencePrefix, EvidenceStore, LockMode, NewEvidence, Retention,
    Sha256Digest,
};
use patchflow_core::ports::PortError;

use crate::errors::classify;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The S3 evidence store.
#[derive(Debug, Clone)]
pub struct S3EvidenceStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3EvidenceStore {
    /// A store over an existing bucket (see [`create_evidence_bucket`]).
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying client (tests use it to try what the port refuses to offer, like deletes).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

fn to_smithy(t: DateTime<Utc>) -> SmithyDateTime {
    SmithyDateTime::from_secs(t.timestamp())
}

fn from_smithy(t: &SmithyDateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), 0).single()
}

fn lock_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Compliance => ObjectLockMode::Compliance,
        LockMode::Governance => ObjectLockMode::Governance,
    }
}

fn digest_from_header(key: &EvidenceKey, header: Option<&str>) -> Result<Sha256Digest, PortError> {
    let text = header.ok_or_else(|| {
        PortError::permanent(
            format!("{key}"),
            "S3 has no SHA-256 checksum for the object",
        )
    })?;
    // A multipart upload's checksum is a checksum of checksums (`...-N`); evidence is never
    // uploaded in parts, so anything but a plain digest is a foreign object.
    let raw = B64
        .decode(text)
        .map_err(|e| PortError::permanent(format!("{key}: checksum header `{text}`"), e))?;
    Sha256Digest::from_slice(&raw).ok_or_else(|| {
        PortError::permanent(
            format!("{key}"),
            format!("checksum header `{text}` is not a SHA-256"),
        )
    })
}

fn mentions_checksum_mismatch(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.to_string()
            .to_ascii_lowercase()
            .contains("checksum mismatch")
        {
            return true;
        }
        cause = c.source();
    }
    false
}

fn retention_of(
    mode: Option<&ObjectLockMode>,
    until: Option<&SmithyDateTime>,
) -> Option<Retention> {
    let mode = match mode? {
        ObjectLockMode::Compliance => LockMode::Compliance,
        ObjectLockMode::Governance => LockMode::Governance,
        _ => return None,
    };
    Some(Retention {
        mode,
        retain_until: from_smithy(until?)?,
    })
}

impl EvidenceStore for S3EvidenceStore {
    async fn put(&self, object: NewEvidence) -> Result<EvidenceHead, PortError> {
        let key = object.key;
        let digest = Sha256Digest::of(&object.bytes);
        let size = object.bytes.len() as u64;
        let content_type = object.content_type;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_path())
            .content_type(&content_type)
            .body(ByteStream::from(object.bytes))
            .if_none_match("*")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(B64.encode(digest.bytes()))
            .object_lock_mode(lock_mode(object.retention.mode))
            .object_lock_retain_until_date(to_smithy(object.retention.retain_until))
            .send()
            .await
            .map_err(|e| match classify(format!("put {key}"), e) {
                PortError::Conflict(_) => PortError::Conflict(format!("{key} already exists")),
                other => other,
            })?;
        Ok(EvidenceHead {
            key,
            size,
            sha256: digest,
            retention: Some(object.retention),
            legal_hold: false,
            content_type: Some(content_type),
        })
    }

    async fn get(&self, key: &EvidenceKey) -> Result<(Vec<u8>, EvidenceHead), PortError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_path())
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| classify(format!("get {key}"), e))?;
        let recorded = digest_from_header(key, out.checksum_sha256())?;
        let retention = retention_of(out.object_lock_mode(), out.object_lock_retain_until_date());
        let legal_hold =
            out.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On);
        let content_type = out.content_type().map(str::to_owned);
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| {
                // The SDK checks the body against the checksum header as it streams; a mismatch
                // will not heal on retry.
                if mentions_checksum_mismatch(&e) {
                    PortError::permanent(
                        format!("{key}: content does not match its recorded SHA-256"),
                        e,
                    )
                } else {
                    PortError::transient(format!("read {key}"), e)
                }
            })?
            .into_bytes()
            .to_vec();
        let actual = Sha256Digest::of(&bytes);
        if actual != recorded {
            return Err(PortError::permanent(
                format!("{key}"),
                format!("content SHA-256 {actual} does not match the recorded {recorded}"),
            ));
        }
        let head = EvidenceHead {
            key: key.clone(),
            size: bytes.len() as u64,
            sha256: recorded,
            retention,
            legal_hold,
            content_type,
        };
        Ok((bytes, head))
    }

    async fn head(&self, key: &EvidenceKey) -> Result<EvidenceHead, PortError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_path())
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| classify(format!("head {key}"), e))?;
        Ok(EvidenceHead {
            key: key.clone(),
            size: out.content_length().unwrap_or_default().max(0) as u64,
            sha256: digest_from_header(key, out.checksum_sha256())?,
            retention: retention_of(out.object_lock_mode(), out.object_lock_retain_until_date()),
            legal_hold: out.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
            content_type: out.content_type().map(str::to_owned),
        })
    }

    async fn list(&self, prefix: &EvidencePrefix) -> Result<Vec<EvidenceKey>, PortError> {
        let path = prefix.as_path();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&path)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(format!("list {path}"), e))?;
            for object in page.contents() {
                let Some(text) = object.key() else { continue };
                let key = EvidenceKey::try_from(text.to_owned()).map_err(|e| {
                    PortError::permanent(
                        format!("foreign object in the evidence bucket: {text}"),
                        e,
                    )
                })?;
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn versions_beyond_one(&self, prefix: &str) -> Result<Vec<(String, usize)>, PortError> {
        // ListObjectVersions (ListBucketVersions permission, which the auditor role has), page
        // by page on its key and version markers.
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| classify(format!("list the versions under {prefix}"), e))?;
            let keys = page
                .versions()
                .iter()
                .filter_map(|v| v.key())
                .chain(page.delete_markers().iter().filter_map(|m| m.key()));
            for key in keys {
                *counts.entry(key.to_owned()).or_default() += 1;
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() && version_marker.is_none() {
                return Err(PortError::permanent(
                    format!("list the versions under {prefix}"),
                    "a truncated page without a marker to go on from",
                ));
            }
        }
        Ok(counts.into_iter().filter(|(_, n)| *n > 1).collect())
    }

    async fn cycles(&self) -> Result<Vec<CycleId>, PortError> {
        // One level of "folders" under `evidence/`: ListObjectsV2 with a delimiter returns them
        // as common prefixes (ListBucket permission only, whatever the number of objects).
        const ROOT: &str = "evidence/";
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(ROOT)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut cycles = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(format!("list {ROOT}"), e))?;
            if let Some(text) = page.contents().iter().find_map(|o| o.key()) {
                return Err(PortError::permanent(
                    format!("foreign object in the evidence bucket: {text}"),
                    "not inside a YYYY-MM cycle folder",
                ));
            }
            for folder in page.common_prefixes() {
                let Some(text) = folder.prefix() else {
                    continue;
                };
                let name = text
                    .strip_prefix(ROOT)
                    .and_then(|t| t.strip_suffix('/'))
                    .unwrap_or(text);
                let cycle = name.parse::<CycleId>().map_err(|e| {
                    PortError::permanent(
                        format!("foreign folder in the evidence bucket: {text}"),
                        e,
                    )
                })?;
                cycles.push(cycle);
            }
        }
        cycles.sort();
        cycles.dedup();
        Ok(cycles)
    }

    async fn retention(&self, key: &EvidenceKey) -> Result<Option<Retention>, PortError> {
        // GetObjectRetention (the auditor role's s3:GetObjectRetention): the lock S3 holds on the
        // current version, read from S3 itself rather than from what the write asked for.
        let asked = self
            .client
            .get_object_retention()
            .bucket(&self.bucket)
            .key(key.as_path())
            .send()
            .await;
        let out = match asked {
            Ok(out) => out,
            Err(e) => {
                let none = e.as_service_error().and_then(|s| {
                    use aws_sdk_s3::error::ProvideErrorMetadata as _;
                    s.code()
                }) == Some("NoSuchObjectLockConfiguration");
                if none {
                    return Ok(None);
                }
                return Err(classify(format!("retention of {key}"), e));
            }
        };
        let Some(lock) = out.retention() else {
            return Ok(None);
        };
        let mode = match lock.mode() {
            Some(ObjectLockRetentionMode::Compliance) => ObjectLockMode::Compliance,
            Some(ObjectLockRetentionMode::Governance) => ObjectLockMode::Governance,
            _ => return Ok(None),
        };
        Ok(retention_of(Some(&mode), lock.retain_until_date()))
    }

    async fn set_legal_hold(&self, key: &EvidenceKey, on: bool) -> Result<(), PortError> {
        // S3 answers a hold on a missing key with NoSuchKey, but not every S3-compatible store
        // does; asking first keeps the port's NotFound the same everywhere.
        self.head(key).await?;
        let status = if on {
            ObjectLockLegalHoldStatus::On
        } else {
            ObjectLockLegalHoldStatus::Off
        };
        self.client
            .put_object_legal_hold()
            .bucket(&self.bucket)
            .key(key.as_path())
            .legal_hold(ObjectLockLegalHold::builder().status(status).build())
            .send()
            .await
            .map_err(|e| classify(format!("legal hold {key}"), e))?;
        Ok(())
    }
}

/// Creates the evidence bucket with Object Lock enabled (which turns versioning on) and a
/// COMPLIANCE default retention of `default_retention_days`. An existing bucket we own is left as
/// it is.
pub async fn create_evidence_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    default_retention_days: i32,
) -> Result<(), PortError> {
    let created = client
        .create_bucket()
        .bucket(bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await;
    if let Err(e) = created {
        let owned = e
            .as_service_error()
            .is_some_and(|s| s.is_bucket_already_owned_by_you());
        if !owned {
            return Err(classify(format!("create bucket {bucket}"), e));
        }
    }
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| classify(format!("versioning on {bucket}"), e))?;
    client
        .put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Compliance)
                                .days(default_retention_days)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| classify(format!("object lock on {bucket}"), e))?;
    Ok(())
}
