//! Logs and metrics. Logs are structured events with fixed field names (`event`, `rule`,
//! `action`, `eip`, ...) and event names declared in [`events`], so tests, the demo and log
//! pipelines can read them; [`metrics`] declares every Prometheus family. Nothing here ever
//! formats a credential.

pub mod events;
pub mod metrics;

/// An error and every cause under it, joined with ": " (what anyhow prints for `{:#}`), so a
/// message never stops at a bare "builder error". A cause whose text the previous one
/// already ends with is not repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Log to stderr (the journal under systemd). `filter` is a `RUST_LOG`-style directive;
/// `RUST_LOG` itself wins when set.
pub fn init_logging(format: LogFormat, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Plain => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("haproxy-watchdog: logging already initialised: {e}");
    }
}
