//! Who is in an Auto Scaling group, decided in one place and kept pure. Events are hints, a
//! resync is the truth: an event can add a server only once a lookup confirms its address,
//! and can take one out (termination is final, so a late or repeated event changes nothing);
//! a resync replaces the whole picture, except that for [`TOMBSTONE_GRACE`] it does not bring
//! back an instance that has been seen terminating (its read may predate the termination).
//! A resync after that which still lists the instance InService, Healthy and running is
//! believed over the event. A terminating instance's server drains first; its lifecycle
//! action is handed out for completion only after the server is out of HAProxy.

use crate::haproxy::Target;
use crate::providers::aws::autoscaling::LifecycleAction;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// Terminated instance ids are never reused; a tombstone only has to outlive late events.
const TOMBSTONE_TTL: Duration = Duration::from_secs(3600);

/// How long an event saying an instance is leaving outweighs a resync that still lists it
/// serving: the Auto Scaling and EC2 APIs are eventually consistent (AWS docs, "Eventual
/// consistency" in the EC2 API reference), so a read just after a termination may not show
/// it yet. A resync this long after the event that still lists the instance InService,
/// Healthy and running says the event was wrong (another group's, replayed, or forged).
pub const TOMBSTONE_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Drain {
    pub target: Target,
    pub since: Instant,
    /// The action to complete once drained (None: no hook of ours holds the instance).
    pub action: Option<LifecycleAction>,
    pub last_heartbeat: Instant,
    /// Finished (drained or timed out): it leaves HAProxy at the next apply.
    pub done: bool,
}

/// What a resync read from the Auto Scaling and EC2 APIs.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// InService, Healthy and running, with their private addresses.
    pub serving: BTreeMap<String, Target>,
    /// In `Terminating:Wait`, with the address when the instance still runs.
    pub terminating: BTreeMap<String, Option<Target>>,
}

#[derive(Debug)]
pub struct Membership {
    group: String,
    /// Our hook: resync-found `Terminating:Wait` instances are completed through it.
    hook: Option<String>,
    serving: BTreeMap<String, Target>,
    draining: BTreeMap<String, Drain>,
    gone: BTreeMap<String, Instant>,
    /// Instances whose action for our hook is queued or done (kept like tombstones): an
    /// action is completed once, whoever's event came first.
    completed: BTreeMap<String, Instant>,
    lookups: BTreeSet<String>,
    /// Lifecycle actions with nothing to drain here, to complete after the next apply.
    complete_now: Vec<LifecycleAction>,
}

impl Membership {
    /// The hook resync-found `Terminating:Wait` instances are completed through from now on
    /// (a reload may change it; the membership is kept, `sync::queues`).
    pub fn set_hook(&mut self, hook: Option<&str>) {
        self.hook = hook.map(str::to_owned);
    }

    pub fn new(group: &str, hook: Option<&str>) -> Self {
        Membership {
            group: group.to_owned(),
            hook: hook.map(str::to_owned),
            serving: BTreeMap::new(),
            draining: BTreeMap::new(),
            gone: BTreeMap::new(),
            completed: BTreeMap::new(),
            lookups: BTreeSet::new(),
            complete_now: Vec::new(),
        }
    }

    /// An event, already known to be about this group (or a group-less EC2 event).
    /// Returns what it changed, for the log (None: nothing).
    pub fn hint(&mut self, h: &super::events::Hint, now: Instant) -> Option<String> {
        use super::events::Hint;
        let id = h.instance();
        match h {
            Hint::InService { .. } => {
                if self.gone.contains_key(id)
                    || self.serving.contains_key(id)
                    || self.draining.contains_key(id)
                {
                    return None;
                }
                self.lookups
                    .insert(id.to_owned())
                    .then(|| format!("{id}: InService, looking up its address"))
            }
            Hint::Terminating { hook, token, .. } => {
                let action =
                    (self.hook.as_deref() == Some(hook.as_str())).then(|| LifecycleAction {
                        group: self.group.clone(),
                        hook: hook.clone(),
                        instance: id.to_owned(),
                        token: token.clone(),
                    });
                self.terminating(id, None, action, now)
            }
            Hint::Gone { .. } => {
                self.gone.insert(id.to_owned(), now);
                self.lookups.remove(id);
                let was = self
                    .serving
                    .remove(id)
                    .or_else(|| self.draining.remove(id).map(|d| d.target));
                was.map(|t| format!("{id} ({t}) is gone"))
            }
            Hint::Stopping { .. } => {
                self.lookups.remove(id);
                self.serving
                    .remove(id)
                    .map(|t| format!("{id} ({t}) is stopping"))
            }
            Hint::Launching { .. } => None,
        }
    }

    /// `address`: where it serves, when a resync knows (after a restart nothing is serving yet,
    /// and HAProxy may still have the server from before).
    fn terminating(
        &mut self,
        id: &str,
        address: Option<Target>,
        action: Option<LifecycleAction>,
        now: Instant,
    ) -> Option<String> {
        self.gone.insert(id.to_owned(), now);
        self.lookups.remove(id);
        if self.completed.contains_key(id) {
            return None;
        }
        if let Some(target) = self.serving.remove(id).or(address) {
            self.draining.insert(
                id.to_owned(),
                Drain {
                    target,
                    since: now,
                    action,
                    last_heartbeat: now,
                    done: false,
                },
            );
            return Some(format!("{id} ({target}) is terminating: draining"));
        }
        if let Some(d) = self.draining.get_mut(id) {
            if d.action.is_none() {
                d.action = action;
            } else if let (Some(a), Some(new)) = (d.action.as_mut(), action) {
                // A repeated event may carry the token a resync could not know.
                if a.token.is_none() {
                    a.token = new.token;
                }
            }
            return None;
        }
        // Not served here: nothing to drain, but our hook still waits for an answer.
        let a = action?;
        self.completed.insert(id.to_owned(), now);
        self.complete_now.push(a);
        Some(format!(
            "{id} is terminating and not served here: completing its lifecycle action"
        ))
    }

    /// Instance ids to look up (their address, and that they are running).
    pub fn take_lookups(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lookups).into_iter().collect()
    }

    /// A lookup failed: ask again next time.
    pub fn requeue_lookups(&mut self, ids: Vec<String>) {
        self.lookups
            .extend(ids.into_iter().filter(|id| !self.gone.contains_key(id)));
    }

    /// A completion failed: try again after the next apply.
    pub fn retry_completion(&mut self, a: LifecycleAction) {
        self.complete_now.push(a);
    }

    /// The running ones among the looked-up instances, with their addresses.
    pub fn looked_up(&mut self, found: &BTreeMap<String, Target>) -> Vec<String> {
        let mut added = Vec::new();
        for (id, t) in found {
            if !self.gone.contains_key(id)
                && !self.draining.contains_key(id)
                && self.serving.insert(id.clone(), *t).is_none()
            {
                added.push(format!("{id} ({t})"));
            }
        }
        added
    }

    /// The whole group, read from the API: it replaces what events said. Returns the
    /// instances an event had taken out (gone, or draining) that this resync, read more than
    /// [`TOMBSTONE_GRACE`] after the event, still lists serving: they are back.
    pub fn resync(&mut self, snap: &Snapshot, now: Instant) -> Vec<String> {
        self.gone
            .retain(|_, at| now.duration_since(*at) < TOMBSTONE_TTL);
        self.completed
            .retain(|_, at| now.duration_since(*at) < TOMBSTONE_TTL);
        self.lookups.clear();
        let mut back = Vec::new();
        for id in snap.serving.keys() {
            if snap.terminating.contains_key(id) {
                continue;
            }
            let since = self
                .draining
                .get(id)
                .map(|d| d.since)
                .or_else(|| self.gone.get(id).copied());
            if since.is_some_and(|at| now.duration_since(at) >= TOMBSTONE_GRACE) {
                self.gone.remove(id);
                self.completed.remove(id);
                self.draining.remove(id);
                back.push(id.clone());
            }
        }
        for (id, address) in &snap.terminating {
            let action = self.hook.clone().map(|hook| LifecycleAction {
                group: self.group.clone(),
                hook,
                instance: id.clone(),
                token: None,
            });
            self.terminating(id, *address, action, now);
        }
        // Drains of instances the group no longer lists: gone, nothing to complete.
        self.draining
            .retain(|id, _| snap.terminating.contains_key(id) || snap.serving.contains_key(id));
        self.serving = snap
            .serving
            .iter()
            .filter(|(id, _)| !self.gone.contains_key(*id) && !self.draining.contains_key(*id))
            .map(|(id, t)| (id.clone(), *t))
            .collect();
        back
    }

    /// Instances whose servers take new traffic, by instance id.
    pub fn serving(&self) -> &BTreeMap<String, Target> {
        &self.serving
    }

    /// Servers that stay in HAProxy but in drain.
    pub fn draining_targets(&self) -> BTreeSet<Target> {
        self.draining
            .values()
            .filter(|d| !d.done)
            .map(|d| d.target)
            .collect()
    }

    /// Everything HAProxy keeps: serving and still draining.
    pub fn wanted(&self) -> BTreeSet<Target> {
        let mut t: BTreeSet<Target> = self.serving.values().copied().collect();
        t.extend(self.draining_targets());
        t
    }

    pub fn drains(&self) -> impl Iterator<Item = (&String, &Drain)> {
        self.draining.iter().filter(|(_, d)| !d.done)
    }

    /// The drain of `id` is over: its server leaves HAProxy at the next apply.
    pub fn finish_drain(&mut self, id: &str) {
        if let Some(d) = self.draining.get_mut(id) {
            d.done = true;
        }
    }

    /// Lifecycle actions due a heartbeat, marked as sent.
    pub fn heartbeats_due(&mut self, every: Duration, now: Instant) -> Vec<LifecycleAction> {
        let mut due = Vec::new();
        for d in self.draining.values_mut().filter(|d| !d.done) {
            if let Some(a) = &d.action {
                if now.duration_since(d.last_heartbeat) >= every {
                    d.last_heartbeat = now;
                    due.push(a.clone());
                }
            }
        }
        due
    }

    /// Call after HAProxy no longer has the finished drains' servers: their lifecycle
    /// actions (and those with nothing to drain), to complete now.
    pub fn take_completions(&mut self) -> Vec<LifecycleAction> {
        let mut out = std::mem::take(&mut self.complete_now);
        let done: Vec<String> = self
            .draining
            .iter()
            .filter(|(_, d)| d.done)
            .map(|(id, _)| id.clone())
            .collect();
        let now = Instant::now();
        for id in done {
            if let Some(a) = self.draining.remove(&id).and_then(|d| d.action) {
                self.completed.insert(id, now);
                out.push(a);
            }
        }
        out
    }

    /// Is this instance one we know (EC2 events carry no group name)?
    pub fn knows(&self, id: &str) -> bool {
        self.serving.contains_key(id) || self.draining.contains_key(id) || self.lookups.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::Hint;
    use super::*;

    fn t(n: u8) -> Target {
        Target {
            ip: std::net::Ipv4Addr::new(10, 0, 0, n),
            port: 80,
        }
    }
    fn snap(serving: &[(&str, u8)], terminating: &[&str]) -> Snapshot {
        Snapshot {
            serving: serving
                .iter()
                .map(|(i, n)| (i.to_string(), t(*n)))
                .collect(),
            terminating: terminating.iter().map(|s| (s.to_string(), None)).collect(),
        }
    }
    fn term(id: &str, hook: &str) -> Hint {
        Hint::Terminating {
            instance: id.into(),
            hook: hook.into(),
            token: Some("tok".into()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn launch_needs_a_lookup_and_termination_is_final() {
        let now = Instant::now();
        let mut m = Membership::new("web", Some("drain"));
        m.resync(&snap(&[("i-1", 1)], &[]), now);
        assert!(m
            .hint(
                &Hint::InService {
                    instance: "i-2".into()
                },
                now
            )
            .is_some());
        assert_eq!(m.wanted().len(), 1, "an event alone adds nothing");
        assert_eq!(m.take_lookups(), vec!["i-2".to_string()]);
        // Reordered: the instance terminated before its lookup came back.
        m.hint(
            &Hint::Gone {
                instance: "i-2".into(),
            },
            now,
        );
        assert!(m.looked_up(&[("i-2".to_string(), t(2))].into()).is_empty());
        // A late duplicate of the launch event changes nothing either.
        assert!(m
            .hint(
                &Hint::InService {
                    instance: "i-2".into()
                },
                now
            )
            .is_none());
        // Nor does a resync that read the group before the termination.
        m.resync(&snap(&[("i-1", 1), ("i-2", 2)], &[]), now);
        assert_eq!(m.wanted(), [t(1)].into());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_then_remove_then_complete() {
        let now = Instant::now();
        let mut m = Membership::new("web", Some("drain"));
        m.resync(&snap(&[("i-1", 1), ("i-2", 2)], &[]), now);
        m.hint(&term("i-2", "drain"), now);
        m.hint(&term("i-2", "drain"), now); // duplicate
        assert_eq!(m.wanted(), [t(1), t(2)].into(), "draining servers stay");
        assert_eq!(m.draining_targets(), [t(2)].into());
        assert!(m.take_completions().is_empty(), "not before it has drained");
        // A resync that still lists it as InService does not undo the drain.
        m.resync(&snap(&[("i-1", 1), ("i-2", 2)], &[]), now);
        assert_eq!(m.draining_targets(), [t(2)].into());
        m.finish_drain("i-2");
        assert_eq!(m.wanted(), [t(1)].into());
        let c = m.take_completions();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].instance.as_str(), c[0].token.as_deref()),
            ("i-2", Some("tok"))
        );
        assert!(m.take_completions().is_empty(), "completed once");
    }

    #[tokio::test(start_paused = true)]
    async fn other_hooks_drain_but_are_not_ours_to_complete() {
        let now = Instant::now();
        let mut m = Membership::new("web", Some("drain"));
        m.resync(&snap(&[("i-1", 1)], &[]), now);
        m.hint(&term("i-1", "someone-elses"), now);
        m.finish_drain("i-1");
        assert!(m.take_completions().is_empty());
        assert!(m.wanted().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_missed_event_is_fixed_by_the_resync() {
        let now = Instant::now();
        let mut m = Membership::new("web", Some("drain"));
        m.resync(&snap(&[("i-1", 1), ("i-2", 2)], &[]), now);
        // The terminate event was lost; the resync finds the instance waiting.
        m.resync(&snap(&[("i-1", 1), ("i-3", 3)], &["i-2"]), now);
        assert_eq!(m.wanted(), [t(1), t(2), t(3)].into());
        assert_eq!(m.draining_targets(), [t(2)].into());
        m.finish_drain("i-2");
        let c = m.take_completions();
        assert_eq!(
            (c[0].instance.as_str(), c[0].token.as_deref()),
            ("i-2", None)
        );
        // Waiting and not served here: completed at once, and only once.
        m.resync(&snap(&[("i-1", 1)], &["i-9"]), now);
        assert_eq!(m.take_completions().len(), 1);
        m.resync(&snap(&[("i-1", 1)], &["i-9"]), now);
        assert!(m.take_completions().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn another_hooks_event_first_does_not_swallow_ours() {
        let now = Instant::now();
        let mut m = Membership::new("web", Some("drain-a"));
        m.resync(&snap(&[("i-1", 1)], &[]), now);
        m.hint(
            &Hint::Stopping {
                instance: "i-1".into(),
            },
            now,
        );
        m.hint(&term("i-1", "drain-b"), now);
        assert!(m.take_completions().is_empty());
        m.hint(&term("i-1", "drain-a"), now);
        assert_eq!(m.take_completions().len(), 1);
        m.hint(&term("i-1", "drain-a"), now);
        assert!(m.take_completions().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_restart_a_waiting_instance_is_drained_not_completed_at_once() {
        let now = Instant::now();
        let mut m = Membership::new("web", Some("drain"));
        let mut s = snap(&[("i-1", 1)], &[]);
        s.terminating.insert("i-2".into(), Some(t(2)));
        m.resync(&s, now);
        assert_eq!(m.draining_targets(), [t(2)].into());
        assert!(m.take_completions().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_while_draining() {
        let now = Instant::now();
        let mut m = Membership::new("web", Some("drain"));
        m.resync(&snap(&[("i-1", 1)], &[]), now);
        m.hint(&term("i-1", "drain"), now);
        let every = Duration::from_secs(60);
        assert!(m
            .heartbeats_due(every, now + Duration::from_secs(30))
            .is_empty());
        assert_eq!(
            m.heartbeats_due(every, now + Duration::from_secs(61)).len(),
            1
        );
        assert!(m
            .heartbeats_due(every, now + Duration::from_secs(62))
            .is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_takes_out_without_a_tombstone() {
        let now = Instant::now();
        let mut m = Membership::new("web", None);
        m.resync(&snap(&[("i-1", 1)], &[]), now);
        m.hint(
            &Hint::Stopping {
                instance: "i-1".into(),
            },
            now,
        );
        assert!(m.wanted().is_empty());
        m.resync(&snap(&[("i-1", 1)], &[]), now);
        assert_eq!(m.wanted(), [t(1)].into(), "it came back");
    }

    /// Breaker's find: one "terminate successful" event for an instance the group still ran
    /// took its server out for good; every resync after it kept it out.
    #[tokio::test(start_paused = true)]
    async fn an_event_the_group_contradicts_is_undone_by_a_later_resync() {
        let now = Instant::now();
        let mut m = Membership::new("web", Some("drain"));
        m.resync(&snap(&[("i-1", 1), ("i-2", 2)], &[]), now);
        m.hint(
            &Hint::Gone {
                instance: "i-2".into(),
            },
            now,
        );
        m.hint(&term("i-1", "drain"), now);
        assert_eq!(m.wanted(), [t(1)].into());
        assert_eq!(m.draining_targets(), [t(1)].into());
        // A resync read just after the events may predate them: the events hold.
        let soon = now + TOMBSTONE_GRACE / 2;
        assert!(m
            .resync(&snap(&[("i-1", 1), ("i-2", 2)], &[]), soon)
            .is_empty());
        assert_eq!(m.wanted(), [t(1)].into());
        assert_eq!(m.draining_targets(), [t(1)].into());
        // Later, the group still lists both InService, Healthy and running: it is right.
        let later = now + TOMBSTONE_GRACE;
        let back = m.resync(&snap(&[("i-1", 1), ("i-2", 2)], &[]), later);
        assert_eq!(back, vec!["i-1".to_string(), "i-2".to_string()]);
        assert_eq!(m.wanted(), [t(1), t(2)].into());
        assert!(m.draining_targets().is_empty());
        assert!(
            m.take_completions().is_empty(),
            "nothing to complete for i-1"
        );
        // They are ordinary members again: a real termination later is followed.
        m.hint(
            &Hint::Gone {
                instance: "i-2".into(),
            },
            later,
        );
        assert_eq!(m.wanted(), [t(1)].into());
        // And an instance the group lists as terminating stays out whatever the age.
        m.hint(&term("i-1", "drain"), later);
        m.resync(&snap(&[("i-1", 1)], &["i-1"]), later + TOMBSTONE_GRACE * 2);
        assert_eq!(m.draining_targets(), [t(1)].into());
    }
}
