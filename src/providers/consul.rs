//! Consul's health API: the passing instances of one service, watched with blocking queries
//! (`index` + `wait`), so a change arrives as soon as Consul knows of it.
//!
//! The index is handled as Consul's documentation asks (API docs, "Blocking Queries",
//! implementation details): a query returns when the index moves past ours or `wait` runs out;
//! an index that goes backwards (a restored or re-elected cluster) resets ours to 0; an index
//! below 1 is treated as 1; and while answers come back without the index moving forward, or
//! with it moving and the same instances listed (a health check's output that changes, which
//! moves the index and nothing a backend uses), queries are rate-limited to one per
//! [`STALLED_GAP`], so a Consul that answers every blocking query at once is not asked in a
//! busy loop (the docs ask clients to rate-limit both).
//!
//! An answer that says `X-Consul-KnownLeader: false` (a stale read while the servers elect a
//! leader) is not used: it may list fewer instances than there are.

use crate::checks::{describe_reqwest, excerpt, read_capped};
use crate::config::{ConsulSourceSpec, TokenSource};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// The least time between two queries while the index does not move forward (Consul's docs
/// ask clients to rate-limit such answers).
pub const STALLED_GAP: Duration = Duration::from_secs(1);

/// A service catalog of 10,000 instances is about 20 MB of JSON.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

pub struct Consul {
    spec: ConsulSourceSpec,
    http: reqwest::Client,
    index: u64,
    /// When the last query was sent.
    last_sent: Option<Instant>,
    /// The last answer's index did not move past the one we sent, or it moved and listed the
    /// same instances as the answer before: rate-limit the next query.
    stalled: bool,
    /// A hash of the instances the last answer listed (None: no answer yet).
    last_list: Option<u64>,
}

/// Why Consul's health API gave no list of instances to use (Consul API docs, "Health - List
/// Service Instances" and "Blocking Queries"), or the token for it could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    /// The configured address is not a base URL a path can be appended to.
    #[error("Consul address cannot take a path")]
    NotABase,
    /// The request failed or its body could not be read. The message is
    /// [`describe_reqwest`]'s, which leaves out the URL's query string (and the error is not
    /// given as a source, whose text would name it).
    #[error("Consul: {}", describe_reqwest(err))]
    Http { err: reqwest::Error },
    /// An answer other than 2xx; `excerpt` is the start of Consul's body.
    #[error("Consul answered HTTP {status}: {excerpt}")]
    Status { status: u16, excerpt: String },
    /// `X-Consul-KnownLeader: false`: a stale read while the servers elect a leader.
    #[error("Consul answered with X-Consul-KnownLeader: false (a stale read while there is no cluster leader): not applied")]
    NoLeader,
    /// The answer has no `X-Consul-Index`: it is not from Consul's health API.
    #[error("Consul's answer has no X-Consul-Index header: is the address a Consul agent?")]
    NoIndex,
    /// `X-Consul-Index` is not a number.
    #[error("Consul's answer has an X-Consul-Index that is not a number: {value:?}")]
    BadIndex { value: String },
    /// The body is not the JSON list of `{Node, Service, Checks}` entries.
    #[error("Consul's answer is not a health service list ({source}): {excerpt}")]
    NotAList {
        source: serde_json::Error,
        excerpt: String,
    },
    /// The token file could not be examined or read.
    #[error("Consul token file {}: {source}", path.display())]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The token file is readable by every user.
    #[error("Consul token file {} is readable by every user: refusing to use it (chmod o-r it)", path.display())]
    TokenReadable { path: PathBuf },
    /// The environment variable that should hold the token is not set (or not Unicode).
    #[error("Consul token: environment variable {var} is not set")]
    TokenEnv { var: String },
    /// The token is empty or has a control character (it goes into a header).
    #[error("Consul token is empty or not one line")]
    TokenBad,
}

/// What an answer's `X-Consul-Index` makes of the index we hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextIndex {
    /// The index to send with the next blocking query (0: the next query does not block).
    pub index: u64,
    /// The answer's index moved past the one we had: no need to slow down.
    pub moved: bool,
}

/// Consul's rules for the index of a blocking query: `old` is the index we held (0: none),
/// `header` the answer's `X-Consul-Index`. An index below 1 (0, or a negative number from a
/// broken proxy) is treated as 1; then an index that went backwards resets to 0 (the next query
/// does not block). A missing or unreadable header is an error: the answer is not from Consul's health API.
pub fn next_index(old: u64, header: Option<&str>) -> Result<NextIndex, ConsulError> {
    let Some(h) = header else {
        return Err(ConsulError::NoIndex);
    };
    let new: i128 = h.trim().parse().map_err(|_| ConsulError::BadIndex {
        value: h.to_owned(),
    })?;
    let new = u64::try_from(new.max(1)).unwrap_or(u64::MAX);
    if new < old {
        return Ok(NextIndex {
            index: 0,
            moved: false,
        });
    }
    Ok(NextIndex {
        index: new,
        moved: new > old,
    })
}

/// One service instance as the health API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
            last_sent: None,
            stalled: false,
            last_list: None,
        }
    }

    /// The instances of the service. With `wait`, a blocking query: it returns when the list
    /// changes or `wait` is over; the first query (and any after an index reset) returns at once.
    /// After an answer whose index did not move, the next query waits until [`STALLED_GAP`]
    /// after the last one. An answer without a known leader is an error (nothing is applied).
    pub async fn instances(
        &mut self,
        wait: Option<Duration>,
        timeout: Duration,
    ) -> Result<Vec<Instance>, ConsulError> {
        let mut url = self.spec.address.clone();
        url.path_segments_mut()
            .map_err(|_| ConsulError::NotABase)?
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
        if let (true, Some(last)) = (self.stalled, self.last_sent) {
            tokio::time::sleep_until(last + STALLED_GAP).await;
        }
        let mut req = self.http.get(url).timeout(limit);
        if let Some(token) = self.token()? {
            req = req.header("X-Consul-Token", token);
        }
        let sent = self.index;
        self.last_sent = Some(Instant::now());
        // Whatever goes wrong below, the next query is not sent at once.
        self.stalled = true;
        let resp = req.send().await.map_err(|err| ConsulError::Http { err })?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or("(not text)").to_owned())
        };
        let index = header("X-Consul-Index");
        let known_leader = header("X-Consul-KnownLeader");
        let body = read_capped(resp, BODY_LIMIT)
            .await
            .map_err(|err| ConsulError::Http { err })?;
        if !status.is_success() {
            return Err(ConsulError::Status {
                status: status.as_u16(),
                excerpt: excerpt(&body, 200),
            });
        }
        // Consul's docs: `X-Consul-KnownLeader` says whether the answering server knows of
        // a leader. Without one the list may be stale and short: keep the index we had (the
        // leader's answer must not be mistaken for no change) and apply nothing.
        if known_leader
            .as_deref()
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
        {
            return Err(ConsulError::NoLeader);
        }
        let next = next_index(sent, index.as_deref())?;
        self.index = next.index;
        self.stalled = !next.moved;
        let entries: Vec<Entry> =
            serde_json::from_slice(&body).map_err(|source| ConsulError::NotAList {
                source,
                excerpt: excerpt(&body, 120),
            })?;
        let list: Vec<Instance> = entries
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
            .collect();
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            list.hash(&mut h);
            h.finish()
        };
        if self.last_list.replace(hash) == Some(hash) {
            self.stalled = true;
        }
        Ok(list)
    }

    /// Whether the next query can block until Consul's index moves (an answer with an index
    /// came back): then a wait for a change costs one query per change or per `wait`.
    pub fn can_block(&self) -> bool {
        self.index > 0
    }

    /// Read fresh on every query, so a rotated token file needs no restart.
    fn token(&self) -> Result<Option<String>, ConsulError> {
        let t = match &self.spec.token {
            None => return Ok(None),
            Some(TokenSource::File(p)) => {
                use std::os::unix::fs::PermissionsExt;
                let file_error = |source| ConsulError::TokenFile {
                    path: p.clone(),
                    source,
                };
                let meta = std::fs::metadata(p).map_err(file_error)?;
                if meta.permissions().mode() & 0o004 != 0 {
                    return Err(ConsulError::TokenReadable { path: p.clone() });
                }
                std::fs::read_to_string(p).map_err(file_error)?
            }
            Some(TokenSource::Env(v)) => {
                std::env::var(v).map_err(|_| ConsulError::TokenEnv { var: v.clone() })?
            }
        };
        let t = t.trim().to_owned();
        if t.is_empty() || t.chars().any(|c| c.is_control()) {
            return Err(ConsulError::TokenBad);
        }
        Ok(Some(t))
    }
}

/// An instance's address as HAProxy can use it.
pub fn ipv4(i: &Instance) -> Option<Ipv4Addr> {
    i.address.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(old: u64, h: &str) -> (u64, bool) {
        let n = next_index(old, Some(h)).unwrap();
        (n.index, n.moved)
    }

    #[test]
    fn an_index_that_moves_forward_is_kept_and_needs_no_rate_limit() {
        assert_eq!(next(0, "42"), (42, true));
        assert_eq!(next(42, "43"), (43, true));
        assert_eq!(next(0, " 5 "), (5, true));
    }

    #[test]
    fn an_index_that_does_not_move_is_kept_and_rate_limited() {
        assert_eq!(next(42, "42"), (42, false));
    }

    #[test]
    fn an_index_that_goes_backwards_resets_to_zero_and_is_rate_limited() {
        assert_eq!(next(42, "7"), (0, false));
        // Zero and negative answers after a real index are backwards too.
        assert_eq!(next(42, "0"), (0, false));
        assert_eq!(next(2, "-1"), (0, false));
    }

    #[test]
    fn an_index_below_one_is_treated_as_one_never_sent_as_zero_or_negative() {
        // The first answer (nothing held): 0 becomes 1, so the next query blocks on 1 rather
        // than turning into a stream of non-blocking queries; after that, 0 does not move.
        assert_eq!(next(0, "0"), (1, true));
        assert_eq!(next(0, "-1"), (1, true));
        assert_eq!(next(1, "0"), (1, false));
        assert_eq!(next(1, "-1"), (1, false));
    }

    #[test]
    fn a_missing_or_garbled_index_is_an_error() {
        assert!(next_index(3, None)
            .unwrap_err()
            .to_string()
            .contains("no X-Consul-Index"));
        assert!(next_index(3, Some("abc"))
            .unwrap_err()
            .to_string()
            .contains("not a number"));
    }
}
