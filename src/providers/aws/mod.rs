//! The only place that imports the AWS SDK. Region, credentials and endpoint follow the SDK's
//! standard chains (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, instance roles), overridable
//! from `[aws]`; retries use the standard mode with bounded timeouts on every call.

pub mod autoscaling;
pub mod ec2;
pub mod imds;
pub mod opsworks;
pub mod sns;
pub mod sqs;
pub mod vpc;

use crate::config::{AwsSettings, NodeSettings};
use crate::telemetry::events;
use crate::telemetry::metrics::Metrics;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::default_provider::token::DefaultTokenChain;
use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use std::fmt;

/// Load the SDK configuration once; every client is built from it. Without `[aws] region`,
/// the region comes from `AWS_REGION`, the profile, then instance metadata as `[node]`
/// configures it (`imds_endpoint`, `imds_timeout`), like every other metadata read; an
/// instance role's credentials are read there too.
pub async fn sdk_config_for(s: &AwsSettings, node: &NodeSettings) -> aws_config::SdkConfig {
    let region = match &s.region {
        Some(r) => Some(Region::new(r.clone())),
        None => {
            RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                .or_else(ProfileFileRegionProvider::new())
                .or_else(imds::MetadataRegion(node.clone()))
                .region()
                .await
        }
    };
    // The loader's own credentials and token chains would look the region up again through
    // the SDK's metadata client when there is none (169.254.169.254, a multi-line warning
    // each), and the credentials chain read an instance role's credentials from there: these
    // are told the region, and read metadata where `[node]` says.
    let provider_config = ProviderConfig::default()
        .with_region(region.clone())
        .with_retry_config(retry_config(s))
        .with_timeout_config(timeout_config(s));
    let mut credentials = DefaultCredentialsChain::builder()
        .configure(provider_config)
        .region(region.clone());
    match imds::credentials_client(node) {
        Ok(c) => credentials = credentials.imds_client(c),
        // The region lookup above has logged it (region_unavailable); the SDK's default
        // metadata client is all that is left.
        Err(e) => {
            tracing::debug!(error = %e, "instance role credentials from the default metadata endpoint")
        }
    }
    let token = DefaultTokenChain::builder()
        .region(region.clone())
        .build()
        .await;
    loader(s)
        .region(region)
        .credentials_provider(credentials.build().await)
        .token_provider(token)
        .load()
        .await
}

/// The settings every client shares: timeouts, retries, the app name, the endpoint.
fn loader(s: &AwsSettings) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeout_config(s))
        .retry_config(retry_config(s));
    // Shows in the User-Agent, so CloudTrail (and the tests) can tell our calls apart.
    if let Ok(name) = AppName::new("haproxy-watchdog") {
        loader = loader.app_name(name);
    }
    if let Some(u) = &s.endpoint_url {
        loader = loader.endpoint_url(u);
    }
    loader
}

/// `[aws]`'s timeouts, for every call of every client.
fn timeout_config(s: &AwsSettings) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(s.connect_timeout)
        .operation_attempt_timeout(s.attempt_timeout)
        .operation_timeout(s.operation_timeout)
        .build()
}

/// `[aws] max_attempts` in the SDK's standard retry mode, for every call of every client.
fn retry_config(s: &AwsSettings) -> RetryConfig {
    RetryConfig::standard().with_max_attempts(s.max_attempts)
}

/// An AWS API call that failed, after the SDK's retries.
#[derive(Debug, Clone)]
pub struct AwsError {
    pub operation: &'static str,
    /// The service's error code (`Resource.AlreadyAssociated`, `Throttling`, ...), when it
    /// answered with one. Decisions are made on this, never on the message text.
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The caller lacks the permission: EC2's `UnauthorizedOperation`, SNS's
    /// `AuthorizationError`, the `AccessDenied`/`AccessDeniedException` of the others (and
    /// of moto for every service).
    pub fn is_denied(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "UnauthorizedOperation"
                    | "AuthorizationError"
                    | "AccessDenied"
                    | "AccessDeniedException"
            )
        )
    }

    /// The credentials themselves were refused (unknown key, bad signature, expired token).
    pub fn is_bad_credentials(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "AuthFailure"
                    | "InvalidClientTokenId"
                    | "UnrecognizedClientException"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "ExpiredTokenException"
                    | "InvalidAccessKeyId"
            )
        )
    }

    /// The error of a failed call, counted in `aws_api_errors_total`.
    fn from_sdk<E, R>(metrics: &Metrics, operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let code = err.code().map(str::to_owned);
        let message = match (&err, err.message()) {
            (SdkError::ServiceError(_), Some(m)) => m.to_owned(),
            (SdkError::TimeoutError(_), _) => "timed out".to_owned(),
            // Each cause's text, not the SDK's `DisplayErrorContext`, which ends with the
            // whole error in Rust's debug format (`DispatchFailure(DispatchFailure { .. })`).
            _ => crate::telemetry::chain(&err),
        };
        // The text comes from the far end: one line, so it cannot forge a log line of ours.
        let message = message.replace(['\r', '\n'], " ");
        metrics.aws_error(operation, code.as_deref().unwrap_or("none"));
        AwsError {
            operation,
            code,
            message,
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(c) => write!(f, "{} failed: {c}: {}", self.operation, self.message),
            None => write!(f, "{} failed: {}", self.operation, self.message),
        }
    }
}

impl std::error::Error for AwsError {}

/// Count and log one API call before it is made.
fn called(metrics: &Metrics, service: &'static str, operation: &'static str) {
    metrics.aws_call(service, operation);
    tracing::debug!(event = events::AWS_CALL, service, operation);
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::operation::describe_addresses::DescribeAddressesError;

    #[test]
    fn denied_and_refused_credentials_are_told_apart_by_code() {
        let e = |code: Option<&str>| AwsError {
            operation: "ec2:AssociateAddress",
            code: code.map(str::to_owned),
            message: String::new(),
        };
        // EC2, SNS, the others (and moto, for every service).
        for c in [
            "UnauthorizedOperation",
            "AuthorizationError",
            "AccessDenied",
            "AccessDeniedException",
        ] {
            assert!(
                e(Some(c)).is_denied() && !e(Some(c)).is_bad_credentials(),
                "{c}"
            );
        }
        for c in ["AuthFailure", "InvalidClientTokenId", "ExpiredToken"] {
            assert!(
                e(Some(c)).is_bad_credentials() && !e(Some(c)).is_denied(),
                "{c}"
            );
        }
        for c in [
            Some("DryRunOperation"),
            Some("InvalidAddress.NotFound"),
            None,
        ] {
            assert!(!e(c).is_denied() && !e(c).is_bad_credentials(), "{c:?}");
        }
    }

    /// A tester's find: with `[aws] max_attempts = 2`, SNS calls were tried once (its client
    /// set its own retry config) while EC2's were retried. Every client is built from the one
    /// SDK configuration and carries its retries and timeouts (SQS's long poll only lengthens
    /// its attempt and operation timeouts).
    #[tokio::test]
    async fn every_aws_client_retries_as_configured() {
        let aws = AwsSettings {
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            max_attempts: 2,
            connect_timeout: std::time::Duration::from_millis(700),
            attempt_timeout: std::time::Duration::from_secs(3),
            operation_timeout: std::time::Duration::from_secs(9),
        };
        let sdk = sdk_config_for(&aws, &NodeSettings::default()).await;
        let metrics = std::sync::Arc::new(Metrics::new().expect("metrics"));
        let timeouts = sdk.timeout_config().cloned();
        assert_eq!(
            timeouts
                .as_ref()
                .and_then(|t| t.operation_attempt_timeout()),
            Some(aws.attempt_timeout)
        );
        let opsworks = crate::config::OpsworksSettings::default();
        let clients = [
            (
                "ec2",
                ec2::Ec2::new(&sdk, metrics.clone())
                    .client
                    .config()
                    .retry_config()
                    .cloned(),
                ec2::Ec2::new(&sdk, metrics.clone())
                    .client
                    .config()
                    .timeout_config()
                    .cloned(),
            ),
            (
                "sns",
                sns::Sns::new(&sdk, metrics.clone())
                    .client
                    .config()
                    .retry_config()
                    .cloned(),
                sns::Sns::new(&sdk, metrics.clone())
                    .client
                    .config()
                    .timeout_config()
                    .cloned(),
            ),
            (
                "sqs",
                sqs::Sqs::new(&sdk, metrics.clone())
                    .client
                    .config()
                    .retry_config()
                    .cloned(),
                sqs::Sqs::new(&sdk, metrics.clone())
                    .client
                    .config()
                    .timeout_config()
                    .cloned(),
            ),
            (
                "sqs long poll",
                sqs::Sqs::new(&sdk, metrics.clone())
                    .poll
                    .config()
                    .retry_config()
                    .cloned(),
                timeouts.clone(),
            ),
            (
                "autoscaling",
                autoscaling::AutoScaling::new(&sdk, metrics.clone())
                    .client
                    .config()
                    .retry_config()
                    .cloned(),
                autoscaling::AutoScaling::new(&sdk, metrics.clone())
                    .client
                    .config()
                    .timeout_config()
                    .cloned(),
            ),
            (
                "opsworks",
                opsworks::OpsWorks::new(&sdk, &opsworks, metrics.clone())
                    .client
                    .config()
                    .retry_config()
                    .cloned(),
                opsworks::OpsWorks::new(&sdk, &opsworks, metrics.clone())
                    .client
                    .config()
                    .timeout_config()
                    .cloned(),
            ),
        ];
        for (name, retry, timeout) in clients {
            assert_eq!(
                retry.as_ref().map(|r| r.max_attempts()),
                Some(2),
                "{name}: {retry:?}"
            );
            assert_eq!(
                retry.as_ref().map(|r| r.mode()),
                Some(aws_config::retry::RetryMode::Standard),
                "{name}"
            );
            assert_eq!(timeout, timeouts, "{name}");
        }
    }

    /// A tester's find: AWS errors without a service message carried the SDK's debug dump
    /// (`DispatchFailure(...)`, `ServiceError { .. }`) into logs and the `--once` summary.
    #[test]
    fn an_aws_error_reads_as_its_causes_not_as_a_debug_dump() {
        let metrics = Metrics::new().expect("metrics");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let err: SdkError<DescribeAddressesError, ()> = SdkError::construction_failure(io);
        let e = AwsError::from_sdk(&metrics, "ec2:DescribeAddresses", err);
        assert_eq!(
            e.to_string(),
            "ec2:DescribeAddresses failed: failed to construct request: Connection refused"
        );
        assert!(
            !e.message.contains('{') && !e.message.contains("Failure("),
            "{e}"
        );
        assert!(metrics.snapshot().contains(&(
            "aws_api_errors_total{code=\"none\",operation=\"ec2:DescribeAddresses\"}".into(),
            1
        )));
    }
}
