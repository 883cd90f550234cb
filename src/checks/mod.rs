//! Probes: they look, they never change anything. Each returns an [`Outcome`]; deciding what
//! a run of outcomes means is the engine's job.

pub mod checkip;
pub mod file;
pub mod haproxy;
pub mod http;
pub mod process;
pub mod program;
pub mod reach;
pub mod tcp;

use crate::config::CheckSpec;
use crate::telemetry::events;
use std::time::Duration;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// What was seen, for logs and the summary: `HTTP 200`, `connection refused`, ...
    pub detail: String,
}

impl Outcome {
    pub fn ok(detail: impl Into<String>) -> Self {
        Outcome {
            ok: true,
            detail: detail.into(),
        }
    }
    pub fn fail(detail: impl Into<String>) -> Self {
        Outcome {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The HTTP client every probe shares: no redirects (a 301 is judged by its status), no proxy
/// (a check of the Elastic IP or of our own egress must not go through someone else's path).
///
/// `needs_tls`: some URL of the configuration is `https` ([`Config::needs_tls`]). HTTPS
/// certificates are checked against the machine's CA store (Debian's and RHEL's
/// `ca-certificates`, found through rustls-platform-verifier). Without it the usual client
/// cannot be built; a configuration that needs no TLS then gets a client that trusts no
/// certificate at all, so a missing CA store only stops the configurations that need it.
///
/// Errors: the builder's, whose source chain names the cause (print it with
/// [`crate::telemetry::chain`]).
///
/// [`Config::needs_tls`]: crate::config::Config::needs_tls
pub fn http_client(needs_tls: bool) -> reqwest::Result<reqwest::Client> {
    let builder = || {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .user_agent(concat!("haproxy-watchdog/", env!("CARGO_PKG_VERSION")))
    };
    match builder().build() {
        Ok(c) => Ok(c),
        Err(e) if !needs_tls => {
            tracing::debug!(event = events::TLS_ROOTS_UNAVAILABLE, error = %crate::telemetry::chain(&e),
                "no HTTPS URL is configured; HTTP checks go on without a CA store");
            builder().tls_certs_only(Vec::new()).build()
        }
        Err(e) => Err(e),
    }
}

/// Run one check. The engine bounds it with the rule's timeout.
pub async fn run(spec: &CheckSpec, client: &reqwest::Client) -> Outcome {
    match spec {
        CheckSpec::Http(h) => http::probe(client, h).await,
        CheckSpec::Haproxy(h) => haproxy::probe(h, client).await,
        CheckSpec::Egress(e) => egress(client, e).await,
        CheckSpec::Tcp(t) => tcp::probe(t).await,
        CheckSpec::Program(p) => program::probe(p).await,
        CheckSpec::Process(p) => process::probe(p).await,
        CheckSpec::File(f) => file::probe(f).await,
        // Not a check: a backend sync changes HAProxy and keeps state between rounds, so it is
        // never run twice (the engine gives a claim no last look on it) nor from here; the
        // daemon builds it as its own probe (daemon::probe).
        CheckSpec::BackendSync(_) => {
            Outcome::fail("a backend sync is not a check that can be run again")
        }
    }
}

/// `type = "egress"`: does this node's traffic leave from the expected address?
pub async fn egress(client: &reqwest::Client, spec: &crate::config::EgressCheckSpec) -> Outcome {
    // The rule's timeout bounds the whole probe; this inner one only has to be longer.
    match checkip::egress_ip(client, &spec.checkip_url, Duration::from_secs(300)).await {
        Ok(ip) if ip == spec.expect => Outcome::ok(format!("egress is {ip}")),
        Ok(ip) => Outcome::fail(format!("egress is {ip}, not {}", spec.expect)),
        Err(e) => Outcome::fail(e.to_string()),
    }
}

/// Describe a reqwest error by its cause, without the URL's query string or credentials.
pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut cause = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else if e.is_request() {
        "request failed"
    } else {
        "error"
    };
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

/// Read at most `limit` bytes of a response body.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// Printable, bounded excerpt of something a remote end sent.
pub(crate) fn excerpt(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s.chars().take(max).flat_map(char::escape_debug).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}
