//! The AWS side of a test: a VPC, instances with ENIs and private IPs, one Elastic IP, an SNS
//! topic with an SQS queue subscribed to it — all created in moto through the real SDK.

use crate::moto::Moto;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::{Credentials, Region};
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub instance_id: String,
    pub eni: String,
    pub mac: String,
    pub private_ip: Ipv4Addr,
    pub secondary_ips: Vec<Ipv4Addr>,
}

pub struct World {
    pub moto: Moto,
    pub ec2: aws_sdk_ec2::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub nodes: Vec<Node>,
    pub eip: Ipv4Addr,
    pub allocation_id: String,
    pub topic_arn: String,
    pub queue_url: String,
    /// More Elastic IPs (public IP, allocation id), for active/active set-ups.
    pub extra_eips: Vec<(Ipv4Addr, String)>,
    /// The VPC's subnets and route tables, for [`World::vpc`] worlds.
    pub vpc: Option<VpcIds>,
}

/// What [`World::vpc`] made besides the nodes.
#[derive(Debug, Clone)]
pub struct VpcIds {
    pub vpc_id: String,
    /// Subnet ids by letter: `a` (10.0.1.0/24, us-east-1a), `b` (10.0.2.0/24, us-east-1b),
    /// `c` (10.0.3.0/24, us-east-1a: the internal clients').
    pub subnets: std::collections::BTreeMap<char, String>,
    /// Route tables by letter: `a` serves subnets a and c, `b` serves subnet b.
    pub tables: std::collections::BTreeMap<char, String>,
}

/// An SNS alert as it arrived in the subscribed queue.
#[derive(Debug, Clone)]
pub struct Alert {
    pub subject: String,
    pub message: String,
}

pub const REGION: &str = "us-east-1";

/// The SDK configuration test code uses to reach moto at `endpoint`.
///
/// Every call has a timeout (2 s to connect, 10 s an attempt, 30 s in all): the bed's
/// background loops poll moto for the whole test, and one answer that never comes would
/// otherwise freeze what they follow (an EIP's route) for the rest of it.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .timeout_config(timeouts)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// A VPC with one subnet (10.0.1.0/24), and an AMI to launch there: (subnet id, image id).
pub async fn subnet_and_image(ec2: &aws_sdk_ec2::Client) -> (String, String) {
    subnet_and_image_in(ec2, "10.0.0.0/16", "10.0.1.0/24").await
}

pub async fn subnet_and_image_in(
    ec2: &aws_sdk_ec2::Client,
    vpc_cidr: &str,
    subnet_cidr: &str,
) -> (String, String) {
    let vpc = ec2.create_vpc().cidr_block(vpc_cidr).send().await.unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block(subnet_cidr)
        .send()
        .await
        .unwrap();
    let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_owned();
    let images = ec2.describe_images().send().await.unwrap();
    let ami = images
        .images()
        .first()
        .and_then(|i| i.image_id())
        .unwrap()
        .to_owned();
    (subnet_id, ami)
}

impl World {
    /// `names.len()` instances, each with one ENI; the EIP starts unassociated.
    pub async fn new(names: &[&str]) -> World {
        let moto = Moto::start().await;
        let cfg = sdk_config(&moto.url).await;
        let ec2 = aws_sdk_ec2::Client::new(&cfg);
        let sns = aws_sdk_sns::Client::new(&cfg);
        let sqs = aws_sdk_sqs::Client::new(&cfg);

        let (subnet_id, ami) = subnet_and_image(&ec2).await;

        let mut nodes = Vec::new();
        for name in names {
            let run = ec2
                .run_instances()
                .image_id(&ami)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .subnet_id(&subnet_id)
                .send()
                .await
                .unwrap();
            let inst = &run.instances()[0];
            let eni = &inst.network_interfaces()[0];
            nodes.push(Node {
                name: name.to_string(),
                instance_id: inst.instance_id().unwrap().to_owned(),
                eni: eni.network_interface_id().unwrap().to_owned(),
                mac: eni
                    .mac_address()
                    .filter(|m| !m.is_empty())
                    .unwrap_or("0e:00:00:00:00:01")
                    .to_owned(),
                private_ip: eni.private_ip_address().unwrap().parse().unwrap(),
                secondary_ips: Vec::new(),
            });
        }

        World::finish(moto, ec2, sns, sqs, nodes).await
    }

    /// The EIP (unassociated), the alert topic and the queue subscribed to it.
    async fn finish(
        moto: Moto,
        ec2: aws_sdk_ec2::Client,
        sns: aws_sdk_sns::Client,
        sqs: aws_sdk_sqs::Client,
        nodes: Vec<Node>,
    ) -> World {
        // A documentation-range address: moto's own picks are in 127.0.0.0/8, which no real
        // Elastic IP (and no sane checkip answer) is.
        let alloc = ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .address("203.0.113.10")
            .send()
            .await
            .unwrap();
        let topic = sns
            .create_topic()
            .name("haproxy-failover")
            .send()
            .await
            .unwrap();
        let topic_arn = topic.topic_arn().unwrap().to_owned();
        let queue = sqs
            .create_queue()
            .queue_name("alerts")
            .send()
            .await
            .unwrap();
        let queue_url = queue.queue_url().unwrap().to_owned();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let queue_arn =
            attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .unwrap();

        World {
            moto,
            ec2,
            sns,
            sqs,
            nodes,
            eip: alloc.public_ip().unwrap().parse().unwrap(),
            allocation_id: alloc.allocation_id().unwrap().to_owned(),
            topic_arn,
            queue_url,
            extra_eips: Vec::new(),
            vpc: None,
        }
    }

    /// A VPC (10.0.0.0/16) with subnets in two Availability Zones and a route table for
    /// each, and one instance per `(name, subnet letter)`; every node's ENI has
    /// source/destination checking off (as a router must), the EIP starts unassociated.
    pub async fn vpc(layout: &[(&str, char)]) -> World {
        let moto = Moto::start().await;
        let cfg = sdk_config(&moto.url).await;
        let ec2 = aws_sdk_ec2::Client::new(&cfg);
        let sns = aws_sdk_sns::Client::new(&cfg);
        let sqs = aws_sdk_sqs::Client::new(&cfg);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
        let mut subnets = std::collections::BTreeMap::new();
        for (letter, cidr, az) in [
            ('a', "10.0.1.0/24", "us-east-1a"),
            ('b', "10.0.2.0/24", "us-east-1b"),
            ('c', "10.0.3.0/24", "us-east-1a"),
        ] {
            let s = ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(cidr)
                .availability_zone(az)
                .send()
                .await
                .unwrap();
            subnets.insert(letter, s.subnet().unwrap().subnet_id().unwrap().to_owned());
        }
        let mut tables = std::collections::BTreeMap::new();
        for (letter, serves) in [('a', &['a', 'c'][..]), ('b', &['b'][..])] {
            let t = ec2
                .create_route_table()
                .vpc_id(&vpc_id)
                .send()
                .await
                .unwrap();
            let id = t
                .route_table()
                .unwrap()
                .route_table_id()
                .unwrap()
                .to_owned();
            for s in serves {
                ec2.associate_route_table()
                    .route_table_id(&id)
                    .subnet_id(&subnets[s])
                    .send()
                    .await
                    .unwrap();
            }
            tables.insert(letter, id);
        }
        let images = ec2.describe_images().send().await.unwrap();
        let ami = images.images()[0].image_id().unwrap().to_owned();
        let mut nodes = Vec::new();
        for (name, letter) in layout {
            let run = ec2
                .run_instances()
                .image_id(&ami)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .subnet_id(&subnets[letter])
                .send()
                .await
                .unwrap();
            let inst = &run.instances()[0];
            let eni = &inst.network_interfaces()[0];
            let eni_id = eni.network_interface_id().unwrap().to_owned();
            ec2.modify_network_interface_attribute()
                .network_interface_id(&eni_id)
                .source_dest_check(
                    aws_sdk_ec2::types::AttributeBooleanValue::builder()
                        .value(false)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            nodes.push(Node {
                name: name.to_string(),
                instance_id: inst.instance_id().unwrap().to_owned(),
                eni: eni_id,
                mac: eni
                    .mac_address()
                    .filter(|m| !m.is_empty())
                    .unwrap_or("0e:00:00:00:00:01")
                    .to_owned(),
                private_ip: eni.private_ip_address().unwrap().parse().unwrap(),
                secondary_ips: Vec::new(),
            });
        }
        let mut world = World::finish(moto, ec2, sns, sqs, nodes).await;
        world.vpc = Some(VpcIds {
            vpc_id,
            subnets,
            tables,
        });
        world
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("no such node")
    }

    /// Give a node a secondary private IP (for active/active claims).
    pub async fn add_secondary_ip(&mut self, name: &str) -> Ipv4Addr {
        let idx = self.nodes.iter().position(|n| n.name == name).unwrap();
        let eni = self.nodes[idx].eni.clone();
        self.ec2
            .assign_private_ip_addresses()
            .network_interface_id(&eni)
            .secondary_private_ip_address_count(1)
            .send()
            .await
            .unwrap();
        let d = self
            .ec2
            .describe_network_interfaces()
            .network_interface_ids(&eni)
            .send()
            .await
            .unwrap();
        let ips: Vec<Ipv4Addr> = d.network_interfaces()[0]
            .private_ip_addresses()
            .iter()
            .filter(|p| p.primary() != Some(true))
            .filter_map(|p| p.private_ip_address()?.parse().ok())
            .collect();
        let ip = *ips.last().expect("a secondary IP");
        self.nodes[idx].secondary_ips.push(ip);
        ip
    }

    /// Move the EIP as an operator (or another node) would, outside the watchdog. By instance,
    /// so that moto reports both the instance and its ENI, as EC2 does.
    pub async fn associate(&self, name: &str) -> String {
        self.associate_alloc(&self.allocation_id, name).await
    }

    /// Allocate another Elastic IP at `ip`.
    pub async fn allocate_eip(&mut self, ip: &str) -> (Ipv4Addr, String) {
        let a = self
            .ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .address(ip)
            .send()
            .await
            .unwrap();
        let e = (
            a.public_ip().unwrap().parse().unwrap(),
            a.allocation_id().unwrap().to_owned(),
        );
        self.extra_eips.push(e.clone());
        e
    }

    /// Associate allocation `alloc` with node `name` (its instance: the primary private IP).
    pub async fn associate_alloc(&self, alloc: &str, name: &str) -> String {
        let n = self.node(name);
        let out = self
            .ec2
            .associate_address()
            .allocation_id(alloc)
            .instance_id(&n.instance_id)
            .allow_reassociation(true)
            .send()
            .await
            .unwrap();
        out.association_id().unwrap().to_owned()
    }

    /// Every Elastic IP of the world: the first, then the extra ones.
    pub fn all_eips(&self) -> Vec<(Ipv4Addr, String)> {
        std::iter::once((self.eip, self.allocation_id.clone()))
            .chain(self.extra_eips.iter().cloned())
            .collect()
    }

    /// The ENI the EIP is on, per EC2.
    pub async fn holder_eni(&self) -> Option<String> {
        let d = self
            .ec2
            .describe_addresses()
            .allocation_ids(&self.allocation_id)
            .send()
            .await
            .unwrap();
        d.addresses()[0].network_interface_id().map(str::to_owned)
    }

    /// The node the EIP is on, by name.
    pub async fn holder(&self) -> Option<String> {
        let eni = self.holder_eni().await?;
        self.nodes
            .iter()
            .find(|n| n.eni == eni)
            .map(|n| n.name.clone())
    }

    /// Drain the alert queue: every SNS message that arrived within `wait`.
    pub async fn alerts(&self, wait: Duration) -> Vec<Alert> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let r = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for m in r.messages() {
                let body: serde_json::Value =
                    serde_json::from_str(m.body().unwrap_or("{}")).unwrap();
                out.push(Alert {
                    subject: body["Subject"].as_str().unwrap_or("").to_owned(),
                    message: body["Message"].as_str().unwrap_or("").to_owned(),
                });
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        out
    }
}
