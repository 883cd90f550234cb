//! `--dry-run`: a [`Provider`] that logs each AWS call a claim would make (one `dry_run`
//! event with its `call`) and makes none, not even a read: a dry run needs no AWS client,
//! region or credentials. Everything before the first AWS call (hold-down, local HAProxy,
//! this node's identity, egress) runs for real through the same gates as a claim.

use super::{HereError, Locate, MoveResult, Owner, Provider, Spot};
use crate::config::EipRef;
use crate::providers::aws::AwsError;
use crate::telemetry::events;
use std::time::Duration;

/// Logs instead of calling AWS; finds this node through `H`, as the real provider would.
pub struct DryRun<H> {
    here: H,
    /// Where the claim's alert would be published (logged as `sns:Publish`).
    sns_topic: Option<String>,
}

impl<H> DryRun<H> {
    /// A dry run of a claim onto the spot `here` finds, alerting `sns_topic`.
    pub fn new(here: H, sns_topic: Option<String>) -> Self {
        DryRun { here, sns_topic }
    }
}

impl<H: Locate> Provider for DryRun<H> {
    type Spot = H::Spot;
    /// Nothing is read.
    type State = ();
    const DRY_RUN: bool = true;

    async fn here(&self) -> Result<H::Spot, HereError> {
        self.here.here().await
    }

    /// Logs the read and answers "nobody known": no token, so the moved-meanwhile gate and
    /// the hold-down's nobody-holds-it exception have nothing to compare.
    async fn read(&self, eip: &EipRef) -> Result<Owner<()>, AwsError> {
        tracing::info!(event = events::DRY_RUN, call = H::Spot::READ_CALL, eip = %eip);
        Ok(Owner {
            token: None,
            holder: "unknown (dry run)".into(),
            public_ip: None,
            state: (),
        })
    }

    /// A dry run notes nothing when a rule starts failing: it would be a read.
    async fn glance(&self, _eip: &EipRef) -> Option<Option<String>> {
        None
    }

    fn holds(_spot: &H::Spot, _owner: &Owner<()>) -> bool {
        false
    }

    async fn take(
        &self,
        eip: &EipRef,
        _before: &Owner<()>,
        spot: &H::Spot,
        _verify_for: Duration,
    ) -> MoveResult {
        spot.rehearse(eip);
        if let Some(topic) = &self.sns_topic {
            tracing::info!(event = events::DRY_RUN, call = "sns:Publish", topic = %topic);
        }
        MoveResult::Rehearsed
    }
}
