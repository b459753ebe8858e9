//! SDK errors mapped onto the ports' contract: a failed condition is `Conflict`, a missing key
//! `NotFound`, throttling, 5xx and timeouts `Transient`, everything else `Permanent`.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use patchflow_core::ports::PortError;

/// Error codes that mean "try again later", whatever the HTTP status says.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
];

/// Error codes of a missing table, bucket or queue.
const MISSING_RESOURCES: &[&str] = &[
    "ResourceNotFoundException",
    "NoSuchBucket",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// Classifies an SDK error (of any AWS service: they share the response type) for the port
/// contract.
pub(crate) fn classify<E>(context: impl Into<String>, err: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let context = context.into();
    let (status, code) = match &err {
        SdkError::ServiceError(service) => (
            service.raw().status().as_u16(),
            service.err().code().unwrap_or_default().to_owned(),
        ),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return PortError::transient(context, err)
        }
        _ => return PortError::permanent(context, err),
    };
    if status == 412
        || status == 409
        || code == "PreconditionFailed"
        || code == "ConditionalCheckFailedException"
    {
        PortError::Conflict(format!("{context}: the condition did not hold ({code})"))
    } else if MISSING_RESOURCES.contains(&code.as_str()) {
        // A missing table, bucket or queue is a deployment problem, not a missing record.
        PortError::permanent(
            format!("{context}: the configured resource does not exist"),
            err,
        )
    } else if status == 404 || matches!(code.as_str(), "NoSuchKey" | "NotFound") {
        PortError::NotFound(context)
    } else if status == 429 || status >= 500 || RETRYABLE_CODES.contains(&code.as_str()) {
        PortError::transient(context, err)
    } else {
        PortError::permanent(context, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(status: u16, code: &str) -> SdkError<PutItemError, HttpResponse> {
        let err = PutItemError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = HttpResponse::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    #[test]
    fn a_failed_condition_is_a_conflict() {
        assert!(matches!(
            classify("x", service_error(400, "ConditionalCheckFailedException")),
            PortError::Conflict(_)
        ));
        assert!(matches!(
            classify("x", service_error(412, "PreconditionFailed")),
            PortError::Conflict(_)
        ));
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        for (status, code) in [
            (400, "ThrottlingException"),
            (400, "ProvisionedThroughputExceededException"),
            (503, "SlowDown"),
            (500, "InternalServerError"),
            (429, "TooManyRequestsException"),
        ] {
            assert!(
                classify("x", service_error(status, code)).is_retryable(),
                "{status} {code}"
            );
        }
    }

    #[test]
    fn a_missing_key_is_not_found_but_a_missing_table_bucket_or_queue_is_permanent() {
        assert!(matches!(
            classify("x", service_error(404, "NoSuchKey")),
            PortError::NotFound(_)
        ));
        assert!(matches!(
            classify("x", service_error(404, "NotFound")),
            PortError::NotFound(_)
        ));
        for missing in [
            "ResourceNotFoundException",
            "NoSuchBucket",
            "AWS.SimpleQueueService.NonExistentQueue",
        ] {
            assert!(
                matches!(
                    classify("x", service_error(400, missing)),
                    PortError::Permanent { .. }
                ),
                "{missing}"
            );
            assert!(
                matches!(
                    classify("x", service_error(404, missing)),
                    PortError::Permanent { .. }
                ),
                "{missing}"
            );
        }
        assert!(matches!(
            classify("x", service_error(400, "ValidationException")),
            PortError::Permanent { .. }
        ));
        assert!(matches!(
            classify("x", service_error(403, "AccessDenied")),
            PortError::Permanent { .. }
        ));
    }
}
