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
    /// The run was cut short by a reload or shutdown before it could say anything (a
    /// backend sync's round is let finish, and ends early when told to stop): the engine
    /// counts it neither as a pass nor as a failure.
    pub cancelled: bool,
}

impl Outcome {
    pub fn ok(detail: impl Into<String>) -> Self {
        Outcome {
            ok: true,
            detail: detail.into(),
            cancelled: false,
        }
    }
    pub fn fail(detail: impl Into<String>) -> Self {
        Outcome {
            ok: false,
            detail: detail.into(),
            cancelled: false,
        }
    }
    /// A run cut short by a reload or shutdown: not counted (see the `cancelled` field).
    pub fn cancelled(detail: impl Into<String>) -> Self {
        Outcome {
            ok: false,
            detail: detail.into(),
            cancelled: true,
        }
    }
}

/// How long before the rule's `timeout` a probe that ends itself stops, so that its own
/// account of what it was waiting for is the one reported: a tenth of it, at most 100 ms.
pub(crate) fn own_deadline(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_millis(100)))
}

/// Looks in progress on blocking threads: each with its path, an id and when it started.
static LOOKING: std::sync::Mutex<Vec<(std::path::PathBuf, u64, std::time::Instant)>> =
    std::sync::Mutex::new(Vec::new());
/// Ids for [`LOOKING`].
static LOOK_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// A look at a path that has not returned after this long is taken as hung. Reading a pidfile,
/// stat(2) of a flag or a scan of /proc takes far less, even on a loaded machine.
pub(crate) const LOOK_HUNG_AFTER: Duration = Duration::from_secs(2);

/// Run `look` (file system calls about `path`, which may block: a hung NFS or FUSE mount) on
/// a blocking thread. The rule's timeout abandons the wait but cannot stop the thread, so
/// while a look at the same path has been in progress for [`LOOK_HUNG_AFTER`] (the file
/// system is hung), the probe fails at once saying so, instead of stacking up threads until
/// the runtime's blocking pool (which name resolution shares) is exhausted. Looks that are
/// merely at the same time (several rules on one path) run side by side.
pub(crate) async fn look_at(
    path: &std::path::Path,
    look: impl FnOnce() -> Outcome + Send + 'static,
) -> Outcome {
    let id = LOOK_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    {
        let mut busy = LOOKING.lock().unwrap_or_else(|e| e.into_inner());
        let hung = busy
            .iter()
            .filter(|(p, _, since)| p == path && since.elapsed() >= LOOK_HUNG_AFTER)
            .map(|(_, _, since)| since.elapsed())
            .max();
        if let Some(for_how_long) = hung {
            return Outcome::fail(format!(
                "an earlier look at {} has not returned for {} (a hung file system?); not starting another",
                path.display(),
                humantime::format_duration(Duration::from_secs(for_how_long.as_secs()))
            ));
        }
        busy.push((path.to_owned(), id, std::time::Instant::now()));
    }
    /// Takes the look off the list when it returns (or its thread unwinds).
    struct Returned(u64);
    impl Drop for Returned {
        fn drop(&mut self) {
            LOOKING
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(_, id, _)| *id != self.0);
        }
    }
    let returned = Returned(id);
    match tokio::task::spawn_blocking(move || {
        let _returned = returned;
        look()
    })
    .await
    {
        Ok(o) => o,
        Err(e) => Outcome::fail(format!("the look at {} stopped: {e}", path.display())),
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
            .user_agent(http::USER_AGENT)
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
        CheckSpec::Http(h) => http::probe(client, h, None).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_that_blocks_on_the_file_system_does_not_stack_up_threads() {
        let path = std::path::Path::new("/hung/nfs/flag");
        // The rule's timeout gives up on a look that blocks for 3 s.
        let first = tokio::time::timeout(
            Duration::from_millis(50),
            look_at(path, || {
                std::thread::sleep(Duration::from_secs(3));
                Outcome::ok("late")
            }),
        )
        .await;
        assert!(first.is_err());
        // Past LOOK_HUNG_AFTER, the next cycle fails at once, without a thread.
        tokio::time::sleep(LOOK_HUNG_AFTER).await;
        let started = std::time::Instant::now();
        let second = look_at(path, || Outcome::ok("should not run")).await;
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(
            !second.ok
                && second
                    .detail
                    .starts_with("an earlier look at /hung/nfs/flag has not returned for 2s"),
            "{second:?}"
        );
        // Another path is not held up.
        assert!(
            look_at(std::path::Path::new("/other"), || Outcome::ok("ok"))
                .await
                .ok
        );
        // Once it returns, looking works again.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            look_at(path, || Outcome::ok("back")).await,
            Outcome::ok("back")
        );
    }

    #[tokio::test]
    async fn rules_looking_at_the_same_path_do_not_fail_each_other() {
        let path = std::path::Path::new("/run/shared.pid");
        let slow = || {
            std::thread::sleep(Duration::from_millis(200));
            Outcome::ok("seen")
        };
        let (a, b, c) = tokio::join!(
            look_at(path, slow),
            look_at(path, slow),
            look_at(path, slow)
        );
        assert_eq!((a.ok, b.ok, c.ok), (true, true, true), "{a:?} {b:?} {c:?}");
    }
}
