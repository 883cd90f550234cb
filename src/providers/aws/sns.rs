//! Alerts through SNS.

use super::{called, AwsError};

#[derive(Clone)]
pub struct Sns {
    client: aws_sdk_sns::Client,
}

impl Sns {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Sns {
            client: aws_sdk_sns::Client::new(config),
        }
    }

    /// Publish; returns the message id.
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
