//! The AWS checks: each Elastic IP, each permission the configuration needs (mutating EC2
//! calls with `DryRun`, reads made, the rest said to be unprovable, from `needs`), each SNS
//! topic, Auto Scaling group and events queue.

use super::needs::{self, Proof};
use super::{Check, Report};
use crate::config::{ActionSpec, CheckSpec, ClaimEipSpec, ClaimProvider, Config, SourceSpec};
use crate::providers::aws::autoscaling::AutoScaling;
use crate::providers::aws::ec2::{AddressState, DryRun, Ec2};
use crate::providers::aws::imds::NodeIdentity;
use crate::providers::aws::opsworks::{OpsWorks, OpsworksIdentity};
use crate::providers::aws::sns::Sns;
use crate::providers::aws::sqs::Sqs;
use crate::providers::aws::{self, AwsError};
use crate::telemetry::metrics::Metrics;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Where the IAM policies the packages ship are, for the fixes.
const POLICIES: &str = "/usr/share/doc/haproxy-watchdog/iam/";

/// The AWS side: nothing when the configuration makes no AWS call.
pub(super) async fn all(report: &mut Report, config: &Config, identity: Option<&NodeIdentity>) {
    let needs = needs::of(config);
    if needs.is_empty() {
        report.push(Check::skip(
            "AWS",
            "the configuration makes no AWS call (no claim_eip, sns action or Auto Scaling source)",
        ));
        return;
    }
    if rustls_native_certs::load_native_certs().certs.is_empty() {
        report.push(Check::fail(
            "AWS",
            "this machine has no CA certificates, so no AWS call can be made",
            "install the ca-certificates package",
        ));
        return;
    }
    let sdk = aws::sdk_config(&config.aws).await;
    let Some(region) = sdk.region().map(|r| r.to_string()) else {
        report.push(Check::fail(
            "AWS region",
            "neither [aws] region nor AWS_REGION is set, and instance metadata did not give one",
            "set `region` in [aws]",
        ));
        return;
    };
    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => {
            report.push(Check::fail(
                "AWS",
                format!("cannot set up the API call counters: {e}"),
                "report this as a bug",
            ));
            return;
        }
    };
    let ctx = Ctx {
        region,
        ec2: Ec2::new(&sdk, metrics.clone()),
        sns: Sns::new(&sdk, metrics.clone()),
    };
    for a in config.actions.values() {
        if let ActionSpec::ClaimEip(c) = a {
            match c.provider {
                ClaimProvider::Ec2 => claim_ec2(report, &ctx, c, identity).await,
                ClaimProvider::OpsWorks => {
                    claim_opsworks(report, config, &sdk, metrics.clone(), c).await
                }
            }
        }
    }
    topics(report, &ctx, config).await;
    for r in &config.rules {
        if let CheckSpec::BackendSync(b) = &r.check {
            if let SourceSpec::Asg(asg) = &b.source {
                let by = format!("rule {:?}", r.name);
                let autoscaling = AutoScaling::new(&sdk, metrics.clone());
                match autoscaling.members(&asg.group).await {
                    Ok(m) => report.push(Check::pass(format!(
                        "autoscaling:DescribeAutoScalingGroups for {by}: group {:?} has {} instance(s) in service",
                        asg.group,
                        m.serving.len()
                    ))),
                    Err(e) => report.push(aws_fail(
                        format!("autoscaling:DescribeAutoScalingGroups for {by} (group {:?})", asg.group),
                        &e,
                        format!("check the group's name and [aws] region {}", ctx.region),
                    )),
                }
                dry_run(
                    report,
                    format!("ec2:DescribeInstances for {by}"),
                    ctx.ec2.dry_run_describe_instances().await,
                    "",
                );
                if let Some(q) = &asg.events_queue {
                    match Sqs::new(&sdk, metrics.clone()).queue_exists(q).await {
                        Ok(()) => report.push(Check::pass(format!("SQS events queue {q} exists"))),
                        Err(e) => report.push(aws_fail(
                            format!("SQS events queue {q} for {by}"),
                            &e,
                            "check `events_queue` (the queue URL) and the region; see /usr/share/doc/haproxy-watchdog/eventbridge/".to_owned(),
                        )),
                    }
                }
            }
        }
    }
    unprovable(report, &needs);
}

/// Each permission that cannot be tried without acting, once per IAM action and resource:
/// said so, never passed.
fn unprovable(report: &mut Report, needs: &[needs::Need]) {
    let mut by: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for n in needs {
        if let Some(Proof::Unprovable(_)) = needs::operation(n.iam_action).map(|o| o.proof) {
            by.entry((n.iam_action, &n.resource))
                .or_default()
                .push(&n.by);
        }
    }
    for ((action, resource), users) in by {
        let why = match needs::operation(action).map(|o| o.proof) {
            Some(Proof::Unprovable(why)) => why,
            _ => "",
        };
        report.push(Check::skip(
            format!("{action} on {resource} ({})", users.join(", ")),
            format!(
                "not provable without acting ({why}); allow it as the policies in {POLICIES} do"
            ),
        ));
    }
}

struct Ctx {
    region: String,
    ec2: Ec2,
    sns: Sns,
}

/// A failed AWS call as a line: a denied permission names the action and the policy to fix;
/// anything else says what AWS answered and `fix`.
fn aws_fail(what: String, e: &AwsError, fix: String) -> Check {
    if e.is_bad_credentials() {
        Check::fail(
            what,
            format!("{e}: the credentials were refused"),
            format!("give the instance an instance profile (role) with the policies in {POLICIES}, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the service's environment"),
        )
    } else if e.is_denied() {
        Check::fail(
            what,
            format!(
                "denied, the caller lacks {} ({}: {})",
                e.operation,
                e.code.as_deref().unwrap_or("?"),
                e.message
            ),
            format!(
                "allow {} in the IAM policy of the instance's role (see {POLICIES})",
                e.operation
            ),
        )
    } else {
        Check::fail(what, e.to_string(), fix)
    }
}

fn dry_run(report: &mut Report, what: String, answer: DryRun, fix: &str) {
    match answer {
        DryRun::Allowed => report.push(Check::pass(format!("{what} (DryRun: allowed)"))),
        DryRun::Refused(e) => {
            let fix = if fix.is_empty() {
                "see the error".to_owned()
            } else {
                fix.to_owned()
            };
            report.push(aws_fail(what, &e, fix))
        }
    }
}

async fn claim_ec2(
    report: &mut Report,
    ctx: &Ctx,
    c: &ClaimEipSpec,
    identity: Option<&NodeIdentity>,
) {
    let by = format!("action {:?}", c.name);
    let address: Option<AddressState> = match ctx.ec2.describe(&c.eip).await {
        Ok(a) => {
            report.push(Check::pass(format!(
                "Elastic IP {} ({}) found in {} for {by}; held by {}",
                c.eip,
                a.allocation_id,
                ctx.region,
                a.holder()
            )));
            Some(a)
        }
        Err(e) => {
            report.push(aws_fail(
                format!("Elastic IP {} for {by}", c.eip),
                &e,
                format!(
                    "check `eip` against the account's Elastic IPs in {} (a VPC address, allocated in this account and region)",
                    ctx.region
                ),
            ));
            None
        }
    };
    let what = format!("ec2:AssociateAddress for {by}");
    match (&address, identity) {
        (Some(a), Some(id)) => {
            let ip = c.private_ip.unwrap_or(id.private_ip);
            dry_run(
                report,
                format!(
                    "{what} ({} onto {}, {ip})",
                    a.allocation_id, id.network_interface_id
                ),
                ctx.ec2
                    .dry_run_associate(&a.allocation_id, &id.network_interface_id, ip)
                    .await,
                "check that the ENI and private IP are this node's ([node], `private_ip`)",
            );
        }
        (None, _) => report.push(Check::skip(
            what,
            "the Elastic IP could not be read (above)",
        )),
        (_, None) => report.push(Check::skip(
            what,
            "this node's ENI and private IP are not known (instance metadata, above)",
        )),
    }
    let what = format!("ec2:DisassociateAddress for {by}");
    match address.as_ref().and_then(|a| a.association_id.as_deref()) {
        Some(assoc) => dry_run(
            report,
            format!("{what} ({assoc})"),
            ctx.ec2.dry_run_disassociate(assoc).await,
            "",
        ),
        None if address.is_some() => report.push(Check::skip(
            what,
            "the Elastic IP is not associated now, and a dry run needs an association to release; allow it as the policies do",
        )),
        None => report.push(Check::skip(what, "the Elastic IP could not be read (above)")),
    }
}

async fn claim_opsworks(
    report: &mut Report,
    config: &Config,
    sdk: &aws_config::SdkConfig,
    metrics: Arc<Metrics>,
    c: &ClaimEipSpec,
) {
    let by = format!("action {:?}", c.name);
    match OpsworksIdentity::new(&config.opsworks).get().await {
        Ok(id) => report.push(Check::pass(format!("OpsWorks instance id {id} for {by}"))),
        Err(e) => report.push(Check::fail(
            format!("OpsWorks instance id for {by}"),
            e.to_string(),
            "set [opsworks] instance_id, or let the service user read the agent's file",
        )),
    }
    let crate::config::EipRef::PublicIp(ip) = &c.eip else {
        // Validation requires a public IP for OpsWorks claims.
        return;
    };
    let ow = OpsWorks::new(sdk, &config.opsworks, metrics);
    match ow.describe(*ip).await {
        Ok(e) => report.push(Check::pass(format!(
            "Elastic IP {ip} registered with OpsWorks for {by}; held by {}",
            e.holder()
        ))),
        Err(e) => report.push(aws_fail(
            format!("Elastic IP {ip} in OpsWorks for {by}"),
            &e,
            format!(
                "register the Elastic IP with the stack, and check [opsworks] region {}",
                config.opsworks.region
            ),
        )),
    }
}

/// Each SNS topic once: it exists (GetTopicAttributes); `sns:Publish` itself cannot be proven
/// without publishing.
async fn topics(report: &mut Report, ctx: &Ctx, config: &Config) {
    let mut topics = BTreeSet::new();
    for a in config.actions.values() {
        match a {
            ActionSpec::ClaimEip(c) => topics.extend(c.sns_topic_arn.clone()),
            ActionSpec::Sns(s) => {
                topics.insert(s.topic_arn.clone());
            }
            ActionSpec::Exec(_) => {}
        }
    }
    for t in topics {
        match ctx.sns.topic_exists(&t).await {
            Ok(()) => report.push(Check::pass(format!("SNS topic {t} exists"))),
            Err(e) if e.is_code("NotFound") => report.push(Check::fail(
                format!("SNS topic {t}"),
                format!("{e}: no such topic in this account and region"),
                "create the topic, or correct the ARN in the configuration",
            )),
            Err(e) => report.push(aws_fail(
                format!("SNS topic {t}"),
                &e,
                "check the ARN's region and account".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Outcome;

    /// What cannot be tried is one SKIP per IAM action and resource, naming who needs it and
    /// why it was not tried; never a PASS.
    #[test]
    fn each_unprovable_permission_is_one_skip_line_saying_why() {
        let toml = r#"
[actions.claim]
type = "claim_eip"
eip = "203.0.113.10"
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[actions.page]
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[rules.web]
check = { type = "http", url = "http://127.0.0.1/" }
on_fail = ["claim", "page"]
[rules.servers]
check = { type = "backend_sync", source = { type = "asg", group = "web", events_queue = "https://sqs.us-east-1.amazonaws.com/123456789012/q", lifecycle_hook = "drain" }, backend = "app", port = 8080, stats_socket = "/run/haproxy/admin.sock", haproxy_config = "/etc/haproxy/haproxy.cfg" }
"#;
        let config = crate::config::from_sources(&[("t.toml".into(), toml.to_owned())])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut report = Report::default();
        unprovable(&mut report, &needs::of(&config));
        let lines: Vec<String> = report.checks.iter().map(|c| c.to_string()).collect();
        assert!(report
            .checks
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Skip { .. })));
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with(
            "SKIP autoscaling:CompleteLifecycleAction on group web, hook drain (rule \"servers\"): not provable without acting (Auto Scaling has no dry run)"
        ), "{lines:#?}");
        assert!(lines[1].starts_with(
            "SKIP sns:Publish on arn:aws:sns:us-east-1:123456789012:t (action \"claim\", action \"page\"): not provable without acting (SNS has no dry run: only a real alert proves it); allow it as the policies in"
        ), "{lines:#?}");
        assert!(
            lines[2].starts_with("SKIP sqs:DeleteMessage on https://sqs."),
            "{lines:#?}"
        );
        assert!(
            lines[3].contains("receiving would hide the queue's messages"),
            "{lines:#?}"
        );
    }
}
