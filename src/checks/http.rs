//! `type = "http"`: one request on a connection of its own; pass when the status is in the
//! expected set and, if asked, the body contains the expected text.
//!
//! By default every check opens a new connection and closes it (`Connection: close`, RFC 9112
//! §9.6): a connection kept from an earlier check would go on passing after the listener
//! stopped accepting new ones, which is what the clients of the address see. A rule may ask
//! for one to be kept (`keep_alive`, [`KeptConnection`]), for at most that long after it was
//! opened: the field's answer to the same trade-off (pingora's `reuse_connection`, HAProxy's
//! `check-reuse-pool`), bounded so that a listener that stopped accepting is seen within it.
//! A check that fails never keeps its connection, and a kept connection that fails before an
//! answer begins is replaced within the check.
//!
//! A plain `http` URL without credentials, the daemon's most frequent call, is requested
//! through hyper's HTTP/1 connection API (`hyper::client::conn::http1`) on the rule's own
//! task: no connection pool, no connection task of its own, no proxy lookup. `https` and URLs
//! with credentials (Basic authentication) go through the configuration's reqwest client.
//! Both send the same request and judge the answer the same way; neither follows redirects.

use super::{describe_reqwest, read_capped, Outcome};
use crate::config::HttpCheckSpec;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// How much of a body `body_contains` looks at, in bytes (`validate` refuses a longer text).
pub const BODY_LIMIT: usize = 256 * 1024;
/// How long connecting may take, all of a name's addresses together (the reqwest client's
/// `connect_timeout`, which https checks use), shared between them by
/// [`super::tcp::connect_any`]; the rule's `timeout` bounds the whole check.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The `User-Agent` of every request the daemon makes.
pub const USER_AGENT: &str = concat!("haproxy-watchdog/", env!("CARGO_PKG_VERSION"));

/// A rule's connection kept between its checks (`keep_alive`), and when it was opened. Only
/// its own rule's task uses it; the mutex is never held across an await.
///
/// After a failed check (and at start-up), the next `recover_after` checks that pass must
/// each have opened a connection of their own before one is kept: a rule recovers on new
/// connections, never on one a listener that stopped accepting let through.
pub struct KeptConnection {
    recover_after: u32,
    inner: std::sync::Mutex<Kept>,
}

struct Kept {
    conn: Option<(tokio::net::TcpStream, Instant)>,
    /// An expired connection still held: from its renewal until a check passes. The rule's
    /// connection holds one of the frontend's `maxconn` slots; held across the renewal and
    /// the failures after it, a frontend with no slot left for a new client fails every
    /// check until one is free with the rule's slot still taken, as the clients see it.
    /// Let go first, the new connections would take the slot it frees (breakers 10, 11).
    held: Option<tokio::net::TcpStream>,
    /// Checks on new connections still to pass before a connection is kept.
    fresh_to_pass: u32,
}

impl KeptConnection {
    /// For a rule with this `recover_after`.
    pub fn new(recover_after: u32) -> Self {
        KeptConnection {
            recover_after,
            inner: std::sync::Mutex::new(Kept {
                conn: None,
                held: None,
                fresh_to_pass: recover_after,
            }),
        }
    }

    /// The kept connection, if it is younger than `max_age` and the server has neither
    /// closed it nor sent bytes nobody asked for. One older is held (`Kept::held`) until a
    /// check passes; one the server closed is dropped, and so is a held one it closed.
    fn take(&self, max_age: Duration) -> Option<(tokio::net::TcpStream, Instant)> {
        let mut k = self.inner.lock().ok()?;
        if k.held.as_ref().is_some_and(|h| !open(h)) {
            k.held = None;
        }
        let (stream, opened) = k.conn.take()?;
        if !open(&stream) {
            return None;
        }
        if opened.elapsed() < max_age {
            return Some((stream, opened));
        }
        k.held = Some(stream);
        None
    }

    /// A check that never settled (the engine's timeout cut it): a failure. (Its connection
    /// went with it: [`KeptConnection::take`] hands it to the check.)
    fn cut(&self) {
        if let Ok(mut k) = self.inner.lock() {
            k.fresh_to_pass = self.recover_after;
        }
    }

    /// Whether an expired connection is still held (tests).
    #[cfg(test)]
    fn holds(&self) -> bool {
        self.inner.lock().is_ok_and(|k| k.held.is_some())
    }

    /// What a check ended with: its outcome, whether it ran on a connection it opened, and
    /// the connection if it may serve the next checks.
    fn settle(
        &self,
        outcome: &Outcome,
        fresh: bool,
        back: Option<(tokio::net::TcpStream, Instant)>,
    ) {
        let Ok(mut k) = self.inner.lock() else {
            return;
        };
        if !outcome.ok {
            k.fresh_to_pass = self.recover_after;
            return;
        }
        k.held = None;
        if fresh && k.fresh_to_pass > 0 {
            k.fresh_to_pass -= 1;
        }
        if k.fresh_to_pass == 0 {
            k.conn = back;
        }
    }
}

/// Whether the server has neither closed `stream` nor sent bytes nobody asked for, seen
/// without a system call: tokio knows from epoll whether the socket became readable since
/// the last read. Closed: HAProxy's `timeout http-keep-alive`, a reload's old process leaving.
fn open(stream: &tokio::net::TcpStream) -> bool {
    matches!(stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A kept check not yet settled: dropped so (the engine's timeout cut the check), it counts
/// as the failure it is, and the rule's next passing checks open their own connections.
struct Unsettled<'a>(Option<&'a KeptConnection>);

impl Unsettled<'_> {
    fn settle(
        mut self,
        outcome: &Outcome,
        fresh: bool,
        back: Option<(tokio::net::TcpStream, Instant)>,
    ) {
        if let Some(k) = self.0.take() {
            k.settle(outcome, fresh, back);
        }
    }
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.0 {
            k.cut();
        }
    }
}

/// One check. `kept`: the rule's kept connection, which a check with `keep_alive` needs
/// (without one, it opens a connection each time).
pub async fn probe(
    client: &reqwest::Client,
    spec: &HttpCheckSpec,
    kept: Option<&KeptConnection>,
) -> Outcome {
    let url = &spec.url;
    if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
        // Boxed: the reqwest client's future would make every rule's task larger.
        return Box::pin(through_reqwest(client, spec)).await;
    }
    let (Some(max_age), Some(kept)) = (spec.keep_alive, kept) else {
        return match plain(spec, false).await {
            Ok((outcome, _)) => outcome,
            Err(e) => Outcome::fail(e),
        };
    };
    let unsettled = Unsettled(Some(kept));
    // A kept connection first. When it fails before an answer began (the server closed it as
    // the request went out), a new connection decides the check: a connection the server let
    // go never fails a check that a new one passes. An answer on it is judged as any other.
    // An expired one is renewed make-before-break (`Kept::held`).
    if let Some((stream, opened)) = kept.take(max_age) {
        if let Ok((mut outcome, back)) = exchange(spec, stream, true).await {
            outcome.detail.push_str(" (kept connection)");
            unsettled.settle(&outcome, false, back.map(|s| (s, opened)));
            return outcome;
        }
    }
    let (outcome, back) = match plain(spec, true).await {
        Ok((outcome, back)) => (outcome, back.map(|s| (s, Instant::now()))),
        Err(e) => (Outcome::fail(e), None),
    };
    unsettled.settle(&outcome, true, back);
    outcome
}

/// Through the reqwest client: TLS, credentials.
async fn through_reqwest(client: &reqwest::Client, spec: &HttpCheckSpec) -> Outcome {
    let mut req = client
        .request(spec.method.clone(), spec.url.clone())
        .header(header::CONNECTION, "close");
    if defines_content(&spec.method) {
        req = req.header(header::CONTENT_LENGTH, "0");
    }
    if let Some(host) = &spec.host {
        req = req.header(header::HOST, host);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(describe_reqwest(&e)),
    };
    let status = resp.status().as_u16();
    if let Some(failed) = failed_status(spec, status) {
        return failed;
    }
    let Some(needle) = &spec.body_contains else {
        return Outcome::ok(format!("HTTP {status}"));
    };
    judge_body(
        status,
        needle,
        read_capped(resp, BODY_LIMIT)
            .await
            .map_err(|e| describe_reqwest(&e)),
    )
}

/// Through hyper's HTTP/1 connection API, on this task, on a new connection. `keep`: ask for
/// the connection back. Err: the failure's detail.
async fn plain(
    spec: &HttpCheckSpec,
    keep: bool,
) -> Result<(Outcome, Option<tokio::net::TcpStream>), String> {
    let url = &spec.url;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    // Within the rule's timeout: a budget longer than it would give the first address of a
    // name (a dead one) the whole check, and the next never its turn.
    let stream = connect(host, port, CONNECT_TIMEOUT.min(spec.timeout)).await?;
    // Closed with a reset once the answer is read, as HAProxy closes its own health checks
    // (its checks.c: else "we end up with many TIME_WAITs and eat all the source port range
    // quickly"): at 1,000 checks a second a FIN close leaves 60,000 sockets in TIME_WAIT on
    // the checked host. The answer is complete when the check returns, so nothing is lost.
    stream
        .set_zero_linger()
        .map_err(|e| format!("cannot connect: setting SO_LINGER: {e}"))?;
    exchange(spec, stream, keep).await
}

/// One request and its answer on `stream`. `keep`: leave the connection open, and give it
/// back when it may carry the next check: the answer passed, was read to its end, and
/// neither side asked to close. Err: the request failed before an answer began (on a
/// kept connection, the server may have closed it as the request went out).
async fn exchange(
    spec: &HttpCheckSpec,
    stream: tokio::net::TcpStream,
    keep: bool,
) -> Result<(Outcome, Option<tokio::net::TcpStream>), String> {
    let url = &spec.url;
    let host = url.host_str().unwrap_or_default();
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        hyper_util::rt::TokioIo::new(Abortive(stream)),
    )
    .await
    .map_err(|e| describe_hyper("request failed", &e))?;

    // The origin form (RFC 9112 §3.2.1); Host as reqwest writes it, port only when not 80.
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match (&spec.host, url.port()) {
        (Some(h), _) => h.clone(),
        (None, Some(p)) => format!("{host}:{p}"),
        (None, None) => host.to_owned(),
    };
    let mut req = hyper::Request::builder()
        .method(spec.method.clone())
        .uri(target)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*");
    if !keep {
        req = req.header(header::CONNECTION, "close");
    }
    if defines_content(&spec.method) {
        req = req.header(header::CONTENT_LENGTH, "0");
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("request failed: {e}"))?;

    // The connection's I/O runs in `conn`, polled here beside the request and the body.
    let mut conn = conn;
    let mut conn_ended = false;
    let mut sent = std::pin::pin!(sender.send_request(req));
    // The connection may end with an error in the same poll that handed the answer over
    // (bytes after the answer: "received unexpected message"): its error is kept, and the
    // request's own result decides. It names the cause when the request failed too.
    let mut conn_error: Option<hyper::Error> = None;
    let resp = loop {
        tokio::select! {
            biased;
            r = &mut sent => break r.map_err(|e| {
                describe_hyper("request failed", conn_error.as_ref().unwrap_or(&e))
            })?,
            c = &mut conn, if !conn_ended => {
                conn_ended = true;
                conn_error = c.err();
            }
        }
    };
    let status = resp.status().as_u16();
    if let Some(failed) = failed_status(spec, status) {
        return Ok((failed, None));
    }
    // Kept only if both sides mean to (RFC 9112 §9.3): HTTP/1.1 and no `Connection: close`.
    let keep = keep
        && resp.version() == hyper::Version::HTTP_11
        && !resp.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().map_or(true, |v| {
                v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
            })
        });
    let mut body = resp.into_body();
    // The outcome: the status alone, or the body read until the text arrives.
    let outcome = match spec.body_contains.as_deref() {
        None => Outcome::ok(format!("HTTP {status}")),
        Some(needle) => {
            let mut got = Vec::new();
            let read = loop {
                let frame = tokio::select! {
                    biased;
                    f = body.frame() => f,
                    c = &mut conn, if !conn_ended => {
                        // What it read of the body is still delivered; the body then ends
                        // or fails, and its error is the connection's when there was one.
                        conn_ended = true;
                        conn_error = c.err();
                        continue;
                    }
                };
                match frame {
                    None => break Ok(got),
                    Some(Err(e)) => {
                        break Err(describe_hyper(
                            "bad response body",
                            conn_error.as_ref().unwrap_or(&e),
                        ))
                    }
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            // The text may straddle this frame and the last: look from a
                            // needle's length back. Found: judged now, the rest of the body
                            // not awaited.
                            let from = got.len().saturating_sub(needle.len());
                            let room = BODY_LIMIT.saturating_sub(got.len());
                            got.extend_from_slice(&data[..data.len().min(room)]);
                            if got.len() >= BODY_LIMIT || contains(&got[from..], needle.as_bytes())
                            {
                                break Ok(got);
                            }
                        }
                    }
                }
            };
            judge_body(status, needle, read)
        }
    };
    if !(keep && outcome.ok && !conn_ended) {
        return Ok((outcome, None));
    }
    // The check is decided. The connection is kept only if the rest of the answer has
    // already arrived: waiting for a slow or large body would make a check that passed
    // depend on it (and cost more than a new connection).
    if !rest_arrived(&mut body, &mut conn).await {
        return Ok((outcome, None));
    }
    // hyper has read the whole answer; anything it holds beyond it was not asked for.
    drop(sender);
    let parts = conn.into_parts();
    let back = parts.read_buf.is_empty().then(|| parts.io.into_inner().0);
    Ok((outcome, back))
}

/// How much of a body's rest a check reads to keep its connection; a longer rest is not kept.
const KEEP_REST_LIMIT: usize = 64 * 1024;

/// Whether the rest of `body` has already arrived (at most [`KEEP_REST_LIMIT`] bytes, each
/// read without waiting) and ended cleanly. False as soon as anything would have to be
/// waited for, or the connection ended or failed meanwhile: the connection is then dropped.
async fn rest_arrived<C>(body: &mut hyper::body::Incoming, conn: &mut C) -> bool
where
    C: std::future::Future<Output = Result<(), hyper::Error>> + Unpin,
{
    use hyper::body::Body as _;
    use std::pin::Pin;
    use std::task::Poll;
    let mut left = KEEP_REST_LIMIT;
    std::future::poll_fn(|cx| {
        // The body's frames come from the connection, which reads them when asked: a frame
        // not ready is asked for, the connection polled once, and the frame asked again.
        let mut polled_conn = false;
        loop {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(None) => return Poll::Ready(true),
                Poll::Ready(Some(Err(_))) => return Poll::Ready(false),
                Poll::Ready(Some(Ok(f))) => {
                    let n = f.data_ref().map_or(0, |d| d.len());
                    if n > left {
                        return Poll::Ready(false);
                    }
                    left -= n;
                    polled_conn = false;
                }
                Poll::Pending if polled_conn => return Poll::Ready(false),
                Poll::Pending => {
                    if Pin::new(&mut *conn).poll(cx).is_ready() {
                        // Ended or failed: nothing to keep.
                        return Poll::Ready(false);
                    }
                    polled_conn = true;
                }
            }
        }
    })
    .await
}

/// A check's connection as hyper drives it, with `shutdown` left out: hyper half-closes a
/// `Connection: close` exchange before dropping it, a system call and a FIN the reset close
/// (`SO_LINGER` 0) that follows makes moot.
struct Abortive(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Abortive {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Abortive {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A connection to the first address of `host` that accepts one within its share of
/// `budget`, in order. `host` is the URL's: an IPv4 address, an IPv6 address in brackets, or
/// a name resolved now. Err: why, worded as reqwest words it.
async fn connect(host: &str, port: u16, budget: Duration) -> Result<tokio::net::TcpStream, String> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot connect: cannot resolve {host}: {e}"))?
            .collect(),
    };
    let mut tried = Vec::new();
    let deadline = tokio::time::Instant::now() + budget;
    if let Some((s, _)) = super::tcp::connect_any(&addrs, deadline, &mut tried).await {
        return Ok(s);
    }
    match (addrs.as_slice(), tried.as_slice()) {
        ([], _) => Err(format!("cannot connect: {host} resolves to no address")),
        // One address: the cause alone, as reqwest says it.
        ([addr], [one]) => Err(format!(
            "cannot connect: {}",
            one.get(addr.to_string().len() + 2..).unwrap_or(one)
        )),
        _ => Err(format!("cannot connect: {}", tried.join("; "))),
    }
}

/// Whether `method` gives a request's content a meaning (POST, PUT, PATCH): its empty body is
/// then announced with `Content-Length: 0`, as RFC 9110 §8.6 says a client should.
fn defines_content(method: &reqwest::Method) -> bool {
    [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ]
    .contains(method)
}

/// Some(failure) when `status` is not one the check accepts.
fn failed_status(spec: &HttpCheckSpec, status: u16) -> Option<Outcome> {
    (!spec.expect_status.contains(status))
        .then(|| Outcome::fail(format!("HTTP {status}, expected {}", spec.expect_status)))
}

/// The outcome of a check with `body_contains`, given the body read (or why it could not be).
fn judge_body(status: u16, needle: &str, body: Result<Vec<u8>, String>) -> Outcome {
    match body {
        Ok(body) if contains(&body, needle.as_bytes()) => {
            Outcome::ok(format!("HTTP {status}, body matched"))
        }
        Ok(_) => Outcome::fail(format!("HTTP {status}, body lacks {needle:?}")),
        Err(e) => Outcome::fail(format!("HTTP {status}, {e}")),
    }
}

/// `kind: cause`, the cause being the innermost error (as [`describe_reqwest`] words it):
/// "request failed: connection closed before message completed".
fn describe_hyper(kind: &str, e: &hyper::Error) -> String {
    let mut cause = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    format!("{kind}: {cause}")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StatusSet;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn spec(url: &str) -> HttpCheckSpec {
        HttpCheckSpec {
            url: reqwest::Url::parse(url).unwrap(),
            method: reqwest::Method::GET,
            expect_status: StatusSet::default_ok(),
            body_contains: None,
            host: None,
            timeout: Duration::from_secs(5),
            keep_alive: None,
        }
    }

    /// How a client left a connection after its answer.
    #[derive(Debug, PartialEq)]
    enum Close {
        /// A FIN: the read saw the end of the stream.
        Fin,
        /// A reset (`SO_LINGER` 0).
        Reset,
        /// Still open 2 s later.
        Open,
    }

    /// Reads a request's head (through its blank line) from `c`.
    async fn read_head(c: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let got = c.read(&mut buf).await.unwrap();
            assert!(got > 0, "closed mid-request");
            req.extend_from_slice(&buf[..got]);
        }
        req
    }

    /// Accepts `n` connections; for each, the request it read and how the client closed its
    /// end after the answer.
    async fn answer(listener: tokio::net::TcpListener, n: usize) -> Vec<(String, Close)> {
        let mut seen = Vec::new();
        for _ in 0..n {
            let (mut c, _) = listener.accept().await.unwrap();
            let req = read_head(&mut c).await;
            let mut buf = [0u8; 1024];
            c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                .await
                .unwrap();
            let closed = match tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await
            {
                Ok(Ok(0)) => Close::Fin,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Close::Reset,
                _ => Close::Open,
            };
            seen.push((String::from_utf8_lossy(&req).into_owned(), closed));
        }
        seen
    }

    #[tokio::test]
    async fn every_http_check_opens_a_connection_of_its_own_and_closes_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(answer(listener, 3));
        let client = crate::checks::http_client(false).unwrap();
        let plain = spec(&format!("http://127.0.0.1:{port}/health?full=1"));
        let mut matched = plain.clone();
        matched.body_contains = Some("ell".into());
        // Credentials go through reqwest, which sends them as Basic authentication.
        let creds = spec(&format!("http://user:pw@127.0.0.1:{port}/"));
        for (s, detail) in [
            (&plain, "HTTP 200"),
            (&matched, "HTTP 200, body matched"),
            (&creds, "HTTP 200"),
        ] {
            let o = probe(&client, s, None).await;
            assert_eq!((o.ok, o.detail.as_str()), (true, detail));
        }
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3, "one connection per check");
        // The plain client resets its connection (as HAProxy's checks do); reqwest's FIN is
        // its own affair.
        assert_eq!(seen[0].1, Close::Reset, "{}", seen[0].0);
        assert_eq!(seen[1].1, Close::Reset, "{}", seen[1].0);
        for (req, closed) in &seen {
            assert_ne!(
                closed,
                &Close::Open,
                "the check left its connection open: {req}"
            );
            assert!(req.contains("connection: close\r\n"), "{req}");
            assert!(
                req.contains(&format!("host: 127.0.0.1:{port}\r\n")),
                "{req}"
            );
            assert!(req.contains("user-agent: haproxy-watchdog/"), "{req}");
        }
        assert!(
            seen[0].0.starts_with("GET /health?full=1 HTTP/1.1\r\n"),
            "{}",
            seen[0].0
        );
        assert!(
            seen[2].0.contains("authorization: Basic dXNlcjpwdw==\r\n"),
            "{}",
            seen[2].0
        );
    }

    /// Sockets of local port `port` in TIME_WAIT (state 06 of /proc/net/tcp).
    fn time_waits(port: u16) -> usize {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let local = format!(":{port:04X} ");
        table
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && format!("{} ", f[1]).ends_with(&local) && f[3] == "06"
            })
            .count()
    }

    #[tokio::test]
    async fn a_plain_check_leaves_no_time_wait_behind_on_the_checked_host() {
        // The checked server closes first after its answer, as HAProxy does on
        // `Connection: close`: with a FIN close by the client, each check would leave the
        // server's socket in TIME_WAIT for a minute.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for _ in 0..5 {
                let (mut c, _) = listener.accept().await.unwrap();
                read_head(&mut c).await;
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .await
                    .unwrap();
                drop(c);
            }
        });
        let client = crate::checks::http_client(false).unwrap();
        let s = spec(&format!("http://127.0.0.1:{port}/"));
        for _ in 0..5 {
            let o = probe(&client, &s, None).await;
            assert!(o.ok, "{}", o.detail);
        }
        server.await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            time_waits(port),
            0,
            "sockets left in TIME_WAIT on port {port}"
        );
    }

    /// Serves one connection: reads the request head, writes `answer`, then holds the
    /// connection open for 5 s. Returns the request head.
    async fn hold_after(listener: tokio::net::TcpListener, answer: &'static [u8]) -> String {
        let (mut c, _) = listener.accept().await.unwrap();
        let req = read_head(&mut c).await;
        let mut buf = [0u8; 1024];
        c.write_all(answer).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
        String::from_utf8_lossy(&req).into_owned()
    }

    #[tokio::test]
    async fn a_body_check_passes_as_soon_as_the_text_arrives() {
        // 1,000 bytes announced, the text among the first sent, the rest never comes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(hold_after(
            listener,
            b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nall is NEE",
        ));
        let client = crate::checks::http_client(false).unwrap();
        let mut s = spec(&format!("http://127.0.0.1:{port}/"));
        s.body_contains = Some("NEE".into());
        let started = std::time::Instant::now();
        let o = probe(&client, &s, None).await;
        assert_eq!((o.ok, o.detail.as_str()), (true, "HTTP 200, body matched"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_request_whose_method_defines_content_says_it_has_none() {
        for (method, announced) in [
            (reqwest::Method::POST, true),
            (reqwest::Method::PUT, true),
            (reqwest::Method::GET, false),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(hold_after(
                listener,
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            ));
            let client = crate::checks::http_client(false).unwrap();
            let mut s = spec(&format!("http://127.0.0.1:{port}/"));
            s.method = method.clone();
            let o = probe(&client, &s, None).await;
            assert!(o.ok, "{method}: {}", o.detail);
            let head = server.await.unwrap();
            assert_eq!(head.contains("content-length: 0\r\n"), announced, "{head}");
        }
    }

    #[tokio::test]
    async fn a_plain_check_says_why_it_failed_as_the_reqwest_client_did() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = crate::checks::http_client(false).unwrap();
        let o = probe(&client, &spec(&format!("http://127.0.0.1:{port}/")), None).await;
        assert!(!o.ok);
        assert!(
            o.detail.starts_with("cannot connect: Connection refused"),
            "{}",
            o.detail
        );
        // Closed without an answer.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf).await;
        });
        let o = probe(&client, &spec(&format!("http://127.0.0.1:{port}/")), None).await;
        assert_eq!(
            (o.ok, o.detail.as_str()),
            (
                false,
                "request failed: connection closed before message completed"
            )
        );
    }

    #[tokio::test]
    async fn every_address_of_a_name_gets_a_share_of_the_connect_budget() {
        let (_l, _held, dead) = crate::checks::tcp::tests::black_hole().await;
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        // Both addresses behind one "name": the dead one gets half the budget, then the live
        // one its turn.
        let budget = Duration::from_millis(600);
        let addrs = [dead, live_addr];
        let mut tried = Vec::new();
        let started = tokio::time::Instant::now();
        let got = super::super::tcp::connect_any(&addrs, started + budget, &mut tried).await;
        assert!(matches!(&got, Some((_, a)) if *a == live_addr), "{tried:?}");
        assert!(started.elapsed() >= budget / 2 && started.elapsed() < budget);
        // One address that never answers: the whole budget, and the cause alone.
        let started = tokio::time::Instant::now();
        let e = connect(&dead.ip().to_string(), dead.port(), budget)
            .await
            .unwrap_err();
        assert!(started.elapsed() >= budget, "{:?}", started.elapsed());
        assert_eq!(e, "cannot connect: no answer within 600ms");
    }

    #[tokio::test]
    async fn the_connect_budget_of_a_check_is_never_longer_than_its_rules_timeout() {
        // A budget longer than the rule's timeout gave the first (dead) address of a name more
        // than the whole check, and the next address never its turn (a breaker's find: with
        // `timeout = "1s"` a name whose first address is dead failed although its second
        // answered). With the rule's 300 ms, the dead address alone gets it all.
        let (_l, _held, dead) = crate::checks::tcp::tests::black_hole().await;
        let client = crate::checks::http_client(false).unwrap();
        let mut s = spec(&format!("http://{dead}/"));
        s.timeout = Duration::from_millis(300);
        let started = tokio::time::Instant::now();
        let o = tokio::time::timeout(Duration::from_secs(2), probe(&client, &s, None))
            .await
            .expect("the check ends itself within the rule's timeout");
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            (o.ok, o.detail.as_str()),
            (false, "cannot connect: no answer within 300ms")
        );
    }

    #[tokio::test]
    async fn an_ipv6_literal_and_a_chunked_body_are_requested_and_read_as_written() {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            panic!("this machine has no IPv6 loopback");
        };
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let got = c.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..got]);
            }
            c.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        let client = crate::checks::http_client(false).unwrap();
        let mut s = spec(&format!("http://[::1]:{port}/"));
        s.body_contains = Some("llo".into());
        let o = probe(&client, &s, None).await;
        assert_eq!((o.ok, o.detail.as_str()), (true, "HTTP 200, body matched"));
        let req = server.await.unwrap();
        assert!(req.contains(&format!("host: [::1]:{port}\r\n")), "{req}");
    }

    /// A keep-alive server: each connection it accepts (counted) answers request after request
    /// with what `answer` gives for the connection's number (from 1) and the request's (from
    /// 1); None closes the connection instead. Also the request heads it read.
    struct KeepAliveServer {
        port: u16,
        accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl KeepAliveServer {
        async fn start(answer: fn(usize, usize) -> Option<&'static str>) -> Self {
            use std::sync::atomic::Ordering;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (a, h) = (accepted.clone(), heads.clone());
            let task = tokio::spawn(async move {
                loop {
                    let (mut c, _) = listener.accept().await.unwrap();
                    let conn = a.fetch_add(1, Ordering::SeqCst) + 1;
                    let h = h.clone();
                    tokio::spawn(async move {
                        for n in 1.. {
                            let mut head = Vec::new();
                            let mut buf = [0u8; 1024];
                            while !head.ends_with(b"\r\n\r\n") {
                                match c.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(got) => head.extend_from_slice(&buf[..got]),
                                }
                            }
                            h.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&head).into_owned());
                            match answer(conn, n) {
                                Some(a) => {
                                    if c.write_all(a.as_bytes()).await.is_err() {
                                        return;
                                    }
                                }
                                None => return,
                            }
                        }
                    });
                }
            });
            KeepAliveServer {
                port,
                accepted,
                heads,
                task,
            }
        }

        fn accepted(&self) -> usize {
            self.accepted.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn kept_spec(&self, keep_alive: Duration) -> HttpCheckSpec {
            let mut s = spec(&format!("http://127.0.0.1:{}/health", self.port));
            s.keep_alive = Some(keep_alive);
            s
        }
    }

    const OK_5: &str = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

    #[tokio::test]
    async fn a_kept_connection_serves_the_checks_within_keep_alive_then_is_renewed() {
        let server = KeepAliveServer::start(|_, _| Some(OK_5)).await;
        let client = crate::checks::http_client(false).unwrap();
        let s = server.kept_spec(Duration::from_millis(400));
        let kept = KeptConnection::new(1);
        for detail in [
            "HTTP 200",
            "HTTP 200 (kept connection)",
            "HTTP 200 (kept connection)",
        ] {
            let o = probe(&client, &s, Some(&kept)).await;
            assert_eq!((o.ok, o.detail.as_str()), (true, detail));
        }
        assert_eq!(
            server.accepted(),
            1,
            "three checks within keep_alive, one connection"
        );
        let heads = server.heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 3);
        assert!(
            heads
                .iter()
                .all(|h| !h.to_ascii_lowercase().contains("connection: close")),
            "{heads:?}"
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(probe(&client, &s, Some(&kept)).await.ok);
        assert_eq!(server.accepted(), 2, "renewed once keep_alive ran out");
        // Without keep_alive, the same rule's probe opens one per check and asks to close.
        let mut plain = s.clone();
        plain.keep_alive = None;
        assert!(probe(&client, &plain, Some(&kept)).await.ok);
        assert_eq!(server.accepted(), 3);
        server.task.abort();
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced_within_the_check() {
        // Each connection answers once and then closes, without saying so (HAProxy's
        // `timeout http-keep-alive`, a reload's old process leaving).
        let server = KeepAliveServer::start(|_, n| (n == 1).then_some(OK_5)).await;
        let client = crate::checks::http_client(false).unwrap();
        let s = server.kept_spec(Duration::from_secs(60));
        let kept = KeptConnection::new(1);
        for i in 1..=4 {
            let o = probe(&client, &s, Some(&kept)).await;
            assert_eq!((o.ok, o.detail.as_str()), (true, "HTTP 200"), "check {i}");
            // The close has arrived before the next check, as it would between two intervals.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.accepted(), 4);
        // Closed as the request goes out: the kept connection takes a request and ends
        // without an answer; the check is decided by a new connection.
        let server = KeepAliveServer::start(|conn, n| match (conn, n) {
            (1, 1) => Some(OK_5),
            (1, _) => None,
            _ => Some(OK_5),
        })
        .await;
        let s = server.kept_spec(Duration::from_secs(60));
        let kept = KeptConnection::new(1);
        assert!(probe(&client, &s, Some(&kept)).await.ok);
        let o = probe(&client, &s, Some(&kept)).await;
        assert_eq!((o.ok, o.detail.as_str()), (true, "HTTP 200"));
        assert_eq!(server.accepted(), 2);
    }

    #[tokio::test]
    async fn a_failed_check_or_a_server_asking_to_close_keeps_no_connection() {
        let server = KeepAliveServer::start(|conn, _| match conn {
            1 => Some("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"),
            2 => Some("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"),
            3 => Some("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"),
            _ => Some("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhello\n"),
        })
        .await;
        let client = crate::checks::http_client(false).unwrap();
        let mut s = server.kept_spec(Duration::from_secs(60));
        let kept = KeptConnection::new(1);
        let o = probe(&client, &s, Some(&kept)).await;
        assert_eq!(
            (o.ok, o.detail.as_str()),
            (false, "HTTP 503, expected 200-399")
        );
        assert!(probe(&client, &s, Some(&kept)).await.ok);
        assert!(probe(&client, &s, Some(&kept)).await.ok);
        assert!(probe(&client, &s, Some(&kept)).await.ok);
        assert_eq!(
            server.accepted(),
            4,
            "the 503, the close and the HTTP/1.0 answer kept nothing"
        );
        // A body that did not contain the text fails and keeps nothing; one that does, and
        // whose rest has arrived with it, keeps its connection.
        s.body_contains = Some("absent".into());
        let o = probe(&client, &s, Some(&kept)).await;
        assert_eq!(
            (o.ok, o.detail.as_str()),
            (false, "HTTP 200, body lacks \"absent\" (kept connection)")
        );
        assert_eq!(
            server.accepted(),
            4,
            "the fourth connection was kept for this check"
        );
        s.body_contains = Some("hello".into());
        assert!(probe(&client, &s, Some(&kept)).await.ok);
        assert_eq!(server.accepted(), 5);
        let o = probe(&client, &s, Some(&kept)).await;
        assert_eq!(
            (o.ok, o.detail.as_str()),
            (true, "HTTP 200, body matched (kept connection)")
        );
        assert_eq!(server.accepted(), 5);
    }

    /// The trade-off `keep_alive` documents: a listener that stopped accepting is seen once the
    /// kept connection is renewed, and no later.
    #[tokio::test]
    async fn a_listener_that_stops_accepting_is_seen_when_the_connection_is_renewed() {
        let server = KeepAliveServer::start(|_, _| Some(OK_5)).await;
        let client = crate::checks::http_client(false).unwrap();
        let s = server.kept_spec(Duration::from_millis(500));
        let kept = KeptConnection::new(1);
        assert!(probe(&client, &s, Some(&kept)).await.ok);
        // The listener goes; the accepted connection's task goes on answering.
        server.task.abort();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            probe(&client, &s, Some(&kept)).await.ok,
            "the kept connection still answers"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let o = probe(&client, &s, Some(&kept)).await;
        assert!(
            !o.ok && o.detail.starts_with("cannot connect"),
            "{}",
            o.detail
        );
    }

    /// Breaker 9: a kept check waited for the whole body, so a slow body (or a large one)
    /// after a passing status failed a check that passes without `keep_alive`. The outcome
    /// is the status's; the connection is kept only when the rest has already arrived.
    #[tokio::test]
    async fn a_slow_or_large_body_after_a_passing_status_is_not_waited_for() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let a = accepted.clone();
        let server = tokio::spawn(async move {
            loop {
                let (mut c, _) = listener.accept().await.unwrap();
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    read_head(&mut c).await;
                    let _ = c
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
                        .await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let _ = c.write_all(b"hello").await;
                });
            }
        });
        let client = crate::checks::http_client(false).unwrap();
        let mut s = spec(&format!("http://127.0.0.1:{port}/"));
        s.keep_alive = Some(Duration::from_secs(60));
        let kept = KeptConnection::new(1);
        for n in 1..=2 {
            let o =
                tokio::time::timeout(Duration::from_millis(500), probe(&client, &s, Some(&kept)))
                    .await
                    .expect("judged on the status, the body not awaited");
            assert_eq!((o.ok, o.detail.as_str()), (true, "HTTP 200"));
            assert_eq!(
                accepted.load(std::sync::atomic::Ordering::SeqCst),
                n,
                "not kept"
            );
        }
        server.abort();

        // A large body: passed on its status, its rest not read through to keep it.
        fn big(_: usize, _: usize) -> Option<&'static str> {
            static BIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            Some(BIG.get_or_init(|| {
                let body = "x".repeat(200 * 1024);
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
            }))
        }
        let server = KeepAliveServer::start(big).await;
        let s = server.kept_spec(Duration::from_secs(60));
        for n in 1..=2 {
            let o = probe(&client, &s, Some(&kept)).await;
            assert_eq!((o.ok, o.detail.as_str()), (true, "HTTP 200"));
            assert_eq!(server.accepted(), n, "a rest over 64 KiB is not kept");
        }
    }

    static FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Breaker 9: a rule recovered on its kept connection (the first passing check kept it,
    /// the next `recover_after - 1` reused it), so one accepted connection could bring a rule
    /// back while new clients were refused. After a failure (and at start), `recover_after`
    /// passes in a row each open a connection of their own before one is kept.
    #[tokio::test]
    async fn a_rule_recovers_only_on_new_connections() {
        use std::sync::atomic::Ordering;
        let server = KeepAliveServer::start(|_, _| {
            Some(if FAILING.load(Ordering::SeqCst) {
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
            } else {
                OK_5
            })
        })
        .await;
        let client = crate::checks::http_client(false).unwrap();
        let s = server.kept_spec(Duration::from_secs(60));
        let kept = KeptConnection::new(3);
        for n in 1..=3 {
            let o = probe(&client, &s, Some(&kept)).await;
            assert_eq!(
                (o.ok, o.detail.as_str(), server.accepted()),
                (true, "HTTP 200", n)
            );
        }
        let o = probe(&client, &s, Some(&kept)).await;
        assert_eq!(
            (o.ok, o.detail.as_str(), server.accepted()),
            (true, "HTTP 200 (kept connection)", 3)
        );
        FAILING.store(true, Ordering::SeqCst);
        let o = probe(&client, &s, Some(&kept)).await;
        assert_eq!(
            (o.ok, o.detail.as_str()),
            (false, "HTTP 503, expected 200-399 (kept connection)")
        );
        FAILING.store(false, Ordering::SeqCst);
        for n in 4..=6 {
            let o = probe(&client, &s, Some(&kept)).await;
            assert_eq!(
                (o.ok, o.detail.as_str(), server.accepted()),
                (true, "HTTP 200", n)
            );
        }
        let o = probe(&client, &s, Some(&kept)).await;
        assert_eq!(
            (o.ok, o.detail.as_str(), server.accepted()),
            (true, "HTTP 200 (kept connection)", 6)
        );
    }

    /// Breaker 9: bytes after a passing answer (a second answer in the same write) failed every
    /// kept check ("received unexpected message"). What follows the answer decides nothing:
    /// the check passes, and the connection is not kept.
    #[tokio::test]
    async fn what_follows_a_passed_answer_decides_nothing() {
        let server = KeepAliveServer::start(|_, _| {
            Some("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
        })
        .await;
        let client = crate::checks::http_client(false).unwrap();
        let s = server.kept_spec(Duration::from_secs(60));
        let kept = KeptConnection::new(1);
        for n in 1..=3 {
            let o = probe(&client, &s, Some(&kept)).await;
            assert_eq!(
                (o.ok, o.detail.as_str(), server.accepted()),
                (true, "HTTP 200", n)
            );
        }
    }

    /// Breaker 10: a check on a kept connection cut by the rule's timeout (a HAProxy hung, a
    /// server that hangs on reused connections) did not count as a failure for the kept
    /// connection, so the rule's first passing check kept its connection and the rule
    /// recovered on it. Now `recover_after` passes on new connections follow it too.
    #[tokio::test]
    async fn a_kept_check_cut_by_its_timeout_counts_as_failed() {
        // Each connection answers its first request, and never another.
        let server = KeepAliveServer::start(|_, n| Some(if n == 1 { OK_5 } else { "" })).await;
        let client = crate::checks::http_client(false).unwrap();
        let s = server.kept_spec(Duration::from_secs(60));
        let kept = KeptConnection::new(2);
        let check =
            || tokio::time::timeout(Duration::from_millis(300), probe(&client, &s, Some(&kept)));
        for n in 1..=2 {
            let o = check().await.expect("answered");
            assert_eq!(
                (o.ok, o.detail.as_str(), server.accepted()),
                (true, "HTTP 200", n)
            );
        }
        assert!(
            check().await.is_err(),
            "the kept connection does not answer: cut by the timeout"
        );
        for n in 3..=4 {
            let o = check().await.expect("answered");
            assert_eq!(
                (o.ok, o.detail.as_str(), server.accepted()),
                (true, "HTTP 200", n),
                "after the cut check, recover_after passes on new connections"
            );
        }
        assert!(check().await.is_err(), "then the last of them was kept");
    }

    /// Breaker 10: a frontend at its `maxconn` was never seen with `keep_alive`. The rule's own
    /// kept connection held a slot; renewing it closed that connection first, which freed
    /// the slot its new connection then took. Breaker 11: closed after the failed renewal, it
    /// freed the slot for the next check, so the failures never reached `fail_after`. Now the
    /// old one is held from the renewal until a check passes.
    #[tokio::test]
    async fn a_renewal_does_not_take_the_slot_its_own_connection_frees() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // A server that accepts while fewer than one connection is open (`maxconn 1`); more
        // wait in the listen queue, as they do behind a HAProxy at its `maxconn`.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let live = std::sync::Arc::new(AtomicUsize::new(0));
        let cap = std::sync::Arc::new(AtomicUsize::new(1));
        let (l, c) = (live.clone(), cap.clone());
        let server = tokio::spawn(async move {
            loop {
                while l.load(Ordering::SeqCst) >= c.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let (mut c, _) = listener.accept().await.unwrap();
                l.fetch_add(1, Ordering::SeqCst);
                let l = l.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let mut head = Vec::new();
                    loop {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        if head.ends_with(b"\r\n\r\n") {
                            head.clear();
                            if c.write_all(OK_5.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    }
                    l.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        let client = crate::checks::http_client(false).unwrap();
        let mut s = spec(&format!("http://127.0.0.1:{port}/"));
        s.keep_alive = Some(Duration::from_millis(300));
        let kept = KeptConnection::new(1);
        let check =
            || tokio::time::timeout(Duration::from_millis(300), probe(&client, &s, Some(&kept)));
        assert!(check().await.expect("answered").ok);
        let o = check().await.expect("answered");
        assert_eq!(
            (o.ok, o.detail.as_str()),
            (true, "HTTP 200 (kept connection)")
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(
            check().await.is_err(),
            "the renewal waited in the listen queue behind the rule's own connection"
        );
        for n in 1..=3 {
            assert!(
                check().await.is_err(),
                "check {n} after the renewal: still no slot"
            );
            assert!(kept.holds());
        }
        // A slot frees: the next check passes, and the old connection is let go.
        cap.store(2, Ordering::SeqCst);
        let o = check().await.expect("answered");
        assert_eq!((o.ok, o.detail.as_str()), (true, "HTTP 200"));
        assert!(!kept.holds());
        server.abort();
    }

    #[test]
    fn contains_finds_substrings() {
        assert!(super::contains(b"hello world", b"o w"));
        assert!(!super::contains(b"hello", b"world"));
        assert!(!super::contains(b"", b"x"));
    }
}
