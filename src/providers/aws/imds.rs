//! This node's identity: instance id, ENI and private IPs. What `[node]` does not set comes
//! from the instance metadata service with IMDSv2 session tokens (the SDK's client, which
//! honours `AWS_EC2_METADATA_SERVICE_ENDPOINT`). Resolved once, on first need, and cached.

use crate::config::NodeSettings;
use aws_config::imds::client::Client;
use std::net::Ipv4Addr;
use tokio::sync::OnceCell;

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
}

impl IdentitySource {
    pub fn new(settings: NodeSettings) -> Self {
        IdentitySource {
            settings,
            cell: OnceCell::new(),
        }
    }

    pub async fn get(&self) -> Result<&NodeIdentity, String> {
        self.cell.get_or_try_init(|| resolve(&self.settings)).await
    }
}

async fn resolve(s: &NodeSettings) -> Result<NodeIdentity, String> {
    if let (Some(i), Some(e), Some(p)) = (&s.instance_id, &s.network_interface_id, s.private_ip) {
        return Ok(NodeIdentity {
            instance_id: i.clone(),
            network_interface_id: e.clone(),
            private_ip: p,
            private_ips: Vec::new(),
        });
    }
    let mut b = Client::builder()
        .connect_timeout(s.imds_timeout)
        .read_timeout(s.imds_timeout)
        .max_attempts(2);
    if let Some(ep) = &s.imds_endpoint {
        b = b
            .endpoint(ep)
            .map_err(|e| format!("instance metadata endpoint {ep}: {e}"))?;
    }
    let imds = b.build();
    let get = |path: String| {
        let imds = &imds;
        async move {
            imds.get(format!("/latest/meta-data/{path}"))
                .await
                .map(|v| String::from(v).trim().to_owned())
                .map_err(|e| format!("instance metadata {path}: {e}"))
        }
    };
    let instance_id = match &s.instance_id {
        Some(i) => i.clone(),
        None => get("instance-id".into()).await?,
    };
    // Find the MAC of the ENI we claim onto: the configured one, or the primary (device 0).
    let mac = match &s.network_interface_id {
        None => get("mac".into()).await?,
        Some(eni) => {
            let macs = get("network/interfaces/macs/".into()).await?;
            let mut found = None;
            for m in macs
                .lines()
                .map(|l| l.trim().trim_end_matches('/'))
                .filter(|l| !l.is_empty())
            {
                if get(format!("network/interfaces/macs/{m}/interface-id")).await? == *eni {
                    found = Some(m.to_owned());
                    break;
                }
            }
            found.ok_or_else(|| {
                format!("[node] network_interface_id {eni} is not attached to this instance")
            })?
        }
    };
    let network_interface_id = match &s.network_interface_id {
        Some(e) => e.clone(),
        None => get(format!("network/interfaces/macs/{mac}/interface-id")).await?,
    };
    let ips_text = get(format!("network/interfaces/macs/{mac}/local-ipv4s")).await?;
    let mut private_ips = Vec::new();
    for l in ips_text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        private_ips.push(
            l.parse::<Ipv4Addr>().map_err(|_| {
                format!("instance metadata local-ipv4s: {l:?} is not an IPv4 address")
            })?,
        );
    }
    let private_ip = match s.private_ip {
        Some(p) => p,
        None => *private_ips
            .first()
            .ok_or("instance metadata local-ipv4s is empty")?,
    };
    if !instance_id.starts_with("i-") || !network_interface_id.starts_with("eni-") {
        return Err(format!(
            "instance metadata gave unexpected ids: {instance_id:?}, {network_interface_id:?}"
        ));
    }
    tracing::info!(event = "identity_resolved", instance = %instance_id, eni = %network_interface_id, private_ip = %private_ip);
    Ok(NodeIdentity {
        instance_id,
        network_interface_id,
        private_ip,
        private_ips,
    })
}
