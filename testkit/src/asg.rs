//! An Auto Scaling group in moto: a VPC, a launch template and a group whose instances moto
//! runs (with private IPs in the subnet), driven through the real SDK.

use crate::moto::Moto;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

pub struct Group {
    pub moto: Moto,
    pub name: String,
    pub asg: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
}

impl Group {
    pub async fn start(name: &str, capacity: i32) -> Group {
        Group::start_in(name, capacity, None).await
    }

    /// `loopback`: the group's subnet is 127.0.1.0/24, so each instance's private IP is a
    /// loopback address a test backend can listen on (all of 127.0.0.0/8 is loopback).
    pub async fn start_in(name: &str, capacity: i32, loopback: Option<()>) -> Group {
        let moto = Moto::start().await;
        let cfg = crate::world::sdk_config(&moto.url).await;
        let ec2 = aws_sdk_ec2::Client::new(&cfg);
        let asg = aws_sdk_autoscaling::Client::new(&cfg);
        let (subnet_id, ami) = match loopback {
            None => crate::world::subnet_and_image(&ec2).await,
            Some(()) => {
                crate::world::subnet_and_image_in(&ec2, "127.0.0.0/16", "127.0.1.0/24").await
            }
        };
        ec2.create_launch_template()
            .launch_template_name("web")
            .launch_template_data(
                aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                    .image_id(ami)
                    .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_name("web")
                    .build(),
            )
            .min_size(0)
            .max_size(50)
            .desired_capacity(capacity)
            .vpc_zone_identifier(subnet_id)
            .send()
            .await
            .unwrap();
        Group {
            moto,
            name: name.into(),
            asg,
            ec2,
        }
    }

    pub async fn set_capacity(&self, n: i32) {
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(&self.name)
            .desired_capacity(n)
            .send()
            .await
            .unwrap();
    }

    async fn instances(&self) -> Vec<aws_sdk_autoscaling::types::Instance> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.name)
            .send()
            .await
            .unwrap();
        out.auto_scaling_groups()[0].instances().to_vec()
    }

    pub async fn instance_ids(&self) -> Vec<String> {
        self.instances()
            .await
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect()
    }

    /// An instance's private IP, from EC2.
    pub async fn private_ip(&self, id: &str) -> Ipv4Addr {
        let d = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap();
        let inst = &d.reservations()[0].instances()[0];
        inst.private_ip_address().unwrap().parse().unwrap()
    }

    /// Terminate one instance; the group launches a replacement unless `decrement`.
    pub async fn terminate(&self, id: &str, decrement: bool) {
        self.asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(decrement)
            .send()
            .await
            .unwrap();
    }

    pub async fn set_unhealthy(&self, id: &str) {
        self.asg
            .set_instance_health()
            .instance_id(id)
            .health_status("Unhealthy")
            .send()
            .await
            .unwrap();
    }

    /// The private IPs of the InService and Healthy instances, read independently of the
    /// watchdog (one DescribeInstances per instance).
    pub async fn serving_ips(&self) -> BTreeSet<Ipv4Addr> {
        let mut ips = BTreeSet::new();
        for i in self.instances().await {
            if i.lifecycle_state().map(|s| s.as_str()) == Some("InService")
                && i.health_status() == Some("Healthy")
            {
                ips.insert(self.private_ip(i.instance_id().unwrap()).await);
            }
        }
        ips
    }
}

/// The events queue of one node, in moto's SQS, and the EventBridge events a test puts on it
/// (copied from `tests/fixtures/events/`, with the group and instance substituted).
pub struct Queue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
}

impl Group {
    /// A terminating lifecycle hook named `hook` (moto_lifecycle.py makes it hold instances).
    pub async fn add_terminating_hook(&self, hook: &str) {
        self.asg
            .put_lifecycle_hook()
            .auto_scaling_group_name(&self.name)
            .lifecycle_hook_name(hook)
            .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
            .heartbeat_timeout(300)
            .default_result("CONTINUE")
            .send()
            .await
            .unwrap();
    }

    pub async fn queue(&self, name: &str) -> Queue {
        let cfg = crate::world::sdk_config(&self.moto.url).await;
        let sqs = aws_sdk_sqs::Client::new(&cfg);
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        Queue { sqs, url }
    }

    /// Instances by lifecycle state, e.g. `Terminating:Wait`.
    pub async fn in_state(&self, state: &str) -> Vec<String> {
        self.instances()
            .await
            .iter()
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some(state))
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect()
    }
}

/// The event in `tests/fixtures/events/<fixture>` about `instance` of `group`.
pub fn event(fixture: &str, group: &str, instance: &str) -> String {
    let path = crate::repo().join("tests/fixtures/events").join(fixture);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("i-0123456789abcdef0", instance)
        .replace(
            "autoScalingGroupName/web",
            &format!("autoScalingGroupName/{group}"),
        )
        .replace(
            "\"AutoScalingGroupName\": \"web\"",
            &format!("\"AutoScalingGroupName\": \"{group}\""),
        )
}

impl Queue {
    pub async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Messages waiting or in flight (not yet deleted).
    pub async fn left(&self) -> i64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let a = out.attributes().unwrap();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| a.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0))
        .sum()
    }
}
