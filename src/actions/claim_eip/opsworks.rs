//! The OpsWorks Stacks half of a claim: read the owner with DescribeElasticIps, move with
//! AssociateElasticIp, verify.
//!
//! OpsWorks has no conditional associate (EC2's `AllowReassociation=false`): AssociateElasticIp
//! takes the address from whoever holds it. What keeps two standbys from fighting is what comes
//! before the call (hold-down, reading the owner first and leaving a fresh takeover alone, the
//! last re-check) and what comes after: the claim only counts once OpsWorks still shows this
//! instance after [`SETTLE`], so the node whose call landed first sees it lose and backs off.
//! Prefer the EC2 provider where it is available.

use super::{verify_until, MoveResult, Owner, Read, Verified};
use crate::config::EipRef;
use crate::providers::aws::opsworks::{ElasticIpState, OpsWorks};
use crate::providers::aws::AwsError;
use std::net::Ipv4Addr;
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

pub async fn read(ow: &OpsWorks, eip: &EipRef) -> Result<Owner, AwsError> {
    let e = ow.describe(address(eip)?).await?;
    Ok(Owner {
        token: e.instance_id.clone(),
        holder: e.holder(),
        public_ip: Some(e.ip),
        state: Read::OpsWorks(e),
    })
}

pub async fn take(
    ow: &OpsWorks,
    before: &ElasticIpState,
    instance_id: &str,
    verify_for: Duration,
) -> MoveResult {
    if let Err(e) = ow.associate(before.ip, instance_id).await {
        return MoveResult::Failed(e.to_string());
    }
    MoveResult::Moved(None, verify(ow, before, instance_id, verify_for).await)
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
