//! The OpsWorks Stacks half of a claim: read the owner with DescribeElasticIps, move with
//! AssociateElasticIp, verify.
//!
//! OpsWorks has no conditional associate (EC2's `AllowReassociation=false`): AssociateElasticIp
//! takes the address from whoever holds it. What keeps two standbys from fighting is what comes
//! before the call (hold-down, reading the owner first and leaving a fresh takeover alone, the
//! last re-check) and what comes after: the claim only counts once OpsWorks still shows this
//! instance after [`SETTLE`], so the node whose call landed first sees it lose and backs off.
//! Prefer the EC2 provider where it is available.

use super::{verify_until, HereError, Locate, MoveResult, Owner, Provider, Spot, Verified};
use crate::actions::alerts::Alert;
use crate::config::{AddressRef, EipRef};
use crate::providers::aws::opsworks::{ElasticIpState, OpsWorks, OpsworksIdentity};
use crate::providers::aws::AwsError;
use crate::state::PendingClaim;
use crate::telemetry::events;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long our association must stay put (on every read) before the claim counts as verified.
const SETTLE: Duration = Duration::from_secs(2);

/// OpsWorks names an Elastic IP by its address; validation refuses `allocation_id` here.
pub fn address(eip: &EipRef) -> Result<Ipv4Addr, AwsError> {
    match eip {
        EipRef::PublicIp(ip) => Ok(*ip),
        EipRef::AllocationId(id) => Err(AwsError {
            operation: "opsworks:DescribeElasticIps",
            code: None,
            message: format!("OpsWorks needs the Elastic IP's address, not its allocation id {id}"),
        }),
    }
}

/// Where the EIP should end up: this node's OpsWorks instance id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance(pub String);

impl Spot for Instance {
    const PROVIDER: &'static str = "opsworks";
    fn read_call(_: &AddressRef) -> &'static str {
        "opsworks:DescribeElasticIps"
    }

    fn describe(&self) -> String {
        format!("OpsWorks instance {}", self.0)
    }

    fn instance_id(&self) -> &str {
        &self.0
    }

    fn pending(&self, alert: Option<&Alert>) -> PendingClaim {
        PendingClaim {
            provider: Self::PROVIDER.to_owned(),
            instance_id: self.0.clone(),
            network_interface_id: None,
            private_ip: None,
            alert: alert.map(|a| (a.topic_arn.clone(), a.subject.clone(), a.message.clone())),
            started_at: 0,
            from: None,
        }
    }

    fn from_pending(c: &PendingClaim) -> Option<Self> {
        Some(Instance(c.instance_id.clone()))
    }

    fn rehearse(&self, eip: &AddressRef) {
        tracing::info!(event = events::DRY_RUN, call = "opsworks:AssociateElasticIp", eip = %eip, instance_id = %self.0);
    }
}

/// Finds this node's OpsWorks instance id: `[opsworks] instance_id`, else the agent's file.
pub struct Here {
    identity: Arc<OpsworksIdentity>,
}

impl Here {
    /// This node's OpsWorks identity, read once on first need.
    pub fn new(identity: Arc<OpsworksIdentity>) -> Self {
        Here { identity }
    }
}

impl Locate for Here {
    type Spot = Instance;

    async fn here(&self) -> Result<Instance, HereError> {
        Ok(Instance(self.identity.get().await?.to_owned()))
    }
}

/// Claims through the OpsWorks Stacks API.
pub struct Claims {
    ow: OpsWorks,
    here: Here,
    eip: EipRef,
}

impl Claims {
    /// Claims of `eip` through `ow` onto the instance `here` finds.
    pub fn new(ow: OpsWorks, here: Here, eip: EipRef) -> Self {
        Claims { ow, here, eip }
    }
}

impl Provider for Claims {
    type Spot = Instance;
    type State = ElasticIpState;
    /// `AssociateElasticIp` answers before OpsWorks has moved the address.
    const MOVES_LAND_LATE: bool = true;

    async fn here(&self) -> Result<Instance, HereError> {
        self.here.here().await
    }

    async fn read(&self) -> Result<Owner<ElasticIpState>, AwsError> {
        let e = self.ow.describe(address(&self.eip)?).await?;
        Ok(Owner {
            token: e.instance_id.clone(),
            holder: e.holder(),
            public_ip: Some(e.ip),
            state: e,
        })
    }

    fn holds(spot: &Instance, owner: &Owner<ElasticIpState>) -> bool {
        owner.state.instance_id.as_deref() == Some(spot.0.as_str())
    }

    fn spot_of(owner: &Owner<ElasticIpState>) -> Option<Instance> {
        owner.state.instance_id.clone().map(Instance)
    }

    async fn take(
        &self,
        before: &Owner<ElasticIpState>,
        spot: &Instance,
        verify_for: Duration,
    ) -> MoveResult {
        if let Err(e) = self.ow.associate(before.state.ip, &spot.0).await {
            return MoveResult::Failed(e.to_string());
        }
        MoveResult::Moved(
            None,
            verify(&self.ow, &before.state, &spot.0, verify_for).await,
        )
    }

    fn address_label(&self, _owner: &Owner<ElasticIpState>) -> String {
        self.eip.to_string()
    }
}

/// Wait until OpsWorks has shown this instance on every read for [`SETTLE`]: a rival whose
/// call landed after ours shows up there.
async fn verify(
    ow: &OpsWorks,
    before: &ElasticIpState,
    instance_id: &str,
    within: Duration,
) -> Verified {
    let mut ours_since: Option<Instant> = None;
    verify_until(
        within,
        "DescribeElasticIps did not show this instance in time",
        || ow.describe(before.ip),
        |now| match (now.instance_id.as_deref(), ours_since) {
            (Some(id), Some(since)) if id == instance_id => {
                (since.elapsed() >= SETTLE).then_some(Verified::Yes)
            }
            (Some(id), None) if id == instance_id => {
                ours_since = Some(Instant::now());
                None
            }
            // Still the old view (OpsWorks applies the move asynchronously): look again.
            (None, None) => None,
            (_, None) if now.instance_id == before.instance_id => None,
            _ => Some(Verified::Lost(now.holder())),
        },
    )
    .await
}
