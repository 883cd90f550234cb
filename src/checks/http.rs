//! `type = "http"`: one request on a connection of its own; pass when the status is in the
//! expected set and, if asked, the body contains the expected text.
//!
//! Every check opens a new connection and closes it (`Connection: close`, RFC 9112 §9.6),
//! and no rule can ask otherwise: a connection kept from an earlier check would go on passing
//! after the listener stopped accepting new ones, which is what the clients of the address
//! see.
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

/// How much of a body `body_contains` looks at.
const BODY_LIMIT: usize = 256 * 1024;
/// How long connecting may take, all of a name's addresses together (the reqwest client's
/// `connect_timeout`, which https checks use), shared between them by
/// [`super::tcp::connect_any`]; the rule's `timeout` bounds the whole check.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The `User-Agent` of every request the daemon makes.
pub const USER_AGENT: &str = concat!("haproxy-watchdog/", env!("CARGO_PKG_VERSION"));

pub async fn probe(client: &reqwest::Client, spec: &HttpCheckSpec) -> Outcome {
    let url = &spec.url;
    if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
        // Boxed: the reqwest client's future would make every rule's task larger.
        return Box::pin(through_reqwest(client, spec)).await;
    }
    plain(spec).await.unwrap_or_else(Outcome::fail)
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

/// Through hyper's HTTP/1 connection API, on this task. Err: the failure's detail.
async fn plain(spec: &HttpCheckSpec) -> Result<Outcome, String> {
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
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close");
    if defines_content(&spec.method) {
        req = req.header(header::CONTENT_LENGTH, "0");
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("request failed: {e}"))?;

    // The connection's I/O runs in `conn`, polled here beside the request and the body.
    let mut conn = std::pin::pin!(conn);
    let mut conn_ended = false;
    let mut sent = std::pin::pin!(sender.send_request(req));
    let resp = loop {
        tokio::select! {
            biased;
            r = &mut sent => break r.map_err(|e| describe_hyper("request failed", &e))?,
            c = &mut conn, if !conn_ended => {
                conn_ended = true;
                c.map_err(|e| describe_hyper("request failed", &e))?;
            }
        }
    };
    let status = resp.status().as_u16();
    if let Some(failed) = failed_status(spec, status) {
        return Ok(failed);
    }
    let Some(needle) = &spec.body_contains else {
        return Ok(Outcome::ok(format!("HTTP {status}")));
    };
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let read = loop {
        let frame = tokio::select! {
            biased;
            f = body.frame() => f,
            c = &mut conn, if !conn_ended => {
                conn_ended = true;
                match c {
                    Ok(()) => continue,
                    Err(e) => break Err(describe_hyper("bad response body", &e)),
                }
            }
        };
        match frame {
            None => break Ok(got),
            Some(Err(e)) => break Err(describe_hyper("bad response body", &e)),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    // The text may straddle this frame and the last: look from a needle's
                    // length back. Found: judged now, the rest of the body not awaited.
                    let from = got.len().saturating_sub(needle.len());
                    let room = BODY_LIMIT.saturating_sub(got.len());
                    got.extend_from_slice(&data[..data.len().min(room)]);
                    if got.len() >= BODY_LIMIT || contains(&got[from..], needle.as_bytes()) {
                        break Ok(got);
                    }
                }
            }
        }
    };
    Ok(judge_body(status, needle, read))
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
            let o = probe(&client, s).await;
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
            let o = probe(&client, &s).await;
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
        let o = probe(&client, &s).await;
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
            let o = probe(&client, &s).await;
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
        let o = probe(&client, &spec(&format!("http://127.0.0.1:{port}/"))).await;
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
        let o = probe(&client, &spec(&format!("http://127.0.0.1:{port}/"))).await;
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
        let o = tokio::time::timeout(Duration::from_secs(2), probe(&client, &s))
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
        let o = probe(&client, &s).await;
        assert_eq!((o.ok, o.detail.as_str()), (true, "HTTP 200, body matched"));
        let req = server.await.unwrap();
        assert!(req.contains(&format!("host: [::1]:{port}\r\n")), "{req}");
    }

    #[test]
    fn contains_finds_substrings() {
        assert!(super::contains(b"hello world", b"o w"));
        assert!(!super::contains(b"hello", b"world"));
        assert!(!super::contains(b"", b"x"));
    }
}
