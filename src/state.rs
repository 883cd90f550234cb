//! State that must survive a restart (`--state-dir` / `WATCHDOG_STATE_DIR`, default
//! /var/lib/haproxy-watchdog):
//! when each Elastic IP last moved (the hold-downs), the claim in flight for each, each rule's
//! health and unfinished actions, and the alerts not yet delivered.
//!
//! One JSON file, replaced atomically (written beside, fsynced, renamed) on every change.
//! A claim records its move *before* its first mutating call, so a crash or `kill -9` in the
//! middle of a claim leaves a hold-down that keeps the restarted daemon from claiming again.
//! Alerts are at most once: one that was being published when the process died may have
//! gone out, so it is dropped (and logged) at the next start rather than sent twice; the
//! others are sent then.

use crate::telemetry::events;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FILE: &str = "state.json";
/// The state file's format version this daemon reads and writes.
const VERSION: u32 = 1;

/// Move a state file this daemon cannot use out of the way (`state.json.corrupt-<unix time>`,
/// kept for an operator or a newer daemon) and start without it.
fn set_aside(dir: &Path, path: &Path, why: &str) -> StateFile {
    let aside = dir.join(format!("{FILE}.corrupt-{}", unix(SystemTime::now())));
    let _ = std::fs::rename(path, &aside);
    tracing::error!(event = events::STATE_CORRUPT, file = %path.display(), moved_to = %aside.display(), error = %why,
        "starting without saved hold-downs, claims in flight, alerts, rule states, pause and history: if this node was paused, pause it again");
    StateFile::default()
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
struct StateFile {
    version: u32,
    #[serde(default)]
    eips: BTreeMap<String, EipRecord>,
    #[serde(default)]
    alerts: Vec<StoredAlert>,
    #[serde(default)]
    next_alert_id: u64,
    /// Claims that had started changing the provider and not yet been settled, by EIP.
    #[serde(default)]
    claims: BTreeMap<String, PendingClaim>,
    /// Each rule's [`crate::engine::RuleState`], by rule name, as the engine last saved it.
    #[serde(default)]
    rules: BTreeMap<String, serde_json::Value>,
    /// `watchdog pause`, until `watchdog resume` or its end. Kept as JSON and read on its
    /// own: a pause another version wrote differently costs only itself (logged), never the
    /// hold-downs and alerts beside it.
    #[serde(default)]
    pause: Option<serde_json::Value>,
    /// The failover history (`watchdog status --history`), oldest first; each entry read on
    /// its own, for the same reason.
    #[serde(default)]
    history: Vec<serde_json::Value>,
    /// The addresses the running configuration's private claims put on local interfaces:
    /// one the next configuration (after a reload or a restart) no longer claims is taken off.
    #[serde(default)]
    private_addresses: Vec<std::net::Ipv4Addr>,
    /// By address: who held it when the rule guarding it started failing (an association or
    /// route token; `null`: nobody). The claim's "moved meanwhile" gate compares it with the
    /// owner it reads, so a restart in the middle of an outage must not forget it.
    #[serde(default)]
    owners_seen: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct EipRecord {
    /// Seconds since the Unix epoch.
    moved_at: u64,
}

/// A claim between its first mutating call and its settled end: saved before the call, so a
/// restart can read the owner and announce a move that completed while the process died.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingClaim {
    /// `ec2` or `opsworks`.
    pub provider: String,
    /// The instance the EIP was being moved onto (this node's).
    pub instance_id: String,
    /// EC2 only: the ENI and private IP it was being moved onto.
    #[serde(default)]
    pub network_interface_id: Option<String>,
    #[serde(default)]
    pub private_ip: Option<String>,
    /// The alert to publish if the move is found done: SNS topic, subject, message.
    #[serde(default)]
    pub alert: Option<(String, String, String)>,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    /// Who held the address as the claim started (absent in files of older versions). A
    /// restart that finds the claim not completed and this same holder still in place knows
    /// nothing moved, so no hold-down applies.
    #[serde(default)]
    pub from: Option<SeenOwner>,
}

/// A holder as a claim saw it: the provider's token (EC2's AssociationId, the OpsWorks
/// instance, the route's target); None: nobody held the address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeenOwner {
    pub token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredAlert {
    pub id: u64,
    pub topic_arn: String,
    pub subject: String,
    pub message: String,
    /// A publish was under way.
    pub sending: bool,
}

/// Cheap to clone. Without a directory (the default) it keeps nothing: `--once`,
/// `--state-dir ""`.
#[derive(Clone, Default)]
pub struct StateStore(Option<Arc<Inner>>);

struct Inner {
    path: PathBuf,
    data: Mutex<StateFile>,
    /// A change saved with [`StateStore::rule_saved_soon`] not written yet: the flusher writes
    /// it within [`FLUSH_EVERY`], unless a write of any other change covers it first.
    dirty: std::sync::atomic::AtomicBool,
    /// Whether the flusher task runs.
    flusher: std::sync::atomic::AtomicBool,
    /// Holds an exclusive `flock` on `LOCK` for as long as the store lives.
    _lock: std::fs::File,
}

/// How soon a change saved with [`StateStore::rule_saved_soon`] is written: many of them in
/// that time (1,000 rules starting to fail together) make one write, not one each.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

impl Drop for Inner {
    /// A clean stop writes what is still waiting for the flusher.
    fn drop(&mut self) {
        if self.dirty.load(std::sync::atomic::Ordering::SeqCst) {
            let d = self.data.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = write(&self.path, &d) {
                tracing::error!(event = events::STATE_NOT_SAVED, error = %e);
            }
        }
    }
}

const LOCK: &str = "state.lock";

/// Why the state directory cannot be used: at start ([`StateStore::open`]), or when a save
/// fails later (logged as `state_not_saved`).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (a second daemon, a root `run` beside the service) holds it.
    #[error("another haproxy-watchdog is running with state directory {} (it holds {}/{LOCK}); stop it first: two daemons would both claim and page", .0.display(), .0.display())]
    Busy(PathBuf),
    /// The state directory cannot be looked at.
    #[error("state directory {}: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The state directory is something else.
    #[error("state directory {} is not a directory", dir.display())]
    NotADir { dir: PathBuf },
    /// The lock file cannot be opened or locked.
    #[error("state lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state file cannot be read, or the new one written, synced or renamed into place.
    #[error("state file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state could not be encoded as JSON.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
}

/// What a start found in the state file.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Alerts to send now.
    pub alerts: Vec<StoredAlert>,
    /// Alerts that were being published when the process stopped: dropped, maybe sent.
    pub maybe_sent: Vec<StoredAlert>,
    /// Each rule's saved state, by rule name.
    pub rules: BTreeMap<String, serde_json::Value>,
    /// Claims the last run had under way when it stopped, by EIP.
    pub claims: BTreeMap<String, PendingClaim>,
    /// The pause an operator set, if it still held when the last run stopped.
    pub pause: Option<crate::pause::PauseRecord>,
    /// The failover history, oldest first (entries this version cannot read are left out).
    pub history: Vec<crate::history::Entry>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl StateStore {
    /// Open (or start) the state in `dir`. A file that cannot be parsed is moved aside and
    /// reported; the daemon then starts with no state rather than not at all.
    ///
    /// One process at a time: the directory is locked (`flock` on `state.lock`) until the
    /// store is dropped. Errors: [`OpenError::Busy`] when another process holds it, the
    /// others when it cannot be read or written.
    pub fn open(dir: &Path) -> Result<(StateStore, Recovered), OpenError> {
        let meta = std::fs::metadata(dir).map_err(|source| OpenError::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(OpenError::NotADir {
                dir: dir.to_owned(),
            });
        }
        let lock = lock(dir)?;
        Self::open_locked(dir, lock)
    }

    fn open_locked(dir: &Path, lock: std::fs::File) -> Result<(StateStore, Recovered), OpenError> {
        let path = dir.join(FILE);
        let mut data = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                // Another version's file (a newer daemon's, before a downgrade) may hold what
                // this one would drop: it is kept aside like a corrupt one, never rewritten.
                Ok(d) if d.version != VERSION => set_aside(
                    dir,
                    &path,
                    &format!(
                        "state file version {} is not the version {VERSION} this daemon reads",
                        d.version
                    ),
                ),
                Ok(d) => d,
                Err(e) => set_aside(dir, &path, &e.to_string()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(source) => return Err(OpenError::File { path, source }),
        };
        data.version = VERSION;
        let (maybe_sent, alerts): (Vec<_>, Vec<_>) = data.alerts.drain(..).partition(|a| a.sending);
        data.alerts = alerts.clone();
        write(&path, &data)?;
        let store = StateStore(Some(Arc::new(Inner {
            path,
            data: Mutex::new(data),
            dirty: Default::default(),
            flusher: Default::default(),
            _lock: lock,
        })));
        let (rules, claims, pause, history) = store
            .with(|d| {
                (
                    d.rules.clone(),
                    d.claims.clone(),
                    d.pause.clone(),
                    d.history.clone(),
                )
            })
            .unwrap_or_default();
        let pause = pause.and_then(|p| match serde_json::from_value(p) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(event = events::STATE_CORRUPT, part = "pause", error = %e,
                    "the saved pause cannot be read: this node is NOT paused; pause it again if it should be");
                None
            }
        });
        let total = history.len();
        let history: Vec<crate::history::Entry> = history
            .into_iter()
            .filter_map(|e| serde_json::from_value(e).ok())
            .collect();
        if history.len() < total {
            tracing::warn!(
                event = events::STATE_CORRUPT,
                part = "history",
                dropped = total - history.len(),
                "history entries this version cannot read are left out"
            );
        }
        Ok((
            store,
            Recovered {
                alerts,
                maybe_sent,
                rules,
                claims,
                pause,
                history,
            },
        ))
    }

    /// `eip` moved (or is about to be moved by us) now.
    pub fn moved(&self, eip: &str) {
        self.update(|d| {
            d.eips.insert(
                eip.to_owned(),
                EipRecord {
                    moved_at: unix(SystemTime::now()),
                },
            );
        });
    }

    /// Forget when `eip` last moved: no hold-down from this node's side.
    pub fn move_forgotten(&self, eip: &str) {
        self.update(|d| {
            d.eips.remove(eip);
        });
    }

    /// A claim of `eip` is about to make its first mutating call: the hold-down starts now and
    /// the claim is recorded, in one write.
    pub fn claim_started(&self, eip: &str, mut claim: PendingClaim) {
        let now = unix(SystemTime::now());
        claim.started_at = now;
        self.update(|d| {
            d.eips.insert(eip.to_owned(), EipRecord { moved_at: now });
            d.claims.insert(eip.to_owned(), claim);
        });
    }

    /// The claims of `eips` (a group's members) are settled together, and `alert` queued, in
    /// one write: a crash leaves either every member's own saved alert or the group's.
    pub fn claims_settled(&self, eips: &[String], alert: Option<(&str, &str, &str)>) -> u64 {
        let mut id = 0;
        self.update(|d| {
            for e in eips {
                d.claims.remove(e);
            }
            if let Some((topic, subject, message)) = alert {
                id = push_alert(d, topic, subject, message);
            }
        });
        id
    }

    /// The claim of `eip` is settled. `alert` (topic, subject, message), when given, is queued
    /// in the same write that forgets the claim, so a crash never loses or doubles it; its
    /// id comes back (0 when nothing is kept).
    pub fn claim_settled(&self, eip: &str, alert: Option<(&str, &str, &str)>) -> u64 {
        let mut id = 0;
        self.update(|d| {
            d.claims.remove(eip);
            if let Some((topic, subject, message)) = alert {
                id = push_alert(d, topic, subject, message);
            }
        });
        id
    }

    /// The private addresses the last configuration claimed (see `StateFile`).
    pub fn private_addresses(&self) -> Vec<std::net::Ipv4Addr> {
        let Some(inner) = self.0.as_ref() else {
            return Vec::new();
        };
        let d = inner.data.lock().unwrap_or_else(|p| p.into_inner());
        d.private_addresses.clone()
    }

    /// Save the private addresses the running configuration claims.
    pub fn private_addresses_saved(&self, addresses: Vec<std::net::Ipv4Addr>) {
        self.update(|d| d.private_addresses = addresses);
    }

    /// Who held `address` when the rule guarding it started failing, as saved (None: nothing
    /// noted; `Some(None)`: nobody held it).
    pub fn owner_seen(&self, address: &str) -> Option<Option<String>> {
        let inner = self.0.as_ref()?;
        let d = inner.data.lock().unwrap_or_else(|p| p.into_inner());
        d.owners_seen.get(address).cloned()
    }

    /// Save who held `address` when the rule guarding it started failing (None: forget it).
    /// Written only when it changes.
    pub fn owner_noted(&self, address: &str, token: Option<Option<String>>) {
        let same = self
            .with(|d| d.owners_seen.get(address) == token.as_ref())
            .unwrap_or(true);
        if same {
            return;
        }
        self.update(|d| match token {
            Some(t) => {
                d.owners_seen.insert(address.to_owned(), t);
            }
            None => {
                d.owners_seen.remove(address);
            }
        });
    }

    /// How long ago `eip` last moved, as far as the saved state knows.
    pub fn moved_ago(&self, eip: &str) -> Option<Duration> {
        let inner = self.0.as_ref()?;
        let d = inner.data.lock().unwrap_or_else(|p| p.into_inner());
        let at = d.eips.get(eip)?.moved_at;
        Some(Duration::from_secs(
            unix(SystemTime::now()).saturating_sub(at),
        ))
    }

    /// Keep an alert until it is delivered; its id (0 when nothing is kept).
    pub fn alert_queued(&self, topic_arn: &str, subject: &str, message: &str) -> u64 {
        let mut id = 0;
        self.update(|d| id = push_alert(d, topic_arn, subject, message));
        id
    }

    pub fn alert_sending(&self, id: u64, sending: bool) {
        self.update(|d| {
            if let Some(a) = d.alerts.iter_mut().find(|a| a.id == id) {
                a.sending = sending;
            }
        });
    }

    pub fn alert_done(&self, id: u64) {
        self.update(|d| d.alerts.retain(|a| a.id != id));
    }

    /// Save the operator's pause (None: resumed).
    pub fn pause_saved(&self, pause: Option<crate::pause::PauseRecord>) {
        let pause = pause.and_then(|p| serde_json::to_value(p).ok());
        self.update(|d| d.pause = pause);
    }

    /// Save the failover history, oldest first.
    pub fn history_saved(&self, history: Vec<crate::history::Entry>) {
        let history = history
            .into_iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        self.update(|d| d.history = history);
    }

    /// Save `rule`'s state (health, streaks, unfinished actions) for the next start.
    pub fn rule_saved(&self, rule: &str, state: serde_json::Value) {
        self.update(|d| {
            d.rules.insert(rule.to_owned(), state);
        });
    }

    /// Save a rule's state within [`FLUSH_EVERY`] rather than at once: for what a crash may
    /// lose the last moment of (a failure streak that began or ended), so that many rules
    /// changing together cost one write. Must be called inside the tokio runtime (the first
    /// call starts the flusher task).
    pub fn rule_saved_soon(&self, rule: &str, state: serde_json::Value) {
        use std::sync::atomic::Ordering;
        let Some(inner) = &self.0 else { return };
        inner
            .data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rules
            .insert(rule.to_owned(), state);
        inner.dirty.store(true, Ordering::SeqCst);
        if inner.flusher.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.dirty.swap(false, Ordering::SeqCst) {
                    let d = inner.data.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = write(&inner.path, &d) {
                        tracing::error!(event = events::STATE_NOT_SAVED, error = %e);
                    }
                }
            }
        });
    }

    /// Forget the saved state of every rule not in `names` (rules removed from the
    /// configuration); saves only when something was dropped.
    pub fn keep_rules<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let names: std::collections::BTreeSet<&str> = names.into_iter().collect();
        let stale = self
            .with(|d| d.rules.keys().any(|k| !names.contains(k.as_str())))
            .unwrap_or(false);
        if stale {
            self.update(|d| d.rules.retain(|k, _| names.contains(k.as_str())));
        }
    }

    /// Read the state under its lock (None for a memory-only store).
    /// The claim of `eip` saved as in flight (tests look at what a move saved).
    #[cfg(test)]
    pub fn pending_claim(&self, eip: &str) -> Option<PendingClaim> {
        self.with(|d| d.claims.get(eip).cloned()).flatten()
    }

    fn with<T>(&self, f: impl FnOnce(&StateFile) -> T) -> Option<T> {
        let inner = self.0.as_ref()?;
        let d = inner.data.lock().unwrap_or_else(|p| p.into_inner());
        Some(f(&d))
    }

    /// Change the state and save it under one lock, so saves never race or reorder.
    fn update(&self, f: impl FnOnce(&mut StateFile)) {
        let Some(inner) = &self.0 else { return };
        let mut d = inner.data.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut d);
        // This write covers whatever waited for the flusher.
        inner
            .dirty
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = write(&inner.path, &d) {
            tracing::error!(event = events::STATE_NOT_SAVED, error = %e);
        }
    }
}

fn push_alert(d: &mut StateFile, topic_arn: &str, subject: &str, message: &str) -> u64 {
    d.next_alert_id += 1;
    d.alerts.push(StoredAlert {
        id: d.next_alert_id,
        topic_arn: topic_arn.into(),
        subject: subject.into(),
        message: message.into(),
        sending: false,
    });
    d.next_alert_id
}

/// Take the directory's lock without waiting.
fn lock(dir: &Path) -> Result<std::fs::File, OpenError> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| OpenError::Lock {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own; no memory is shared with the kernel.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => OpenError::Busy(dir.to_owned()),
            _ => OpenError::Lock { path, source: e },
        });
    }
    Ok(file)
}

/// Write the whole state atomically: beside, fsync, rename, fsync the directory. A few
/// hundred bytes, at the rate of EIP moves and alerts: done inline rather than off-thread.
fn write(path: &Path, d: &StateFile) -> Result<(), OpenError> {
    let text = serde_json::to_vec_pretty(d)?;
    let tmp = path.with_extension("json.new");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|source| OpenError::File {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    /// A tester's find: one history entry of a kind this version does not know (a newer
    /// daemon's, before a downgrade) moved the whole state file aside, and the node came up
    /// unpaused.
    #[test]
    fn an_unreadable_history_entry_or_pause_costs_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = StateStore::open(dir.path()).unwrap();
            store.moved("203.0.113.10");
            store.pause_saved(Some(crate::pause::PauseRecord {
                reason: "must survive".into(),
                by: "root (uid 0)".into(),
                since: 1,
                until: None,
            }));
            store.history_saved(vec![crate::history::Entry::new(
                crate::history::Kind::Claimed,
                "kept",
            )]);
        }
        let path = dir.path().join(FILE);
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["history"].as_array_mut().unwrap().push(serde_json::json!(
            {"at": 1, "kind": "from_the_future", "detail": "x", "timings": {}}
        ));
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let (store, recovered) = StateStore::open(dir.path()).unwrap();
        assert_eq!(
            recovered.pause.map(|p| p.reason).as_deref(),
            Some("must survive")
        );
        assert_eq!(recovered.history.len(), 1, "{:?}", recovered.history);
        assert!(store.moved_ago("203.0.113.10").is_some(), "hold-down kept");
        drop(store);
        // A pause written differently costs only the pause.
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["pause"] = serde_json::json!({"future": true});
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let (store, recovered) = StateStore::open(dir.path()).unwrap();
        assert!(recovered.pause.is_none());
        assert!(store.moved_ago("203.0.113.10").is_some(), "hold-down kept");
    }

    use super::*;

    /// A blip of a HAProxy that 1,000 rules check: each rule's streak began and ended, each
    /// saved with an inline write and fsync of the whole file, stalling the runtime's workers
    /// for seconds. They are batched: no write inline, one within `FLUSH_EVERY`.
    #[tokio::test]
    async fn many_rules_saving_a_streak_together_cost_one_write_not_one_each() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = StateStore::open(dir.path()).unwrap();
        let on_disk = |rule: &str| {
            std::fs::read_to_string(dir.path().join(FILE))
                .unwrap()
                .contains(&format!("\"{rule}\""))
        };
        let started = std::time::Instant::now();
        for i in 0..1000 {
            store.rule_saved_soon(&format!("r{i}"), serde_json::json!({"n": i}));
        }
        assert!(!on_disk("r0") && !on_disk("r999"), "nothing written inline");
        tokio::time::sleep(FLUSH_EVERY * 2).await;
        assert!(on_disk("r0") && on_disk("r999"), "written by the flusher");
        // A later write of anything covers them too, and a clean stop writes what waits.
        store.rule_saved_soon("last", serde_json::json!({}));
        drop(store);
        assert!(on_disk("last"), "written at the stop");
        eprintln!("1,000 saves took {:?}", started.elapsed());
    }

    #[test]
    fn moves_and_alerts_survive_a_restart_and_in_flight_alerts_are_not_sent_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (s, rec) = StateStore::open(dir.path()).unwrap();
        assert!(rec.alerts.is_empty() && s.moved_ago("203.0.113.10").is_none());
        s.moved("203.0.113.10");
        let queued = s.alert_queued("arn:aws:sns:us-east-1:1:t", "subj", "queued");
        let sending = s.alert_queued("arn:aws:sns:us-east-1:1:t", "subj", "sending");
        let done = s.alert_queued("arn:aws:sns:us-east-1:1:t", "subj", "done");
        s.alert_sending(sending, true);
        s.alert_done(done);
        drop(s); // as if killed: every change is already on disk

        let (s, rec) = StateStore::open(dir.path()).unwrap();
        assert!(s.moved_ago("203.0.113.10").unwrap() < Duration::from_secs(5));
        assert_eq!(
            rec.alerts.iter().map(|a| a.id).collect::<Vec<_>>(),
            [queued]
        );
        assert_eq!(
            rec.maybe_sent.iter().map(|a| a.id).collect::<Vec<_>>(),
            [sending]
        );
        // Ids keep counting, and the in-flight one is gone from the file too.
        assert!(s.alert_queued("a", "b", "c") > done);
        drop(s);
        let (_, rec) = StateStore::open(dir.path()).unwrap();
        assert_eq!(rec.alerts.len(), 2);
        assert!(rec.maybe_sent.is_empty());
    }

    /// A tester's find: `{"version": 99}` was silently rewritten as version 1.
    #[test]
    fn a_state_file_of_another_version_is_moved_aside_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let newer = r#"{"version": 99, "eips": {"203.0.113.10": {"moved_at": 1}}, "future": true}"#;
        std::fs::write(dir.path().join(FILE), newer).unwrap();
        let (s, _) = StateStore::open(dir.path()).unwrap();
        assert!(s.moved_ago("203.0.113.10").is_none(), "not read as ours");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read_to_string(&aside[0]).unwrap(), newer);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_a_missing_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "{not json").unwrap();
        let (s, rec) = StateStore::open(dir.path()).unwrap();
        assert!(rec.alerts.is_empty() && s.moved_ago("x").is_none());
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.json.corrupt-")
            });
        assert!(aside);
        let e = StateStore::open(&dir.path().join("nope")).err().unwrap();
        assert!(e.to_string().contains("state directory"), "{e}");
        // Memory-only stores keep nothing and never fail.
        let m = StateStore::default();
        m.moved("x");
        assert_eq!(m.alert_queued("a", "b", "c"), 0);
        assert!(m.moved_ago("x").is_none());
    }

    #[test]
    fn one_process_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = StateStore::open(dir.path()).unwrap();
        let busy = StateStore::open(dir.path()).err().unwrap();
        assert!(matches!(busy, OpenError::Busy(_)), "{busy}");
        assert!(
            busy.to_string().contains("another haproxy-watchdog"),
            "{busy}"
        );
        drop(first);
        assert!(
            StateStore::open(dir.path()).is_ok(),
            "free again once the first is gone"
        );
    }
}
