//! Creates patchflow's AWS resources under configured names, against whatever endpoint the SDK
//! points at: the state table, one queue and dead-letter queue per stage, and the Object-Lock
//! evidence bucket. Running it again changes nothing. It is how tests, demos and a first-time
//! user on a sandbox account start; production deploys the same resources from the SAM template.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use chrono::Duration;
use patchflow_core::ports::queue::Stage;
use patchflow_core::ports::PortError;

use crate::dynamodb::create_state_table;
use crate::s3::create_evidence_bucket;
use crate::sqs::{create_stage_queue, StageQueue};

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The state table.
    pub table: String,
    /// The evidence bucket.
    pub bucket: String,
    /// Queue names are `{queue_prefix}-{stage}` and `{queue_prefix}-{stage}-dlq`.
    pub queue_prefix: String,
    /// The evidence bucket's default COMPLIANCE retention, in days.
    pub retention_days: i32,
    /// Receives before a message moves to its dead-letter queue.
    pub max_receives: u32,
    /// The queues' visibility timeout.
    pub visibility: Duration,
}

/// What exists after bootstrapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrapped {
    /// Whether the table was created now (false: it existed).
    pub table_created: bool,
    /// The stage queues.
    pub queues: HashMap<Stage, StageQueue>,
}

/// Creates whatever of the resources does not exist yet.
pub async fn bootstrap(
    sdk: &aws_config::SdkConfig,
    names: &Names,
) -> Result<Bootstrapped, PortError> {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let exists = match dynamo
        .describe_table()
        .table_name(&names.table)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e)
            if e.as_service_error().and_then(|s| s.code()) == Some("ResourceNotFoundException") =>
        {
            false
        }
        Err(e) => {
            return Err(crate::errors::classify(
                format!("describe table {}", names.table),
                e,
            ))
        }
    };
    if !exists {
        create_state_table(&dynamo, &names.table).await?;
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut queues = HashMap::new();
    for stage in Stage::ALL {
        let q = create_stage_queue(
            &sqs,
            &names.queue_prefix,
            stage,
            names.max_receives,
            names.visibility,
        )
        .await?;
        queues.insert(stage, q);
    }
    let s3 =
        crate::config::s3_client(sdk).map_err(|e| PortError::permanent("S3 configuration", e))?;
    create_evidence_bucket(&s3, &names.bucket, names.retention_days).await?;
    Ok(Bootstrapped {
        table_created: !exists,
        queues,
    })
}
