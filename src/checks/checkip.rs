//! Egress verification: ask a checkip service which public address our traffic leaves from.
//! The answer must be exactly one well-formed IPv4 address; anything else is an error, never a
//! guess.

use super::{describe_reqwest, excerpt, read_capped};
use reqwest::Url;
use std::net::Ipv4Addr;
use std::time::Duration;

/// checkip.amazonaws.com answers `198.51.100.7\n`; anything much longer is not an address.
const BODY_LIMIT: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("checkip unreachable: {0}")]
    Unreachable(String),
    #[error("checkip timed out after {0}")]
    Timeout(String),
    #[error("checkip answered HTTP {0}")]
    Status(u16),
    /// Not one public IPv4 address. The text says what it was: something that is not an
    /// IPv4 address, or an address that is not public.
    #[error("checkip answered {0}")]
    Garbage(String),
}

impl EgressError {
    /// Short label for counters and structured logs.
    pub fn reason(&self) -> &'static str {
        match self {
            EgressError::Unreachable(_) => "egress_unreachable",
            EgressError::Timeout(_) => "egress_timeout",
            EgressError::Status(_) => "egress_bad_status",
            EgressError::Garbage(_) => "egress_garbage",
        }
    }
}

pub async fn egress_ip(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<Ipv4Addr, EgressError> {
    let timed_out = || EgressError::Timeout(humantime::format_duration(timeout).to_string());
    let fetch = async {
        let resp = client.get(url.clone()).send().await.map_err(|e| {
            if e.is_timeout() {
                timed_out()
            } else {
                EgressError::Unreachable(describe_reqwest(&e))
            }
        })?;
        if !resp.status().is_success() {
            return Err(EgressError::Status(resp.status().as_u16()));
        }
        read_capped(resp, BODY_LIMIT + 1)
            .await
            .map_err(|e| EgressError::Unreachable(describe_reqwest(&e)))
    };
    let body = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| timed_out())??;
    parse(&body)
}

/// The body must be one IPv4 address, optionally surrounded by white space.
pub fn parse(body: &[u8]) -> Result<Ipv4Addr, EgressError> {
    let garbage = || {
        EgressError::Garbage(format!(
            "something that is not an IPv4 address: \"{}\"",
            excerpt(body, 40)
        ))
    };
    if body.len() > BODY_LIMIT {
        return Err(garbage());
    }
    let text = std::str::from_utf8(body).map_err(|_| garbage())?.trim();
    let ip: Ipv4Addr = text.parse().map_err(|_| garbage())?;
    if !is_public(ip) {
        return Err(EgressError::Garbage(format!(
            "{ip}, which is not a public address: something between this node and the internet answered, not the checkip service"
        )));
    }
    Ok(ip)
}

/// Could this be a public egress address? A private, shared (carrier-grade NAT), link-local,
/// loopback or reserved answer means something between us and the internet answered, not
/// AWS's view of us. (Documentation ranges stay allowed: the test beds use them.)
fn is_public(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b);
    let reserved = a >= 240 || a == 0;
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || shared
        || reserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_one_address_with_whitespace() {
        assert_eq!(parse(b"198.51.100.7\n"), Ok(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(
            parse(b"  203.0.113.9 \r\n"),
            Ok(Ipv4Addr::new(203, 0, 113, 9))
        );
    }

    /// A tester's find: `10.1.2.3` was called "not an IPv4 address". Each refusal says what
    /// was wrong with the answer.
    #[test]
    fn a_refused_answer_says_what_is_wrong_with_it() {
        let private = parse(b"10.1.2.3\n").expect_err("private").to_string();
        assert!(
            private.contains("10.1.2.3, which is not a public address"),
            "{private}"
        );
        let html = parse(b"<html>").expect_err("html").to_string();
        assert_eq!(
            html,
            "checkip answered something that is not an IPv4 address: \"<html>\""
        );
    }

    #[test]
    fn rejects_garbage() {
        for body in [
            &b""[..],
            b"<html>captive portal</html>",
            b"198.51.100.7 203.0.113.9",
            b"198.51.100",
            b"198.51.100.256",
            b"0.0.0.0",
            b"::1",
            b"127.0.0.1",
            b"10.0.1.5",
            b"192.168.1.1",
            b"172.16.0.9",
            b"100.64.0.1",
            b"169.254.169.254",
            b"240.0.0.1",
            b"\xff\xfe",
            &[b'1'; 500],
        ] {
            assert!(
                matches!(parse(body), Err(EgressError::Garbage(_))),
                "{body:?}"
            );
        }
    }
}
