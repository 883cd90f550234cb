//! The decision of a backend sync, kept pure: from the slots HAProxy has and the servers the
//! source wants, the smallest list of commands that makes them equal. A server that stays
//! keeps its slot; new servers go into free slots, lowest first, and are enabled before
//! anything is taken out, so a replacement never dips the backend's capacity. With no free
//! slot left, a new server takes over the slot of a leaving one (one address change).

pub use crate::haproxy::server::{Command, Slot, Target};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Enables first, then disables.
    pub commands: Vec<Command>,
    /// Servers that already have their slot.
    pub kept: usize,
    /// Servers that found no free slot.
    pub unplaced: Vec<Target>,
}

impl Plan {
    pub fn added(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| matches!(c, Command::Enable { .. }))
            .count()
    }
    pub fn drained(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| matches!(c, Command::Drain { .. }))
            .count()
    }
    pub fn removed(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| matches!(c, Command::Disable { .. }))
            .count()
    }
}

/// Slots sorted the way an operator reads them: `app2` before `app10`.
pub fn sort_slots(slots: &mut [Slot]) {
    slots.sort_by_key(|s| natural_key(&s.name));
}

fn natural_key(name: &str) -> (String, u64, String) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, tail) = name.split_at(name.len() - digits);
    (head.to_owned(), tail.parse().unwrap_or(0), name.to_owned())
}

/// `slots` must be sorted (see [`sort_slots`]).
pub fn plan(slots: &[Slot], desired: &BTreeSet<Target>) -> Plan {
    plan_draining(slots, desired, &BTreeSet::new())
}

/// Like [`plan`], where the `drain` targets among `desired` keep their slots in drain (and
/// are never added: a server that is going away gets no new slot).
pub fn plan_draining(slots: &[Slot], desired: &BTreeSet<Target>, drain: &BTreeSet<Target>) -> Plan {
    let mut placed: BTreeSet<Target> = BTreeSet::new();
    let mut enables = Vec::new();
    let mut drains = Vec::new();
    let mut disables = Vec::new();
    let mut free: Vec<&Slot> = Vec::new();
    let mut leaving: Vec<&Slot> = Vec::new();
    let mut kept = 0;
    for s in slots {
        match s.target {
            Some(t) if s.serving() && desired.contains(&t) && placed.insert(t) => {
                kept += 1;
                if drain.contains(&t) {
                    if !s.draining {
                        drains.push(Command::Drain {
                            slot: s.name.clone(),
                        });
                    }
                } else if s.draining {
                    enables.push(Command::Undrain {
                        slot: s.name.clone(),
                    });
                }
            }
            _ if s.serving() => {
                // Not wanted, or a second slot serving the same server: taken out, unless a
                // wanted server finds no free slot and takes this one over (below).
                leaving.push(s);
            }
            // A slot that cannot take an address is no free slot; if it is out of
            // maintenance (READY with no address, it would take requests and fail them), it
            // goes to maintenance.
            _ if !s.addressable => {
                if !s.maint {
                    disables.push(Command::Disable {
                        slot: s.name.clone(),
                    });
                }
            }
            _ => free.push(s),
        }
    }
    let mut unplaced = Vec::new();
    for t in desired
        .iter()
        .filter(|t| !placed.contains(t) && !drain.contains(t))
    {
        // A slot that served this very server before is the natural place to come back to.
        let pick = free
            .iter()
            .position(|s| s.target == Some(*t))
            .or_else(|| (!free.is_empty()).then_some(0));
        // With no free slot, a slot whose server is leaving is re-pointed at the new one in
        // one step: taking it out first and filling it on the next round would dip the
        // backend (to nothing, for a one-slot backend) in between.
        let slot = match pick {
            Some(i) => Some(free.remove(i)),
            None => leaving
                .iter()
                .position(|s| s.addressable)
                .map(|i| leaving.remove(i)),
        };
        match slot {
            Some(s) => enables.push(Command::Enable {
                slot: s.name.clone(),
                target: *t,
            }),
            None => unplaced.push(*t),
        }
    }
    // A free slot left READY (an operator's `state ready` on a spare `0.0.0.0` slot) takes
    // requests it can only fail: back to maintenance.
    disables.extend(free.iter().filter(|s| !s.maint).map(|s| Command::Disable {
        slot: s.name.clone(),
    }));
    disables.splice(
        0..0,
        leaving.iter().map(|s| Command::Disable {
            slot: s.name.clone(),
        }),
    );
    enables.extend(drains);
    enables.extend(disables);
    Plan {
        commands: enables,
        kept,
        unplaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn t(last: u8) -> Target {
        Target {
            ip: Ipv4Addr::new(10, 0, 0, last),
            port: 8080,
        }
    }
    fn slot(name: &str, target: Option<Target>, maint: bool) -> Slot {
        Slot {
            name: name.into(),
            target,
            addressable: true,
            maint,
            draining: false,
        }
    }
    fn set(ts: &[Target]) -> BTreeSet<Target> {
        ts.iter().copied().collect()
    }

    #[test]
    fn a_draining_server_keeps_its_slot_in_drain_and_is_never_added() {
        let mut draining = slot("a2", Some(t(2)), false);
        draining.draining = true;
        let slots = [
            slot("a1", Some(t(1)), false),
            slot("a2", Some(t(2)), false),
            slot("a3", None, true),
        ];
        let p = plan_draining(&slots, &set(&[t(1), t(2), t(3)]), &set(&[t(2), t(3)]));
        assert_eq!(p.commands, vec![Command::Drain { slot: "a2".into() }]);
        // Already draining: nothing to do; the plain plan would undrain it.
        let slots = [slot("a1", Some(t(1)), false), draining];
        assert!(plan_draining(&slots, &set(&[t(1), t(2)]), &set(&[t(2)]))
            .commands
            .is_empty());
        assert_eq!(
            plan(&slots, &set(&[t(1), t(2)])).commands,
            vec![Command::Undrain { slot: "a2".into() }]
        );
    }

    #[test]
    fn equal_state_needs_no_command() {
        let slots = [
            slot("a1", Some(t(1)), false),
            slot("a2", Some(t(2)), false),
            slot("a3", None, true),
        ];
        let p = plan(&slots, &set(&[t(1), t(2)]));
        assert!(p.commands.is_empty());
        assert_eq!(p.kept, 2);
    }

    #[test]
    fn replacement_enables_before_it_disables_and_keeps_the_survivor() {
        let slots = [
            slot("a1", Some(t(1)), false),
            slot("a2", Some(t(2)), false),
            slot("a3", None, true),
        ];
        let p = plan(&slots, &set(&[t(2), t(3)]));
        assert_eq!(
            p.commands,
            vec![
                Command::Enable {
                    slot: "a3".into(),
                    target: t(3)
                },
                Command::Disable { slot: "a1".into() },
            ]
        );
        assert_eq!(p.kept, 1);
    }

    #[test]
    fn a_returning_server_gets_its_old_slot() {
        let slots = [slot("a1", None, true), slot("a2", Some(t(7)), true)];
        let p = plan(&slots, &set(&[t(7)]));
        assert_eq!(
            p.commands,
            vec![Command::Enable {
                slot: "a2".into(),
                target: t(7)
            }]
        );
    }

    #[test]
    fn too_few_slots_reports_the_rest() {
        let slots = [slot("a1", None, true)];
        let p = plan(&slots, &set(&[t(1), t(2), t(3)]));
        assert_eq!(p.added(), 1);
        assert_eq!(p.unplaced, vec![t(2), t(3)]);
    }

    #[test]
    fn duplicates_and_drains_are_straightened_out() {
        let mut drained = slot("a2", Some(t(1)), false);
        drained.draining = true;
        let slots = [
            slot("a1", Some(t(1)), false),
            drained,
            Slot {
                draining: true,
                ..slot("a3", Some(t(3)), false)
            },
        ];
        let p = plan(&slots, &set(&[t(1), t(3)]));
        assert_eq!(
            p.commands,
            vec![
                Command::Undrain { slot: "a3".into() },
                Command::Disable { slot: "a2".into() },
            ]
        );
    }

    #[test]
    fn a_slot_with_no_usable_address_is_never_a_free_slot() {
        // HAProxy 2.6/3.0: `server web2 app2.example.com:8080 init-addr none` shows address
        // `-` in resolution maintenance; after a `state ready` it is READY with no address.
        let unaddressable = |maint| Slot {
            addressable: false,
            ..slot("a2", None, maint)
        };
        let slots = [slot("a1", Some(t(1)), false), unaddressable(true)];
        let p = plan(&slots, &set(&[t(1), t(2)]));
        assert!(p.commands.is_empty(), "{:?}", p.commands);
        assert_eq!(p.unplaced, vec![t(2)], "the server must find another slot");
        // Another free slot after it takes the server.
        let slots = [
            slot("a1", Some(t(1)), false),
            unaddressable(true),
            slot("a3", None, true),
        ];
        let p = plan(&slots, &set(&[t(1), t(2)]));
        assert_eq!(
            p.commands,
            vec![Command::Enable {
                slot: "a3".into(),
                target: t(2)
            }]
        );
        // READY with no address: back to maintenance, and the server goes elsewhere.
        let slots = [
            slot("a1", Some(t(1)), false),
            unaddressable(false),
            slot("a3", None, true),
        ];
        let p = plan(&slots, &set(&[t(1), t(2)]));
        assert_eq!(
            p.commands,
            vec![
                Command::Enable {
                    slot: "a3".into(),
                    target: t(2)
                },
                Command::Disable { slot: "a2".into() },
            ]
        );
    }

    #[test]
    fn slots_sort_naturally() {
        let mut slots = vec![
            slot("app10", None, true),
            slot("app2", None, true),
            slot("app1", None, true),
        ];
        sort_slots(&mut slots);
        let names: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["app1", "app2", "app10"]);
    }

    #[test]
    fn command_lines() {
        let c = Command::Enable {
            slot: "app3".into(),
            target: t(9),
        };
        assert_eq!(
            c.lines("web"),
            [
                "set server web/app3 addr 10.0.0.9 port 8080",
                "set server web/app3 state ready"
            ]
        );
    }

    /// Breaker: with every slot in use, a replacement took the leaving server out and left
    /// the new one for the next round (a one-slot backend went down in between). The new
    /// server now takes the leaving server's slot over in the same round.
    #[test]
    fn a_replacement_with_no_free_slot_takes_over_the_leaving_slot() {
        let slots = vec![slot("web1", Some(t(11)), false)];
        let p = plan(&slots, &set(&[t(12)]));
        assert_eq!(
            p.commands,
            vec![Command::Enable {
                slot: "web1".into(),
                target: t(12)
            }]
        );
        assert!(p.unplaced.is_empty());
        // Four full slots, one replaced: still one command, nothing taken out first.
        let slots: Vec<Slot> = (1..=4)
            .map(|i| slot(&format!("web{i}"), Some(t(10 + i)), false))
            .collect();
        let p = plan(&slots, &set(&[t(11), t(12), t(13), t(15)]));
        assert_eq!(p.added(), 1);
        assert_eq!(p.removed(), 0);
        assert_eq!(p.kept, 3);
        // More leaving than arriving: the rest are taken out after the enables.
        let p = plan(&slots, &set(&[t(15)]));
        assert_eq!((p.added(), p.removed()), (1, 3));
        assert!(matches!(p.commands[0], Command::Enable { .. }));
    }

    /// Breaker: a spare `0.0.0.0` slot an operator set READY by hand stayed READY ("in
    /// step") and took requests it could only fail.
    #[test]
    fn a_ready_slot_with_no_address_goes_back_to_maintenance() {
        let slots = vec![slot("web1", Some(t(11)), false), slot("web2", None, false)];
        let p = plan(&slots, &set(&[t(11)]));
        assert_eq!(
            p.commands,
            vec![Command::Disable {
                slot: "web2".into()
            }]
        );
        // Used when a server needs it.
        let p = plan(&slots, &set(&[t(11), t(12)]));
        assert_eq!(p.added(), 1);
        assert_eq!(p.removed(), 0);
    }
}
