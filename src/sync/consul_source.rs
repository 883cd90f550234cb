//! A Consul service as a backend-sync source: its passing instances, each at the service's
//! address (else its node's) and port (or the rule's `port`), IPv4 only (HAProxy's slots are
//! pointed with `set server ... addr <IPv4>`); the ones left out are named.

use super::{note, Discovered};
use crate::haproxy::Target;
use crate::providers::consul::{self, Instance};
use std::collections::{BTreeMap, BTreeSet};

/// The servers of one Consul answer. `port`: the rule's, which wins over each instance's.
pub(super) fn discovered(list: &[Instance], port: Option<u16>) -> Discovered {
    let mut targets = BTreeSet::new();
    let mut left_out = Vec::new();
    for i in list {
        let p = port.unwrap_or(i.port);
        match consul::ipv4(i) {
            Some(ip) if p != 0 => {
                targets.insert(Target { ip, port: p });
            }
            Some(_) => left_out.push(format!("{} (no port)", i.id)),
            None => left_out.push(format!("{} (address {:?} is not IPv4)", i.id, i.address)),
        }
    }
    Discovered {
        note: note(targets.len(), "passing", &left_out),
        targets,
        drain: BTreeSet::new(),
        names: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, address: &str, port: u16) -> Instance {
        Instance {
            id: id.into(),
            address: address.into(),
            port,
        }
    }

    #[test]
    fn ipv4_instances_with_a_port_are_servers_and_the_others_are_named() {
        let list = [
            instance("n1/web-1", "10.0.0.1", 8080),
            instance("n2/web-2", "fd00::2", 8080),
            instance("n3/web-3", "10.0.0.3", 0),
            instance("n4/web-4", "web-4.internal", 8080),
        ];
        let d = discovered(&list, None);
        let got: Vec<String> = d.targets.iter().map(|t| t.to_string()).collect();
        assert_eq!(got, ["10.0.0.1:8080"]);
        assert_eq!(
            d.note,
            "1 passing; left out: n2/web-2 (address \"fd00::2\" is not IPv4), n3/web-3 (no port), n4/web-4 (address \"web-4.internal\" is not IPv4)"
        );
    }

    #[test]
    fn the_rules_port_wins_over_each_instances() {
        let d = discovered(&[instance("n1/web-1", "10.0.0.1", 0)], Some(80));
        let got: Vec<String> = d.targets.iter().map(|t| t.to_string()).collect();
        assert_eq!(got, ["10.0.0.1:80"]);
        assert_eq!(d.note, "1 passing");
    }
}
