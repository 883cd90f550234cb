//! Alerts through SNS.

use super::{called, AwsError};

#[derive(Clone)]
pub struct Sns {
    client: aws_sdk_sns::Client,
}

impl Sns {
    /// One attempt per `publish`: the alert outbox retries with its own backoff and marks
    /// each attempt in the state file, so a crash can only leave in doubt the one request
    /// that was on the wire, not a whole series of SDK retries.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_sns::config::Builder::from(config)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        Sns {
            client: aws_sdk_sns::Client::from_conf(conf),
        }
    }

    /// Publish; returns the message id. Errors: the SDK's, after one attempt.
    pub async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<String, AwsError> {
        called("sns", "Publish");
        let out = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sns:Publish", e))?;
        Ok(out.message_id().unwrap_or("").to_owned())
    }
}
