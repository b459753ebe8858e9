//! ring-promotion, as a Lambda function: the rollout stage's SQS queue (promotion decisions with
//! their soak and health gates), and the hourly scheduled tick that feeds every stage.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod handler;

#[tokio::main]
async fn main() -> Result<(), patchflow_lambda::Error> {
    patchflow_lambda::run::<handler::RingPromotion>().await
}
