//! reboot-scheduler, as a Lambda function: the schedule stage's SQS queue (each endpoint's
//! install and reboot commands, and each deploying tier's hourly work: RMM reports, reminders,
//! forced reboots, validation).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod handler;

#[tokio::main]
async fn main() -> Result<(), patchflow_lambda::Error> {
    patchflow_lambda::run::<handler::RebootScheduler>().await
}
