//! The EC2 half of a claim: read the association, release it by its AssociationId, associate
//! with `AllowReassociation=false`, verify. Of two nodes racing, the second release fails with
//! `InvalidAssociationID.NotFound` or the second associate with `Resource.AlreadyAssociated`:
//! exactly one wins.

use super::{verify_until, MoveResult, Owner, Read, Verified};
use crate::config::EipRef;
use crate::providers::aws::ec2::{AddressState, Ec2};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Where the EIP should end up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub instance_id: String,
    pub eni: String,
    pub private_ip: Ipv4Addr,
}

impl Target {
    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.instance_id, self.eni, self.private_ip)
    }
}

/// Is the address already where we want it?
pub fn is_on(addr: &AddressState, target: &Target) -> bool {
    addr.network_interface_id.as_deref() == Some(target.eni.as_str())
        && addr.private_ip == Some(target.private_ip)
}

pub async fn read(ec2: &Ec2, eip: &EipRef) -> Result<Owner, crate::providers::aws::AwsError> {
    let a = ec2.describe(eip).await?;
    Ok(Owner {
        token: a.association_id.clone(),
        holder: a.holder(),
        public_ip: a.public_ip,
        state: Read::Ec2(a),
    })
}

/// Move, then verify.
pub async fn take(
    ec2: &Ec2,
    eip: &EipRef,
    before: &AddressState,
    target: &Target,
    verify_for: Duration,
) -> MoveResult {
    match move_eip(ec2, eip, before, target).await {
        Ok(association) => {
            let verified = verify(ec2, eip, &association, before, verify_for).await;
            MoveResult::Moved(Some(association), verified)
        }
        Err(e) => e,
    }
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
