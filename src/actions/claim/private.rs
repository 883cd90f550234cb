//! The claims of private addresses: `claim_private_ip` (a secondary private IP that any ENI
//! of one subnet may hold) and `claim_route` (an overlay IP outside the VPC, routed to one
//! ENI in several route tables, across Availability Zones). Both run through the same gates
//! as an Elastic IP (`gates.rs`); what differs is read and moved here, and the address is
//! kept on a local interface ([`super::local_address`]) while EC2 shows it on this node.
//!
//! ## How two racing nodes end with one owner
//!
//! Neither call has a condition: `AssignPrivateIpAddresses` with `AllowReassignment=true`
//! and `ReplaceRoute` both overwrite whatever is there (EC2 API reference), unlike
//! `AssociateAddress` with `AllowReassociation=false`. What keeps two nodes from fighting:
//! 1. the gates read the owner first, and leave it when it changed while the rule was failing
//!    (another node took over);
//! 2. after its writes the claim reads back until the address is on this node, and then for
//!    [`SETTLE`] more, since a rival's write at the same moment may land after ours. A
//!    private IP lives on one ENI, so the last write wins and the other node sees it lost
//!    (`Verified::Lost`). Route tables are several: two nodes writing at once could each win
//!    some tables. A table that pointed here after our write and now points to a third ENI
//!    (neither this node nor the holder before the claim) shows a rival claiming at the same
//!    moment; both see each other, and both apply the same tie-break: the lower ENI id keeps
//!    writing until every table is its own, the other stops and reports the race lost;
//! 3. the loser starts its hold-down, so it does not try again for `hold_down`.

use super::local_address::{self, Interface};
use super::{verify_until, HereError, Locate, MoveResult, Owner, Provider, Spot, Verified};
use crate::actions::alerts::Alert;
use crate::config::AddressRef;
use crate::providers::aws::ec2::Ec2;
use crate::providers::aws::imds::IdentitySource;
use crate::providers::aws::vpc::{InterfaceState, RouteTarget, TableState};
use crate::providers::aws::AwsError;
use crate::state::PendingClaim;
use crate::telemetry::events;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long a private claim keeps seeing its move before it calls it verified: neither
/// `AssignPrivateIpAddresses` nor `ReplaceRoute` has a condition, so a rival writing at the
/// same moment shows only in the reads after both writes. Long enough for a few reads.
pub const SETTLE: Duration = Duration::from_secs(1);
/// How often the reads of [`SETTLE`] are made.
const SETTLE_READS: Duration = Duration::from_millis(200);

/// Where a private claim puts its address: this node's ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eni {
    /// This node's instance id (`i-...`), for logs and the alert.
    pub instance_id: String,
    /// `eni-...`.
    pub eni: String,
    /// The ENI's own (primary) private IP: where the local interface is found.
    pub private_ip: Ipv4Addr,
}

impl Spot for Eni {
    const PROVIDER: &'static str = "ec2-eni";

    fn read_call(address: &AddressRef) -> &'static str {
        match address {
            AddressRef::Overlay(_) => "ec2:DescribeRouteTables",
            _ => "ec2:DescribeNetworkInterfaces",
        }
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.instance_id, self.eni)
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
        Some(Eni {
            instance_id: c.instance_id.clone(),
            eni: c.network_interface_id.clone()?,
            private_ip: c.private_ip.as_deref()?.parse().ok()?,
        })
    }

    fn rehearse(&self, address: &AddressRef) {
        match address {
            AddressRef::Overlay(ip) => {
                tracing::info!(event = events::DRY_RUN, call = "ec2:ReplaceRoute",
                destination = %format!("{ip}/32"), eni = %self.eni, note = "in each route table not pointing here (CreateRoute where the route is missing)")
            }
            _ => tracing::info!(event = events::DRY_RUN, call = "ec2:AssignPrivateIpAddresses",
                private_ip = %address, eni = %self.eni, allow_reassignment = true),
        }
    }
}

/// Finds this node's ENI: `[node]`, else instance metadata (IMDSv2).
pub struct EniHere(pub Arc<IdentitySource>);

impl Locate for EniHere {
    type Spot = Eni;

    async fn here(&self) -> Result<Eni, HereError> {
        let me = self.0.get().await?;
        Ok(Eni {
            instance_id: me.instance_id.clone(),
            eni: me.network_interface_id.clone(),
            private_ip: me.private_ip,
        })
    }
}

/// Keep the address on a local interface while EC2 shows it on this node, and off it
/// otherwise; failures are logged (with the fix) and retried at the next owner poll.
/// Returns the error, for a claim to report.
async fn keep_local(ip: Ipv4Addr, prefix: u8, iface: &Interface, here: bool) -> Result<(), String> {
    let r = if here {
        local_address::add(ip, prefix, iface).await.map(|added| {
            if added {
                tracing::info!(event = events::LOCAL_ADDRESS_ADDED, address = %ip, prefix, interface = %iface);
            }
        })
    } else {
        local_address::remove(ip).await.map(|removed| {
            if removed {
                tracing::info!(event = events::LOCAL_ADDRESS_REMOVED, address = %ip,
                    "another node holds it now: removed from this node's interfaces");
            }
        })
    };
    r.map_err(|e| {
        tracing::error!(event = events::LOCAL_ADDRESS_FAILED, address = %ip, error = %e);
        e.to_string()
    })
}

/// This node's ENI as EC2 describes it, refused unless it is attached to this node's
/// instance: `[node] network_interface_id` naming another instance's ENI would move the
/// address there while this node put it on its own interface.
async fn own_eni(ec2: &Ec2, spot: &Eni) -> Result<InterfaceState, (&'static str, String)> {
    let me = ec2.interface(&spot.eni).await.map_err(|e| {
        (
            "eni_unknown",
            format!("cannot read this node's network interface: {e}"),
        )
    })?;
    match &me.instance_id {
        Some(i) if *i != spot.instance_id => Err((
            "eni_not_this_instance",
            format!(
                "{} is attached to {i}, not to this node ({}): check [node] network_interface_id and instance_id",
                spot.eni, spot.instance_id
            ),
        )),
        _ => Ok(me),
    }
}

/// Before this node's ENI is used for anything (the owner read compares with it): EC2 must
/// show it attached to this node's instance, else `[node] network_interface_id` names another
/// node's and the claim would read and move that node's address. Checked until it holds once;
/// a read that fails lets the claim go on (its own calls fail the same way, and say why).
async fn ensure_own(ec2: &Ec2, spot: &Eni, own: &OnceCell<()>) -> Result<(), HereError> {
    if own.get().is_some() {
        return Ok(());
    }
    match ec2.interface(&spot.eni).await {
        Ok(n) => match n.instance_id {
            Some(i) if i != spot.instance_id => Err(HereError::NotThisInstance {
                eni: spot.eni.clone(),
                attached_to: i,
                instance: spot.instance_id.clone(),
            }),
            _ => {
                let _ = own.set(());
                Ok(())
            }
        },
        Err(_) => Ok(()),
    }
}

/// What EC2 says about a secondary private IP: the interfaces of the subnet that have it
/// (one at most, in EC2).
#[derive(Debug, Clone)]
pub struct Holders(pub Vec<InterfaceState>);

/// `claim_private_ip` through EC2.
pub struct PrivateIpClaims {
    ec2: Ec2,
    here: EniHere,
    ip: Ipv4Addr,
    /// The action's `interface`; None: the one carrying this node's private IP.
    interface: Option<String>,
    /// This node's subnet and its CIDR, read once.
    subnet: OnceCell<(String, Ipv4Net)>,
    /// Set once EC2 showed this node's ENI attached to this node's instance.
    own: OnceCell<()>,
}

impl PrivateIpClaims {
    pub fn new(ec2: Ec2, here: EniHere, ip: Ipv4Addr, interface: Option<String>) -> Self {
        PrivateIpClaims {
            ec2,
            here,
            ip,
            interface,
            subnet: OnceCell::new(),
            own: OnceCell::new(),
        }
    }

    /// This node's subnet id and CIDR: DescribeNetworkInterfaces of its ENI, then
    /// DescribeSubnets; read once (an ENI does not change subnets).
    async fn subnet(&self) -> Result<&(String, Ipv4Net), AwsError> {
        self.subnet
            .get_or_try_init(|| async {
                let eni = self.here.here().await.map_err(|e| AwsError {
                    operation: "ec2:DescribeNetworkInterfaces",
                    code: None,
                    message: e.to_string(),
                })?;
                let me = self.ec2.interface(&eni.eni).await?;
                let cidr = self.ec2.subnet_cidr(&me.subnet_id).await?;
                Ok((me.subnet_id, cidr))
            })
            .await
    }

    fn local(&self, spot: &Eni) -> Interface {
        match &self.interface {
            Some(n) => Interface::Named(n.clone()),
            None => Interface::Carrying(spot.private_ip),
        }
    }

    async fn prefix(&self) -> u8 {
        self.subnet.get().map_or(32, |(_, net)| net.prefix_len())
    }
}

impl Provider for PrivateIpClaims {
    type Spot = Eni;
    type State = Holders;

    async fn here(&self) -> Result<Eni, HereError> {
        let spot = self.here.here().await?;
        ensure_own(&self.ec2, &spot, &self.own).await?;
        Ok(spot)
    }

    async fn read(&self) -> Result<Owner<Holders>, AwsError> {
        let (subnet, _) = self.subnet().await?;
        let holders = self.ec2.holders_of(subnet, self.ip).await?;
        let (token, holder) = match holders.as_slice() {
            [] => (None, "nobody (unassigned)".to_owned()),
            [one] => (Some(one.network_interface_id.clone()), one.holder()),
            many => (
                Some(
                    many.iter()
                        .map(|n| n.network_interface_id.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                format!(
                    "several interfaces at once: {}",
                    many.iter()
                        .map(InterfaceState::holder)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
        Ok(Owner {
            token,
            holder,
            public_ip: None,
            state: Holders(holders),
        })
    }

    fn holds(spot: &Eni, owner: &Owner<Holders>) -> bool {
        matches!(owner.state.0.as_slice(), [one] if one.network_interface_id == spot.eni)
    }

    fn spot_of(owner: &Owner<Holders>) -> Option<Eni> {
        let [one] = owner.state.0.as_slice() else {
            return None;
        };
        Some(Eni {
            instance_id: one
                .instance_id
                .clone()
                .unwrap_or_else(|| "an ENI without an instance".into()),
            eni: one.network_interface_id.clone(),
            private_ip: *one.private_ips.first()?,
        })
    }

    async fn precondition(
        &self,
        spot: &Eni,
        owner: &Owner<Holders>,
    ) -> Result<(), (&'static str, String)> {
        let ip = self.ip;
        if let Some(primary) = owner
            .state
            .0
            .iter()
            .find(|n| n.private_ips.first() == Some(&ip))
        {
            return Err((
                "primary_address",
                format!(
                    "{ip} is the primary private IP of {}: EC2 cannot move a primary address; use a secondary one",
                    primary.holder()
                ),
            ));
        }
        // This node's ENI was checked to be this instance's in `here()`.
        if let Err(e) = local_address::ready(&self.local(spot)).await {
            return Err(("local_address_unavailable", e));
        }
        let (subnet, cidr) = self.subnet().await.map_err(|e| {
            (
                "subnet_unknown",
                format!("cannot read this node's subnet: {e}"),
            )
        })?;
        if !cidr.contains(&ip) {
            return Err((
                "other_subnet",
                format!("{ip} is not in this node's subnet {subnet} ({cidr}): a secondary private IP moves only within one subnet; use claim_route across subnets"),
            ));
        }
        Ok(())
    }

    async fn take(&self, before: &Owner<Holders>, spot: &Eni, verify_for: Duration) -> MoveResult {
        // The call has no condition: a last read right before it narrows the window in
        // which another node's claim could land between our read and our write.
        match self.read().await {
            Ok(now) if now.token != before.token => {
                return MoveResult::Lost(format!(
                    "{} moved to {} while this node was about to claim it",
                    self.ip, now.holder
                ))
            }
            Ok(_) => {}
            Err(e) => {
                return MoveResult::Failed(format!("the read right before the move failed: {e}"))
            }
        }
        if let Err(e) = self.ec2.assign_private_ip(&spot.eni, self.ip).await {
            return MoveResult::Failed(e.to_string());
        }
        // EC2 sends the address's traffic here from the write on: the kernel must accept it
        // now, not after the verification (a client's first connection would be dropped and
        // retried a second later). Taken off again below if the move turns out lost.
        let mine = self.here.here().await.is_ok_and(|me| me.eni == spot.eni);
        let early = match (mine, self.here.here().await) {
            (true, Ok(me)) => {
                keep_local(self.ip, self.prefix().await, &self.local(&me), true).await
            }
            _ => Ok(()),
        };
        let before_token = before.token.clone();
        let verified = verify_until(
            verify_for,
            "DescribeNetworkInterfaces did not show the address on this node in time",
            || self.read(),
            |now| {
                if Self::holds(spot, &now) {
                    Some(Verified::Yes)
                } else if now.token.is_some() && now.token != before_token && now.state.0.len() == 1
                {
                    Some(Verified::Lost(now.holder))
                } else {
                    None
                }
            },
        )
        .await;
        // A rival's assignment that landed right after ours shows within SETTLE: the last
        // write wins, and the node that sees it lost says so.
        let verified = match verified {
            Verified::Yes => {
                let until = Instant::now() + SETTLE;
                let mut v = Verified::Yes;
                while Instant::now() < until {
                    tokio::time::sleep(SETTLE_READS).await;
                    if let Ok(now) = self.read().await {
                        if !Self::holds(spot, &now) && now.token.is_some() {
                            v = Verified::Lost(now.holder);
                            break;
                        }
                    }
                }
                v
            }
            other => other,
        };
        // The address goes to this node (a claim), or away from it (`drill --back`).
        let here = mine && matches!(verified, Verified::Yes);
        let local = match self.here.here().await {
            Ok(me) => keep_local(self.ip, self.prefix().await, &self.local(&me), here)
                .await
                .and(early),
            Err(e) => Err(e.to_string()),
        };
        match (verified, local) {
            (Verified::Yes, Err(e)) if mine => MoveResult::Moved(
                None,
                Verified::Unknown(format!(
                    "EC2 shows it here, but adding it to this node's interface failed: {e}"
                )),
            ),
            (v, _) => MoveResult::Moved(None, v),
        }
    }

    fn address_label(&self, _owner: &Owner<Holders>) -> String {
        self.ip.to_string()
    }

    async fn keep_local(&self, owner: &Owner<Holders>, spot: &Eni) {
        let _ = keep_local(
            self.ip,
            self.prefix().await,
            &self.local(spot),
            Self::holds(spot, owner),
        )
        .await;
    }
}

/// What the route tables say about an overlay IP.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Each configured table, in the configured order.
    pub tables: Vec<TableState>,
    /// The instance behind the one ENI every table points to, when they agree and EC2 said.
    pub instance_id: Option<String>,
}

impl Routes {
    /// The one ENI every table sends the destination to; None when they disagree, or a table
    /// has no route or another kind of target.
    fn single(&self) -> Option<&str> {
        let first = match &self.tables.first()?.target {
            RouteTarget::Interface(e) => e.as_str(),
            _ => return None,
        };
        self.tables
            .iter()
            .all(|t| matches!(&t.target, RouteTarget::Interface(e) if e == first))
            .then_some(first)
    }

    fn describe(&self) -> String {
        self.tables
            .iter()
            .map(|t| format!("{} → {}", t.route_table_id, t.target))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `claim_route` through EC2.
pub struct RouteClaims {
    ec2: Ec2,
    here: EniHere,
    destination: Ipv4Addr,
    tables: Vec<String>,
    interface: String,
    /// After a claim that could not move every table in its window: each table's target
    /// before the claim. The owner poll keeps moving the tables that still point there (or
    /// have no route), and stops when one points elsewhere (another node decided).
    unfinished: std::sync::Mutex<Option<BTreeMap<String, RouteTarget>>>,
    /// Set once EC2 showed this node's ENI attached to this node's instance.
    own: OnceCell<()>,
}

impl RouteClaims {
    pub fn new(
        ec2: Ec2,
        here: EniHere,
        destination: Ipv4Addr,
        tables: Vec<String>,
        interface: String,
    ) -> Self {
        RouteClaims {
            ec2,
            here,
            destination,
            tables,
            interface,
            unfinished: std::sync::Mutex::new(None),
            own: OnceCell::new(),
        }
    }

    fn net(&self) -> Ipv4Net {
        Ipv4Net::from(self.destination)
    }

    /// Point `table` (whose route is `now`) at `eni`: ReplaceRoute, or CreateRoute where
    /// the route is missing; each falls back to the other when EC2 says the route's state
    /// changed under it (`InvalidParameterValue`: no route to replace; `RouteAlreadyExists`).
    async fn write(
        &self,
        table: &str,
        now: &RouteTarget,
        eni: &str,
    ) -> Result<&'static str, AwsError> {
        let net = self.net();
        if matches!(now, RouteTarget::Missing) {
            match self.ec2.create_route(table, net, eni).await {
                Err(e) if e.is_code("RouteAlreadyExists") => {}
                other => return other.map(|()| "created"),
            }
        }
        match self.ec2.replace_route(table, net, eni).await {
            Err(e)
                if e.is_code("InvalidParameterValue") && !matches!(now, RouteTarget::Missing) =>
            {
                self.ec2
                    .create_route(table, net, eni)
                    .await
                    .map(|()| "created")
            }
            other => other.map(|()| "replaced"),
        }
    }

    fn unfinished(&self) -> std::sync::MutexGuard<'_, Option<BTreeMap<String, RouteTarget>>> {
        self.unfinished.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Provider for RouteClaims {
    type Spot = Eni;
    type State = Routes;
    const MOVED_AS: &'static str = "route tables";

    async fn here(&self) -> Result<Eni, HereError> {
        let spot = self.here.here().await?;
        ensure_own(&self.ec2, &spot, &self.own).await?;
        Ok(spot)
    }

    async fn read(&self) -> Result<Owner<Routes>, AwsError> {
        let tables = self.ec2.routes_to(&self.tables, self.net()).await?;
        let mut routes = Routes {
            tables,
            instance_id: None,
        };
        let token = (!routes
            .tables
            .iter()
            .all(|t| t.target == RouteTarget::Missing))
        .then(|| {
            routes
                .tables
                .iter()
                .map(|t| format!("{}={}", t.route_table_id, t.target))
                .collect::<Vec<_>>()
                .join(",")
        });
        let holder = match routes.single().map(str::to_owned) {
            Some(eni) => match self.ec2.interface(&eni).await {
                Ok(n) => {
                    routes.instance_id = n.instance_id.clone();
                    n.holder()
                }
                // Only the name is missing: the tables themselves were read.
                Err(_) => format!("network interface {eni}"),
            },
            None if token.is_none() => "nobody (no route in any table)".to_owned(),
            None => format!("split: {}", routes.describe()),
        };
        Ok(Owner {
            token,
            holder,
            public_ip: None,
            state: routes,
        })
    }

    fn holds(spot: &Eni, owner: &Owner<Routes>) -> bool {
        owner.state.single() == Some(spot.eni.as_str())
    }

    fn partly_holds(spot: &Eni, owner: &Owner<Routes>) -> bool {
        !Self::holds(spot, owner)
            && owner
                .state
                .tables
                .iter()
                .any(|t| matches!(&t.target, RouteTarget::Interface(e) if *e == spot.eni))
    }

    /// The tables that do not point here yet are finished by the owner poll, as after a
    /// claim that ran out of its window.
    fn resume(&self, owner: &Owner<Routes>, spot: &Eni) {
        let was = owner
            .state
            .tables
            .iter()
            .filter(|t| !matches!(&t.target, RouteTarget::Interface(e) if *e == spot.eni))
            .map(|t| (t.route_table_id.clone(), t.target.clone()))
            .collect();
        *self.unfinished() = Some(was);
    }

    fn spot_of(owner: &Owner<Routes>) -> Option<Eni> {
        let eni = owner.state.single()?.to_owned();
        Some(Eni {
            instance_id: owner
                .state
                .instance_id
                .clone()
                .unwrap_or_else(|| "an ENI without an instance".into()),
            eni,
            // Only a claim's own spot needs its private IP (to find its local interface).
            private_ip: Ipv4Addr::UNSPECIFIED,
        })
    }

    async fn precondition(
        &self,
        spot: &Eni,
        _owner: &Owner<Routes>,
    ) -> Result<(), (&'static str, String)> {
        let me = own_eni(&self.ec2, spot).await?;
        if let Err(e) = local_address::ready(&Interface::Named(self.interface.clone())).await {
            return Err(("local_address_unavailable", e));
        }
        if me.source_dest_check {
            return Err((
                "source_dest_check",
                format!(
                    "source/destination checking is on for {}: EC2 drops traffic to {} arriving at it; turn it off \
                     (aws ec2 modify-network-interface-attribute --network-interface-id {} --no-source-dest-check)",
                    spot.eni, self.destination, spot.eni
                ),
            ));
        }
        let tables = self
            .ec2
            .routes_to(&self.tables, self.net())
            .await
            .map_err(|e| ("route_tables_unknown", e.to_string()))?;
        let mut vpcs: Vec<&str> = tables
            .iter()
            .map(|t| t.vpc_id.as_str())
            .filter(|v| !v.is_empty())
            .collect();
        vpcs.sort_unstable();
        vpcs.dedup();
        for vpc in vpcs {
            let cidrs = self
                .ec2
                .vpc_cidrs(vpc)
                .await
                .map_err(|e| ("vpc_unknown", e.to_string()))?;
            if let Some(c) = cidrs.iter().find(|c| c.contains(&self.destination)) {
                return Err((
                    "destination_inside_vpc",
                    format!("{} is inside {vpc}'s CIDR block {c}: an overlay IP must lie outside the VPC; use claim_private_ip for an address in a subnet", self.destination),
                ));
            }
        }
        Ok(())
    }

    async fn take(&self, before: &Owner<Routes>, spot: &Eni, verify_for: Duration) -> MoveResult {
        let deadline = Instant::now() + verify_for;
        let was: BTreeMap<String, RouteTarget> = before
            .state
            .tables
            .iter()
            .map(|t| (t.route_table_id.clone(), t.target.clone()))
            .collect();
        let ours = RouteTarget::Interface(spot.eni.clone());
        let mut view = before.state.tables.clone();
        let mut moved: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        let mut backoff = Duration::from_millis(500);
        // ReplaceRoute has no condition: a last read right before the first write narrows
        // the window in which another node's claim could land between our read and ours.
        match self.read().await {
            Ok(now) if now.token != before.token => {
                return MoveResult::Lost(format!(
                    "{} was moved ({}) while this node was about to claim it",
                    self.destination,
                    now.state.describe()
                ))
            }
            Ok(_) => {}
            Err(e) => {
                return MoveResult::Failed(format!("the read right before the move failed: {e}"))
            }
        }
        let summary = |moved: &BTreeMap<String, &'static str>| {
            moved
                .iter()
                .map(|(t, how)| format!("{t} ({how})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // When every table first showed this node: it must keep showing it for SETTLE.
        let mut settled_since: Option<Instant> = None;
        // The overlay IP goes to this node (a claim), or away from it (`drill --back`); it is
        // added locally as soon as one table sends it here.
        let mine = self.here.here().await.is_ok_and(|me| me.eni == spot.eni);
        let mut early = false;
        loop {
            for t in view
                .iter()
                .filter(|t| t.target != ours && settled_since.is_none())
            {
                match self.write(&t.route_table_id, &t.target, &spot.eni).await {
                    Ok(how) => {
                        moved.insert(t.route_table_id.clone(), how);
                        errors.remove(&t.route_table_id);
                        // Traffic comes through this table from now on: the kernel must
                        // accept it before the other tables and the verification are done.
                        if mine && !early {
                            early = true;
                            let _ = keep_local(
                                self.destination,
                                32,
                                &Interface::Named(self.interface.clone()),
                                true,
                            )
                            .await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(event = events::ROUTE_SPLIT, table = %t.route_table_id, error = %e,
                            "this table did not take the route yet; retrying");
                        errors.insert(t.route_table_id.clone(), e.to_string());
                    }
                }
            }
            let mut contested = false;
            match self.read().await {
                Ok(now) if Self::holds(spot, &now) => {
                    let since = *settled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < SETTLE {
                        tokio::time::sleep(SETTLE_READS).await;
                        continue;
                    }
                    *self.unfinished() = None;
                    let here = keep_local(
                        self.destination,
                        32,
                        &Interface::Named(self.interface.clone()),
                        mine,
                    )
                    .await;
                    let verified = match here {
                        Err(e) if mine => Verified::Unknown(format!(
                            "every table points here, but adding it to {} failed: {e}",
                            self.interface
                        )),
                        _ => Verified::Yes,
                    };
                    return MoveResult::Moved(Some(summary(&moved)), verified);
                }
                Ok(now) => {
                    settled_since = None;
                    // A rival: a table we moved now points to a third ENI.
                    let rival = now
                        .state
                        .tables
                        .iter()
                        .filter(|t| moved.contains_key(&t.route_table_id))
                        .filter_map(|t| match &t.target {
                            RouteTarget::Interface(e)
                                if *e != spot.eni
                                    && Some(&t.target) != was.get(&t.route_table_id) =>
                            {
                                Some(e.clone())
                            }
                            _ => None,
                        })
                        .min();
                    if let Some(r) = rival {
                        if r < spot.eni {
                            *self.unfinished() = None;
                            // The winner is rewriting every table: what this node added
                            // early goes (the owner poll would, later).
                            if early {
                                let _ = keep_local(
                                    self.destination,
                                    32,
                                    &Interface::Named(self.interface.clone()),
                                    false,
                                )
                                .await;
                            }
                            return MoveResult::Lost(format!(
                                "{r} claimed {} at the same time ({}); the lower ENI id keeps it",
                                self.destination,
                                now.state.describe()
                            ));
                        }
                        // Ours is the lower id: write again at once, the rival stops when
                        // it sees it.
                        contested = true;
                    }
                    view = now.state.tables;
                }
                Err(e) => {
                    errors.insert("read".into(), e.to_string());
                }
            }
            if Instant::now() >= deadline {
                if moved.is_empty() && errors.len() == self.tables.len() {
                    return MoveResult::Failed(
                        errors.values().cloned().collect::<Vec<_>>().join("; "),
                    );
                }
                *self.unfinished() = Some(was);
                let left: Vec<String> = view
                    .iter()
                    .filter(|t| t.target != ours)
                    .map(|t| match errors.get(&t.route_table_id) {
                        Some(e) => format!("{} still → {} ({e})", t.route_table_id, t.target),
                        None => format!("{} still → {}", t.route_table_id, t.target),
                    })
                    .collect();
                return MoveResult::Moved(
                    Some(summary(&moved)),
                    Verified::Unknown(format!(
                        "not every table points here yet: {}; the owner poll keeps moving them",
                        left.join("; ")
                    )),
                );
            }
            if contested {
                continue;
            }
            tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                .await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn address_label(&self, _owner: &Owner<Routes>) -> String {
        self.destination.to_string()
    }

    async fn keep_local(&self, owner: &Owner<Routes>, spot: &Eni) {
        // Finish an unfinished claim: tables that still point where they did before it.
        let unfinished = self.unfinished().clone();
        if let Some(was) = unfinished {
            let third = owner.state.tables.iter().any(|t| {
                matches!(&t.target, RouteTarget::Interface(e) if *e != spot.eni)
                    && Some(&t.target) != was.get(&t.route_table_id)
            });
            if third {
                tracing::warn!(event = events::ROUTE_SPLIT, destination = %self.destination, tables = %owner.state.describe(),
                    "another node changed a table since this node's unfinished claim: leaving the rest to it");
                *self.unfinished() = None;
            } else if !Self::holds(spot, owner) {
                for t in owner.state.tables.iter().filter(|t| {
                    Some(&t.target) == was.get(&t.route_table_id)
                        || t.target == RouteTarget::Missing
                }) {
                    if t.target == RouteTarget::Interface(spot.eni.clone()) {
                        continue;
                    }
                    match self.write(&t.route_table_id, &t.target, &spot.eni).await {
                        Ok(how) => {
                            tracing::info!(event = events::ROUTE_SPLIT, table = %t.route_table_id, how,
                            "finished the unfinished claim in this table")
                        }
                        Err(e) => {
                            tracing::warn!(event = events::ROUTE_SPLIT, table = %t.route_table_id, error = %e,
                            "this table still does not take the route; retrying at the next poll")
                        }
                    }
                }
            } else {
                *self.unfinished() = None;
            }
        } else if owner.token.is_some() && owner.state.single().is_none() {
            tracing::warn!(event = events::ROUTE_SPLIT, destination = %self.destination, tables = %owner.state.describe(),
                "the route tables disagree about where the overlay IP goes");
        }
        // While any table sends the overlay IP here, this node must accept it.
        let here = owner
            .state
            .tables
            .iter()
            .any(|t| matches!(&t.target, RouteTarget::Interface(e) if *e == spot.eni));
        let _ = keep_local(
            self.destination,
            32,
            &Interface::Named(self.interface.clone()),
            here,
        )
        .await;
    }
}
