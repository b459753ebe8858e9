//! Logs as the Lambda runtime expects them: one JSON object a line on stdout, no ANSI colours,
//! no timestamp (CloudWatch stamps every line), the invocation's span (request id, X-Ray trace)
//! on each event. The level comes from Lambda's advanced logging controls
//! (`AWS_LAMBDA_LOG_LEVEL`), else `INFO`; `RUST_LOG` directives refine it per target.

use std::sync::Once;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;

/// The level Lambda's advanced logging controls set.
pub const LAMBDA_LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";
/// Per-target directives, e.g. `info,aws_smithy_runtime=warn`.
pub const RUST_LOG: &str = "RUST_LOG";

static INIT: Once = Once::new();

/// The default level: Lambda's levels are `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR` and `FATAL`
/// (here: error); anything else, or nothing, is info.
pub fn default_level(lambda_level: Option<&str>) -> LevelFilter {
    match lambda_level
        .map(|l| l.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("trace") => LevelFilter::TRACE,
        Some("debug") => LevelFilter::DEBUG,
        Some("warn" | "warning") => LevelFilter::WARN,
        Some("error" | "fatal") => LevelFilter::ERROR,
        _ => LevelFilter::INFO,
    }
}

/// The filter: [`default_level`] of `lambda_level`, refined by the directives of `rust_log`
/// (invalid directives are skipped, never fatal).
pub fn filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> EnvFilter {
    EnvFilter::builder()
        .with_default_directive(default_level(lambda_level).into())
        .parse_lossy(rust_log.unwrap_or_default())
}

/// The JSON subscriber, writing to `writer`.
pub fn subscriber<W>(writer: W, filter: EnvFilter) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_ansi(false)
        .without_time()
        .with_target(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// Installs the JSON subscriber on stdout, once per process; later calls (and a subscriber
/// already set by someone else) change nothing.
pub fn init() {
    INIT.call_once(|| {
        let lambda_level = std::env::var(LAMBDA_LOG_LEVEL).ok();
        let rust_log = std::env::var(RUST_LOG).ok();
        let filter = filter(lambda_level.as_deref(), rust_log.as_deref());
        // An error means a global subscriber exists already: keep it.
        let _ = tracing::subscriber::set_global_default(subscriber(std::io::stdout, filter));
    });
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn lambda_levels_map_onto_tracing_levels() {
        assert_eq!(default_level(None), LevelFilter::INFO);
        assert_eq!(default_level(Some("DEBUG")), LevelFilter::DEBUG);
        assert_eq!(default_level(Some("TRACE")), LevelFilter::TRACE);
        assert_eq!(default_level(Some("WARN")), LevelFilter::WARN);
        assert_eq!(default_level(Some("FATAL")), LevelFilter::ERROR);
        assert_eq!(default_level(Some("loud")), LevelFilter::INFO);
    }

    #[test]
    fn rust_log_refines_the_default_and_bad_directives_are_skipped() {
        assert_eq!(
            filter(Some("WARN"), None).max_level_hint(),
            Some(LevelFilter::WARN)
        );
        let f = filter(Some("WARN"), Some("patchflow_pipeline=debug"));
        assert!(f.to_string().contains("patchflow_pipeline=debug"), "{f}");
        assert_eq!(f.max_level_hint(), Some(LevelFilter::DEBUG));
        let f = filter(None, Some("[[[not a directive"));
        assert_eq!(f.max_level_hint(), Some(LevelFilter::INFO));
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_event_is_one_json_line_without_time_or_colour_with_its_span() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let sub = subscriber(move || writer.clone(), filter(Some("INFO"), None));
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _entered = span.enter();
            tracing::info!(stage = "approval", "batch handled");
            tracing::debug!("filtered out");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "ANSI escape in {text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "batch handled");
        assert_eq!(v["fields"]["stage"], "approval");
        assert_eq!(v["span"]["requestId"], "req-1");
        assert!(v.get("timestamp").is_none(), "{v}");
    }
}
