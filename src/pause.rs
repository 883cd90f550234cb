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

/// Milliseconds since the Unix epoch as RFC 3339, for log lines.
fn ms_rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Text an operator (or a file) hands the daemon, made safe to log and print: control
/// characters (newlines, escape sequences) are written as escapes, so one cannot forge log or
/// output lines, and it is cut at `max` characters.
pub fn operator_text(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        // Control characters, and the invisible ones that reorder or hide text on a
        // terminal: bidirectional overrides and isolates, marks, zero-width characters.
        let invisible = matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}');
        if c.is_control() || invisible {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The longest reason kept, in characters.
pub const REASON_MAX: usize = 500;

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
    /// Since when, ms since the Unix epoch (for a flag file: when the daemon noticed it).
    pub since: u64,
    /// When a `--for` pause ends, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// For a command's pause: the maintenance file, when it also exists (it still pauses the
    /// node after `resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub also_file: Option<String>,
}

impl std::fmt::Display for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Already escaped (operator_text): quoted, not escaped twice.
        let reason = if self.reason.is_empty() {
            "no reason given".to_string()
        } else {
            format!("\"{}\"", self.reason)
        };
        match self.source.as_str() {
            "maintenance_file" => {
                return write!(f, "paused by the maintenance file {} ({reason})", self.by)
            }
            _ => write!(f, "paused by {} ({reason})", self.by)?,
        }
        match &self.also_file {
            Some(file) => write!(f, ", and by the maintenance file {file}"),
            None => Ok(()),
        }
    }
}

/// Why `watchdog resume` did not resume.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The flag file pauses the node: the daemon does not delete files it does not own. The
    /// command's pause, if there was one, has ended.
    #[error("{}this node is paused by the maintenance file {}: remove it (`rm {}`) to resume",
        .ended.as_ref().map(|p| format!("ended the pause {} set; ", p.by)).unwrap_or_default(),
        .file.display(), .file.display())]
    MaintenanceFile {
        file: PathBuf,
        ended: Option<PauseRecord>,
    },
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
    /// Since when the flag file has been seen (ms since the Unix epoch), so its coming and
    /// going is logged once and `since` is when the daemon noticed it.
    file_seen: Mutex<Option<u64>>,
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
    let reason = operator_text(text.lines().next().unwrap_or("").trim(), REASON_MAX);
    Some(Paused {
        source: "maintenance_file".into(),
        reason,
        by: path.display().to_string(),
        // When the daemon noticed it: set by the caller.
        since: 0,
        until: None,
        also_file: None,
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
        if let Some(p) = saved
            .as_ref()
            .filter(|p| p.until.is_none_or(|u| now_ms() < u))
        {
            tracing::warn!(event = events::PAUSED, by = %p.by, reason = %p.reason, source = "command",
                until = %p.until.map(ms_rfc3339).unwrap_or_else(|| "resume".into()),
                "still paused from before the restart: no claim starts until it ends");
        }
        Pause(Arc::new(Inner {
            record: Mutex::new(saved),
            file: Mutex::new(None),
            file_seen: Mutex::new(None),
            store,
            history,
            metrics,
        }))
    }

    /// A pause that is never set and saves nothing (tests).
    #[cfg(test)]
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
    /// forgotten once its `--for` has passed; it names the flag file too when that also
    /// exists), else the flag file.
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
                    tracing::info!(event = events::RESUMED, source = "command", by = "expiry", reason = %p.reason,
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
        let mut by_file = file.as_deref().and_then(flag_file);
        let noticed = self.file_changed(file.as_deref(), by_file.as_ref());
        if let (Some(p), Some(since)) = (&mut by_file, noticed) {
            p.since = since;
        }
        let now = match command {
            Some(p) => Some(Paused {
                source: "command".into(),
                reason: p.reason,
                by: p.by,
                since: p.since,
                until: p.until,
                also_file: by_file.map(|f| f.by),
            }),
            None => by_file,
        };
        self.0.metrics.set_paused(now.is_some());
        now
    }

    /// Log and record the flag file appearing or going, once each; since when it has been
    /// seen.
    fn file_changed(&self, path: Option<&Path>, now: Option<&Paused>) -> Option<u64> {
        let mut seen = self.0.file_seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.is_some() == now.is_some() {
            return *seen;
        }
        *seen = now.map(|_| now_ms());
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
        *seen
    }

    /// `watchdog pause`: pause this node now, for `duration` if given. A pause already in
    /// force is replaced (its reason, who and end) but keeps its start, and comes back as the
    /// second value so the operator is told. `reason` and `by` are made safe to log
    /// ([`operator_text`]). Saved, logged, counted and recorded in the history.
    pub fn pause(
        &self,
        duration: Option<Duration>,
        reason: &str,
        by: &str,
    ) -> (PauseRecord, Option<PauseRecord>) {
        let (reason, by) = (operator_text(reason, REASON_MAX), operator_text(by, 200));
        let now = now_ms();
        let mut current = self.0.record.lock().unwrap_or_else(|p| p.into_inner());
        let before = current.clone().filter(|p| p.until.is_none_or(|u| now < u));
        let record = PauseRecord {
            reason: reason.clone(),
            by: by.clone(),
            since: before.as_ref().map_or(now, |p| p.since),
            until: duration
                .map(|d| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
        };
        *current = Some(record.clone());
        drop(current);
        self.0.store.pause_saved(Some(record.clone()));
        let for_s = duration.map(|d| d.as_secs_f64());
        let until = match record.until {
            Some(u) => format!("until {}", ms_rfc3339(u)),
            None => "until `haproxy-watchdog resume`".into(),
        };
        tracing::warn!(event = events::PAUSED, source = "command", by = %by, reason = %reason, for_s,
            replaced = %before.as_ref().map(|p| p.by.as_str()).unwrap_or(""),
            "paused: checks go on, no claim starts {until}");
        self.0.metrics.paused_by("command");
        self.0.metrics.set_paused(true);
        let mut e = Entry::new(Kind::Paused, reason);
        e.by = Some(by);
        self.0.history.record(e);
        (record, before)
    }

    /// `watchdog resume`: end the operator's pause. Errors: the flag file still pauses the
    /// node (the command's pause, if any, is ended anyway, and the error says so), or nothing
    /// pauses it.
    pub fn resume(&self, by: &str) -> Result<PauseRecord, ResumeError> {
        let by = operator_text(by, 200);
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
            e.by = Some(by.clone());
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
            (ended, Some(p)) if p.source == "maintenance_file" => {
                Err(ResumeError::MaintenanceFile {
                    file: file.unwrap_or_default(),
                    ended,
                })
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

    /// A tester's find: a reason (or SUDO_USER) with a newline forged lines in the log and
    /// in `status --history`.
    #[test]
    fn operator_text_never_carries_control_characters() {
        let p = Pause::unpaused();
        let (rec, _) = p.pause(None, "line1\nFAKE: rule up\n\u{1b}[31mRED", "mallory\nFAKE");
        assert!(
            !rec.reason.chars().any(char::is_control),
            "{:?}",
            rec.reason
        );
        assert!(!rec.by.chars().any(char::is_control), "{:?}", rec.by);
        assert!(rec.reason.contains("line1\\nFAKE"), "{:?}", rec.reason);
        let (rec, _) = p.pause(None, "kernel\u{202e}hctap", "root (uid 0)");
        assert!(!rec.reason.contains('\u{202e}'), "{:?}", rec.reason);
        assert_eq!(
            operator_text(&"x".repeat(600), REASON_MAX).chars().count(),
            REASON_MAX + 1
        );
    }

    /// A tester's find: an escaped reason was shown escaped twice (`\\n`).
    #[test]
    fn a_pause_reason_is_shown_escaped_once() {
        let p = Pause::unpaused();
        p.pause(None, "a\nb", "root (uid 0)");
        let shown = p.now().expect("paused").to_string();
        assert!(shown.contains("(\"a\\nb\")"), "{shown}");
    }

    /// A tester's find: a second pause silently replaced the first, its start included.
    #[test]
    fn a_second_pause_keeps_its_start_and_says_what_it_replaced() {
        let p = Pause::unpaused();
        let (first, before) = p.pause(None, "patching", "alice (uid 1000)");
        assert!(before.is_none());
        std::thread::sleep(Duration::from_millis(5));
        let (second, before) = p.pause(Some(Duration::from_secs(60)), "longer", "bob (uid 1001)");
        assert_eq!(before.map(|b| b.by).as_deref(), Some("alice (uid 1000)"));
        assert_eq!(second.since, first.since, "the pause began with the first");
        assert_eq!(second.reason, "longer");
    }

    /// A tester's find: a restart after a `--for` had run out announced the node as still
    /// paused.
    #[test]
    fn an_expired_pause_is_not_announced_or_kept_after_a_restart() {
        let expired = PauseRecord {
            reason: "drill".into(),
            by: "root (uid 0)".into(),
            since: 1,
            until: Some(2),
        };
        let p = Pause::new(
            Some(expired),
            StateStore::default(),
            History::in_memory(),
            Arc::new(Metrics::new().expect("metrics")),
        );
        assert_eq!(p.now(), None);
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
        let before = now_ms();
        let now = p.now().expect("paused by the file");
        assert_eq!(now.source, "maintenance_file");
        assert_eq!(now.reason, "replacing the NIC");
        // Since the daemon noticed it, not the file's (older) modification time.
        assert!(now.since >= before, "{now:?}");
        // Both a command's pause and the file: both are said, and resume ends the first.
        p.pause(None, "kernel", "root (uid 0)");
        let both = p.now().expect("paused");
        assert!(
            both.to_string().contains("and by the maintenance file"),
            "{both}"
        );
        let e = p.resume("root (uid 0)").expect_err("the file still pauses");
        assert!(e.to_string().contains("rm "), "{e}");
        assert!(
            e.to_string().contains("ended the pause root (uid 0) set"),
            "{e}"
        );
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
