//! Auto Scaling group membership.

use super::{called, AwsError};
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;

#[derive(Clone)]
pub struct AutoScaling {
    pub(super) client: aws_sdk_autoscaling::Client,
    /// Counts each call and each error (`aws_api_calls_total`, `aws_api_errors_total`).
    metrics: Arc<Metrics>,
}

/// An Auto Scaling group's instances, split by whether they should take traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// `InService` and `Healthy`.
    pub serving: Vec<String>,
    /// `Terminating:Wait`: a lifecycle hook holds them, for their servers to drain.
    pub terminating: Vec<String>,
    /// Every other instance, with its lifecycle state and health: `i-0abc (Pending, Healthy)`.
    pub others: Vec<String>,
}

impl AutoScaling {
    pub fn new(config: &aws_config::SdkConfig, metrics: Arc<Metrics>) -> Self {
        AutoScaling {
            client: aws_sdk_autoscaling::Client::new(config),
            metrics,
        }
    }

    /// One DescribeAutoScalingGroups call (more only if the answer is paginated).
    pub async fn members(&self, group: &str) -> Result<Members, AwsError> {
        const OP: &str = "autoscaling:DescribeAutoScalingGroups";
        let mut members = Members::default();
        let mut found = false;
        let mut token: Option<String> = None;
        loop {
            called(&self.metrics, "autoscaling", "DescribeAutoScalingGroups");
            let page = self
                .client
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(group)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&self.metrics, OP, e))?;
            for g in page.auto_scaling_groups() {
                if g.auto_scaling_group_name() != Some(group) {
                    continue;
                }
                found = true;
                for i in g.instances() {
                    let Some(id) = i.instance_id() else { continue };
                    let state = i.lifecycle_state().map(|s| s.as_str()).unwrap_or("?");
                    let health = i.health_status().unwrap_or("?");
                    if state == "InService" && health == "Healthy" {
                        members.serving.push(id.to_owned());
                    } else if state == "Terminating:Wait" {
                        members.terminating.push(id.to_owned());
                        members.others.push(format!("{id} ({state}, {health})"));
                    } else {
                        members.others.push(format!("{id} ({state}, {health})"));
                    }
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        if !found {
            return Err(AwsError {
                operation: OP,
                code: None,
                message: format!("no Auto Scaling group named {group:?}"),
            });
        }
        Ok(members)
    }
}

/// One lifecycle action of a terminating instance, as the event (or a resync) named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    pub group: String,
    pub hook: String,
    pub instance: String,
    /// From the event; a resync knows only the instance, which the API accepts instead.
    pub token: Option<String>,
}

impl AutoScaling {
    /// Let the instance go on terminating (`CONTINUE`).
    pub async fn complete_lifecycle_action(&self, a: &LifecycleAction) -> Result<(), AwsError> {
        called(&self.metrics, "autoscaling", "CompleteLifecycleAction");
        self.client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&a.group)
            .lifecycle_hook_name(&a.hook)
            .instance_id(&a.instance)
            .set_lifecycle_action_token(a.token.clone())
            .lifecycle_action_result("CONTINUE")
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(&self.metrics, "autoscaling:CompleteLifecycleAction", e)
            })?;
        Ok(())
    }

    /// Restart the hook's heartbeat timeout while the server still drains.
    pub async fn record_heartbeat(&self, a: &LifecycleAction) -> Result<(), AwsError> {
        called(
            &self.metrics,
            "autoscaling",
            "RecordLifecycleActionHeartbeat",
        );
        self.client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&a.group)
            .lifecycle_hook_name(&a.hook)
            .instance_id(&a.instance)
            .set_lifecycle_action_token(a.token.clone())
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    &self.metrics,
                    "autoscaling:RecordLifecycleActionHeartbeat",
                    e,
                )
            })?;
        Ok(())
    }
}
