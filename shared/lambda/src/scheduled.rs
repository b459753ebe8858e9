//! Scheduled invocations: an EventBridge rule's or EventBridge Scheduler's event
//! (`"detail-type": "Scheduled Event"`, source `aws.events` or `aws.scheduler`, the scheduled
//! `time`), or any JSON object a schedule was given as its input. The instant a scheduled run is
//! for is the event's `time` when it has one (a retried invocation then does the same run), else
//! the time of the invocation.

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use patchflow_pipeline::error::HandlerError;
use serde_json::Value;

/// Why an event is not a scheduled event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduledError {
    /// Not a JSON object.
    #[error("a scheduled event must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    /// A `time` that is not an RFC 3339 instant.
    #[error("field `time`: {value} is not an RFC 3339 instant ({message})")]
    BadTime {
        /// The value, as JSON.
        value: String,
        /// The parser's message.
        message: String,
    },
}

impl From<ScheduledError> for HandlerError {
    fn from(e: ScheduledError) -> Self {
        // The same event fails the same way every time.
        HandlerError::Poison(e.to_string())
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The instant a scheduled event is for: its `time`, else `now`.
pub fn scheduled_at(event: &Value, now: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduledError> {
    let Value::Object(fields) = event else {
        return Err(ScheduledError::NotAnObject(kind_of(event)));
    };
    match fields.get("time") {
        None | Some(Value::Null) => Ok(now),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| ScheduledError::BadTime {
                value: format!("{s:?}"),
                message: e.to_string(),
            }),
        Some(other) => Err(ScheduledError::BadTime {
            value: other.to_string(),
            message: format!("{} is not a string", kind_of(other)),
        }),
    }
}

/// The event of a function that is both an SQS consumer and scheduled, told apart by its shape.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// An object with `Records`: an SQS batch.
    Sqs(SqsEvent),
    /// Anything else: a scheduled run for this instant.
    Scheduled(DateTime<Utc>),
}

impl Invocation {
    /// Reads an event: a JSON object with a `Records` key is an SQS batch (which must then read
    /// as one), anything else a scheduled event.
    pub fn from_value(event: Value, now: DateTime<Utc>) -> Result<Self, HandlerError> {
        if event.get("Records").is_some() {
            return serde_json::from_value(event)
                .map(Invocation::Sqs)
                .map_err(|e| HandlerError::Poison(format!("not an SQS event: {e}")));
        }
        Ok(Invocation::Scheduled(scheduled_at(&event, now)?))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 9, 3, 0, 0).unwrap()
    }

    #[test]
    fn the_time_field_wins_else_now() {
        let e = json!({"detail-type": "Scheduled Event", "source": "aws.events",
                       "time": "2026-12-08T18:00:00Z", "detail": {}});
        assert_eq!(
            scheduled_at(&e, now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap()
        );
        let offset = json!({"time": "2026-12-08T10:00:00-08:00"});
        assert_eq!(
            scheduled_at(&offset, now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap()
        );
        assert_eq!(scheduled_at(&json!({}), now()).unwrap(), now());
        assert_eq!(scheduled_at(&json!({"time": null}), now()).unwrap(), now());
    }

    #[test]
    fn a_bad_time_or_a_non_object_is_an_error_not_a_panic() {
        let e = scheduled_at(&json!({"time": "yesterday"}), now()).unwrap_err();
        assert!(
            e.to_string().contains("`time`") && e.to_string().contains("yesterday"),
            "{e}"
        );
        let e = scheduled_at(&json!({"time": 12}), now()).unwrap_err();
        assert!(e.to_string().contains("a number"), "{e}");
        for v in [json!(null), json!("tick"), json!([1])] {
            assert!(matches!(
                scheduled_at(&v, now()),
                Err(ScheduledError::NotAnObject(_))
            ));
        }
        assert!(matches!(
            HandlerError::from(ScheduledError::NotAnObject("null")),
            HandlerError::Poison(_)
        ));
    }

    #[test]
    fn records_make_an_sqs_invocation_anything_else_a_scheduled_one() {
        let sqs = json!({"Records": [{"messageId": "m1", "body": "{}", "receiptHandle": "r"}]});
        let Ok(Invocation::Sqs(e)) = Invocation::from_value(sqs, now()) else {
            panic!("not read as SQS")
        };
        assert_eq!(e.records[0].message_id.as_deref(), Some("m1"));
        let Ok(Invocation::Scheduled(t)) =
            Invocation::from_value(json!({"source": "aws.scheduler"}), now())
        else {
            panic!("not read as scheduled")
        };
        assert_eq!(t, now());
        let bad = Invocation::from_value(json!({"Records": "none"}), now());
        assert!(matches!(bad, Err(HandlerError::Poison(m)) if m.contains("not an SQS event")));
    }
}
