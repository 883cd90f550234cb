//! Consul's health API: the passing instances of one service, watched with blocking queries
//! (`index` + `wait`), so a change arrives as soon as Consul knows of it.
//!
//! The index is handled as Consul's documentation asks: a query returns when the index moves
//! past ours or `wait` runs out; an index that goes backwards (a restored or re-elected
//! cluster) resets ours to 0; an index below 1 is treated as 1.

use crate::checks::{describe_reqwest, excerpt, read_capped};
use crate::config::{ConsulSourceSpec, TokenSource};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::time::Duration;

/// A service catalog of 10,000 instances is about 20 MB of JSON.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

pub struct Consul {
    spec: ConsulSourceSpec,
    http: reqwest::Client,
    index: u64,
}

/// One service instance as the health API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `node/service-id`, for logs.
    pub id: String,
    /// The service's own address, else its node's.
    pub address: String,
    pub port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    node: Node,
    service: Service,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default)]
    node: String,
    #[serde(default)]
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Service {
    #[serde(default, rename = "ID")]
    id: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u32,
}

impl Consul {
    pub fn new(spec: ConsulSourceSpec, http: reqwest::Client) -> Self {
        Consul {
            spec,
            http,
            index: 0,
        }
    }

    /// The instances of the service. With `wait`, a blocking query: it returns when the list
    /// changes or `wait` is over; the first query (and any after an index reset) returns at once.
    pub async fn instances(
        &mut self,
        wait: Option<Duration>,
        timeout: Duration,
    ) -> Result<Vec<Instance>, String> {
        let mut url = self.spec.address.clone();
        url.path_segments_mut()
            .map_err(|_| "Consul address cannot take a path".to_owned())?
            .pop_if_empty()
            .extend(["v1", "health", "service", &self.spec.service]);
        {
            let mut q = url.query_pairs_mut();
            if self.spec.passing_only {
                q.append_pair("passing", "1");
            }
            if let Some(dc) = &self.spec.datacenter {
                q.append_pair("dc", dc);
            }
            for t in &self.spec.tags {
                q.append_pair("tag", t);
            }
        }
        // Consul adds up to wait/16 of jitter to a blocking query.
        let mut limit = timeout;
        if let (Some(w), true) = (wait, self.index > 0) {
            url.query_pairs_mut()
                .append_pair("index", &self.index.to_string())
                .append_pair("wait", &format!("{}ms", w.as_millis()));
            limit += w + w / 16;
        }
        let mut req = self.http.get(url).timeout(limit);
        if let Some(token) = self.token()? {
            req = req.header("X-Consul-Token", token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("Consul: {}", describe_reqwest(&e)))?;
        let status = resp.status();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = read_capped(resp, BODY_LIMIT)
            .await
            .map_err(|e| format!("Consul: {}", describe_reqwest(&e)))?;
        if !status.is_success() {
            return Err(format!(
                "Consul answered HTTP {}: {}",
                status.as_u16(),
                excerpt(&body, 200)
            ));
        }
        let Some(index) = index else {
            return Err(
                "Consul's answer has no X-Consul-Index header: is the address a Consul agent?"
                    .into(),
            );
        };
        self.index = if index < self.index { 0 } else { index.max(1) };
        let entries: Vec<Entry> = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "Consul's answer is not a health service list ({e}): {}",
                excerpt(&body, 120)
            )
        })?;
        Ok(entries
            .into_iter()
            .map(|e| Instance {
                id: format!("{}/{}", e.node.node, e.service.id),
                address: if e.service.address.is_empty() {
                    e.node.address
                } else {
                    e.service.address
                },
                port: u16::try_from(e.service.port).unwrap_or(0),
            })
            .collect())
    }

    /// Read fresh on every query, so a rotated token file needs no restart.
    fn token(&self) -> Result<Option<String>, String> {
        let t = match &self.spec.token {
            None => return Ok(None),
            Some(TokenSource::File(p)) => {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(p)
                    .map_err(|e| format!("Consul token file {}: {e}", p.display()))?;
                if meta.permissions().mode() & 0o004 != 0 {
                    return Err(format!(
                        "Consul token file {} is readable by every user: refusing to use it (chmod o-r it)",
                        p.display()
                    ));
                }
                std::fs::read_to_string(p)
                    .map_err(|e| format!("Consul token file {}: {e}", p.display()))?
            }
            Some(TokenSource::Env(v)) => std::env::var(v)
                .map_err(|_| format!("Consul token: environment variable {v} is not set"))?,
        };
        let t = t.trim().to_owned();
        if t.is_empty() || t.chars().any(|c| c.is_control()) {
            return Err("Consul token is empty or not one line".into());
        }
        Ok(Some(t))
    }
}

/// An instance's address as HAProxy can use it.
pub fn ipv4(i: &Instance) -> Option<Ipv4Addr> {
    i.address.parse().ok()
}
