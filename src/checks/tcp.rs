//! `type = "tcp"`: a connection to host:port opens; if asked, `send` is written and the answer's
//! first bytes must contain `expect` (monit's `if failed port N send ... expect ...`).
//!
//! The host is resolved on every check (a DNS name that moves is followed) and each address it
//! resolves to is tried in turn. The probe ends itself just before the rule's timeout so that
//! the failure says what it was waiting for.

use super::{excerpt, own_deadline, Outcome};
use crate::config::TcpCheckSpec;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How much of the answer `expect` is looked for in.
pub const EXPECT_LIMIT: usize = 4096;
/// Characters of an unexpected answer shown in the failure detail.
const SHOWN: usize = 80;

/// Where the probe was when it stopped.
enum Stage {
    Resolving,
    Connecting(Vec<String>),
    Sending(SocketAddr),
    Answer(SocketAddr, Vec<u8>),
}

pub async fn probe(spec: &TcpCheckSpec) -> Outcome {
    let limit = own_deadline(spec.timeout);
    let mut stage = Stage::Resolving;
    let deadline = tokio::time::Instant::now() + limit;
    match tokio::time::timeout_at(deadline, run(spec, deadline, &mut stage)).await {
        Ok(o) => o,
        Err(_) => {
            let took = humantime::format_duration(limit);
            Outcome::fail(match stage {
                Stage::Resolving => format!("resolving {} took longer than {took}", spec.host),
                Stage::Connecting(tried) if tried.is_empty() => {
                    format!("{}: no connection within {took}", target(spec))
                }
                Stage::Connecting(tried) => format!(
                    "{}: no connection within {took} ({})",
                    target(spec),
                    tried.join("; ")
                ),
                Stage::Sending(addr) => format!(
                    "{addr}: connected, but the peer did not take all of `send` within {took}"
                ),
                Stage::Answer(addr, got) => format!(
                    "{addr}: connected, but {:?} was not in the answer within {took} (got \"{}\")",
                    spec.expect.as_deref().unwrap_or(""),
                    excerpt(&got, SHOWN)
                ),
            })
        }
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn target(spec: &TcpCheckSpec) -> String {
    if spec.host.contains(':') {
        format!("[{}]:{}", spec.host, spec.port)
    } else {
        format!("{}:{}", spec.host, spec.port)
    }
}

async fn run(spec: &TcpCheckSpec, deadline: tokio::time::Instant, stage: &mut Stage) -> Outcome {
    let addrs: Vec<SocketAddr> =
        match tokio::net::lookup_host((spec.host.as_str(), spec.port)).await {
            Ok(a) => a.collect(),
            Err(e) => return Outcome::fail(format!("cannot resolve {}: {e}", spec.host)),
        };
    if addrs.is_empty() {
        return Outcome::fail(format!("{} resolves to no address", spec.host));
    }
    *stage = Stage::Connecting(Vec::new());
    let Stage::Connecting(tried) = stage else {
        return Outcome::fail(format!("{}: cannot connect", target(spec)));
    };
    let Some((mut s, addr)) = connect_any(&addrs, deadline, tried).await else {
        return Outcome::fail(format!("cannot connect: {}", tried.join("; ")));
    };
    if let Some(send) = &spec.send {
        *stage = Stage::Sending(addr);
        if let Err(e) = s.write_all(send.as_bytes()).await {
            return Outcome::fail(format!("{addr}: connected, but sending failed: {e}"));
        }
    }
    let Some(expect) = &spec.expect else {
        return Outcome::ok(format!("connected to {addr}"));
    };
    *stage = Stage::Answer(addr, Vec::new());
    let mut buf = [0u8; 1024];
    loop {
        let Stage::Answer(_, got) = stage else {
            return Outcome::fail("internal: lost the answer");
        };
        if contains(got, expect.as_bytes()) {
            return Outcome::ok(format!("{addr} answered {expect:?}"));
        }
        if got.len() >= EXPECT_LIMIT {
            return Outcome::fail(format!(
                "{addr}: {expect:?} is not in the first {EXPECT_LIMIT} bytes of the answer (got \"{}\")",
                excerpt(got, SHOWN)
            ));
        }
        let room = (EXPECT_LIMIT - got.len()).min(buf.len());
        match s.read(&mut buf[..room]).await {
            Ok(0) if got.is_empty() => {
                return Outcome::fail(format!("{addr}: closed the connection without answering"))
            }
            Ok(0) => {
                return Outcome::fail(format!(
                    "{addr}: answered \"{}\" and closed, without {expect:?}",
                    excerpt(got, SHOWN)
                ))
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Outcome::fail(format!("{addr}: reading the answer failed: {e}")),
        }
    }
}

/// Connect to the first of `addrs` that answers, in order: the `tcp` and `http` checks'
/// connector. Each address gets an equal share of the time left before `deadline`, so one
/// that drops the SYN (a dead address of a dual-stack name) does not use up the others' turn
/// (as hyper-util's connector, behind reqwest, divides its connect timeout). What each failed
/// try saw goes into `tried` as "ADDRESS: why" (`why` starts at byte `ADDRESS.len() + 2`).
pub(super) async fn connect_any(
    addrs: &[SocketAddr],
    deadline: tokio::time::Instant,
    tried: &mut Vec<String>,
) -> Option<(TcpStream, SocketAddr)> {
    for (i, addr) in addrs.iter().enumerate() {
        let share = deadline.saturating_duration_since(tokio::time::Instant::now())
            / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        let why = match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Some((s, *addr)),
            Ok(Err(e)) => e.to_string(),
            // In whole milliseconds: the share is what was left of the budget, to the ns.
            Err(_) => format!(
                "no answer within {}",
                humantime::format_duration(Duration::from_millis(
                    u64::try_from(share.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
                ))
            ),
        };
        tried.push(format!("{addr}: {why}"));
    }
    None
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpListener;

    fn spec(host: &str, port: u16, send: Option<&str>, expect: Option<&str>) -> TcpCheckSpec {
        TcpCheckSpec {
            host: host.into(),
            port,
            send: send.map(str::to_owned),
            expect: expect.map(str::to_owned),
            timeout: Duration::from_secs(2),
        }
    }

    /// A listener that answers each connection with `reply` after reading one chunk (or at
    /// once when `wait_for_request` is false), then closes.
    async fn server(reply: &'static [u8], wait_for_request: bool) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                if wait_for_request {
                    let mut b = [0u8; 64];
                    let _ = s.read(&mut b).await;
                }
                let _ = s.write_all(reply).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn a_listener_passes_and_a_closed_port_fails() {
        let port = server(b"", false).await;
        let ok = probe(&spec("127.0.0.1", port, None, None)).await;
        assert!(ok.ok, "{ok:?}");
        // A port that was just free: connection refused.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let free = l.local_addr().unwrap().port();
        drop(l);
        let refused = probe(&spec("127.0.0.1", free, None, None)).await;
        assert!(
            !refused.ok && refused.detail.contains("refused"),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn send_and_expect_look_at_the_answer() {
        let port = server(b"+PONG\r\n", true).await;
        let ok = probe(&spec("localhost", port, Some("PING\r\n"), Some("PONG"))).await;
        assert!(ok.ok, "{ok:?}");
        let wrong = probe(&spec("127.0.0.1", port, Some("PING\r\n"), Some("220"))).await;
        assert!(
            !wrong.ok && wrong.detail.contains("answered \"+PONG\\r\\n\" and closed"),
            "{wrong:?}"
        );
        let silent = server(b"", false).await;
        let closed = probe(&spec("127.0.0.1", silent, None, Some("220"))).await;
        assert!(
            !closed.ok
                && closed
                    .detail
                    .ends_with("closed the connection without answering"),
            "{closed:?}"
        );
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_is_reported_before_the_rule_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                kept.push(s);
            }
        });
        let mut s = spec("127.0.0.1", port, None, Some("220"));
        s.timeout = Duration::from_millis(300);
        let out = probe(&s).await;
        assert!(
            !out.ok
                && out
                    .detail
                    .contains("connected, but \"220\" was not in the answer within"),
            "{out:?}"
        );
    }

    /// A loopback listener whose accept queue is full: the kernel drops further SYNs, so a
    /// connect to it hangs, as to a dead address.
    pub(in crate::checks) async fn black_hole(
    ) -> (std::net::TcpListener, Vec<TcpStream>, SocketAddr) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen(2) again on our own listening socket, only changing its backlog.
        assert_eq!(
            unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 0) },
            0
        );
        let addr = l.local_addr().unwrap();
        let mut held = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => held.push(s),
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => return (l, held, addr),
            }
            assert!(held.len() < 64, "the accept queue never filled");
        }
    }

    #[tokio::test]
    async fn one_address_that_never_answers_does_not_use_up_the_others_turn() {
        let (_l, _held, dead) = black_hole().await;
        let port = server(b"", false).await;
        let live: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
        let mut tried = Vec::new();
        let got = connect_any(&[dead, live], deadline, &mut tried).await;
        assert!(matches!(&got, Some((_, a)) if *a == live));
        assert_eq!(tried.len(), 1);
        assert_eq!(tried[0], format!("{dead}: no answer within 300ms"));
    }

    #[tokio::test]
    async fn ipv6_addresses_are_written_without_brackets() {
        let l = TcpListener::bind("[::1]:0")
            .await
            .expect("this machine has IPv6 on loopback");
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { while l.accept().await.is_ok() {} });
        let ok = probe(&spec("::1", port, None, None)).await;
        assert!(ok.ok && ok.detail.contains("[::1]"), "{ok:?}");
    }
}
