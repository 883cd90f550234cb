//! Reachability into the VPC: the proof a private claim (`claim_private_ip`, `claim_route`)
//! needs before it takes an address. checkip proves only the internet path; the clients of
//! a private address are inside the VPC, so a node cut off from the VPC (a broken route, a
//! security group, a detached ENI) must not take it even when the internet answers.
//!
//! Every target is tried at once, each within the timeout; the first that answers is the
//! proof. A TCP target must accept a connection; an HTTP target must give any HTTP answer
//! (its status does not matter: the path is what is proven, not the service's health).

use crate::config::{ReachSpec, ReachTarget};
use futures_util::stream::{FuturesUnordered, StreamExt};

/// Try every target of `spec` at once. Ok: the first target that answered, and how
/// (`10.0.0.2:53 (TCP)`, `http://10.0.2.10:8404/ (HTTP 200)`). Err: why each failed, in the
/// configured order.
pub async fn any(spec: &ReachSpec, http: &reqwest::Client) -> Result<String, String> {
    let mut tries: FuturesUnordered<_> = spec
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| async move { (i, one(t, spec.timeout, http).await) })
        .collect();
    let mut failed = vec![String::new(); spec.targets.len()];
    while let Some((i, r)) = tries.next().await {
        match r {
            Ok(how) => return Ok(format!("{} ({how})", spec.targets[i])),
            Err(e) => failed[i] = format!("{}: {e}", spec.targets[i]),
        }
    }
    Err(failed.join("; "))
}

async fn one(
    target: &ReachTarget,
    timeout: std::time::Duration,
    http: &reqwest::Client,
) -> Result<String, String> {
    let limit = humantime::format_duration(timeout);
    match target {
        ReachTarget::Tcp(addr) => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok("TCP".into()),
                Ok(Err(e)) => Err(format!("connect failed: {e}")),
                Err(_) => Err(format!("no connection within {limit}")),
            }
        }
        ReachTarget::Http(url) => match http.get(url.clone()).timeout(timeout).send().await {
            Ok(r) => Ok(format!("HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {limit}")),
            Err(e) => Err(crate::checks::describe_reqwest(&e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(targets: Vec<ReachTarget>) -> ReachSpec {
        ReachSpec {
            targets,
            timeout: Duration::from_millis(500),
        }
    }

    #[tokio::test]
    async fn one_answering_target_among_dead_ones_is_enough() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let s = spec(vec![
            ReachTarget::Tcp(closed_addr),
            ReachTarget::Tcp(open.local_addr().unwrap()),
        ]);
        let http = reqwest::Client::new();
        let ok = any(&s, &http).await.unwrap();
        assert!(ok.contains(&open.local_addr().unwrap().to_string()), "{ok}");
    }

    #[tokio::test]
    async fn every_target_dead_says_why_for_each() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = closed.local_addr().unwrap();
        drop(closed);
        let url = reqwest::Url::parse(&format!("http://{a}/health")).unwrap();
        let s = spec(vec![ReachTarget::Tcp(a), ReachTarget::Http(url)]);
        let err = any(&s, &reqwest::Client::new()).await.unwrap_err();
        assert_eq!(err.matches(&a.to_string()).count(), 2, "{err}");
        assert!(err.contains("connect failed"), "{err}");
    }
}
