//! `type = "http"`: one request; pass when the status is in the expected set and, if asked,
//! the body contains the expected text.

use super::{describe_reqwest, read_capped, Outcome};
use crate::config::HttpCheckSpec;

/// How much of a body `body_contains` looks at.
const BODY_LIMIT: usize = 256 * 1024;

pub async fn probe(client: &reqwest::Client, spec: &HttpCheckSpec) -> Outcome {
    let mut req = client.request(spec.method.clone(), spec.url.clone());
    if let Some(host) = &spec.host {
        req = req.header(reqwest::header::HOST, host);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(describe_reqwest(&e)),
    };
    let status = resp.status().as_u16();
    if !spec.expect_status.contains(status) {
        return Outcome::fail(format!("HTTP {status}, expected {}", spec.expect_status));
    }
    let Some(needle) = &spec.body_contains else {
        return Outcome::ok(format!("HTTP {status}"));
    };
    match read_capped(resp, BODY_LIMIT).await {
        Ok(body) if contains(&body, needle.as_bytes()) => {
            Outcome::ok(format!("HTTP {status}, body matched"))
        }
        Ok(_) => Outcome::fail(format!("HTTP {status}, body lacks {needle:?}")),
        Err(e) => Outcome::fail(format!("HTTP {status}, {}", describe_reqwest(&e))),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn contains_finds_substrings() {
        assert!(super::contains(b"hello world", b"o w"));
        assert!(!super::contains(b"hello", b"world"));
        assert!(!super::contains(b"", b"x"));
    }
}
