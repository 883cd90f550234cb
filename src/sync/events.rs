//! What an events-queue message says, kept pure. The queue gets EventBridge events (directly,
//! or wrapped in an SNS notification when it is fed through a topic without raw delivery) or
//! the message a lifecycle hook sends straight to SQS. Only the fields listed in
//! `tests/fixtures/events/README.md` are read; each event becomes a [`Hint`], never a fact:
//! the membership decides what it means (see `membership.rs`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// `EC2 Instance Launch Successful`: the instance is InService; look up its address.
    InService { instance: String },
    /// `EC2 Instance-terminate Lifecycle Action`: the instance waits in Terminating:Wait.
    Terminating {
        instance: String,
        hook: String,
        token: Option<String>,
    },
    /// `EC2 Instance Terminate Successful`, or EC2 says `shutting-down` / `terminated`.
    Gone { instance: String },
    /// EC2 says `stopping` / `stopped`: it cannot serve, though it may come back.
    Stopping { instance: String },
    /// A launch lifecycle action or EC2 `pending` / `running`: not in service yet.
    Launching { instance: String },
}

impl Hint {
    pub fn instance(&self) -> &str {
        match self {
            Hint::InService { instance }
            | Hint::Terminating { instance, .. }
            | Hint::Gone { instance }
            | Hint::Stopping { instance }
            | Hint::Launching { instance } => instance,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The Auto Scaling group named by the event (EC2 state changes name none).
    pub group: Option<String>,
    pub hint: Hint,
    /// For logs and the `backend_sync_events_total` metric.
    pub kind: &'static str,
}

/// Why a queue message is not an event at all. The shapes read are the EventBridge events
/// of Amazon EC2 Auto Scaling and EC2 ("Amazon EC2 Auto Scaling event reference"), an SNS
/// notification's JSON, and the message a lifecycle hook sends to SQS ("Amazon EC2 Auto
/// Scaling lifecycle hooks").
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The body is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// `Type: Notification` without a `Message` string.
    #[error("an SNS notification without a Message")]
    NoSnsMessage,
    /// `source` and `detail-type` without a `detail` object.
    #[error("an EventBridge event without detail")]
    NoDetail,
    /// None of the shapes above.
    #[error("neither an EventBridge event, an SNS notification nor a lifecycle hook message")]
    Unknown,
    /// A field the event must have is missing or empty.
    #[error("the event has no {0}")]
    Missing(String),
    /// An EC2 state-change notification with a state EC2 does not document.
    #[error("unknown instance state {0:?}")]
    UnknownState(String),
    /// A lifecycle hook message whose `LifecycleTransition` is neither launching nor
    /// terminating.
    #[error("unknown lifecycle transition {0:?}")]
    UnknownTransition(String),
}

/// `Ok(None)`: a message that is understood and says nothing about membership (a test
/// notification, another detail-type). `Err`: not an event at all.
pub fn parse(body: &str) -> Result<Option<Event>, EventError> {
    let v: Value = serde_json::from_str(body)?;
    // Through SNS without raw delivery: the event is the notification's `Message` string.
    if v.get("Type").and_then(Value::as_str) == Some("Notification") {
        let inner = v
            .get("Message")
            .and_then(Value::as_str)
            .ok_or(EventError::NoSnsMessage)?;
        return parse(inner);
    }
    if let (Some(source), Some(kind)) = (
        v.get("source").and_then(Value::as_str),
        v.get("detail-type").and_then(Value::as_str),
    ) {
        let detail = v.get("detail").ok_or(EventError::NoDetail)?;
        return eventbridge(source, kind, detail);
    }
    // A lifecycle hook whose notification target is the queue itself.
    if v.get("LifecycleTransition").is_some() {
        return lifecycle(&v);
    }
    if v.get("Event").and_then(Value::as_str) == Some("autoscaling:TEST_NOTIFICATION") {
        return Ok(None);
    }
    Err(EventError::Unknown)
}

fn text(v: &Value, key: &str) -> Result<String, EventError> {
    match v.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(EventError::Missing(key.to_owned())),
    }
}

fn eventbridge(source: &str, kind: &str, d: &Value) -> Result<Option<Event>, EventError> {
    match (source, kind) {
        ("aws.autoscaling", "EC2 Instance-launch Lifecycle Action")
        | ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action") => lifecycle(d),
        ("aws.autoscaling", "EC2 Instance Launch Successful") => Ok(Some(Event {
            group: Some(text(d, "AutoScalingGroupName")?),
            hint: Hint::InService {
                instance: text(d, "EC2InstanceId")?,
            },
            kind: "launch_successful",
        })),
        ("aws.autoscaling", "EC2 Instance Terminate Successful") => Ok(Some(Event {
            group: Some(text(d, "AutoScalingGroupName")?),
            hint: Hint::Gone {
                instance: text(d, "EC2InstanceId")?,
            },
            kind: "terminate_successful",
        })),
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            let instance = text(d, "instance-id")?;
            let hint = match text(d, "state")?.as_str() {
                "shutting-down" | "terminated" => Hint::Gone { instance },
                "stopping" | "stopped" => Hint::Stopping { instance },
                "pending" | "running" => Hint::Launching { instance },
                other => return Err(EventError::UnknownState(other.to_owned())),
            };
            Ok(Some(Event {
                group: None,
                hint,
                kind: "state_change",
            }))
        }
        // Unsuccessful launches and terminations, and anything else the rule lets through.
        _ => Ok(None),
    }
}

fn lifecycle(d: &Value) -> Result<Option<Event>, EventError> {
    let group = Some(text(d, "AutoScalingGroupName")?);
    let instance = text(d, "EC2InstanceId")?;
    match text(d, "LifecycleTransition")?.as_str() {
        "autoscaling:EC2_INSTANCE_TERMINATING" => Ok(Some(Event {
            group,
            hint: Hint::Terminating {
                instance,
                hook: text(d, "LifecycleHookName")?,
                token: text(d, "LifecycleActionToken").ok(),
            },
            kind: "terminate_lifecycle_action",
        })),
        "autoscaling:EC2_INSTANCE_LAUNCHING" => Ok(Some(Event {
            group,
            hint: Hint::Launching { instance },
            kind: "launch_lifecycle_action",
        })),
        other => Err(EventError::UnknownTransition(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events/");
        std::fs::read_to_string(format!("{p}{name}")).expect(name)
    }

    #[test]
    fn the_shapes_aws_sends() {
        let id = "i-0123456789abcdef0".to_string();
        let cases = [
            (
                "launch-successful.json",
                Hint::InService {
                    instance: id.clone(),
                },
            ),
            (
                "terminate-successful.json",
                Hint::Gone {
                    instance: id.clone(),
                },
            ),
            (
                "terminate-lifecycle-action.json",
                Hint::Terminating {
                    instance: id.clone(),
                    hook: "drain".into(),
                    token: Some("87654321-4321-4321-4321-210987654321".into()),
                },
            ),
            (
                "launch-lifecycle-action.json",
                Hint::Launching {
                    instance: id.clone(),
                },
            ),
            (
                "state-change-running.json",
                Hint::Launching {
                    instance: id.clone(),
                },
            ),
            (
                "state-change-terminated.json",
                Hint::Gone {
                    instance: id.clone(),
                },
            ),
            (
                "sns-envelope.json",
                Hint::InService {
                    instance: id.clone(),
                },
            ),
        ];
        for (file, hint) in cases {
            let e = parse(&fixture(file)).unwrap().unwrap();
            assert_eq!(e.hint, hint, "{file}");
            if !file.starts_with("state-change") {
                assert_eq!(e.group.as_deref(), Some("web"), "{file}");
            }
        }
    }

    #[test]
    fn garbage_is_an_error_and_other_events_are_ignored() {
        assert!(parse("not json").is_err());
        assert!(parse("{}").is_err());
        assert!(parse(r#"{"source":"aws.autoscaling","detail-type":"EC2 Instance Launch Successful","detail":{}}"#).is_err());
        assert!(parse(r#"{"source":"aws.ec2","detail-type":"EC2 Instance State-change Notification","detail":{"instance-id":"i-1","state":"melting"}}"#).is_err());
        assert_eq!(
            parse(
                r#"{"source":"aws.autoscaling","detail-type":"EC2 Instance Launch Unsuccessful","detail":{}}"#
            )
            .unwrap(),
            None
        );
        assert_eq!(
            parse(r#"{"Event":"autoscaling:TEST_NOTIFICATION","AutoScalingGroupName":"web"}"#)
                .unwrap(),
            None
        );
        let direct = r#"{"Origin":"AutoScalingGroup","Destination":"EC2","LifecycleHookName":"drain","Service":"AWS Auto Scaling","AccountId":"1","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","RequestId":"r","LifecycleActionToken":"t","EC2InstanceId":"i-1","AutoScalingGroupName":"web"}"#;
        assert_eq!(
            parse(direct).unwrap().unwrap().hint,
            Hint::Terminating {
                instance: "i-1".into(),
                hook: "drain".into(),
                token: Some("t".into())
            }
        );
    }
}
