//! The EC2 calls of private claims (API reference: DescribeNetworkInterfaces,
//! AssignPrivateIpAddresses, DescribeSubnets, DescribeVpcs, DescribeRouteTables,
//! ReplaceRoute, CreateRoute). Each call is counted and logged (`aws_call`) like the Elastic
//! IP calls in [`super::ec2`], on the same client; errors carry the service's error code.

use super::ec2::Ec2;
use super::{called, AwsError};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// What EC2 says about one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceState {
    /// `eni-...`.
    pub network_interface_id: String,
    /// `subnet-...`.
    pub subnet_id: String,
    /// `vpc-...`.
    pub vpc_id: String,
    /// The instance it is attached to, when it is.
    pub instance_id: Option<String>,
    /// EC2 drops traffic to addresses that are not the ENI's own while this is true, which
    /// routed (overlay) traffic is (EC2 User Guide, "Change the source or destination
    /// checking").
    pub source_dest_check: bool,
    /// Every private IPv4 address on the ENI, primary first.
    pub private_ips: Vec<Ipv4Addr>,
}

impl InterfaceState {
    /// For logs and alerts: `i-0abc (eni-0def)`, or `network interface eni-0def`.
    pub fn holder(&self) -> String {
        match &self.instance_id {
            Some(i) => format!("{i} ({})", self.network_interface_id),
            None => format!("network interface {}", self.network_interface_id),
        }
    }
}

/// Where one route table sends a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// To a network interface (what `claim_route` sets).
    Interface(String),
    /// To anything else: an instance id, a gateway, a peering (what EC2 names it).
    Other(String),
    /// The table has no route for the destination.
    Missing,
}

impl std::fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteTarget::Interface(e) => f.write_str(e),
            RouteTarget::Other(o) => f.write_str(o),
            RouteTarget::Missing => f.write_str("no route"),
        }
    }
}

/// One route table's answer for a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableState {
    /// `rtb-...`.
    pub route_table_id: String,
    /// `vpc-...`.
    pub vpc_id: String,
    pub target: RouteTarget,
}

fn interface_state(n: &aws_sdk_ec2::types::NetworkInterface) -> Option<InterfaceState> {
    let mut private_ips: Vec<(bool, Ipv4Addr)> = n
        .private_ip_addresses()
        .iter()
        .filter_map(|a| {
            let ip = a.private_ip_address()?.parse().ok()?;
            Some((a.primary().unwrap_or(false), ip))
        })
        .collect();
    // Primary first.
    private_ips.sort_by_key(|(primary, _)| !primary);
    Some(InterfaceState {
        network_interface_id: n.network_interface_id()?.to_owned(),
        subnet_id: n.subnet_id().unwrap_or_default().to_owned(),
        vpc_id: n.vpc_id().unwrap_or_default().to_owned(),
        instance_id: n
            .attachment()
            .and_then(|a| a.instance_id())
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        // EC2's default, when an answer leaves it out.
        source_dest_check: n.source_dest_check().unwrap_or(true),
        private_ips: private_ips.into_iter().map(|(_, ip)| ip).collect(),
    })
}

impl Ec2 {
    /// DescribeNetworkInterfaces of one ENI. Errors: EC2's (`InvalidNetworkInterfaceID.NotFound`),
    /// or an answer that is not exactly that interface.
    pub async fn interface(&self, eni: &str) -> Result<InterfaceState, AwsError> {
        const OP: &str = "ec2:DescribeNetworkInterfaces";
        called(&self.metrics, "ec2", "DescribeNetworkInterfaces");
        let out = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(eni)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
        match out.network_interfaces() {
            [n] => interface_state(n)
                .filter(|s| s.network_interface_id == eni)
                .ok_or(AwsError {
                    operation: OP,
                    code: None,
                    message: format!("the answer for {eni} named another interface or none"),
                }),
            other => Err(AwsError {
                operation: OP,
                code: None,
                message: format!(
                    "expected exactly one network interface for {eni}, got {}",
                    other.len()
                ),
            }),
        }
    }

    /// Every network interface of a subnet whose private IPs include `ip`, read through the
    /// `subnet-id` filter and checked address by address (paginated). Real EC2 shows an
    /// address on one interface at most; the caller reports more than one as an error.
    pub async fn holders_of(
        &self,
        subnet_id: &str,
        ip: Ipv4Addr,
    ) -> Result<Vec<InterfaceState>, AwsError> {
        const OP: &str = "ec2:DescribeNetworkInterfaces";
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            called(&self.metrics, "ec2", "DescribeNetworkInterfaces");
            let filter = aws_sdk_ec2::types::Filter::builder()
                .name("subnet-id")
                .values(subnet_id)
                .build();
            let page = self
                .client
                .describe_network_interfaces()
                .filters(filter)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
            found.extend(
                page.network_interfaces()
                    .iter()
                    .filter_map(interface_state)
                    .filter(|n| n.private_ips.contains(&ip)),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(found)
    }

    /// AssignPrivateIpAddresses of `ip` onto `eni` with `AllowReassignment=true`: EC2 moves
    /// the address from whichever interface of the subnet has it (API reference,
    /// AssignPrivateIpAddresses).
    pub async fn assign_private_ip(&self, eni: &str, ip: Ipv4Addr) -> Result<(), AwsError> {
        called(&self.metrics, "ec2", "AssignPrivateIpAddresses");
        self.client
            .assign_private_ip_addresses()
            .network_interface_id(eni)
            .private_ip_addresses(ip.to_string())
            .allow_reassignment(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, "ec2:AssignPrivateIpAddresses", e))?;
        Ok(())
    }

    /// DescribeSubnets: a subnet's IPv4 CIDR block.
    pub async fn subnet_cidr(&self, subnet_id: &str) -> Result<Ipv4Net, AwsError> {
        const OP: &str = "ec2:DescribeSubnets";
        called(&self.metrics, "ec2", "DescribeSubnets");
        let out = self
            .client
            .describe_subnets()
            .subnet_ids(subnet_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
        out.subnets()
            .iter()
            .find(|s| s.subnet_id() == Some(subnet_id))
            .and_then(|s| s.cidr_block())
            .and_then(|c| c.parse().ok())
            .ok_or(AwsError {
                operation: OP,
                code: None,
                message: format!("no IPv4 CIDR block for {subnet_id} in the answer"),
            })
    }

    /// DescribeVpcs: every IPv4 CIDR block associated with a VPC (the primary one too).
    pub async fn vpc_cidrs(&self, vpc_id: &str) -> Result<Vec<Ipv4Net>, AwsError> {
        const OP: &str = "ec2:DescribeVpcs";
        called(&self.metrics, "ec2", "DescribeVpcs");
        let out = self
            .client
            .describe_vpcs()
            .vpc_ids(vpc_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
        let Some(vpc) = out.vpcs().iter().find(|v| v.vpc_id() == Some(vpc_id)) else {
            return Err(AwsError {
                operation: OP,
                code: None,
                message: format!("{vpc_id} is not in the answer"),
            });
        };
        let mut cidrs: Vec<Ipv4Net> = vpc
            .cidr_block()
            .and_then(|c| c.parse().ok())
            .into_iter()
            .collect();
        for a in vpc.cidr_block_association_set() {
            let associated = a
                .cidr_block_state()
                .and_then(|s| s.state())
                .is_none_or(|s| s.as_str() == "associated");
            if let (true, Some(c)) = (associated, a.cidr_block().and_then(|c| c.parse().ok())) {
                if !cidrs.contains(&c) {
                    cidrs.push(c);
                }
            }
        }
        Ok(cidrs)
    }

    /// DescribeRouteTables of `tables`: where each sends `destination` (a `/32`). Errors:
    /// EC2's (`InvalidRouteTableID.NotFound`), or a table missing from the answer.
    pub async fn routes_to(
        &self,
        tables: &[String],
        destination: Ipv4Net,
    ) -> Result<Vec<TableState>, AwsError> {
        const OP: &str = "ec2:DescribeRouteTables";
        called(&self.metrics, "ec2", "DescribeRouteTables");
        let out = self
            .client
            .describe_route_tables()
            .set_route_table_ids(Some(tables.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
        let dest = destination.to_string();
        let mut states = Vec::new();
        for id in tables {
            let Some(t) = out
                .route_tables()
                .iter()
                .find(|t| t.route_table_id() == Some(id.as_str()))
            else {
                return Err(AwsError {
                    operation: OP,
                    code: None,
                    message: format!("{id} is not in the answer"),
                });
            };
            let target = match t
                .routes()
                .iter()
                .find(|r| r.destination_cidr_block() == Some(dest.as_str()))
            {
                None => RouteTarget::Missing,
                Some(r) => match r.network_interface_id().filter(|s| !s.is_empty()) {
                    Some(eni) => RouteTarget::Interface(eni.to_owned()),
                    None => RouteTarget::Other(
                        [
                            r.instance_id(),
                            r.gateway_id(),
                            r.nat_gateway_id(),
                            r.transit_gateway_id(),
                            r.vpc_peering_connection_id(),
                        ]
                        .into_iter()
                        .flatten()
                        .find(|s| !s.is_empty())
                        .unwrap_or("a target EC2 did not name")
                        .to_owned(),
                    ),
                },
            };
            states.push(TableState {
                route_table_id: id.clone(),
                vpc_id: t.vpc_id().unwrap_or_default().to_owned(),
                target,
            });
        }
        Ok(states)
    }

    /// ReplaceRoute of `destination` in `table` onto `eni`. EC2 answers `InvalidParameterValue`
    /// when the table has no such route (then CreateRoute is the call).
    pub async fn replace_route(
        &self,
        table: &str,
        destination: Ipv4Net,
        eni: &str,
    ) -> Result<(), AwsError> {
        called(&self.metrics, "ec2", "ReplaceRoute");
        self.client
            .replace_route()
            .route_table_id(table)
            .destination_cidr_block(destination.to_string())
            .network_interface_id(eni)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, "ec2:ReplaceRoute", e))?;
        Ok(())
    }

    /// ReplaceRoute with `DryRun=true`, onto the route's current target `eni`: what
    /// `preflight` asks, so that an endpoint that ignores DryRun changes nothing either.
    pub async fn dry_run_replace_route(
        &self,
        table: &str,
        destination: Ipv4Net,
        eni: &str,
    ) -> super::ec2::DryRun {
        called(&self.metrics, "ec2", "ReplaceRoute");
        let answer = self
            .client
            .replace_route()
            .route_table_id(table)
            .destination_cidr_block(destination.to_string())
            .network_interface_id(eni)
            .dry_run(true)
            .send()
            .await;
        self.dry_run_answer("ec2:ReplaceRoute", answer)
    }

    /// CreateRoute of `destination` in `table` onto `eni`. EC2 answers `RouteAlreadyExists`
    /// when another node created it first (then ReplaceRoute is the call).
    pub async fn create_route(
        &self,
        table: &str,
        destination: Ipv4Net,
        eni: &str,
    ) -> Result<(), AwsError> {
        called(&self.metrics, "ec2", "CreateRoute");
        self.client
            .create_route()
            .route_table_id(table)
            .destination_cidr_block(destination.to_string())
            .network_interface_id(eni)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, "ec2:CreateRoute", e))?;
        Ok(())
    }
}
