//! Logs and counters. Logs are structured events with fixed field names (`event`, `rule`,
//! `action`, `eip`, ...) so tests, the demo and log pipelines can read them; counters are
//! process-wide and named like Prometheus series. Nothing here ever formats a credential.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

static COUNTERS: LazyLock<Mutex<BTreeMap<String, u64>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// `incr("claims_refused_total", &[("reason", "egress_timeout")])`.
pub fn incr(name: &str, labels: &[(&str, &str)]) {
    incr_by(name, labels, 1)
}

/// Add `n` to a counter (0 creates it, so the series shows up before it first moves).
pub fn incr_by(name: &str, labels: &[(&str, &str)], n: u64) {
    let key = if labels.is_empty() {
        name.to_owned()
    } else {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "'")))
            .collect();
        format!("{name}{{{}}}", l.join(","))
    };
    let mut c = COUNTERS.lock().unwrap_or_else(|p| p.into_inner());
    *c.entry(key).or_default() += n;
}

/// Every counter and its value, sorted by series name.
pub fn snapshot() -> Vec<(String, u64)> {
    let c = COUNTERS.lock().unwrap_or_else(|p| p.into_inner());
    c.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

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
