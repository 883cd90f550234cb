//! `--dry-run`: a [`Provider`] that logs each AWS call a claim would make (one `dry_run`
//! event with its `call`) and makes none, not even a read: a dry run needs no AWS client,
//! region or credentials. Everything before the first AWS call (hold-down, local HAProxy,
//! this node's identity, egress) runs for real through the same gates as a claim.

use super::{HereError, Locate, MoveResult, Owner, Provider, Spot};
use crate::config::AddressRef;
use crate::providers::aws::AwsError;
use crate::telemetry::events;
use std::time::Duration;

/// Logs instead of calling AWS; finds this node through `H`, as the real provider would.
pub struct DryRun<H> {
    here: H,
    /// The address the claim moves.
    address: AddressRef,
    /// Where the claim's alert would be published (logged as `sns:Publish`).
    sns_topic: Option<String>,
}

impl<H> DryRun<H> {
    /// A dry run of a claim onto the spot `here` finds, alerting `sns_topic`.
    pub fn new(here: H, address: AddressRef, sns_topic: Option<String>) -> Self {
        DryRun {
            here,
            address,
            sns_topic,
        }
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
    async fn read(&self) -> Result<Owner<()>, AwsError> {
        tracing::info!(event = events::DRY_RUN, call = H::Spot::read_call(&self.address), address = %self.address);
        Ok(Owner {
            token: None,
            holder: "unknown (dry run)".into(),
            public_ip: None,
            state: (),
        })
    }

    /// A dry run notes nothing when a rule starts failing: it would be a read.
    async fn glance(&self) -> Option<Option<String>> {
        None
    }

    fn holds(_spot: &H::Spot, _owner: &Owner<()>) -> bool {
        false
    }

    async fn take(&self, _before: &Owner<()>, spot: &H::Spot, _verify_for: Duration) -> MoveResult {
        spot.rehearse(&self.address);
        if let Some(topic) = &self.sns_topic {
            tracing::info!(event = events::DRY_RUN, call = "sns:Publish", topic = %topic);
        }
        MoveResult::Rehearsed
    }

    fn address_label(&self, _owner: &Owner<()>) -> String {
        self.address.to_string()
    }
}
