//! Alerts through SNS, and (for `preflight`) whether a topic exists.

use super::{called, AwsError};
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;

#[derive(Clone)]
pub struct Sns {
    client: aws_sdk_sns::Client,
    /// Counts each call and each error (`aws_api_calls_total`, `aws_api_errors_total`).
    metrics: Arc<Metrics>,
}

impl Sns {
    /// One attempt per `publish`: the alert outbox retries with its own backoff and marks
    /// each attempt in the state file, so a crash can only leave in doubt the one request
    /// that was on the wire, not a whole series of SDK retries.
    pub fn new(config: &aws_config::SdkConfig, metrics: Arc<Metrics>) -> Self {
        let conf = aws_sdk_sns::config::Builder::from(config)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        Sns {
            client: aws_sdk_sns::Client::from_conf(conf),
            metrics,
        }
    }

    /// Publish; returns the message id. Errors: the SDK's, after one attempt.
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
