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

/// A log filter that does not parse (tracing-subscriber's `EnvFilter` directive syntax).
#[derive(Debug, thiserror::Error)]
#[error("{source_name} {value:?} is not a log filter: {detail} (e.g. `info`, `debug`, `warn,haproxy_watchdog=debug`)")]
pub struct BadLogFilter {
    /// `RUST_LOG` or `--log-level`, whichever was used.
    pub source_name: &'static str,
    pub value: String,
    pub detail: String,
}

/// The filter to log with: `RUST_LOG` when set, else `flag` (`--log-level`). Either one that
/// does not parse is an error, never quietly replaced by another level.
pub fn log_filter(
    rust_log: Option<&str>,
    flag: &str,
) -> Result<tracing_subscriber::EnvFilter, BadLogFilter> {
    let (source_name, value) = match rust_log {
        Some(v) => ("RUST_LOG", v),
        None => ("--log-level", flag),
    };
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map_err(|e| BadLogFilter {
            source_name,
            value: value.to_owned(),
            detail: e.to_string(),
        })?;
    // rustls-platform-verifier logs every certificate it refuses at ERROR level, without our
    // `event` field; the check that made the connection reports the same refusal as its own
    // `check_failed`. Silenced unless the filter names the crate.
    Ok(if value.contains(QUIET_LIBRARY) {
        filter
    } else {
        filter.add_directive(format!("{QUIET_LIBRARY}=off").parse().map_err(
            |e: tracing_subscriber::filter::ParseError| BadLogFilter {
                source_name,
                value: value.to_owned(),
                detail: e.to_string(),
            },
        )?)
    })
}

/// A library whose log lines repeat what a check reports (see [`log_filter`]).
const QUIET_LIBRARY: &str = "rustls_platform_verifier";

/// Log to stderr (the journal under systemd) through `filter` ([`log_filter`]).
pub fn init_logging(format: LogFormat, filter: tracing_subscriber::EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Plain => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // A line from a library carries no `event`; its `target` (the module that logged it)
        // says where it came from.
        LogFormat::Json => builder
            .with_target(true)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("haproxy-watchdog: logging already initialised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    /// Breaker's find: a certificate the platform verifier refused logged an ERROR line with
    /// no `event` field beside the check's own `check_failed`.
    #[test]
    fn a_librarys_duplicate_error_lines_are_silenced_unless_asked_for() {
        let f = log_filter(None, "info").unwrap().to_string();
        assert!(f.contains("rustls_platform_verifier=off"), "{f}");
        let f = log_filter(None, "info,rustls_platform_verifier=debug")
            .unwrap()
            .to_string();
        assert!(!f.contains("rustls_platform_verifier=off"), "{f}");
    }

    /// A tester's find: `--log-level 'bogus[[['` ran at the default level without a word.
    #[test]
    fn a_log_filter_that_does_not_parse_is_an_error_whoever_gave_it() {
        assert!(log_filter(None, "info").is_ok());
        assert!(log_filter(None, "warn,haproxy_watchdog=debug").is_ok());
        let e = log_filter(None, "bogus[[[").expect_err("flag");
        assert!(
            e.to_string()
                .starts_with("--log-level \"bogus[[[\" is not a log filter"),
            "{e}"
        );
        let e = log_filter(Some("debug[["), "info").expect_err("RUST_LOG wins and is checked");
        assert!(
            e.to_string()
                .starts_with("RUST_LOG \"debug[[\" is not a log filter"),
            "{e}"
        );
        assert!(
            log_filter(Some("debug"), "bogus[[[").is_ok(),
            "RUST_LOG wins"
        );
    }
}
