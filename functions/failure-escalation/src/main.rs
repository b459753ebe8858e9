//! failure-escalation, as a Lambda function: the failure stage's SQS queue (each failed install,
//! reboot or validation: its ticket, the on-call page where the policy says so, and the tier
//! held or blocked).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod handler;

#[tokio::main]
async fn main() -> Result<(), patchflow_lambda::Error> {
    patchflow_lambda::run::<handler::FailureEscalation>().await
}
