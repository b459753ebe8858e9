//! `patchflow aws bootstrap` against the AWS API server `make test` runs (moto).

use crate::helpers::patchflow;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

#[test]
fn bootstrap_creates_the_table_queues_and_bucket_and_a_second_run_changes_nothing() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "run with `make test`, which starts moto and sets AWS_ENDPOINT_URL"
    );
    let (table, bucket, prefix) = (unique("pf-table"), unique("pf-bucket"), unique("pf"));
    let run = || {
        patchflow()
            .args([
                "aws",
                "bootstrap",
                "--table",
                &table,
                "--bucket",
                &bucket,
                "--queue-prefix",
                &prefix,
            ])
            .args(["--max-receives", "3", "--retention-days", "30"])
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = String::from_utf8(first.stdout).unwrap();
    assert!(
        text.contains(&format!("table    {table}  (created)")),
        "{text}"
    );
    for stage in ["approval", "rollout", "schedule", "failure", "evidence"] {
        assert!(
            text.contains(&format!("{prefix}-{stage}-dlq")),
            "{stage} dlq missing:\n{text}"
        );
    }
    assert!(text.contains(&format!(
        "bucket   {bucket}  (Object Lock, COMPLIANCE 30 days by default)"
    )));

    let second = run();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8(second.stdout)
        .unwrap()
        .contains(&format!("table    {table}  (exists)")));
}

#[test]
fn bootstrap_without_a_bucket_name_is_a_usage_error() {
    let out = patchflow()
        .args(["aws", "bootstrap"])
        .env_remove("PATCHFLOW_EVIDENCE_BUCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bucket"));
}
