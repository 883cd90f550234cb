//! This node's identity: instance id, ENI and private IPs. What `[node]` does not set comes
//! from the instance metadata service with IMDSv2 session tokens (the SDK's client, which
//! honours `AWS_EC2_METADATA_SERVICE_ENDPOINT`). Resolved once, on first need, and cached.
//!
//! A read answered 401 means the service no longer accepts the session token (its TTL ran
//! out, or the service restarted): the SDK would retry with the same cached token, so the
//! read is retried once with a new token instead (IMDSv2: "If the token is invalid, you
//! receive a 401 - Unauthorized error", EC2 User Guide, "Use IMDSv2"). A lookup that fails
//! is not retried before a backoff (1 s, doubling to 30 s) has passed.

use crate::config::NodeSettings;
use crate::telemetry::events;
use aws_config::imds::client::error::ImdsError;
use aws_config::imds::client::Client;
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// The longest wait between two lookups after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub instance_id: String,
    /// The primary ENI (device 0), unless `[node]` names another.
    pub network_interface_id: String,
    /// The private IP claims go to by default: the ENI's primary private IP.
    pub private_ip: Ipv4Addr,
    /// Every private IP on that ENI, when metadata was asked (empty when `[node]` set them all).
    pub private_ips: Vec<Ipv4Addr>,
}

pub struct IdentitySource {
    settings: NodeSettings,
    cell: OnceCell<NodeIdentity>,
    /// After a failed lookup: when the next may start, the backoff that led there, the error.
    failed: std::sync::Mutex<Option<(Instant, Duration, MetadataError)>>,
}

impl IdentitySource {
    pub fn new(settings: NodeSettings) -> Self {
        IdentitySource {
            settings,
            cell: OnceCell::new(),
            failed: std::sync::Mutex::new(None),
        }
    }

    /// This node's identity. Errors: [`IdentityError::Lookup`], what instance metadata said
    /// or did not say; while a failed lookup's backoff runs, [`IdentityError::BackingOff`]
    /// with that error again, without asking the service.
    pub async fn get(&self) -> Result<&NodeIdentity, IdentityError> {
        if let Some(id) = self.cell.get() {
            return Ok(id);
        }
        let last = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((next, _, e)) = &last {
            let now = Instant::now();
            if now < *next {
                return Err(IdentityError::BackingOff(format!(
                    "{e} (instance metadata is asked again in {} ms)",
                    (*next - now).as_millis()
                )));
            }
        }
        match self.cell.get_or_try_init(|| resolve(&self.settings)).await {
            Ok(id) => {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(id)
            }
            Err(e) => {
                let backoff = last
                    .map(|(_, b, _)| (b * 2).min(MAX_BACKOFF))
                    .unwrap_or(Duration::from_secs(1));
                tracing::warn!(event = events::IDENTITY_UNAVAILABLE, error = %e, retry_in_ms = backoff.as_millis() as u64);
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now() + backoff, backoff, e.clone()));
                Err(IdentityError::Lookup(e))
            }
        }
    }
}

/// Why this node's identity is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The lookup just made failed.
    #[error(transparent)]
    Lookup(MetadataError),
    /// An earlier lookup failed and its backoff has not run out: no request was made. The
    /// message is that lookup's error and when the service is asked again.
    #[error("{0}")]
    BackingOff(String),
}

/// What instance metadata said, or did not say (EC2 User Guide, "Instance metadata
/// categories"). Kept as text where it comes from the SDK's error, so the error can be
/// cloned for the backoff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// `[node] imds_endpoint` is not an endpoint the SDK's client takes.
    #[error("instance metadata endpoint {endpoint}: {detail}")]
    Endpoint { endpoint: String, detail: String },
    /// The service answered a read with an HTTP error status.
    #[error("instance metadata {path}: HTTP {status}")]
    Http { path: String, status: u16 },
    /// The read failed before an answer (timeout, connection refused, token request), with
    /// its whole cause chain.
    #[error("instance metadata {path}: {detail}")]
    Read { path: String, detail: String },
    /// `[node] network_interface_id` names an ENI this instance does not have.
    #[error("[node] network_interface_id {eni} is not attached to this instance")]
    NotAttached { eni: String },
    /// A line of `local-ipv4s` that is not an IPv4 address.
    #[error("instance metadata local-ipv4s: {line:?} is not an IPv4 address")]
    NotIpv4 { line: String },
    /// `local-ipv4s` listed no address.
    #[error("instance metadata local-ipv4s is empty")]
    NoIpv4s,
    /// The instance or ENI id does not look like one (`i-...`, `eni-...`).
    #[error("instance metadata gave unexpected ids: {instance:?}, {eni:?}")]
    UnexpectedIds { instance: String, eni: String },
}

/// Instance metadata reads through one session token, renewed once when refused.
struct Imds<'a> {
    settings: &'a NodeSettings,
    client: Client,
}

impl Imds<'_> {
    fn client(s: &NodeSettings) -> Result<Client, MetadataError> {
        // One attempt per read: a 401 is answered here with a new token, not by the SDK's
        // retry, which would send the refused token again.
        let mut b = Client::builder()
            .connect_timeout(s.imds_timeout)
            .read_timeout(s.imds_timeout)
            .max_attempts(1);
        if let Some(ep) = &s.imds_endpoint {
            b = b.endpoint(ep).map_err(|e| MetadataError::Endpoint {
                endpoint: ep.to_string(),
                detail: e.to_string(),
            })?;
        }
        Ok(b.build())
    }

    async fn get(&mut self, path: String) -> Result<String, MetadataError> {
        let full = format!("/latest/meta-data/{path}");
        let describe = |e: ImdsError| match &e {
            // Its Display dumps the whole HTTP response in Rust's debug format.
            ImdsError::ErrorResponse(r) => MetadataError::Http {
                path: path.clone(),
                status: r.response().status().as_u16(),
            },
            _ => MetadataError::Read {
                path: path.clone(),
                detail: crate::telemetry::chain(&e),
            },
        };
        match self.client.get(full.clone()).await {
            Ok(v) => Ok(String::from(v).trim().to_owned()),
            Err(ImdsError::ErrorResponse(r)) if r.response().status().as_u16() == 401 => {
                tracing::info!(event = events::IMDS_TOKEN_REFUSED, path = %path,
                    "instance metadata refused the session token; retrying once with a new one");
                self.client = Imds::client(self.settings)?;
                self.client
                    .get(full)
                    .await
                    .map(|v| String::from(v).trim().to_owned())
                    .map_err(describe)
            }
            Err(e) => Err(describe(e)),
        }
    }
}

async fn resolve(s: &NodeSettings) -> Result<NodeIdentity, MetadataError> {
    if let (Some(i), Some(e), Some(p)) = (&s.instance_id, &s.network_interface_id, s.private_ip) {
        return Ok(NodeIdentity {
            instance_id: i.clone(),
            network_interface_id: e.clone(),
            private_ip: p,
            private_ips: Vec::new(),
        });
    }
    let mut imds = Imds {
        settings: s,
        client: Imds::client(s)?,
    };
    let instance_id = match &s.instance_id {
        Some(i) => i.clone(),
        None => imds.get("instance-id".into()).await?,
    };
    // Find the MAC of the ENI we claim onto: the configured one, or the primary (device 0).
    let mac = match &s.network_interface_id {
        None => imds.get("mac".into()).await?,
        Some(eni) => {
            let macs = imds.get("network/interfaces/macs/".into()).await?;
            let mut found = None;
            for m in macs
                .lines()
                .map(|l| l.trim().trim_end_matches('/'))
                .filter(|l| !l.is_empty())
            {
                if imds
                    .get(format!("network/interfaces/macs/{m}/interface-id"))
                    .await?
                    == *eni
                {
                    found = Some(m.to_owned());
                    break;
                }
            }
            found.ok_or_else(|| MetadataError::NotAttached { eni: eni.clone() })?
        }
    };
    let network_interface_id = match &s.network_interface_id {
        Some(e) => e.clone(),
        None => {
            imds.get(format!("network/interfaces/macs/{mac}/interface-id"))
                .await?
        }
    };
    let ips_text = imds
        .get(format!("network/interfaces/macs/{mac}/local-ipv4s"))
        .await?;
    let mut private_ips = Vec::new();
    for l in ips_text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        private_ips.push(
            l.parse::<Ipv4Addr>()
                .map_err(|_| MetadataError::NotIpv4 { line: l.to_owned() })?,
        );
    }
    let private_ip = match s.private_ip {
        Some(p) => p,
        None => *private_ips.first().ok_or(MetadataError::NoIpv4s)?,
    };
    if !instance_id.starts_with("i-") || !network_interface_id.starts_with("eni-") {
        return Err(MetadataError::UnexpectedIds {
            instance: instance_id,
            eni: network_interface_id,
        });
    }
    tracing::info!(event = events::IDENTITY_RESOLVED, instance = %instance_id, eni = %network_interface_id, private_ip = %private_ip);
    Ok(NodeIdentity {
        instance_id,
        network_interface_id,
        private_ip,
        private_ips,
    })
}
