//! Alerts through SNS, and (for `preflight`) whether a topic exists.

use super::{called, AwsError};
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;

#[derive(Clone)]
pub struct Sns {
    pub(super) client: aws_sdk_sns::Client,
    /// Counts each call and each error (`aws_api_calls_total`, `aws_api_errors_total`).
    metrics: Arc<Metrics>,
}

impl Sns {
    /// A client from the daemon's SDK configuration, with its retries and timeouts like every
    /// other client: `[aws] max_attempts` applies to every call. (It used to be one attempt
    /// per `publish`, left to the alert outbox's backoff; but a throttled or dropped call is
    /// what the SDK's retries are for, `preflight`'s GetTopicAttributes has no outbox, and a
    /// request in doubt after a crash is the same one alert either way.)
    pub fn new(config: &aws_config::SdkConfig, metrics: Arc<Metrics>) -> Self {
        Sns {
            client: aws_sdk_sns::Client::new(config),
            metrics,
        }
    }

    /// Publish; returns the message id. One request, never retried by the SDK: a Publish
    /// that timed out may have been delivered, and a standard topic has no deduplication, so
    /// a retry can page twice. The alert outbox decides about retrying (with its own backoff),
    /// and the state file says which alert was on the wire when the process died. Errors: the
    /// SDK's.
    pub async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<String, AwsError> {
        called(&self.metrics, "sns", "Publish");
        let out = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(subject)
            .message(message)
            .customize()
            .config_override(
                aws_sdk_sns::config::Builder::default()
                    .retry_config(aws_config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, "sns:Publish", e))?;
        Ok(out.message_id().unwrap_or("").to_owned())
    }

    /// GetTopicAttributes: the topic exists and this caller may read it. It proves nothing
    /// about `sns:Publish`, which SNS cannot check without publishing.
    pub async fn topic_exists(&self, topic_arn: &str) -> Result<(), AwsError> {
        called(&self.metrics, "sns", "GetTopicAttributes");
        self.client
            .get_topic_attributes()
            .topic_arn(topic_arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, "sns:GetTopicAttributes", e))?;
        Ok(())
    }
}
