//! `type = "tcp"`: a connection opens, and answers as expected if asked.

use super::super::super::defaults::limits;
use super::super::super::model::TcpCheckSpec;
use super::super::super::raw::RawTcpCheck;
use super::super::ctx::Ctx;
use std::time::Duration;

pub(super) fn check(
    t: &RawTcpCheck,
    timeout: Option<Duration>,
    mut cx: Ctx<'_>,
) -> Option<TcpCheckSpec> {
    let host = host(&t.host, &mut cx);
    let port = if limits::PORT.contains(&t.port) {
        Some(t.port as u16)
    } else {
        cx.fail(format!("`port` = {}: must be between 1 and 65535", t.port))
    };
    for (value, key) in [(&t.send, "send"), (&t.expect, "expect")] {
        if value.as_deref() == Some("") {
            cx.err(format!("`{key}` is empty: remove it or give the text"));
        }
    }
    cx.finish(|| {
        Some(TcpCheckSpec {
            host: host?,
            port: port?,
            send: t.send.clone(),
            expect: t.expect.clone(),
            timeout: timeout?,
        })
    })
}

/// An IP address (IPv6 without brackets) or a DNS name (RFC 1123 labels).
fn host(s: &str, cx: &mut Ctx<'_>) -> Option<String> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Some(s.to_owned());
    }
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = s.strip_suffix('.').unwrap_or(s);
    if s.starts_with('[') {
        cx.fail(format!(
            "`host` = {s:?}: write an IPv6 address without brackets, like \"::1\""
        ))
    } else if !name.is_empty() && name.len() <= 253 && name.split('.').all(label) {
        Some(s.to_owned())
    } else {
        cx.fail(format!(
            "`host` = {s:?}: not an IP address or a DNS name (the port goes in `port`)"
        ))
    }
}
