//! Which AWS permissions a configuration needs, kept in one place: [`OPERATIONS`] lists every
//! API operation `providers::aws` makes (a test reads the providers' `called(...)` lines and
//! fails when one is missing here), [`of`] which of them a configuration makes and how
//! `preflight` can prove each is allowed.

use crate::config::{ActionSpec, CheckSpec, ClaimProvider, Config, SourceSpec};

/// How `preflight` can tell that an action is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A read: it is simply made.
    Read,
    /// A mutating EC2 call: made with `DryRun=true` (`DryRunOperation` = allowed).
    DryRun,
    /// A call that cannot be tried without acting (a service without a dry run, or a read
    /// that changes the queue): why.
    Unprovable(&'static str),
}

/// One AWS API operation: the service and operation `providers::aws` count it under
/// (`called(metrics, service, operation)`), the IAM action that allows it, and how
/// `preflight` proves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub service: &'static str,
    pub operation: &'static str,
    pub iam_action: &'static str,
    pub proof: Proof,
}

const fn op(
    service: &'static str,
    operation: &'static str,
    iam_action: &'static str,
    proof: Proof,
) -> Operation {
    Operation {
        service,
        operation,
        iam_action,
        proof,
    }
}

const SNS: &str = "SNS has no dry run: only a real alert proves it";
const SQS: &str = "SQS has no dry run";
const RECEIVE: &str = "receiving would hide the queue's messages from the daemon";
const AUTOSCALING: &str = "Auto Scaling has no dry run";
const OPSWORKS: &str = "OpsWorks has no dry run";
const ASSIGN: &str = "AssignPrivateIpAddresses has no DryRun parameter";
const CREATE_ROUTE: &str = "a CreateRoute dry run on an endpoint that ignored DryRun would add the route; the ReplaceRoute dry run proves the same route-table permission";

/// Every operation the providers make. SQS's DeleteMessageBatch is allowed by
/// `sqs:DeleteMessage` (SQS has no separate batch permission).
pub const OPERATIONS: &[Operation] = &[
    op(
        "ec2",
        "DescribeAddresses",
        "ec2:DescribeAddresses",
        Proof::Read,
    ),
    op(
        "ec2",
        "AssociateAddress",
        "ec2:AssociateAddress",
        Proof::DryRun,
    ),
    op(
        "ec2",
        "DisassociateAddress",
        "ec2:DisassociateAddress",
        Proof::DryRun,
    ),
    op(
        "ec2",
        "DescribeInstances",
        "ec2:DescribeInstances",
        Proof::DryRun,
    ),
    op(
        "ec2",
        "DescribeNetworkInterfaces",
        "ec2:DescribeNetworkInterfaces",
        Proof::Read,
    ),
    op(
        "ec2",
        "AssignPrivateIpAddresses",
        "ec2:AssignPrivateIpAddresses",
        Proof::Unprovable(ASSIGN),
    ),
    op("ec2", "DescribeSubnets", "ec2:DescribeSubnets", Proof::Read),
    op("ec2", "DescribeVpcs", "ec2:DescribeVpcs", Proof::Read),
    op(
        "ec2",
        "DescribeRouteTables",
        "ec2:DescribeRouteTables",
        Proof::Read,
    ),
    op("ec2", "ReplaceRoute", "ec2:ReplaceRoute", Proof::DryRun),
    op(
        "ec2",
        "CreateRoute",
        "ec2:CreateRoute",
        Proof::Unprovable(CREATE_ROUTE),
    ),
    op(
        "opsworks",
        "DescribeElasticIps",
        "opsworks:DescribeElasticIps",
        Proof::Read,
    ),
    op(
        "opsworks",
        "AssociateElasticIp",
        "opsworks:AssociateElasticIp",
        Proof::Unprovable(OPSWORKS),
    ),
    op("sns", "Publish", "sns:Publish", Proof::Unprovable(SNS)),
    op(
        "sns",
        "GetTopicAttributes",
        "sns:GetTopicAttributes",
        Proof::Read,
    ),
    op(
        "autoscaling",
        "DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingGroups",
        Proof::Read,
    ),
    op(
        "autoscaling",
        "CompleteLifecycleAction",
        "autoscaling:CompleteLifecycleAction",
        Proof::Unprovable(AUTOSCALING),
    ),
    op(
        "autoscaling",
        "RecordLifecycleActionHeartbeat",
        "autoscaling:RecordLifecycleActionHeartbeat",
        Proof::Unprovable(AUTOSCALING),
    ),
    op(
        "sqs",
        "ReceiveMessage",
        "sqs:ReceiveMessage",
        Proof::Unprovable(RECEIVE),
    ),
    op(
        "sqs",
        "DeleteMessageBatch",
        "sqs:DeleteMessage",
        Proof::Unprovable(SQS),
    ),
    op(
        "sqs",
        "GetQueueAttributes",
        "sqs:GetQueueAttributes",
        Proof::Read,
    ),
];

/// Operations only `preflight` makes, which the daemon does not need.
pub const PREFLIGHT_ONLY: &[&str] = &["sns:GetTopicAttributes", "sqs:GetQueueAttributes"];

/// The operation allowed by `iam_action`.
pub fn operation(iam_action: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.iam_action == iam_action)
}

/// One permission the configuration needs, on what, and what needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub iam_action: &'static str,
    /// What it is used on: the Elastic IP, topic ARN, group or queue URL.
    pub resource: String,
    /// `action "claim"`, `rule "web-servers"`.
    pub by: String,
}

/// The IAM actions `config` makes the daemon use for the actions an enabled rule runs (not
/// counting `preflight`'s own reads), each with what needs it, in a stable order.
pub fn of(config: &Config) -> Vec<Need> {
    let mut needs = Vec::new();
    let mut need = |iam_action: &'static str, resource: &str, by: &str| {
        needs.push(Need {
            iam_action,
            resource: resource.to_owned(),
            by: by.to_owned(),
        })
    };
    for (name, a) in &config.actions {
        // The daemon never runs an action no enabled rule lists.
        if !super::in_use(config, name) {
            continue;
        }
        let by = format!("action {name:?}");
        match a {
            ActionSpec::ClaimEip(c) => {
                let eip = c.eip.to_string();
                match c.provider {
                    ClaimProvider::Ec2 => {
                        need("ec2:DescribeAddresses", &eip, &by);
                        need("ec2:DisassociateAddress", &eip, &by);
                        need("ec2:AssociateAddress", &eip, &by);
                    }
                    ClaimProvider::OpsWorks => {
                        need("opsworks:DescribeElasticIps", &eip, &by);
                        need("opsworks:AssociateElasticIp", &eip, &by);
                    }
                }
                // Validation fills in `[alerts] sns_topic_arn` (one of the two is required).
                if let Some(t) = &c.sns_topic_arn {
                    need("sns:Publish", t, &by);
                }
            }
            ActionSpec::ClaimPrivateIp(c) => {
                let ip = c.private_ip.to_string();
                need("ec2:DescribeNetworkInterfaces", &ip, &by);
                need("ec2:DescribeSubnets", "this node's subnet", &by);
                need("ec2:AssignPrivateIpAddresses", &ip, &by);
                if let Some(t) = &c.sns_topic_arn {
                    need("sns:Publish", t, &by);
                }
            }
            ActionSpec::ClaimRoute(c) => {
                let tables = c.route_table_ids.join(", ");
                need("ec2:DescribeRouteTables", &tables, &by);
                need("ec2:DescribeNetworkInterfaces", "this node's ENI", &by);
                need("ec2:DescribeVpcs", "the tables' VPC", &by);
                need("ec2:ReplaceRoute", &tables, &by);
                need("ec2:CreateRoute", &tables, &by);
                if let Some(t) = &c.sns_topic_arn {
                    need("sns:Publish", t, &by);
                }
            }
            // Its members' needs are their own (they are in use through it).
            ActionSpec::ClaimGroup(g) => {
                if let Some(t) = &g.sns_topic_arn {
                    need("sns:Publish", t, &by);
                }
            }
            ActionSpec::Sns(s) => need("sns:Publish", &s.topic_arn, &by),
            ActionSpec::Exec(_) => {}
        }
    }
    for r in &config.rules {
        let CheckSpec::BackendSync(b) = &r.check else {
            continue;
        };
        let SourceSpec::Asg(asg) = &b.source else {
            continue;
        };
        let by = format!("rule {:?}", r.name);
        let group = format!("group {}", asg.group);
        need("autoscaling:DescribeAutoScalingGroups", &group, &by);
        need("ec2:DescribeInstances", "the group's instances", &by);
        if let Some(q) = &asg.events_queue {
            need("sqs:ReceiveMessage", q, &by);
            need("sqs:DeleteMessage", q, &by);
        }
        if let Some(hook) = &asg.lifecycle_hook {
            let hook = format!("{group}, hook {hook}");
            need("autoscaling:CompleteLifecycleAction", &hook, &by);
            if asg.heartbeat_interval.is_some() {
                need("autoscaling:RecordLifecycleActionHeartbeat", &hook, &by);
            }
        }
    }
    needs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `called(&self.metrics, "service", "Operation")` of every provider file, however the
    /// call is wrapped over lines.
    fn provider_calls() -> BTreeSet<(String, String)> {
        let sources = [
            include_str!("../providers/aws/ec2.rs"),
            include_str!("../providers/aws/vpc.rs"),
            include_str!("../providers/aws/sns.rs"),
            include_str!("../providers/aws/sqs.rs"),
            include_str!("../providers/aws/autoscaling.rs"),
            include_str!("../providers/aws/opsworks.rs"),
            include_str!("../providers/aws/imds.rs"),
            include_str!("../providers/aws/mod.rs"),
        ];
        let mut calls = BTreeSet::new();
        for s in sources {
            for (i, _) in s.match_indices("called(") {
                let rest = &s[i + "called(".len()..];
                let end = rest.find(')').expect("called( closes");
                let args: String = rest[..end].split_whitespace().collect();
                if !args.starts_with("&self.metrics,") {
                    continue; // the definition
                }
                let quoted: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
                assert_eq!(quoted.len(), 2, "{args}");
                calls.insert((quoted[0].to_owned(), quoted[1].to_owned()));
            }
        }
        calls
    }

    #[test]
    fn operations_list_every_call_the_providers_make_and_nothing_else() {
        let calls = provider_calls();
        assert!(calls.len() >= 10, "{calls:?}");
        let listed: BTreeSet<(String, String)> = OPERATIONS
            .iter()
            .map(|o| (o.service.to_owned(), o.operation.to_owned()))
            .collect();
        assert_eq!(calls, listed, "providers vs preflight::needs::OPERATIONS");
    }

    /// Every permission a configuration can need is in a shipped policy, and every action a
    /// shipped policy grants is one the code uses.
    #[test]
    fn the_shipped_iam_policies_grant_what_the_daemon_and_preflight_call() {
        let policies = [
            include_str!("../../packaging/iam/ec2-failover-policy.json"),
            include_str!("../../packaging/iam/private-ip-failover-policy.json"),
            include_str!("../../packaging/iam/route-failover-policy.json"),
            include_str!("../../packaging/iam/opsworks-failover-policy.json"),
            include_str!("../../packaging/iam/backend-sync-asg-policy.json"),
            include_str!("../../packaging/iam/backend-sync-events-policy.json"),
        ];
        let mut granted = BTreeSet::new();
        for p in policies {
            let v: serde_json::Value = serde_json::from_str(p).expect("policy JSON");
            for st in v["Statement"].as_array().expect("Statement") {
                match &st["Action"] {
                    serde_json::Value::String(a) => {
                        granted.insert(a.clone());
                    }
                    serde_json::Value::Array(a) => {
                        granted.extend(a.iter().filter_map(|x| x.as_str()).map(str::to_owned))
                    }
                    other => panic!("Action {other}"),
                }
            }
        }
        for o in OPERATIONS {
            assert!(
                granted.contains(o.iam_action),
                "no shipped policy grants {}",
                o.iam_action
            );
        }
        for g in &granted {
            assert!(
                operation(g).is_some(),
                "a shipped policy grants {g}, which nothing calls"
            );
        }
    }

    #[test]
    fn a_configuration_using_everything_needs_every_operation() {
        let toml = r#"
[alerts]
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[opsworks]
region = "us-east-1"
instance_id = "4d6d1710-ded9-42a1-b08e-b043ad7af1e2"
[haproxy]
stats_socket = "/run/haproxy/admin.sock"
[actions.claim]
type = "claim_eip"
eip = "203.0.113.10"
[actions.ow]
type = "claim_eip"
eip = "203.0.113.11"
provider = "opsworks"
[actions.page]
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[actions.vip]
type = "claim_private_ip"
private_ip = "10.0.1.50"
reachability = ["10.0.0.2:53"]
[actions.overlay]
type = "claim_route"
destination = "192.168.100.10"
route_table_ids = ["rtb-1", "rtb-2"]
reachability = ["10.0.0.2:53"]
[rules.web]
check = { type = "http", url = "http://127.0.0.1/" }
on_fail = ["claim", "ow", "page", "vip", "overlay"]
[rules.servers]
check = { type = "backend_sync", source = { type = "asg", group = "web", events_queue = "https://sqs.us-east-1.amazonaws.com/123456789012/q", lifecycle_hook = "drain", heartbeat_interval = "1m" }, backend = "app", port = 8080, stats_socket = "/run/haproxy/admin.sock", haproxy_config = "/etc/haproxy/haproxy.cfg" }
"#;
        let config = crate::config::from_sources(&[("t.toml".into(), toml.to_owned())])
            .unwrap_or_else(|e| panic!("{e}"));
        let needed: BTreeSet<&str> = of(&config).iter().map(|n| n.iam_action).collect();
        for o in OPERATIONS {
            assert!(
                needed.contains(o.iam_action) || PREFLIGHT_ONLY.contains(&o.iam_action),
                "{} is needed by no configuration",
                o.iam_action
            );
        }
        let claim: Vec<_> = of(&config)
            .into_iter()
            .filter(|n| n.by == "action \"claim\"")
            .map(|n| n.iam_action)
            .collect();
        assert_eq!(
            claim,
            [
                "ec2:DescribeAddresses",
                "ec2:DisassociateAddress",
                "ec2:AssociateAddress",
                "sns:Publish"
            ]
        );
    }
}
