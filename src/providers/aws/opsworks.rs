//! Elastic IP reads and moves through OpsWorks Stacks (end of life since May 2024; kept for the
//! stacks that still carry it). OpsWorks knows an Elastic IP by its address and an instance by
//! its OpsWorks id, and has no conditional associate: the caller reads, moves, then verifies.

use super::{called, AwsError};
use crate::config::OpsworksSettings;
use crate::telemetry::metrics::Metrics;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

/// An OpsWorks Stacks client (API reference: DescribeElasticIps, AssociateElasticIp). Cheap
/// to clone.
#[derive(Clone)]
pub struct OpsWorks {
    pub(super) client: aws_sdk_opsworks::Client,
    /// Counts each call and each error (`aws_api_calls_total`, `aws_api_errors_total`).
    metrics: Arc<Metrics>,
}

/// What OpsWorks says about one Elastic IP registered with a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticIpState {
    /// The Elastic IP's address: OpsWorks names it by that.
    pub ip: Ipv4Addr,
    /// The OpsWorks instance it is associated with, if any.
    pub instance_id: Option<String>,
    /// The Elastic IP's own region (the stack's), which may differ from the API region.
    pub region: Option<String>,
}

impl ElasticIpState {
    /// Who holds it, for logs and alerts.
    pub fn holder(&self) -> String {
        match &self.instance_id {
            Some(i) => format!("OpsWorks instance {i}"),
            None => "nobody (unassociated)".into(),
        }
    }
}

impl OpsWorks {
    /// A client for the OpsWorks API region, sharing the SDK's credentials, retries and
    /// timeouts; `[opsworks] endpoint_url` overrides the endpoint for this service only.
    pub fn new(
        config: &aws_config::SdkConfig,
        s: &OpsworksSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut b = aws_sdk_opsworks::config::Builder::from(config)
            .region(aws_sdk_opsworks::config::Region::new(s.region.clone()));
        if let Some(u) = &s.endpoint_url {
            b = b.endpoint_url(u);
        }
        OpsWorks {
            client: aws_sdk_opsworks::Client::from_conf(b.build()),
            metrics,
        }
    }

    /// DescribeElasticIps for one address; it must be registered with a stack (exactly one
    /// answer), else an error (operation `opsworks:DescribeElasticIps`).
    pub async fn describe(&self, eip: Ipv4Addr) -> Result<ElasticIpState, AwsError> {
        const OP: &str = "opsworks:DescribeElasticIps";
        called(&self.metrics, "opsworks", "DescribeElasticIps");
        let out = self
            .client
            .describe_elastic_ips()
            .ips(eip.to_string())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
        let wanted = eip.to_string();
        let found: Vec<_> = out
            .elastic_ips()
            .iter()
            .filter(|e| e.ip() == Some(wanted.as_str()))
            .collect();
        let [e] = found.as_slice() else {
            return Err(AwsError {
                operation: OP,
                code: None,
                message: format!(
                    "expected exactly one registered Elastic IP {eip}, got {} (is it registered with the stack?)",
                    found.len()
                ),
            });
        };
        Ok(ElasticIpState {
            ip: eip,
            instance_id: e.instance_id().filter(|s| !s.is_empty()).map(str::to_owned),
            region: e.region().map(str::to_owned),
        })
    }

    /// Associate with `instance_id`. OpsWorks moves the address from any current holder.
    pub async fn associate(&self, eip: Ipv4Addr, instance_id: &str) -> Result<(), AwsError> {
        called(&self.metrics, "opsworks", "AssociateElasticIp");
        self.client
            .associate_elastic_ip()
            .elastic_ip(eip.to_string())
            .instance_id(instance_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, "opsworks:AssociateElasticIp", e))?;
        Ok(())
    }
}

/// This node's OpsWorks instance id: `[opsworks] instance_id`, else the agent's file, read once
/// on first need.
pub struct OpsworksIdentity {
    configured: Option<String>,
    agent_config: std::path::PathBuf,
    cell: tokio::sync::OnceCell<String>,
}

impl OpsworksIdentity {
    /// From `[opsworks]`: `instance_id`, else `agent_config` when first needed.
    pub fn new(s: &OpsworksSettings) -> Self {
        OpsworksIdentity {
            configured: s.instance_id.clone(),
            agent_config: s.agent_config.clone(),
            cell: tokio::sync::OnceCell::new(),
        }
    }

    /// This node's OpsWorks instance id; the agent's file is read again after a failure.
    pub async fn get(&self) -> Result<&str, AgentIdentityError> {
        self.cell
            .get_or_try_init(|| async {
                match &self.configured {
                    Some(id) => Ok(id.clone()),
                    None => agent_identity(&self.agent_config),
                }
            })
            .await
            .map(String::as_str)
    }
}

/// Why this node's OpsWorks instance id cannot be read from the agent's configuration. The
/// messages name the file, never its contents (it also holds the agent's keys).
#[derive(Debug, thiserror::Error)]
pub enum AgentIdentityError {
    /// The file cannot be read (missing, permissions).
    #[error("cannot read the OpsWorks agent's configuration {}: {source}; set [opsworks] instance_id", path.display())]
    Unreadable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The file has no `:identity:` line (not an OpsWorks agent's file).
    #[error("{} has no `:identity:` line; set [opsworks] instance_id", path.display())]
    NoIdentity { path: std::path::PathBuf },
    /// The `:identity:` value is not shaped like an OpsWorks instance id (a UUID).
    #[error("the `:identity:` in {} is not an OpsWorks instance id; set [opsworks] instance_id", path.display())]
    NotAnId { path: std::path::PathBuf },
}

/// This node's OpsWorks instance id, from the `:identity:` line of the agent's configuration
/// (`/etc/aws/opsworks/instance-agent.yml` by default).
/// The file also holds the agent's keys on registered instances: nothing else is read out of
/// it, and its contents never reach an error message.
pub fn agent_identity(path: &Path) -> Result<String, AgentIdentityError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentIdentityError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(":identity:"))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\''))
        .ok_or_else(|| AgentIdentityError::NoIdentity {
            path: path.to_owned(),
        })?;
    if crate::config::is_opsworks_id(value) {
        Ok(value.to_owned())
    } else {
        Err(AgentIdentityError::NotAnId {
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("instance-agent.yml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn identity_comes_from_the_agent_file_and_secrets_never_reach_errors() {
        let (_d, p) = agent_file(
            "---\n:access_key_id: AKIAIOSFODNN7EXAMPLE\n:secret_access_key: wJalrXUtnFEMI/K7MDENG\n:identity: 4d6d1710-ded9-42a1-b08e-b043ad7af1e2\n",
        );
        assert_eq!(
            agent_identity(&p).unwrap(),
            "4d6d1710-ded9-42a1-b08e-b043ad7af1e2"
        );

        let (_d, p) = agent_file(":secret_access_key: wJalrXUtnFEMI/K7MDENG\n:identity: i-0abc\n");
        let e = agent_identity(&p).unwrap_err().to_string();
        assert!(e.contains("not an OpsWorks instance id"), "{e}");
        assert!(!e.contains("wJalr") && !e.contains("i-0abc"), "{e}");

        let (_d, p) = agent_file(":secret_access_key: wJalrXUtnFEMI/K7MDENG\n");
        let e = agent_identity(&p).unwrap_err().to_string();
        assert!(
            e.contains("no `:identity:` line") && !e.contains("wJalr"),
            "{e}"
        );

        let e = agent_identity(Path::new("/nonexistent/instance-agent.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("set [opsworks] instance_id"), "{e}");
    }
}
