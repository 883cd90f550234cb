//! `type = "claim_eip"`: move an Elastic IP to this node, through EC2 or OpsWorks.

use super::super::super::defaults::{self, limits};
use super::super::super::model::{AlertSettings, ClaimEipSpec, ClaimProvider, EipRef};
use super::super::super::raw::RawClaimEip;
use super::super::ctx::{optional, Ctx};
use super::topic_or_alerts;
use std::str::FromStr;

/// `provider`, parsed in this one place. Not a serde enum: serde's unknown-variant error would
/// be reported with the TOML errors, before the action's other errors, and in other words.
#[derive(Debug, thiserror::Error)]
#[error("`provider` = {0:?}: use \"ec2\" (the default) or \"opsworks\"")]
pub struct UnknownProvider(String);

impl FromStr for ClaimProvider {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, UnknownProvider> {
        match s {
            "ec2" => Ok(ClaimProvider::Ec2),
            "opsworks" => Ok(ClaimProvider::OpsWorks),
            other => Err(UnknownProvider(other.to_owned())),
        }
    }
}

pub(super) fn action(
    name: &str,
    c: &RawClaimEip,
    alerts: Option<&AlertSettings>,
    mut cx: Ctx<'_>,
) -> Option<ClaimEipSpec> {
    let eip = match (&c.eip, &c.allocation_id) {
        (Some(ip), None) => cx.eip(ip, "eip").map(EipRef::PublicIp),
        (None, Some(id)) => cx
            .prefixed_id(id, "eipalloc-", "allocation_id")
            .map(EipRef::AllocationId),
        (Some(_), Some(_)) => cx.fail("set either `eip` or `allocation_id`, not both"),
        (None, None) if cx.unparsed("eip") || cx.unparsed("allocation_id") => None,
        (None, None) => {
            cx.fail("missing the Elastic IP: set `eip` (its public address) or `allocation_id`")
        }
    };
    let provider = match c.provider.as_deref().map(ClaimProvider::from_str) {
        None => Some(ClaimProvider::Ec2),
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => cx.fail(e.to_string()),
    };
    if provider == Some(ClaimProvider::OpsWorks) {
        // OpsWorks names an Elastic IP by its address and always puts it on the instance's
        // primary private IP.
        if c.allocation_id.is_some() {
            cx.err(
                "`allocation_id`: OpsWorks names an Elastic IP by its address; set `eip` instead",
            );
        }
        if c.private_ip.is_some() {
            cx.err("`private_ip`: OpsWorks always associates with the instance's primary private IP; use provider = \"ec2\" for a secondary one");
        }
    }
    let private_ip = optional(c.private_ip.as_deref(), |s| cx.ipv4(s, "private_ip"));
    let topic = topic_or_alerts(c.sns_topic_arn.as_deref(), "sns_topic_arn", alerts, &mut cx);
    if matches!(topic, Some(None)) && !cx.unparsed("sns_topic_arn") {
        cx.err("no SNS topic for the failover alert: set `sns_topic_arn` here or in [alerts]");
    }
    let hold_down = cx.duration(
        c.hold_down.as_deref(),
        defaults::HOLD_DOWN,
        limits::HOLD_DOWN,
        "hold_down",
    );
    cx.finish(|| {
        Some(ClaimEipSpec {
            name: name.to_owned(),
            eip: eip?,
            provider: provider?,
            private_ip: private_ip?,
            hold_down: hold_down?,
            // With `[alerts]` broken (reported there) the claim is still checked against
            // the others, as if it had no topic.
            sns_topic_arn: topic.flatten(),
        })
    })
}
