//! Logs as the Lambda runtime expects them: one JSON object a line on stdout, no ANSI colours,
//! no timestamp (CloudWatch stamps every line), the invocation's span (request id, X-Ray trace)
//! on each event. The level comes from Lambda's advanced logging controls
//! (`AWS_LAMBDA_LOG_LEVEL`), else `INFO`; `RUST_LOG` directives refine it per target.

use std::sync::Once;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

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

/// Installs the JSON subscriber, once per process; later calls (and a subscriber already set by
/// someone else) change nothing.
pub fn init() {
    INIT.call_once(|| {
        let lambda_level = std::env::var(LAMBDA_LOG_LEVEL).ok();
        let rust_log = std::env::var(RUST_LOG).ok();
        // An error means a global subscriber exists already: keep it.
        let _ = tracing_subscriber::fmt()
            .json()
            .with_ansi(false)
            .without_time()
            .with_target(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter(lambda_level.as_deref(), rust_log.as_deref()))
            .try_init();
    });
}

#[cfg(test)]
mod tests {
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
        let f = filter(Some("WARN"), Some("patchflow_pipeline=debug"));
        let text = f.to_string();
        assert!(text.contains("patchflow_pipeline=debug") && text.contains("warn"), "{text}");
        let f = filter(None, Some("[[[not a directive"));
        assert!(f.to_string().contains("info"), "{f}");
    }

    #[test]
    fn init_twice_is_harmless() {
        init();
        init();
        tracing::info!("logged once the subscriber is set");
    }
}
