//! approval-eval, as a Lambda function: the approval stage's SQS queue through approval
//! governance (each patch of the month's catalog, and the daily sweep for overdue reviews).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod handler;

#[tokio::main]
async fn main() -> Result<(), patchflow_lambda::Error> {
    patchflow_lambda::run::<handler::ApprovalEval>().await
}
