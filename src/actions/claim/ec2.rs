//! The EC2 half of a claim: read the association, release it by its AssociationId, associate
//! with `AllowReassociation=false`, verify. Of two nodes racing, the second release fails with
//! `InvalidAssociationID.NotFound` or the second associate with `Resource.AlreadyAssociated`:
//! exactly one wins (EC2 API reference, DisassociateAddress and AssociateAddress).

use super::{verify_until, HereError, Locate, MoveResult, Owner, Provider, Spot, Verified};
use crate::actions::alerts::Alert;
use crate::config::{AddressRef, EipRef};
use crate::providers::aws::ec2::{AddressState, Ec2};
use crate::providers::aws::imds::IdentitySource;
use crate::providers::aws::AwsError;
use crate::state::PendingClaim;
use crate::telemetry::events;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

/// Where the EIP should end up: this node's ENI and one of its private IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// This node's instance id (`i-...`), for logs and the alert.
    pub instance_id: String,
    /// The ENI the EIP is associated with (`eni-...`).
    pub eni: String,
    /// The private IP on that ENI the EIP maps to.
    pub private_ip: Ipv4Addr,
}

impl Spot for Target {
    const PROVIDER: &'static str = "ec2";
    fn read_call(_: &AddressRef) -> &'static str {
        "ec2:DescribeAddresses"
    }

    fn describe(&self) -> String {
        format!("{} ({}, {})", self.instance_id, self.eni, self.private_ip)
    }

    fn instance_id(&self) -> &str {
        &self.instance_id
    }

    fn pending(&self, alert: Option<&Alert>) -> PendingClaim {
        PendingClaim {
            provider: Self::PROVIDER.to_owned(),
            instance_id: self.instance_id.clone(),
            network_interface_id: Some(self.eni.clone()),
            private_ip: Some(self.private_ip.to_string()),
            alert: alert.map(|a| (a.topic_arn.clone(), a.subject.clone(), a.message.clone())),
            started_at: 0,
            from: None,
        }
    }

    fn from_pending(c: &PendingClaim) -> Option<Self> {
        Some(Target {
            instance_id: c.instance_id.clone(),
            eni: c.network_interface_id.clone()?,
            private_ip: c.private_ip.as_deref()?.parse().ok()?,
        })
    }

    fn rehearse(&self, eip: &AddressRef) {
        tracing::info!(event = events::DRY_RUN, call = "ec2:DisassociateAddress", eip = %eip, note = "by the AssociationId read, if the EIP is associated elsewhere");
        tracing::info!(event = events::DRY_RUN, call = "ec2:AssociateAddress", eip = %eip, eni = %self.eni,
            private_ip = %self.private_ip, allow_reassociation = false);
    }
}

/// Finds this node's ENI and private IP: `[node]`, else instance metadata (IMDSv2).
pub struct Here {
    identity: Arc<IdentitySource>,
    /// The action's `private_ip`; default: the ENI's primary private IP.
    private_ip: Option<Ipv4Addr>,
}

impl Here {
    /// `private_ip`: the action's, None for the ENI's primary private IP.
    pub fn new(identity: Arc<IdentitySource>, private_ip: Option<Ipv4Addr>) -> Self {
        Here {
            identity,
            private_ip,
        }
    }
}

impl Locate for Here {
    type Spot = Target;

    async fn here(&self) -> Result<Target, HereError> {
        let me = self.identity.get().await?;
        let target = Target {
            instance_id: me.instance_id.clone(),
            eni: me.network_interface_id.clone(),
            private_ip: self.private_ip.unwrap_or(me.private_ip),
        };
        if !me.private_ips.is_empty() && !me.private_ips.contains(&target.private_ip) {
            return Err(HereError::NotAssigned {
                ip: target.private_ip,
                eni: target.eni,
                have: me.private_ips.clone(),
            });
        }
        Ok(target)
    }
}

/// Claims through the EC2 API.
pub struct Claims {
    ec2: Ec2,
    here: Here,
    eip: EipRef,
}

impl Claims {
    /// Claims of `eip` through `ec2` onto the spot `here` finds.
    pub fn new(ec2: Ec2, here: Here, eip: EipRef) -> Self {
        Claims { ec2, here, eip }
    }
}

impl Provider for Claims {
    type Spot = Target;
    type State = AddressState;

    async fn here(&self) -> Result<Target, HereError> {
        self.here.here().await
    }

    async fn read(&self) -> Result<Owner<AddressState>, AwsError> {
        let a = self.ec2.describe(&self.eip).await?;
        Ok(Owner {
            token: a.association_id.clone(),
            holder: a.holder(),
            public_ip: a.public_ip,
            state: a,
        })
    }

    fn holds(target: &Target, owner: &Owner<AddressState>) -> bool {
        is_on(&owner.state, target)
    }

    fn spot_of(owner: &Owner<AddressState>) -> Option<Target> {
        let a = &owner.state;
        Some(Target {
            instance_id: a
                .instance_id
                .clone()
                .unwrap_or_else(|| "an ENI without an instance".into()),
            eni: a.network_interface_id.clone()?,
            private_ip: a.private_ip?,
        })
    }

    /// Move, then verify.
    async fn take(
        &self,
        before: &Owner<AddressState>,
        target: &Target,
        verify_for: Duration,
    ) -> MoveResult {
        let eip = &self.eip;
        match move_eip(&self.ec2, eip, &before.state, target).await {
            Ok(association) => {
                let verified =
                    verify(&self.ec2, eip, &association, &before.state, verify_for).await;
                MoveResult::Moved(Some(association), verified)
            }
            Err(e) => e,
        }
    }

    fn address_label(&self, owner: &Owner<AddressState>) -> String {
        label(&self.eip, &owner.state)
    }
}

/// The address as alerts name it: its public IPv4 and its allocation id, whichever of the two
/// the configuration names it by.
pub fn label(eip: &EipRef, a: &AddressState) -> String {
    match (eip, a.public_ip) {
        (EipRef::AllocationId(_), Some(ip)) => format!("{ip} ({})", a.allocation_id),
        _ => format!("{eip} ({})", a.allocation_id),
    }
}

/// Is the address already where we want it: the same ENI and the same private IP?
pub fn is_on(addr: &AddressState, target: &Target) -> bool {
    addr.network_interface_id.as_deref() == Some(target.eni.as_str())
        && addr.private_ip == Some(target.private_ip)
}

/// Release the association we read, then associate onto `target` without reassociation.
///
/// `InvalidAssociationID.NotFound` and `Resource.AlreadyAssociated` are ambiguous: another node
/// may have won, or our own call succeeded and the SDK retried it after a timeout. EC2 is asked
/// who holds the EIP now, and that decides.
async fn move_eip(
    ec2: &Ec2,
    eip: &EipRef,
    before: &AddressState,
    target: &Target,
) -> Result<String, MoveResult> {
    if let Some(assoc) = &before.association_id {
        match ec2.disassociate(assoc).await {
            Ok(()) => {}
            Err(e) if e.is_code("InvalidAssociationID.NotFound") => match ec2.describe(eip).await {
                // Released (by us or by a rival): associating without reassociation settles it.
                Ok(now) if now.association_id.is_none() => {}
                Ok(now) => {
                    return Err(MoveResult::Lost(format!(
                        "{eip} was moved to {} while we claimed it ({e})",
                        now.holder()
                    )))
                }
                Err(e2) => return Err(MoveResult::Failed(format!("{e}; then {e2}"))),
            },
            Err(e) => return Err(MoveResult::Failed(e.to_string())),
        }
    }
    match ec2
        .associate(&before.allocation_id, &target.eni, target.private_ip)
        .await
    {
        Ok(a) => Ok(a),
        Err(e) if e.is_code("Resource.AlreadyAssociated") => match ec2.describe(eip).await {
            Ok(now) if now.network_interface_id.as_deref() == Some(target.eni.as_str()) => now
                .association_id
                .ok_or_else(|| MoveResult::Failed(format!("{e}; and EC2 shows no association id"))),
            Ok(now) => Err(MoveResult::Lost(format!(
                "another node associated {eip} first: it is on {} ({e})",
                now.holder()
            ))),
            Err(e2) => Err(MoveResult::Failed(format!("{e}; then {e2}"))),
        },
        Err(e) => Err(MoveResult::Failed(e.to_string())),
    }
}

/// Wait until DescribeAddresses shows our association (reads are eventually consistent).
async fn verify(
    ec2: &Ec2,
    eip: &EipRef,
    association: &str,
    before: &AddressState,
    within: Duration,
) -> Verified {
    verify_until(
        within,
        "DescribeAddresses did not show the new association in time",
        || ec2.describe(eip),
        |now| match now.association_id.as_deref() {
            Some(a) if a == association => Some(Verified::Yes),
            // Still the old view: look again.
            None => None,
            _ if now.association_id == before.association_id => None,
            _ => Some(Verified::Lost(now.holder())),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(eni: Option<&str>, ip: Option<[u8; 4]>) -> AddressState {
        AddressState {
            allocation_id: "eipalloc-1".into(),
            public_ip: Some(Ipv4Addr::new(203, 0, 113, 10)),
            association_id: eni.map(|_| "eipassoc-1".into()),
            instance_id: eni.map(|_| "i-1".into()),
            network_interface_id: eni.map(str::to_owned),
            private_ip: ip.map(Ipv4Addr::from),
        }
    }

    /// A tester's find: with `allocation_id` configured, alerts named the address
    /// "eipalloc-1 (eipalloc-1)" and never its public IP.
    #[test]
    fn alerts_name_the_public_ip_however_the_address_is_configured() {
        let a = addr(Some("eni-a"), Some([10, 0, 0, 5]));
        assert_eq!(
            label(&EipRef::AllocationId("eipalloc-1".into()), &a),
            "203.0.113.10 (eipalloc-1)"
        );
        assert_eq!(
            label(&EipRef::PublicIp(Ipv4Addr::new(203, 0, 113, 10)), &a),
            "203.0.113.10 (eipalloc-1)"
        );
    }

    #[test]
    fn ours_only_on_the_same_eni_and_private_ip() {
        let t = Target {
            instance_id: "i-1".into(),
            eni: "eni-a".into(),
            private_ip: Ipv4Addr::new(10, 0, 0, 5),
        };
        assert!(is_on(&addr(Some("eni-a"), Some([10, 0, 0, 5])), &t));
        assert!(
            !is_on(&addr(Some("eni-a"), Some([10, 0, 0, 6])), &t),
            "secondary IP differs"
        );
        assert!(!is_on(&addr(Some("eni-b"), Some([10, 0, 0, 5])), &t));
        assert!(!is_on(&addr(None, None), &t));
        assert_eq!(addr(None, None).holder(), "nobody (unassociated)");
    }
}
