//! Pausing a node for maintenance: `watchdog pause [--for DURATION] [--reason TEXT]` and
//! `watchdog resume` over the control socket, or the `[node] maintenance_file` flag file
//! (keepalived's `track_file` idea; Pacemaker's `standby`). A paused node runs its checks and
//! every other action as usual but starts no claim: the claim gates ask [`Pause::now`] first
//! and once more at their last look, so a pause that lands while a claim is on its way stops it
//! before its first mutating call.
//!
//! The command's pause is saved in the state file, so a restart keeps it; one with `--for`
//! ends by itself at its time (checked every second by [`Pause::watch`], and by every look).

use crate::history::{now_ms, Entry, History, Kind};
use crate::state::StateStore;
use crate::telemetry::events;
use crate::telemetry::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An operator's `watchdog pause`, as saved in the state file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PauseRecord {
    /// `--reason`, or "" when none was given.
    pub reason: String,
    /// Who asked: `user (uid N)`, from the control socket's peer credentials.
    pub by: String,
    /// When, in ms since the Unix epoch.
    pub since: u64,
    /// `--for`: when it ends by itself, in ms since the Unix epoch.
    #[serde(default)]
    pub until: Option<u64>,
}

/// Why this node is paused now, as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Paused {
    /// `command` (`watchdog pause`) or `maintenance_file`.
    pub source: String,
    pub reason: String,
    /// Who asked (for `maintenance_file`: the file's path).
    pub by: String,
    /// Since when, ms since the Unix epoch (the file's modification time for a flag file).
    pub since: u64,
    /// When a `--for` pause ends, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

impl std::fmt::Display for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = if self.reason.is_empty() {
            "no reason given".to_string()
        } else {
            format!("{:?}", self.reason)
        };
        match self.source.as_str() {
            "maintenance_file" => {
                write!(f, "paused by the maintenance file {} ({reason})", self.by)
            }
            _ => write!(f, "paused by {} ({reason})", self.by),
        }
    }
}

/// Why `watchdog resume` did not resume.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The flag file pauses the node: the daemon does not delete files it does not own.
    #[error("this node is paused by the maintenance file {}: remove it (`rm {}`) to resume", .0.display(), .0.display())]
    MaintenanceFile(PathBuf),
    /// Nothing to resume.
    #[error("this node is not paused")]
    NotPaused,
}

/// The node's pause: the operator's command and the flag file. Cheap to clone.
#[derive(Clone)]
pub struct Pause(Arc<Inner>);

struct Inner {
    record: Mutex<Option<PauseRecord>>,
    /// `[node] maintenance_file` of the running configuration.
    file: Mutex<Option<PathBuf>>,
    /// Whether the last look found the flag file (so its coming and going is logged once).
    file_seen: Mutex<bool>,
    store: StateStore,
    history: History,
    metrics: Arc<Metrics>,
}

/// The flag file's pause, if it exists: its first line is the reason, its modification time
/// the start.
fn flag_file(path: &Path) -> Option<Paused> {
    let meta = std::fs::metadata(path).ok()?;
    // Bounded: a flag file is a line, not a log.
    let mut text = String::new();
    if meta.is_file() {
        use std::io::Read;
        if let Ok(f) = std::fs::File::open(path) {
            let _ = f.take(4096).read_to_string(&mut text);
        }
    }
    let reason = text.lines().next().unwrap_or("").trim().to_owned();
    let since = meta
        .modified()
        .map(crate::history::unix_ms)
        .unwrap_or_else(|_| now_ms());
    Some(Paused {
        source: "maintenance_file".into(),
        reason,
        by: path.display().to_string(),
        since,
        until: None,
    })
}

impl Pause {
    /// The pause `saved` in the state file (None: not paused), saved into `store` when it
    /// changes and recorded in `history`.
    pub fn new(
        saved: Option<PauseRecord>,
        store: StateStore,
        history: History,
        metrics: Arc<Metrics>,
    ) -> Pause {
        if let Some(p) = &saved {
            tracing::warn!(event = events::PAUSED, by = %p.by, reason = %p.reason, source = "command",
                "still paused from before the restart: no claim starts until `haproxy-watchdog resume`");
        }
        Pause(Arc::new(Inner {
            record: Mutex::new(saved),
            file: Mutex::new(None),
            file_seen: Mutex::new(false),
            store,
            history,
            metrics,
        }))
    }

    /// A pause that is never set and saves nothing (tests).
    pub fn unpaused() -> Pause {
        Pause::new(
            None,
            StateStore::default(),
            History::in_memory(),
            Arc::new(Metrics::new().unwrap_or_else(|e| panic!("metrics: {e}"))),
        )
    }

    /// The flag file of the configuration now running (`[node] maintenance_file`).
    pub fn set_file(&self, file: Option<PathBuf>) {
        *self.0.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
    }

    /// Why this node is paused now, if it is: the operator's pause (ended, logged and
    /// forgotten once its `--for` has passed), else the flag file.
    pub fn now(&self) -> Option<Paused> {
        let command = {
            let mut r = self.0.record.lock().unwrap_or_else(|p| p.into_inner());
            if r.as_ref()
                .and_then(|p| p.until)
                .is_some_and(|until| now_ms() >= until)
            {
                let ended = r.take();
                self.0.store.pause_saved(None);
                if let Some(p) = ended {
                    tracing::info!(event = events::RESUMED, by = "expiry", reason = %p.reason,
                        "the pause has run its time (--for): claims may start again");
                    let mut e = Entry::new(Kind::Resumed, "the pause ran its time (--for)");
                    e.by = Some("expiry".into());
                    self.0.history.record(e);
                }
            }
            r.clone()
        };
        let file = self
            .0
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let by_file = file.as_deref().and_then(flag_file);
        self.file_changed(file.as_deref(), by_file.as_ref());
        let now = command
            .map(|p| Paused {
                source: "command".into(),
                reason: p.reason,
                by: p.by,
                since: p.since,
                until: p.until,
            })
            .or(by_file);
        self.0.metrics.set_paused(now.is_some());
        now
    }

    /// Log and record the flag file appearing or going, once each.
    fn file_changed(&self, path: Option<&Path>, now: Option<&Paused>) {
        let mut seen = self.0.file_seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == now.is_some() {
            return;
        }
        *seen = now.is_some();
        let path = path.map(|p| p.display().to_string()).unwrap_or_default();
        match now {
            Some(p) => {
                tracing::warn!(event = events::PAUSED, source = "maintenance_file", file = %path, reason = %p.reason,
                    "the maintenance file exists: no claim starts while it does");
                self.0.metrics.paused_by("maintenance_file");
                let mut e = Entry::new(Kind::Paused, p.reason.clone());
                e.by = Some(format!("maintenance_file {path}"));
                self.0.history.record(e);
            }
            None => {
                tracing::info!(event = events::RESUMED, source = "maintenance_file", file = %path,
                    "the maintenance file is gone");
                let mut e = Entry::new(Kind::Resumed, "the maintenance file is gone");
                e.by = Some(format!("maintenance_file {path}"));
                self.0.history.record(e);
            }
        }
    }

    /// `watchdog pause`: pause this node now, for `duration` if given (a new pause replaces
    /// the one before). Saved, logged, counted and recorded in the history.
    pub fn pause(&self, duration: Option<Duration>, reason: &str, by: &str) -> PauseRecord {
        let since = now_ms();
        let record = PauseRecord {
            reason: reason.into(),
            by: by.into(),
            since,
            until: duration
                .map(|d| since.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
        };
        *self.0.record.lock().unwrap_or_else(|p| p.into_inner()) = Some(record.clone());
        self.0.store.pause_saved(Some(record.clone()));
        let for_s = duration.map(|d| d.as_secs_f64());
        tracing::warn!(event = events::PAUSED, source = "command", by = %by, reason = %reason, for_s,
            "paused: checks go on, no claim starts until `haproxy-watchdog resume`");
        self.0.metrics.paused_by("command");
        self.0.metrics.set_paused(true);
        let mut e = Entry::new(Kind::Paused, reason);
        e.by = Some(by.into());
        self.0.history.record(e);
        record
    }

    /// `watchdog resume`: end the operator's pause. Errors: the flag file still pauses the
    /// node (the command's pause, if any, is ended anyway), or nothing pauses it.
    pub fn resume(&self, by: &str) -> Result<PauseRecord, ResumeError> {
        let ended = self
            .0
            .record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = &ended {
            self.0.store.pause_saved(None);
            tracing::info!(event = events::RESUMED, source = "command", by = %by, "resumed: claims may start again");
            let mut e = Entry::new(Kind::Resumed, format!("ended the pause {} set", p.by));
            e.by = Some(by.into());
            self.0.history.record(e);
        }
        let file = self
            .0
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let still = self.now();
        match (ended, still) {
            (_, Some(p)) if p.source == "maintenance_file" => {
                Err(ResumeError::MaintenanceFile(file.unwrap_or_default()))
            }
            (Some(p), _) => Ok(p),
            (None, _) => Err(ResumeError::NotPaused),
        }
    }

    /// Look every second until `stop`: a `--for` that has run out, and the flag file coming
    /// or going, are logged when they happen, not at the next claim.
    pub fn watch(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.now();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_holds_until_resumed_and_says_who_and_why() {
        let p = Pause::unpaused();
        assert_eq!(p.now(), None);
        p.pause(None, "kernel patch", "alice (uid 1000)");
        let now = p.now().expect("paused");
        assert_eq!(
            (now.source.as_str(), now.reason.as_str(), now.by.as_str()),
            ("command", "kernel patch", "alice (uid 1000)")
        );
        assert!(p.resume("bob (uid 1001)").is_ok());
        assert_eq!(p.now(), None);
        assert!(matches!(p.resume("bob"), Err(ResumeError::NotPaused)));
    }

    #[test]
    fn a_pause_for_a_duration_ends_by_itself() {
        let p = Pause::unpaused();
        p.pause(Some(Duration::from_millis(50)), "", "root (uid 0)");
        assert!(p.now().is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(p.now(), None, "expired");
    }

    #[test]
    fn the_maintenance_file_pauses_while_it_exists_and_resume_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("maintenance");
        let p = Pause::unpaused();
        p.set_file(Some(flag.clone()));
        assert_eq!(p.now(), None);
        std::fs::write(&flag, "replacing the NIC\nmore\n").expect("write");
        let now = p.now().expect("paused by the file");
        assert_eq!(now.source, "maintenance_file");
        assert_eq!(now.reason, "replacing the NIC");
        let e = p.resume("root (uid 0)").expect_err("the file still pauses");
        assert!(e.to_string().contains("rm "), "{e}");
        std::fs::remove_file(&flag).expect("rm");
        assert_eq!(p.now(), None);
    }

    #[test]
    fn a_pause_survives_a_restart_through_the_state_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (store, _) = StateStore::open(dir.path()).expect("open");
            let p = Pause::new(
                None,
                store,
                History::in_memory(),
                Arc::new(Metrics::new().expect("metrics")),
            );
            p.pause(None, "patching", "root (uid 0)");
        }
        let (store, recovered) = StateStore::open(dir.path()).expect("reopen");
        let saved = recovered.pause.clone().expect("saved");
        assert_eq!(saved.reason, "patching");
        let p = Pause::new(
            recovered.pause,
            store,
            History::in_memory(),
            Arc::new(Metrics::new().expect("metrics")),
        );
        assert!(p.now().is_some());
    }
}
