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
/// `connect_timeout`, which https checks use); the rule's `timeout` bounds the whole check.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Each of `addresses` gets an equal share of [`CONNECT_TIMEOUT`], as hyper-util's connector
/// (behind reqwest) divides it: an address that drops the SYN (a dead zone of a name with
/// several) leaves the others their turn.
fn connect_share(addresses: usize) -> Duration {
    CONNECT_TIMEOUT / u32::try_from(addresses.max(1)).unwrap_or(u32::MAX)
}
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
    let stream = connect(host, port).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
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
    let req = hyper::Request::builder()
        .method(spec.method.clone())
        .uri(target)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close")
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
                    let room = BODY_LIMIT.saturating_sub(got.len());
                    got.extend_from_slice(&data[..data.len().min(room)]);
                    if got.len() >= BODY_LIMIT {
                        break Ok(got);
                    }
                }
            }
        }
    };
    Ok(judge_body(status, needle, read))
}

/// A connection to the first address of `host` that accepts one, in order. `host` is the
/// URL's: an IPv4 address, an IPv6 address in brackets, or a name resolved now.
async fn connect(host: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot connect: cannot resolve {host}: {e}"))?
            .collect(),
    };
    let share = connect_share(addrs.len());
    let mut tried = Vec::new();
    for addr in &addrs {
        match tokio::time::timeout(share, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) if addrs.len() == 1 => return Err(format!("cannot connect: {e}")),
            Ok(Err(e)) => tried.push(format!("{addr}: {e}")),
            Err(_) if addrs.len() == 1 => {
                return Err(format!(
                    "cannot connect: no answer within {}",
                    humantime::format_duration(share)
                ))
            }
            Err(_) => tried.push(format!(
                "{addr}: no answer within {}",
                humantime::format_duration(share)
            )),
        }
    }
    if tried.is_empty() {
        return Err(format!("cannot connect: {host} resolves to no address"));
    }
    Err(format!("cannot connect: {}", tried.join("; ")))
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
        }
    }

    /// Accepts `n` connections; for each, the request it read and whether the client closed
    /// its end after the answer.
    async fn answer(listener: tokio::net::TcpListener, n: usize) -> Vec<(String, bool)> {
        let mut seen = Vec::new();
        for _ in 0..n {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let got = c.read(&mut buf).await.unwrap();
                assert!(got > 0, "closed mid-request");
                req.extend_from_slice(&buf[..got]);
            }
            c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                .await
                .unwrap();
            let closed = matches!(
                tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await,
                Ok(Ok(0))
            );
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
        for (req, closed) in &seen {
            assert!(closed, "the check left its connection open: {req}");
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

    #[test]
    fn every_address_of_a_name_gets_a_share_of_the_connect_budget() {
        assert_eq!(connect_share(1), CONNECT_TIMEOUT);
        assert_eq!(connect_share(2), CONNECT_TIMEOUT / 2);
        assert_eq!(connect_share(0), CONNECT_TIMEOUT);
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
