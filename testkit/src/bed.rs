//! A two-or-more node set-up for the failover tests: the world in moto, and for each node a
//! real HAProxy, an IMDSv2 stand-in and its own checkip answer; plus a programmable target
//! that stands for the Elastic IP the rule checks.

use crate::haproxy::Haproxy;
use crate::http::{Reply, Stub};
use crate::imds::Imds;
use crate::watchdog::{Env, NodeConf, Watchdog};
use crate::world::World;
use std::collections::BTreeMap;

pub struct Bed {
    pub world: World,
    pub haproxy: BTreeMap<String, Haproxy>,
    pub imds: BTreeMap<String, Imds>,
    pub checkip: BTreeMap<String, Stub>,
    pub target: Stub,
    /// The association made at set-up (the EIP starts on `holder`).
    pub initial_association: Option<String>,
}

/// Each node's public egress address, as its checkip answers it.
pub fn egress_ip(i: usize) -> String {
    format!("198.51.100.{}", i + 10)
}

impl Bed {
    /// Nodes `names`; the EIP starts on `holder` (None: unassociated). Secondary IPs are added
    /// to the nodes in `secondaries` before their metadata service starts.
    pub async fn new(names: &[&str], holder: Option<&str>, secondaries: &[&str]) -> Bed {
        let mut world = World::new(names).await;
        for n in secondaries {
            world.add_secondary_ip(n).await;
        }
        let mut haproxy = BTreeMap::new();
        let mut imds = BTreeMap::new();
        let mut checkip = BTreeMap::new();
        for (i, node) in world.nodes.iter().enumerate() {
            haproxy.insert(node.name.clone(), Haproxy::start(&node.name).await);
            imds.insert(node.name.clone(), Imds::start(node).await);
            checkip.insert(
                node.name.clone(),
                Stub::start(Reply::ok(&format!("{}\n", egress_ip(i)))).await,
            );
        }
        let initial_association = match holder {
            Some(h) => Some(world.associate(h).await),
            None => None,
        };
        let target = Stub::start(Reply::ok("ok")).await;
        Bed {
            world,
            haproxy,
            imds,
            checkip,
            target,
            initial_association,
        }
    }

    pub fn env(&self, node: &str) -> Env {
        Env {
            aws_endpoint: self.world.moto.url.clone(),
            imds_endpoint: self.imds[node].endpoint(),
        }
    }

    /// The default configuration of `node`: 200 ms cycles, 3 failures, 60 s hold-down.
    pub fn conf(&self, node: &str) -> NodeConf {
        NodeConf {
            target: self.target.url(),
            checkip: self.checkip[node].url(),
            socket: self.haproxy[node].socket.clone(),
            eip: self.world.eip.to_string(),
            topic_arn: Some(self.world.topic_arn.clone()),
            interval: "200ms",
            timeout: "150ms",
            fast_interval: None,
            fail_after: 3,
            recover_after: 1,
            hold_down: "60s",
            private_ip: None,
            egress_timeout: "1s",
            aws_endpoint: None,
            identity: None,
            haproxy_backend: None,
        }
    }

    pub fn start(&self, node: &str, conf: &NodeConf) -> Watchdog {
        self.start_toml(node, &conf.toml())
    }

    /// Start `node` with a whole configuration of the test's own.
    pub fn start_toml(&self, node: &str, toml: &str) -> Watchdog {
        Watchdog::start(node, &self.env(node), toml, &[])
    }
}
