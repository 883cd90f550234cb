//! The events queue: SQS long polling for the Auto Scaling and EC2 events an EventBridge rule
//! forwards, and deleting them once they are applied.

use super::{called, AwsError};
use crate::telemetry::metrics::Metrics;
use aws_config::timeout::TimeoutConfig;
use std::sync::Arc;
use std::time::Duration;

/// SQS's longest long poll; an idle queue costs at most three ReceiveMessage calls a minute.
pub const LONG_POLL: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct Sqs {
    /// For the long poll: attempts may last the poll plus the usual attempt timeout.
    pub(super) poll: aws_sdk_sqs::Client,
    /// Everything else, with the shared timeouts.
    pub(super) client: aws_sdk_sqs::Client,
    /// Counts each call and each error (`aws_api_calls_total`, `aws_api_errors_total`).
    metrics: Arc<Metrics>,
}

/// One message as received: its body is parsed by `sync::events`.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub receipt_handle: String,
    pub body: String,
}

impl Sqs {
    /// The shared SDK settings, except that a long poll's attempt may last the poll plus the
    /// configured attempt timeout (a 5 s attempt timeout would cut every 20 s poll short).
    pub fn new(config: &aws_config::SdkConfig, metrics: Arc<Metrics>) -> Self {
        let mut b = aws_sdk_sqs::config::Builder::from(config);
        let t = config.timeout_config();
        let attempt = t
            .and_then(|t| t.operation_attempt_timeout())
            .unwrap_or(Duration::from_secs(5));
        let mut timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(LONG_POLL + attempt)
            .operation_timeout(LONG_POLL + attempt * 3);
        if let Some(c) = t.and_then(|t| t.connect_timeout()) {
            timeouts = timeouts.connect_timeout(c);
        }
        b = b.timeout_config(timeouts.build());
        Sqs {
            poll: aws_sdk_sqs::Client::from_conf(b.build()),
            client: aws_sdk_sqs::Client::new(config),
            metrics,
        }
    }

    /// Wait up to `wait` (at most 20 s) for up to 10 messages.
    pub async fn receive(&self, queue: &str, wait: Duration) -> Result<Vec<Message>, AwsError> {
        called(&self.metrics, "sqs", "ReceiveMessage");
        let out = self
            .poll
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.min(LONG_POLL).as_secs() as i32)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, "sqs:ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Message {
                    id: m.message_id().unwrap_or("?").to_owned(),
                    receipt_handle: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or("").to_owned(),
                })
            })
            .collect())
    }

    /// Delete handled messages, ten per call. Returns how many SQS refused to delete (they
    /// come back after their visibility timeout; applying an event twice is harmless).
    pub async fn delete(&self, queue: &str, handles: &[String]) -> Result<usize, AwsError> {
        let mut failed = 0;
        for chunk in handles.chunks(10) {
            called(&self.metrics, "sqs", "DeleteMessageBatch");
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                        .ok()
                })
                .collect();
            let out = self
                .client
                .delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&self.metrics, "sqs:DeleteMessageBatch", e))?;
            failed += out.failed().len();
        }
        Ok(failed)
    }

    /// GetQueueAttributes (`QueueArn`): the queue exists and this caller may read its
    /// attributes. Receiving would hide messages from the daemon, so `preflight` stops here.
    pub async fn queue_exists(&self, queue: &str) -> Result<(), AwsError> {
        called(&self.metrics, "sqs", "GetQueueAttributes");
        self.client
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.metrics, "sqs:GetQueueAttributes", e))?;
        Ok(())
    }
}
