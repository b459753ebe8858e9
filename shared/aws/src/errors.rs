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
    } else if status == 404
        || matches!(
            code.as_str(),
            "NoSuchKey" | "NotFound" | "ResourceNotFoundException"
        )
    {
        PortError::NotFound(context)
    } else if status == 429 || status >= 500 || RETRYABLE_CODES.contains(&code.as_str()) {
        PortError::transient(context, err)
    } else {
        PortError::permanent(context, err)
    }
}
