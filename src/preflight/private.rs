//! The AWS checks of private claims: this node's ENI (and, for a route, its
//! source/destination check), the subnet a `claim_private_ip` address must lie in and who
//! holds it, the route tables of a `claim_route` and the VPC's CIDR blocks its destination
//! must lie outside, and `ReplaceRoute` by `DryRun` onto each route's current target (so
//! that even an endpoint ignoring DryRun changes nothing).

use super::aws::{down, dry_run, fail, Ctx};
use super::{Check, Report};
use crate::config::{ClaimPrivateIpSpec, ClaimRouteSpec};
use crate::providers::aws::imds::NodeIdentity;
use crate::providers::aws::vpc::{InterfaceState, RouteTarget};

/// This node's ENI as EC2 describes it, as a check line; None when unknown.
async fn interface(
    report: &mut Report,
    ctx: &Ctx,
    name: &str,
    me: Option<&NodeIdentity>,
) -> Option<InterfaceState> {
    let id = format!("eni {name}");
    let what = format!("this node's network interface for action {name:?}");
    let Some(me) = me else {
        report.push(Check::skip(
            id,
            what,
            "this node's ENI is not known (instance metadata, above)",
        ));
        return None;
    };
    if down(report, &id, &what) {
        return None;
    }
    match ctx.ec2.interface(&me.network_interface_id).await {
        Ok(n) if n.instance_id.as_ref().is_some_and(|i| *i != me.instance_id) => {
            report.push(Check::fail(
                id,
                what,
                format!(
                    "{} is attached to {}, not to this node ({}): a claim would move the address there (refused: eni_not_this_instance)",
                    n.network_interface_id,
                    n.instance_id.as_deref().unwrap_or("?"),
                    me.instance_id
                ),
                "check [node] network_interface_id and instance_id (or leave them unset: instance metadata knows)",
            ));
            None
        }
        Ok(n) => {
            report.push(Check::pass(
                id,
                format!(
                    "{what}: {} in {} ({}), source/destination check {}",
                    n.holder(),
                    n.subnet_id,
                    n.vpc_id,
                    if n.source_dest_check { "on" } else { "off" }
                ),
            ));
            Some(n)
        }
        Err(e) => {
            fail(
                report,
                id,
                what,
                &e,
                format!(
                    "check [node] network_interface_id: {} must be attached to this instance",
                    me.network_interface_id
                ),
            );
            None
        }
    }
}

pub(super) async fn private_ip(
    report: &mut Report,
    ctx: &Ctx,
    c: &ClaimPrivateIpSpec,
    me: Option<&NodeIdentity>,
) {
    let ip = c.private_ip;
    let Some(eni) = interface(report, ctx, &c.name, me).await else {
        return;
    };
    let id = format!("subnet {}", c.name);
    let what = format!(
        "{ip} in this node's subnet {} for action {:?}",
        eni.subnet_id, c.name
    );
    if down(report, &id, &what) {
        return;
    }
    match ctx.ec2.subnet_cidr(&eni.subnet_id).await {
        Ok(cidr) if cidr.contains(&ip) => report.push(Check::pass(id, format!("{what} ({cidr})"))),
        Ok(cidr) => report.push(Check::fail(
            id,
            what,
            format!("{ip} is outside {cidr}: EC2 moves a secondary private IP only between interfaces of one subnet; a claim would be refused (other_subnet)"),
            format!("set `private_ip` of action {:?} to an address of {cidr}, or use claim_route to move an address across subnets", c.name),
        )),
        Err(e) => return fail(report, id, what, &e, String::new()),
    }
    let id = format!("holder {}", c.name);
    let what = format!("who holds {ip} for action {:?}", c.name);
    if down(report, &id, &what) {
        return;
    }
    match ctx.ec2.holders_of(&eni.subnet_id, ip).await {
        Ok(holders) => match holders.as_slice() {
            [] => report.push(Check::pass(id, format!("{what}: nobody (unassigned); the first claim assigns it"))),
            [one] if one.private_ips.first() == Some(&ip) => report.push(Check::fail(
                id,
                what,
                format!("{ip} is the primary private IP of {}: EC2 cannot move a primary address", one.holder()),
                format!("set `private_ip` of action {:?} to a free address of the subnet, assigned as a secondary IP", c.name),
            )),
            [one] => report.push(Check::pass(id, format!("{what}: {}", one.holder()))),
            many => report.push(Check::fail(
                id,
                what,
                format!("EC2 shows it on {} interfaces at once: {}", many.len(), many.iter().map(InterfaceState::holder).collect::<Vec<_>>().join(", ")),
                "unassign it from all but one (aws ec2 unassign-private-ip-addresses)",
            )),
        },
        Err(e) => fail(report, id, what, &e, String::new()),
    }
}

pub(super) async fn route(
    report: &mut Report,
    ctx: &Ctx,
    c: &ClaimRouteSpec,
    me: Option<&NodeIdentity>,
) {
    let dest = ipnet::Ipv4Net::from(c.destination);
    if let Some(eni) = interface(report, ctx, &c.name, me).await {
        let id = format!("source_dest_check {}", c.name);
        let what = format!(
            "source/destination check off on {} for action {:?}",
            eni.network_interface_id, c.name
        );
        if eni.source_dest_check {
            report.push(Check::fail(
                id,
                what,
                format!("it is on: EC2 drops the traffic to {} this node would receive; a claim would be refused (source_dest_check)", c.destination),
                format!("aws ec2 modify-network-interface-attribute --network-interface-id {} --no-source-dest-check", eni.network_interface_id),
            ));
        } else {
            report.push(Check::pass(id, what));
        }
    }
    let id = format!("route tables {}", c.name);
    let what = format!(
        "route tables {} for action {:?}",
        c.route_table_ids.join(", "),
        c.name
    );
    if down(report, &id, &what) {
        return;
    }
    let tables = match ctx.ec2.routes_to(&c.route_table_ids, dest).await {
        Ok(t) => t,
        Err(e) => {
            return fail(
                report,
                id,
                what,
                &e,
                format!(
                    "check `route_table_ids` of action {:?} against the VPC's route tables in {}",
                    c.name, ctx.region
                ),
            );
        }
    };
    report.push(Check::pass(
        id,
        format!(
            "{what}: {}",
            tables
                .iter()
                .map(|t| format!("{} sends {dest} to {}", t.route_table_id, t.target))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));
    let mut vpcs: Vec<&str> = tables
        .iter()
        .map(|t| t.vpc_id.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    vpcs.sort_unstable();
    vpcs.dedup();
    for vpc in vpcs {
        let id = format!("vpc {} {vpc}", c.name);
        let what = format!("{} outside {vpc} for action {:?}", c.destination, c.name);
        if down(report, &id, &what) {
            return;
        }
        match ctx.ec2.vpc_cidrs(vpc).await {
            Ok(cidrs) => match cidrs.iter().find(|n| n.contains(&c.destination)) {
                Some(n) => report.push(Check::fail(
                    id,
                    what,
                    format!("{} is inside {n}: an overlay IP must lie outside every CIDR block of the VPC; a claim would be refused (destination_inside_vpc)", c.destination),
                    format!("set `destination` of action {:?} to an address outside {}", c.name, cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
                )),
                None => report.push(Check::pass(id, format!("{what} ({})", cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")))),
            },
            Err(e) => fail(report, id, what, &e, String::new()),
        }
    }
    for t in &tables {
        let id = format!("ec2:ReplaceRoute {} {}", c.name, t.route_table_id);
        let what = format!(
            "ec2:ReplaceRoute in {} for action {:?}",
            t.route_table_id, c.name
        );
        match &t.target {
            RouteTarget::Interface(eni) => {
                if !down(report, &id, &what) {
                    let answer = ctx.ec2.dry_run_replace_route(&t.route_table_id, dest, eni).await;
                    dry_run(report, id, format!("{what} (onto its current target {eni})"), answer, "");
                }
            }
            other => report.push(Check::skip(
                id,
                what,
                format!("the table sends {dest} to {other}, not to an interface: a dry run onto it would not be the claim's call; allow ec2:ReplaceRoute and ec2:CreateRoute as the policy does"),
            )),
        }
    }
}
