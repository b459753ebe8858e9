//! evidence-archiver, as a Lambda function: the evidence stage's SQS queue (each validated
//! tier's evidence written under Object Lock, its PSA tickets closed, the tier closed).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod handler;

#[tokio::main]
async fn main() -> Result<(), patchflow_lambda::Error> {
    patchflow_lambda::run::<handler::EvidenceArchiver>().await
}
