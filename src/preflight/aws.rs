//! The AWS checks: each Elastic IP, each permission the configuration needs (mutating EC2
//! calls with `DryRun`, reads made, the rest said to be unprovable, from `needs`), each SNS
//! topic, Auto Scaling group and events queue. Every failed call is classified once
//! ([`classify`]): only an answer that points at the configuration gets a configuration fix.

use super::needs::{self, Proof};
use super::{in_use, Check, Report};
use crate::config::{
    ActionSpec, CheckSpec, ClaimEipSpec, ClaimProvider, Config, EipRef, SourceSpec,
};
use crate::providers::aws::autoscaling::AutoScaling;
use crate::providers::aws::ec2::{AddressState, DryRun, Ec2};
use crate::providers::aws::imds::NodeIdentity;
use crate::providers::aws::opsworks::{OpsWorks, OpsworksIdentity};
use crate::providers::aws::sns::Sns;
use crate::providers::aws::sqs::Sqs;
use crate::providers::aws::{self, AwsError};
use crate::telemetry::metrics::Metrics;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Where the IAM policies the packages ship are, for the fixes.
const POLICIES: &str = "/usr/share/doc/haproxy-watchdog/iam/";

/// Who EC2 says holds a claim's Elastic IP, for the checkip check.
#[derive(Debug, Clone)]
pub(super) struct Owner {
    pub action: String,
    pub public_ip: Ipv4Addr,
    pub address: AddressState,
}

/// The AWS side: nothing when the configuration makes no AWS call. Returns who holds each
/// EC2 claim's Elastic IP, as far as it could be read.
pub(super) async fn all(
    report: &mut Report,
    config: &Config,
    identity: Option<&NodeIdentity>,
) -> Vec<Owner> {
    let mut owners = Vec::new();
    let needs = needs::of(config);
    if needs.is_empty() {
        report.push(Check::skip(
            "aws",
            "AWS",
            "the configuration makes no AWS call (no claim_eip, sns action or Auto Scaling source an enabled rule uses)",
        ));
        return owners;
    }
    if rustls_native_certs::load_native_certs().certs.is_empty() {
        report.push(Check::fail(
            "aws",
            "AWS",
            "this machine has no CA certificates, so no AWS call can be made",
            "install the ca-certificates package",
        ));
        return owners;
    }
    let sdk = aws::sdk_config_for(&config.aws, &config.node).await;
    let Some(region) = sdk.region().map(|r| r.to_string()) else {
        report.push(Check::fail(
            "aws region",
            "AWS region",
            "neither [aws] region nor AWS_REGION is set, and instance metadata did not give one",
            "set `region` in [aws]",
        ));
        return owners;
    };
    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => {
            report.push(Check::fail(
                "aws",
                "AWS",
                format!("cannot set up the API call counters: {e}"),
                "report this as a bug",
            ));
            return owners;
        }
    };
    let ctx = Ctx {
        region,
        ec2: Ec2::new(&sdk, metrics.clone()),
        sns: Sns::new(&sdk, metrics.clone()),
    };
    for (name, a) in &config.actions {
        if !in_use(config, name) {
            continue;
        }
        if let ActionSpec::ClaimPrivateIp(c) = a {
            super::private::private_ip(report, &ctx, c, identity).await;
        }
        if let ActionSpec::ClaimRoute(c) = a {
            super::private::route(report, &ctx, c, identity).await;
        }
        if let ActionSpec::ClaimEip(c) = a {
            match c.provider {
                ClaimProvider::Ec2 => {
                    if let Some(o) = claim_ec2(report, &ctx, c, identity).await {
                        owners.push(o);
                    }
                }
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
                let id = format!("autoscaling:DescribeAutoScalingGroups {}", r.name);
                let what = format!("autoscaling:DescribeAutoScalingGroups for {by}");
                if !down(report, &id, &what) {
                    let autoscaling = AutoScaling::new(&sdk, metrics.clone());
                    match autoscaling.members(&asg.group).await {
                        Ok(m) => report.push(Check::pass(&id, format!(
                            "{what}: group {:?} has {} instance(s) in service",
                            asg.group,
                            m.serving.len()
                        ))),
                        Err(e) => fail(
                            report,
                            id,
                            format!("{what} (group {:?})", asg.group),
                            &e,
                            format!("check `group` in rule {:?} against the account's Auto Scaling groups in {}", r.name, ctx.region),
                        ),
                    }
                }
                let id = format!("ec2:DescribeInstances {}", r.name);
                let what = format!("ec2:DescribeInstances for {by}");
                if !down(report, &id, &what) {
                    let answer = ctx.ec2.dry_run_describe_instances().await;
                    dry_run(report, id, what, answer, "");
                }
                if let Some(q) = &asg.events_queue {
                    let id = format!("sqs queue {q}");
                    let what = format!("SQS events queue {q} for {by}");
                    if let Some(c) = queue_region_mismatch(&id, &what, q, &ctx.region) {
                        report.push(c);
                    } else if !down(report, &id, &what) {
                        match Sqs::new(&sdk, metrics.clone()).queue_exists(q).await {
                            Ok(()) => report.push(Check::pass(id, format!("SQS events queue {q} exists"))),
                            Err(e) => fail(
                                report,
                                id,
                                what,
                                &e,
                                "check `events_queue` (the queue URL); see /usr/share/doc/haproxy-watchdog/eventbridge/".to_owned(),
                            ),
                        }
                    }
                }
            }
        }
    }
    unprovable(report, &needs);
    owners
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
            format!("{action} {resource}"),
            format!("{action} on {resource} ({})", users.join(", ")),
            format!(
                "not provable without acting ({why}); allow it as the policies in {POLICIES} do"
            ),
        ));
    }
}

pub(super) struct Ctx {
    pub(super) region: String,
    pub(super) ec2: Ec2,
    sns: Sns,
}

/// What kind of failure an AWS error is, decided once, on its code (and, for a failure with
/// no answer at all, on the transport's words: [`AwsError`] does not carry the SDK's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// The credentials themselves were refused.
    Credentials,
    /// No credentials could be loaded: the SDK sent nothing (its credential chain found none,
    /// or a provider of it failed), so nothing is known of the network.
    NoCredentials,
    /// The caller lacks the permission.
    Denied,
    /// The thing named does not exist or the request is invalid: the configuration's fault.
    Config,
    /// Too many requests.
    Throttled,
    /// The request's time stamp was refused: this machine's clock is off.
    ClockSkew,
    /// AWS failed on its side (5xx).
    Server,
    /// No answer: connection refused or closed, DNS, timeout.
    Unreachable,
    /// Anything else: nothing can be said of its cause.
    Unknown,
}

pub(super) fn classify(e: &AwsError) -> Class {
    let Some(code) = e.code.as_deref() else {
        let m = e.message.to_ascii_lowercase();
        // The SDK's words when its credential chain gave nothing: "an error occurred while
        // loading credentials", "no providers in chain provided credentials", "the credential
        // provider was not enabled". They come inside a "dispatch failure", which alone would
        // read as the network's fault.
        if m.contains("credential") {
            return Class::NoCredentials;
        }
        let transport = [
            "timed out",
            "timeout",
            "connection refused",
            "connection reset",
            "connection closed",
            "connection error",
            "broken pipe",
            "dispatch failure",
            "io error",
            "error trying to connect",
            "dns error",
            "failed to lookup",
            "unexpected eof",
        ];
        return if transport.iter().any(|t| m.contains(t)) {
            Class::Unreachable
        } else {
            Class::Unknown
        };
    };
    match code {
        "RequestExpired" | "RequestTimeTooSkewed" | "RequestInTheFuture" => Class::ClockSkew,
        // SNS and SQS answer a clock more than 15 minutes off with SignatureDoesNotMatch
        // ("Signature expired: ... is now earlier than ..."), others with
        // InvalidSignatureException: the message tells skew from bad credentials.
        "InvalidSignatureException" | "SignatureDoesNotMatch"
            if e.message.to_ascii_lowercase().contains("signature expired")
                || e.message.to_ascii_lowercase().contains("expired") =>
        {
            Class::ClockSkew
        }
        "InvalidSignatureException" => Class::Credentials,
        _ if e.is_bad_credentials() => Class::Credentials,
        _ if e.is_denied() => Class::Denied,
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "SlowDown"
        | "PriorRequestNotComplete" => Class::Throttled,
        "InternalError"
        | "InternalFailure"
        | "InternalServerError"
        | "InternalErrorException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "Unavailable"
        | "InsufficientAddressCapacity" => Class::Server,
        "ValidationError"
        | "ValidationException"
        | "MissingParameter"
        | "OperationNotPermitted"
        | "ResourceNotFoundException"
        | "QueueDoesNotExist"
        | "AWS.SimpleQueueService.NonExistentQueue" => Class::Config,
        c if c.ends_with("NotFound") || c.ends_with(".Malformed") || c.starts_with("Invalid") => {
            Class::Config
        }
        _ => Class::Unknown,
    }
}

/// A failed AWS call as a line, by its [`Class`]: `config_fix` only when the answer points at
/// the configuration. An unreachable API also skips the AWS checks after it.
pub(super) fn fail(
    report: &mut Report,
    check: String,
    what: String,
    e: &AwsError,
    config_fix: String,
) {
    let class = classify(e);
    if class == Class::Unreachable {
        report.aws_unreachable = true;
    }
    report.push(failure(check, what, e, class, config_fix));
}

fn failure(check: String, what: String, e: &AwsError, class: Class, config_fix: String) -> Check {
    let (why, fix) = match class {
        Class::Credentials => (
            format!("{e}: the credentials were refused"),
            format!("give the instance an instance profile (role) with the policies in {POLICIES}, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the service's environment"),
        ),
        Class::NoCredentials => (
            format!("{e}: no AWS credentials could be loaded, so nothing was sent (this says nothing about the network)"),
            format!("give the instance an instance profile (role) with the policies in {POLICIES} and check that the instance metadata service answers, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the service's environment"),
        ),
        Class::Denied => (
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
        ),
        Class::Config => (e.to_string(), config_fix),
        Class::Throttled => (
            format!("{e}: AWS throttled the call (too many requests in this account and region), even after the SDK's retries; this says nothing about the configuration"),
            "run preflight again in a minute; if it persists, find what else in the account calls this API so often, or raise [aws] max_attempts".to_owned(),
        ),
        Class::ClockSkew => (
            format!("{e}: AWS refused the request's time stamp, this machine's clock is off"),
            "synchronise the clock (chrony or systemd-timesyncd; `timedatectl` shows whether it is), then run preflight again".to_owned(),
        ),
        Class::Server => (
            format!("{e}: AWS failed on its side (a server error); this says nothing about the configuration"),
            "run preflight again; if it persists, see the AWS Health Dashboard for the service in this region".to_owned(),
        ),
        Class::Unreachable => (
            format!("{e}: the AWS API did not answer (connection refused, closed or timed out)"),
            "let this node reach the AWS endpoints of the region (security group, network ACL, route, NAT gateway or VPC endpoint, proxy; [aws] endpoint_url if set), then run preflight again".to_owned(),
        ),
        Class::Unknown => (
            format!("unexpected answer from AWS: {e}"),
            "retry, and if it persists, report it with this line (it says nothing about whether the configuration is at fault)".to_owned(),
        ),
    };
    Check::fail(check, what, why, fix)
}

/// After an AWS call found the API unreachable, the other AWS checks are one SKIP line each,
/// at once, instead of each waiting out the same timeout. True when `check` was skipped.
pub(super) fn down(report: &mut Report, check: &str, what: &str) -> bool {
    if report.aws_unreachable {
        report.push(Check::skip(
            check,
            what,
            "not checked (AWS API unreachable, see above)",
        ));
    }
    report.aws_unreachable
}

pub(super) fn dry_run(
    report: &mut Report,
    check: String,
    what: String,
    answer: DryRun,
    config_fix: &str,
) {
    match answer {
        DryRun::Allowed => report.push(Check::pass(check, format!("{what} (DryRun: allowed)"))),
        DryRun::Refused(e) => {
            let fix = if config_fix.is_empty() {
                "see the error".to_owned()
            } else {
                config_fix.to_owned()
            };
            fail(report, check, what, &e, fix)
        }
    }
}

/// The configuration key that names a claim's Elastic IP.
fn eip_key(c: &ClaimEipSpec) -> &'static str {
    match c.eip {
        EipRef::PublicIp(_) => "eip",
        EipRef::AllocationId(_) => "allocation_id",
    }
}

async fn claim_ec2(
    report: &mut Report,
    ctx: &Ctx,
    c: &ClaimEipSpec,
    identity: Option<&NodeIdentity>,
) -> Option<Owner> {
    let by = format!("action {:?}", c.name);
    let id = format!("eip {}", c.eip);
    let what = format!("Elastic IP {} for {by}", c.eip);
    let address: Option<AddressState> = if down(report, &id, &what) {
        None
    } else {
        match ctx.ec2.describe(&c.eip).await {
            Ok(a) => {
                report.push(Check::pass(
                    id,
                    format!(
                        "Elastic IP {} ({}) found in {} for {by}; held by {}",
                        c.eip,
                        a.allocation_id,
                        ctx.region,
                        a.holder()
                    ),
                ));
                Some(a)
            }
            Err(e) => {
                fail(
                    report,
                    id,
                    what,
                    &e,
                    format!(
                        "check `{}` of action {:?} against the account's Elastic IPs in {} (a VPC address, allocated in this account and region)",
                        eip_key(c),
                        c.name,
                        ctx.region
                    ),
                );
                None
            }
        }
    };
    let id = format!("ec2:AssociateAddress {}", c.name);
    let what = format!("ec2:AssociateAddress for {by}");
    match (&address, identity) {
        (Some(a), Some(me)) => {
            let ip = c.private_ip.unwrap_or(me.private_ip);
            let what = format!(
                "{what} ({} onto {}, {ip})",
                a.allocation_id, me.network_interface_id
            );
            if !down(report, &id, &what) {
                let answer = ctx
                    .ec2
                    .dry_run_associate(&a.allocation_id, &me.network_interface_id, ip)
                    .await;
                let fix = format!(
                    "the ENI {} and private IP {ip} must be this instance's ({}): check [node] network_interface_id and private_ip{} (the ENIs attached to it: `aws ec2 describe-network-interfaces --filters Name=attachment.instance-id,Values={}`; unset, the primary ENI and its primary private IP are used)",
                    me.network_interface_id,
                    me.instance_id,
                    if c.private_ip.is_some() {
                        format!(" and `private_ip` of action {:?}", c.name)
                    } else {
                        String::new()
                    },
                    me.instance_id,
                );
                dry_run(report, id, what, answer, &fix);
            }
        }
        (None, _) if report.aws_unreachable => {
            down(report, &id, &what);
        }
        (None, _) => report.push(Check::skip(
            id,
            what,
            "the Elastic IP could not be read (above)",
        )),
        (_, None) => report.push(Check::skip(
            id,
            what,
            "this node's ENI and private IP are not known (instance metadata, above)",
        )),
    }
    let id = format!("ec2:DisassociateAddress {}", c.name);
    let what = format!("ec2:DisassociateAddress for {by}");
    match address.as_ref().and_then(|a| a.association_id.as_deref()) {
        Some(assoc) => {
            let what = format!("{what} ({assoc})");
            if !down(report, &id, &what) {
                let answer = ctx.ec2.dry_run_disassociate(assoc).await;
                dry_run(report, id, what, answer, "");
            }
        }
        None if address.is_some() => report.push(Check::skip(
            id,
            what,
            "the Elastic IP is not associated now, and a dry run needs an association to release; allow it as the policies do",
        )),
        None if report.aws_unreachable => {
            down(report, &id, &what);
        }
        None => report.push(Check::skip(id, what, "the Elastic IP could not be read (above)")),
    }
    let address = address?;
    Some(Owner {
        action: c.name.clone(),
        public_ip: address.public_ip.or(match c.eip {
            EipRef::PublicIp(ip) => Some(ip),
            EipRef::AllocationId(_) => None,
        })?,
        address,
    })
}

async fn claim_opsworks(
    report: &mut Report,
    config: &Config,
    sdk: &aws_config::SdkConfig,
    metrics: Arc<Metrics>,
    c: &ClaimEipSpec,
) {
    let by = format!("action {:?}", c.name);
    report.push(opsworks_identity(config, &by, &c.name).await);
    let EipRef::PublicIp(ip) = &c.eip else {
        // Validation requires a public IP for OpsWorks claims.
        return;
    };
    let id = format!("opsworks eip {ip}");
    let what = format!("Elastic IP {ip} in OpsWorks for {by}");
    if down(report, &id, &what) {
        return;
    }
    let ow = OpsWorks::new(sdk, &config.opsworks, metrics);
    match ow.describe(*ip).await {
        Ok(e) => report.push(Check::pass(
            id,
            format!(
                "Elastic IP {ip} registered with OpsWorks for {by}; held by {}",
                e.holder()
            ),
        )),
        Err(e) => fail(
            report,
            id,
            what,
            &e,
            format!(
                "register the Elastic IP with the stack, and check [opsworks] region {}",
                config.opsworks.region
            ),
        ),
    }
}

/// This node's OpsWorks instance id, as the claim reads it. The fix is said once: the
/// error's own "set [opsworks] instance_id" is left to the fix.
async fn opsworks_identity(config: &Config, by: &str, name: &str) -> Check {
    let id = format!("opsworks instance_id {name}");
    match OpsworksIdentity::new(&config.opsworks).get().await {
        Ok(ow_id) => Check::pass(id, format!("OpsWorks instance id {ow_id} for {by}")),
        Err(e) => {
            let why = e.to_string();
            let why = why.trim_end_matches("; set [opsworks] instance_id");
            Check::fail(
                id,
                format!("OpsWorks instance id for {by}"),
                why,
                format!(
                    "let the service user read the OpsWorks agent's file ([opsworks] agent_config, {}), or set [opsworks] instance_id",
                    config.opsworks.agent_config.display()
                ),
            )
        }
    }
}

/// The region of an ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`).
fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// A topic in another region than `[aws] region`: found offline, before any call. The daemon
/// publishes through `[aws] region`'s endpoint, where such a topic is not found.
fn topic_region_mismatch(check: &str, what: &str, arn: &str, region: &str) -> Option<Check> {
    let theirs = arn_region(arn)?;
    (theirs != region).then(|| {
        Check::fail(
            check,
            what,
            format!("the topic is in {theirs}, but the daemon publishes through the endpoint of [aws] region {region}"),
            format!("use a topic in {region} (the ARN's fourth field), or set [aws] region = \"{theirs}\" if the node is in {theirs}"),
        )
    })
}

/// The same for an SQS queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`).
fn queue_region_mismatch(check: &str, what: &str, url: &str, region: &str) -> Option<Check> {
    let host = reqwest::Url::parse(url).ok()?.host_str()?.to_owned();
    let theirs = host.strip_prefix("sqs.")?.split('.').next()?.to_owned();
    if !host.ends_with(".amazonaws.com") || theirs == region {
        return None;
    }
    Some(Check::fail(
        check,
        what,
        format!("the queue is in {theirs}, but the daemon reads it through the endpoint of [aws] region {region}"),
        format!("use a queue in {region} in `events_queue`, or set [aws] region = \"{theirs}\" if the node is in {theirs}"),
    ))
}

/// Each SNS topic an action the daemon runs publishes to, once: it exists
/// (GetTopicAttributes); `sns:Publish` itself cannot be proven without publishing.
async fn topics(report: &mut Report, ctx: &Ctx, config: &Config) {
    let mut topics = BTreeSet::new();
    for (name, a) in &config.actions {
        if !in_use(config, name) {
            continue;
        }
        match a {
            ActionSpec::ClaimEip(c) => topics.extend(c.sns_topic_arn.clone()),
            ActionSpec::ClaimPrivateIp(c) => topics.extend(c.sns_topic_arn.clone()),
            ActionSpec::ClaimRoute(c) => topics.extend(c.sns_topic_arn.clone()),
            ActionSpec::ClaimGroup(g) => topics.extend(g.sns_topic_arn.clone()),
            ActionSpec::Sns(s) => {
                topics.insert(s.topic_arn.clone());
            }
            ActionSpec::Exec(_) => {}
        }
    }
    for t in topics {
        let id = format!("sns topic {t}");
        let what = format!("SNS topic {t}");
        if let Some(c) = topic_region_mismatch(&id, &what, &t, &ctx.region) {
            report.push(c);
            continue;
        }
        if down(report, &id, &what) {
            continue;
        }
        match ctx.sns.topic_exists(&t).await {
            Ok(()) => report.push(Check::pass(id, format!("SNS topic {t} exists"))),
            Err(e) if e.is_code("NotFound") => report.push(Check::fail(
                id,
                what,
                format!("{e}: no such topic in this account and region"),
                "create the topic, or correct the ARN in the configuration",
            )),
            Err(e) => fail(
                report,
                id,
                what,
                &e,
                "check the ARN (its account and name) in the configuration".to_owned(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Outcome;

    fn err(code: Option<&str>, message: &str) -> AwsError {
        AwsError {
            operation: "ec2:DescribeAddresses",
            code: code.map(str::to_owned),
            message: message.to_owned(),
        }
    }

    /// Breaker's find: preflight without credentials said the AWS API did not answer and
    /// advised opening the network, and skipped the other AWS checks as unreachable.
    #[test]
    fn missing_credentials_are_not_blamed_on_the_network() {
        let e = err(None, "dispatch failure: other: an error occurred while loading credentials: the credential provider was not enabled: no providers in chain provided credentials");
        let mut report = Report::default();
        fail(&mut report, "c".into(), "w".into(), &e, "CONFIG-FIX".into());
        assert!(!report.aws_unreachable, "the other checks still run");
        let line = report.checks[0].to_string();
        assert!(
            line.contains("no AWS credentials could be loaded"),
            "{line}"
        );
        assert!(!line.contains("security group"), "{line}");
    }

    /// Every AWS failure is put in one class, and only a class that points at the
    /// configuration gets the configuration's fix; the others say what really happened.
    #[test]
    fn aws_errors_are_classified_and_only_config_errors_get_config_fixes() {
        let cases = [
            (err(Some("UnauthorizedOperation"), "no"), Class::Denied),
            (err(Some("AuthFailure"), "no"), Class::Credentials),
            (err(Some("InvalidAddress.NotFound"), "no"), Class::Config),
            (err(Some("InvalidParameterValue"), "no"), Class::Config),
            (err(Some("NotFound"), "Topic does not exist"), Class::Config),
            (err(Some("ValidationError"), "no group"), Class::Config),
            (err(Some("RequestLimitExceeded"), "slow down"), Class::Throttled),
            (err(Some("Throttling"), "Rate exceeded"), Class::Throttled),
            (err(Some("RequestExpired"), "Request has expired"), Class::ClockSkew),
            (err(Some("InvalidSignatureException"), "Signature expired: 20260101T000000Z is now earlier than"), Class::ClockSkew),
            (err(Some("SignatureDoesNotMatch"), "Signature expired: 20261130T000000Z is now earlier than 20261130T101500Z (20261130T103000Z - 15 min.)"), Class::ClockSkew),
            (err(Some("InternalError"), "An internal error"), Class::Server),
            (err(Some("ServiceUnavailable"), "try later"), Class::Server),
            (err(None, "timed out"), Class::Unreachable),
            (err(None, "dispatch failure: io error: error trying to connect: tcp connect error: Connection refused (os error 111)"), Class::Unreachable),
            (err(None, "dispatch failure: io error: connection closed before message completed"), Class::Unreachable),
            (err(None, "unhandled error (Unknown)"), Class::Unknown),
            // Breaker's find: missing credentials read as an unreachable network.
            (err(None, "dispatch failure: other: an error occurred while loading credentials: the credential provider was not enabled: no providers in chain provided credentials"), Class::NoCredentials),
            (err(None, "dispatch failure: other: failed to load credentials from IMDS: error trying to connect: tcp connect error"), Class::NoCredentials),
            (err(Some("SomethingNew"), "?"), Class::Unknown),
        ];
        let config_fix = "CONFIG-FIX";
        for (e, class) in cases {
            assert_eq!(classify(&e), class, "{e}");
            let line = failure("c".into(), "w".into(), &e, class, config_fix.into()).to_string();
            assert_eq!(line.contains(config_fix), class == Class::Config, "{line}");
            if class == Class::Unknown {
                assert!(line.contains(": unexpected answer from AWS: "), "{line}");
                assert!(line.contains("Fix: retry, and if it persists"), "{line}");
            }
        }
        let clock = failure(
            "c".into(),
            "w".into(),
            &err(Some("RequestExpired"), "x"),
            Class::ClockSkew,
            String::new(),
        )
        .to_string();
        assert!(clock.contains("clock"), "{clock}");
        let throttled = failure(
            "c".into(),
            "w".into(),
            &err(Some("Throttling"), "x"),
            Class::Throttled,
            String::new(),
        )
        .to_string();
        assert!(throttled.contains("throttled"), "{throttled}");
    }

    /// After the first AWS call that finds the API unreachable, every later AWS check is one
    /// SKIP line at once, instead of each waiting out its own timeout.
    #[test]
    fn aws_unreachable_stops_the_other_aws_checks_early() {
        let mut r = Report::default();
        assert!(!down(&mut r, "eip 203.0.113.10", "Elastic IP"));
        fail(
            &mut r,
            "eip 203.0.113.10".into(),
            "Elastic IP".into(),
            &err(None, "timed out"),
            "CONFIG".into(),
        );
        assert!(down(&mut r, "sns topic t", "SNS topic t"));
        assert_eq!(
            r.checks[1].to_string(),
            "SKIP SNS topic t: not checked (AWS API unreachable, see above)"
        );
        // Throttling is not unreachability.
        let mut r = Report::default();
        fail(
            &mut r,
            "a".into(),
            "a".into(),
            &err(Some("Throttling"), "x"),
            "C".into(),
        );
        assert!(!down(&mut r, "b", "b"));
    }

    /// What can be found wrong without a call is said before any: a topic or queue in another
    /// region than `[aws] region` (the daemon calls that region's endpoint).
    #[test]
    fn offline_mismatches_region_of_topic_or_queue() {
        let c = topic_region_mismatch(
            "t",
            "SNS topic",
            "arn:aws:sns:eu-west-1:123456789012:t",
            "us-east-1",
        )
        .expect("a mismatch");
        let line = c.to_string();
        assert!(line.contains("the topic is in eu-west-1, but the daemon publishes through the endpoint of [aws] region us-east-1"), "{line}");
        assert!(!line.contains("create the topic"), "{line}");
        assert!(topic_region_mismatch(
            "t",
            "t",
            "arn:aws:sns:us-east-1:123456789012:t",
            "us-east-1"
        )
        .is_none());
        let q = queue_region_mismatch(
            "q",
            "q",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
            "us-east-1",
        )
        .expect("a mismatch");
        assert!(q.to_string().contains("the queue is in eu-west-1"), "{q}");
        assert!(queue_region_mismatch(
            "q",
            "q",
            "https://sqs.us-east-1.amazonaws.com/1/q",
            "us-east-1"
        )
        .is_none());
        assert!(
            queue_region_mismatch("q", "q", "http://127.0.0.1:5000/1/q", "us-east-1").is_none()
        );
    }

    /// A fix is said once: the OpsWorks identity line does not tell to set
    /// `[opsworks] instance_id` twice.
    #[tokio::test]
    async fn fix_is_said_once_for_the_opsworks_identity() {
        let toml = r#"
[alerts]
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[opsworks]
region = "us-east-1"
agent_config = "/nonexistent/instance-agent.yml"
[actions.ow]
type = "claim_eip"
eip = "203.0.113.11"
provider = "opsworks"
[rules.web]
check = { type = "http", url = "http://127.0.0.1/" }
on_fail = ["ow"]
"#;
        let config = crate::config::from_sources(&[("t.toml".into(), toml.to_owned())])
            .unwrap_or_else(|e| panic!("{e}"));
        let line = opsworks_identity(&config, "action \"ow\"", "ow")
            .await
            .to_string();
        assert!(
            line.starts_with("FAIL OpsWorks instance id for action \"ow\": cannot read"),
            "{line}"
        );
        assert_eq!(
            line.matches("set [opsworks] instance_id").count(),
            1,
            "{line}"
        );
    }

    /// A fix names the key that is wrong: `allocation_id` when the claim names its address so.
    #[test]
    fn fix_names_the_configured_key() {
        let toml = r#"
[alerts]
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[actions.a]
type = "claim_eip"
allocation_id = "eipalloc-0123456789abcdef0"
[actions.b]
type = "claim_eip"
eip = "203.0.113.10"
[rules.web]
check = { type = "http", url = "http://127.0.0.1/" }
on_fail = ["a", "b"]
"#;
        let config = crate::config::from_sources(&[("t.toml".into(), toml.to_owned())])
            .unwrap_or_else(|e| panic!("{e}"));
        let key = |n: &str| match &config.actions[n] {
            ActionSpec::ClaimEip(c) => eip_key(c),
            _ => unreachable!(),
        };
        assert_eq!(key("a"), "allocation_id");
        assert_eq!(key("b"), "eip");
    }

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
