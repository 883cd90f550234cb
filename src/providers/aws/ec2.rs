//! Elastic IP reads and moves through EC2 (API reference: DescribeAddresses,
//! DisassociateAddress, AssociateAddress, DescribeInstances). Each call is counted and logged
//! (`aws_call`) before it is made; errors carry the service's error code.

use super::{called, AwsError};
use crate::config::EipRef;
use crate::telemetry::metrics::Metrics;
use aws_sdk_ec2::error::ProvideErrorMetadata as _;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// An EC2 client with the daemon's retries and timeouts. Cheap to clone.
#[derive(Clone)]
pub struct Ec2 {
    pub(super) client: aws_sdk_ec2::Client,
    /// Counts each call and each error (`aws_api_calls_total`, `aws_api_errors_total`).
    pub(super) metrics: Arc<Metrics>,
}

/// What EC2 says about one Elastic IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressState {
    /// `eipalloc-...`: a VPC Elastic IP's id, which AssociateAddress takes.
    pub allocation_id: String,
    pub public_ip: Option<Ipv4Addr>,
    /// `eipassoc-...`; new at every association, so it tells whether the EIP moved.
    pub association_id: Option<String>,
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    /// The private IP on that ENI the EIP maps to.
    pub private_ip: Option<Ipv4Addr>,
}

impl AddressState {
    /// Who holds it, for logs and alerts: `i-0abc (eni-0def, 10.0.0.5)` or `nobody`.
    pub fn holder(&self) -> String {
        if self.association_id.is_none() && self.network_interface_id.is_none() {
            return "nobody (unassociated)".into();
        }
        let eni = self.network_interface_id.as_deref().unwrap_or("no ENI");
        let place = match self.private_ip {
            Some(ip) => format!("{eni}, {ip}"),
            None => eni.to_owned(),
        };
        match &self.instance_id {
            Some(inst) => format!("{inst} ({place})"),
            // An ENI not attached to an instance, or an API that did not say.
            None => format!("network interface {place}"),
        }
    }
}

impl Ec2 {
    /// A client from the daemon's SDK configuration (region, credentials, endpoint).
    pub fn new(config: &aws_config::SdkConfig, metrics: Arc<Metrics>) -> Self {
        Ec2 {
            client: aws_sdk_ec2::Client::new(config),
            metrics,
        }
    }

    /// DescribeAddresses for one Elastic IP, by public IP or allocation id. An answer that is
    /// not exactly one VPC address is an error (operation `ec2:DescribeAddresses`).
    pub async fn describe(&self, eip: &EipRef) -> Result<AddressState, AwsError> {
        const OP: &str = "ec2:DescribeAddresses";
        called(&self.metrics, "ec2", "DescribeAddresses");
        let mut req = self.client.describe_addresses();
        req = match eip {
            EipRef::PublicIp(ip) => req.public_ips(ip.to_string()),
            EipRef::AllocationId(id) => req.allocation_ids(id),
        };
        let out = req
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
        let addrs = out.addresses();
        let [a] = addrs else {
            return Err(AwsError {
                operation: OP,
                code: None,
                message: format!(
                    "expected exactly one address for {eip}, got {}",
                    addrs.len()
                ),
            });
        };
        let Some(allocation_id) = a.allocation_id() else {
            return Err(AwsError {
                operation: OP,
                code: None,
                message: format!("{eip} has no allocation id (not a VPC Elastic IP)"),
            });
        };
        Ok(AddressState {
            allocation_id: allocation_id.to_owned(),
            public_ip: a.public_ip().and_then(|s| s.parse().ok()),
            // An empty string is no value: emulators answer "" for a released address.
            association_id: a
                .association_id()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            instance_id: a.instance_id().filter(|s| !s.is_empty()).map(str::to_owned),
            network_interface_id: a
                .network_interface_id()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            private_ip: a.private_ip_address().and_then(|s| s.parse().ok()),
        })
    }

    /// DisassociateAddress by AssociationId, so that only the association we read is released:
    /// if another node re-associated the EIP meanwhile, EC2 answers
    /// `InvalidAssociationID.NotFound` and the EIP stays where it is.
    pub async fn disassociate(&self, association_id: &str) -> Result<(), AwsError> {
        called(&self.metrics, "ec2", "DisassociateAddress");
        self.client
            .disassociate_address()
            .association_id(association_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, "ec2:DisassociateAddress", e))?;
        Ok(())
    }

    /// The AssociateAddress a claim makes, built in one place so that preflight's `DryRun`
    /// asks for exactly the permission the claim needs.
    fn associate_request(
        &self,
        allocation_id: &str,
        eni: &str,
        private_ip: Ipv4Addr,
    ) -> aws_sdk_ec2::operation::associate_address::builders::AssociateAddressFluentBuilder {
        self.client
            .associate_address()
            .allocation_id(allocation_id)
            .network_interface_id(eni)
            .private_ip_address(private_ip.to_string())
            .allow_reassociation(false)
    }

    /// Associate onto an ENI and private IP, refusing to take it from anyone
    /// (`AllowReassociation=false`: EC2 answers `Resource.AlreadyAssociated`): the caller has
    /// already released it from the holder it read, so a conflict means another node won.
    /// Returns the new AssociationId.
    pub async fn associate(
        &self,
        allocation_id: &str,
        eni: &str,
        private_ip: Ipv4Addr,
    ) -> Result<String, AwsError> {
        const OP: &str = "ec2:AssociateAddress";
        called(&self.metrics, "ec2", "AssociateAddress");
        let out = self
            .associate_request(allocation_id, eni, private_ip)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
        out.association_id().map(str::to_owned).ok_or(AwsError {
            operation: OP,
            code: None,
            message: "the answer carried no AssociationId".into(),
        })
    }
}

impl Ec2 {
    /// Primary private IPv4 address of each running instance in `ids`, batched (one call per
    /// 100 ids, paginated). Instances that are not running, or have no private address, are
    /// left out: the caller compares what it asked for with what it got.
    ///
    /// An id EC2 does not know fails the whole `DescribeInstances` call
    /// (`InvalidInstanceID.NotFound`, or `.Malformed` for one that cannot be an id; EC2 API
    /// reference, "Error codes"): that batch is then asked again one id at a time, and each
    /// unknown id is logged (`instance_unknown`) and left out like an instance that is not
    /// running, so one bad id (a launch event for a foreign or made-up instance) never hides
    /// the others. Errors: any other failure of the call.
    pub async fn private_ips(&self, ids: &[String]) -> Result<Vec<(String, Ipv4Addr)>, AwsError> {
        let mut out = Vec::new();
        for batch in ids.chunks(100) {
            match self.describe_running(batch).await {
                Ok(found) => out.extend(found),
                Err(e) if unknown_id(&e) => {
                    for id in batch {
                        match self.describe_running(std::slice::from_ref(id)).await {
                            Ok(found) => out.extend(found),
                            Err(e) if unknown_id(&e) => {
                                tracing::warn!(event = crate::telemetry::events::INSTANCE_UNKNOWN, instance = %id, code = e.code.as_deref().unwrap_or(""),
                                    "EC2 does not know this instance: left out like one that is not running");
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One batch of [`Ec2::private_ips`] (up to 100 ids), every page of it.
    async fn describe_running(
        &self,
        batch: &[String],
    ) -> Result<Vec<(String, Ipv4Addr)>, AwsError> {
        const OP: &str = "ec2:DescribeInstances";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            called(&self.metrics, "ec2", "DescribeInstances");
            let page = self
                .client
                .describe_instances()
                .set_instance_ids(Some(batch.to_vec()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
            for inst in page.reservations().iter().flat_map(|r| r.instances()) {
                let running =
                    inst.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running");
                let ip = inst.private_ip_address().and_then(|s| s.parse().ok());
                if let (true, Some(id), Some(ip)) = (running, inst.instance_id(), ip) {
                    out.push((id.to_owned(), ip));
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// EC2's answer for an instance id it does not know, or one that cannot be an id.
fn unknown_id(e: &AwsError) -> bool {
    e.is_code("InvalidInstanceID.NotFound") || e.is_code("InvalidInstanceID.Malformed")
}

/// What EC2 answered a call made with `DryRun=true`. EC2 checks the caller's permissions (and
/// the request's parameters) and stops before acting: `DryRunOperation` when the call would
/// have succeeded, `UnauthorizedOperation` when the caller lacks the permission (EC2 API
/// reference, "Common Parameters": DryRun). Used by `preflight`; nothing is changed.
#[derive(Debug, Clone)]
pub enum DryRun {
    /// `DryRunOperation`: the call is allowed and its parameters are good.
    Allowed,
    /// Any other answer: the error (`UnauthorizedOperation`, `InvalidNetworkInterfaceID.NotFound`, ...).
    Refused(AwsError),
}

impl Ec2 {
    /// Sort a dry run's answer: only `DryRunOperation` means allowed. An answer without an
    /// error means the endpoint ignored `DryRun` and may have carried the call out: reported
    /// as refused, so it can never read as a clean pass.
    pub(super) fn dry_run_answer<T, E, R>(
        &self,
        operation: &'static str,
        answer: Result<T, aws_sdk_ec2::error::SdkError<E, R>>,
    ) -> DryRun
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match answer {
            Err(e) if e.code() == Some(DRY_RUN_OPERATION) => DryRun::Allowed,
            Err(e) => DryRun::Refused(AwsError::from_sdk(&self.metrics, operation, e)),
            Ok(_) => DryRun::Refused(AwsError {
                operation,
                code: None,
                message: "answered as if DryRun had not been set: the endpoint may have carried the call out".into(),
            }),
        }
    }

    /// AssociateAddress as a claim would make it, with `DryRun=true`.
    pub async fn dry_run_associate(
        &self,
        allocation_id: &str,
        eni: &str,
        private_ip: Ipv4Addr,
    ) -> DryRun {
        called(&self.metrics, "ec2", "AssociateAddress");
        let answer = self
            .associate_request(allocation_id, eni, private_ip)
            .dry_run(true)
            .send()
            .await;
        self.dry_run_answer("ec2:AssociateAddress", answer)
    }

    /// DisassociateAddress of an existing association, with `DryRun=true`.
    pub async fn dry_run_disassociate(&self, association_id: &str) -> DryRun {
        called(&self.metrics, "ec2", "DisassociateAddress");
        let answer = self
            .client
            .disassociate_address()
            .association_id(association_id)
            .dry_run(true)
            .send()
            .await;
        self.dry_run_answer("ec2:DisassociateAddress", answer)
    }

    /// DescribeInstances with `DryRun=true`: whether backend sync may read its instances'
    /// addresses, without needing any instance id.
    pub async fn dry_run_describe_instances(&self) -> DryRun {
        called(&self.metrics, "ec2", "DescribeInstances");
        let answer = self.client.describe_instances().dry_run(true).send().await;
        self.dry_run_answer("ec2:DescribeInstances", answer)
    }
}

/// The error code of a dry run that would have succeeded.
const DRY_RUN_OPERATION: &str = "DryRunOperation";
