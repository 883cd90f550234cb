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
    /// `local-ipv4s` listed no address.
    #[error("instance metadata local-ipv4s is empty")]
    NoIpv4s,
    /// A value that is not what its path holds (an instance id, an ENI id, a MAC, an IPv4,
    /// a region): it comes from outside and would reach logs, output and AWS calls. The
    /// value is shown escaped and cut short ([`shown`]).
    #[error("instance metadata {path}: {value} is not {expected}")]
    Invalid {
        path: String,
        value: String,
        expected: &'static str,
    },
}

/// The SDK's metadata client at `[node] imds_endpoint` (else `AWS_EC2_METADATA_SERVICE_ENDPOINT`,
/// else 169.254.169.254), with `imds_timeout` to connect and to read.
fn builder(s: &NodeSettings) -> Result<aws_config::imds::client::Builder, MetadataError> {
    let mut b = Client::builder()
        .connect_timeout(s.imds_timeout)
        .read_timeout(s.imds_timeout);
    if let Some(ep) = &s.imds_endpoint {
        b = b.endpoint(ep).map_err(|e| MetadataError::Endpoint {
            endpoint: ep.to_string(),
            detail: e.to_string(),
        })?;
    }
    Ok(b)
}

/// The metadata client the SDK's credentials chain reads an instance role's credentials
/// with: the same endpoint and timeouts as every other metadata read, and the SDK's own
/// retries (its credentials are cached and refreshed ahead of expiry).
pub fn credentials_client(s: &NodeSettings) -> Result<Client, MetadataError> {
    Ok(builder(s)?.build())
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
        Ok(builder(s)?.max_attempts(1).build())
    }

    /// Read `path` and check it is a `kind` ([`MetadataError::Invalid`] if not).
    async fn read(&mut self, path: String, kind: Kind) -> Result<String, MetadataError> {
        let v = self.get(path.clone()).await?;
        kind.check(&path, &v)?;
        Ok(v)
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
        None => imds.read("instance-id".into(), Kind::InstanceId).await?,
    };
    // Find the MAC of the ENI we claim onto: the configured one, or the primary (device 0).
    let mac = match &s.network_interface_id {
        None => imds.read("mac".into(), Kind::Mac).await?,
        Some(eni) => {
            let path = "network/interfaces/macs/";
            let macs = imds.get(path.into()).await?;
            let mut found = None;
            for m in macs
                .lines()
                .map(|l| l.trim().trim_end_matches('/'))
                .filter(|l| !l.is_empty())
            {
                let m = Kind::Mac.check(path, m)?;
                let path = format!("network/interfaces/macs/{m}/interface-id");
                if imds.read(path, Kind::EniId).await? == *eni {
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
            let path = format!("network/interfaces/macs/{mac}/interface-id");
            imds.read(path, Kind::EniId).await?
        }
    };
    let path = format!("network/interfaces/macs/{mac}/local-ipv4s");
    let ips_text = imds.get(path.clone()).await?;
    let mut private_ips = Vec::new();
    for l in ips_text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let ip = Kind::Ipv4.check(&path, l)?;
        private_ips.push(ip.parse::<Ipv4Addr>().expect("checked as an IPv4 address"));
    }
    let private_ip = match s.private_ip {
        Some(p) => p,
        None => *private_ips.first().ok_or(MetadataError::NoIpv4s)?,
    };
    tracing::info!(event = events::IDENTITY_RESOLVED, instance = %instance_id, eni = %network_interface_id, private_ip = %private_ip);
    Ok(NodeIdentity {
        instance_id,
        network_interface_id,
        private_ip,
        private_ips,
    })
}

/// This instance's region (`placement/region`), from the configured metadata endpoint with
/// the configured timeout, like every other metadata read.
pub async fn region(s: &NodeSettings) -> Result<String, MetadataError> {
    let mut imds = Imds {
        settings: s,
        client: Imds::client(s)?,
    };
    imds.read("placement/region".into(), Kind::Region).await
}

/// The region provider the SDK configuration ends its chain with: [`region`], logged as one
/// line when it fails (the SDK's own metadata provider would ask its default endpoint, and
/// log the whole error context over several lines).
#[derive(Debug)]
pub struct MetadataRegion(pub NodeSettings);

impl aws_config::meta::region::ProvideRegion for MetadataRegion {
    fn region(&self) -> aws_config::meta::region::future::ProvideRegion<'_> {
        aws_config::meta::region::future::ProvideRegion::new(async move {
            match region(&self.0).await {
                Ok(r) => Some(aws_config::Region::new(r)),
                Err(e) => {
                    tracing::warn!(event = events::REGION_UNAVAILABLE, error = %e);
                    None
                }
            }
        })
    }
}

/// What a metadata value must be. Every value read is checked in full before it is used:
/// it comes from outside, and goes into logs, output, later metadata paths and AWS calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `i-` and 8 or 17 lowercase hex digits (EC2's instance ids).
    InstanceId,
    /// `eni-` and 8 or 17 lowercase hex digits.
    EniId,
    /// Six pairs of hex digits separated by colons, as `mac` gives it: `0e:49:61:0f:c3:11`.
    Mac,
    Ipv4,
    /// `us-east-1`, `us-gov-west-1`: two letters, words, a number.
    Region,
}

/// The most characters of a refused value an error shows.
const SHOWN_CHARS: usize = 64;

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::InstanceId => "an instance id (i- and 8 or 17 lowercase hex digits)",
            Kind::EniId => "a network interface id (eni- and 8 or 17 lowercase hex digits)",
            Kind::Mac => "a MAC address",
            Kind::Ipv4 => "an IPv4 address",
            Kind::Region => "a region like us-east-1",
        }
    }

    fn is(self, v: &str) -> bool {
        match self {
            Kind::InstanceId => is_ec2_id(v, "i-"),
            Kind::EniId => is_ec2_id(v, "eni-"),
            Kind::Mac => {
                v.len() == 17
                    && v.split(':').count() == 6
                    && v.split(':')
                        .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
            }
            Kind::Ipv4 => v.parse::<Ipv4Addr>().is_ok(),
            Kind::Region => is_region(v),
        }
    }

    /// `v` when it is one; else [`MetadataError::Invalid`] naming `path`.
    fn check<'v>(self, path: &str, v: &'v str) -> Result<&'v str, MetadataError> {
        if self.is(v) {
            Ok(v)
        } else {
            Err(MetadataError::Invalid {
                path: path.to_owned(),
                value: shown(v),
                expected: self.expected(),
            })
        }
    }
}

/// `prefix` then 8 (older) or 17 lowercase hex digits.
fn is_ec2_id(v: &str, prefix: &str) -> bool {
    v.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The same shape `[aws] region` must have (config validation's `is_region`).
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let word = |p: &&str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase());
    parts.len() >= 3
        && parts[0].len() == 2
        && word(&parts[0])
        && parts[1..parts.len() - 1].iter().all(word)
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
}

/// A refused value as an error shows it: Debug-escaped (a newline is `\n`, so it cannot start
/// a forged log line) and at most [`SHOWN_CHARS`] characters of it.
fn shown(v: &str) -> String {
    let count = v.chars().count();
    if count <= SHOWN_CHARS {
        format!("{v:?}")
    } else {
        let cut: String = v.chars().take(SHOWN_CHARS).collect();
        format!("{cut:?}... ({count} characters)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tester's find: an `instance-id` of "i-0abc\nPASS something" or an ENI of
    /// "eni-zzz;<b>" passed a prefix check, and the newline reached logs and output. Every
    /// value read from metadata is checked in full, and a refused one is shown escaped and cut
    /// short, with the path it came from.
    #[test]
    fn metadata_identifiers_are_validated_in_full() {
        let good = [
            (Kind::InstanceId, "i-0123abcd"),
            (Kind::InstanceId, "i-0123456789abcdef0"),
            (Kind::EniId, "eni-0123abcd"),
            (Kind::EniId, "eni-0123456789abcdef0"),
            (Kind::Mac, "0e:49:61:0f:c3:11"),
            (Kind::Ipv4, "10.0.1.5"),
            (Kind::Region, "us-east-1"),
            (Kind::Region, "us-gov-west-1"),
        ];
        for (kind, v) in good {
            assert_eq!(kind.check("p", v), Ok(v), "{kind:?}");
        }
        let bad = [
            (Kind::InstanceId, "i-0abc\nPASS something"),
            (Kind::InstanceId, "i-0abc"),
            (Kind::InstanceId, "i-0123ABCD"),
            (Kind::InstanceId, "i-0123456789abcdef"),
            (Kind::InstanceId, "i-0123456789abcdef01"),
            (Kind::InstanceId, "x-0123abcd"),
            (Kind::InstanceId, "i-0123abcd "),
            (Kind::InstanceId, ""),
            (Kind::EniId, "eni-zzz;<b>"),
            (Kind::EniId, "eni-0123abcg"),
            (Kind::EniId, "i-0123abcd"),
            (Kind::Mac, "0e:49:61:0f:c3"),
            (Kind::Mac, "0e:49:61:0f:c3:1/"),
            (Kind::Mac, "0e:49:61:0f:c3:11/../x"),
            (Kind::Mac, "0e-49-61-0f-c3-11"),
            (Kind::Ipv4, "10.0.1.256"),
            (Kind::Ipv4, "10.0.1.5\r"),
            (Kind::Region, "us-east-1\nx"),
            (Kind::Region, "US-EAST-1"),
            (Kind::Region, "us-east"),
        ];
        for (kind, v) in bad {
            let e = kind.check("the/path", v).expect_err(v);
            let text = e.to_string();
            assert!(
                text.starts_with("instance metadata the/path: ") && !text.contains('\n'),
                "{text}"
            );
            assert!(text.contains(kind.expected()), "{text}");
        }
        let e = Kind::InstanceId
            .check("instance-id", "i-0abc\nPASS something")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "instance metadata instance-id: \"i-0abc\\nPASS something\" is not an instance id (i- and 8 or 17 lowercase hex digits)"
        );
        // A long answer is cut short, and says how long it was.
        let long = format!("i-{}", "a".repeat(5000));
        let text = Kind::InstanceId
            .check("instance-id", &long)
            .unwrap_err()
            .to_string();
        assert!(text.len() < 300, "{text}");
        assert!(text.contains("(5002 characters)"), "{text}");
    }
}
