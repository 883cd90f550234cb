//! `type = "file"`: a path exists (and, with `max_age`, was modified recently), or must not
//! exist (a maintenance flag: keepalived's `track_file`, monit's `check file`). Symbolic links
//! are followed; a path that cannot be looked at (permission, I/O error) fails with the reason
//! rather than counting as missing.

use super::Outcome;
use crate::config::FileCheckSpec;
use std::time::SystemTime;

pub async fn probe(spec: &FileCheckSpec) -> Outcome {
    let spec = spec.clone();
    match tokio::task::spawn_blocking(move || judge(&spec, SystemTime::now())).await {
        Ok(o) => o,
        Err(e) => Outcome::fail(format!("the file check stopped: {e}")),
    }
}

fn judge(spec: &FileCheckSpec, now: SystemTime) -> Outcome {
    let shown = spec.path.display();
    let meta = match std::fs::metadata(&spec.path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if spec.exists {
                Outcome::fail(format!("{shown} does not exist"))
            } else {
                Outcome::ok(format!("{shown} does not exist"))
            };
        }
        Err(e) => return Outcome::fail(format!("cannot look at {shown}: {e}")),
    };
    if !spec.exists {
        return Outcome::fail(format!("{shown} exists"));
    }
    let Some(max_age) = spec.max_age else {
        return Outcome::ok(format!("{shown} exists"));
    };
    let modified = match meta.modified() {
        Ok(t) => t,
        Err(e) => return Outcome::fail(format!("cannot read {shown}'s modification time: {e}")),
    };
    // A modification time in the future (a clock step) counts as fresh.
    let age = now.duration_since(modified).unwrap_or_default();
    let secs = |d: std::time::Duration| {
        humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
    };
    if age > max_age {
        Outcome::fail(format!(
            "{shown} was last modified {} ago, more than {}",
            secs(age),
            humantime::format_duration(max_age)
        ))
    } else {
        Outcome::ok(format!("{shown} modified {} ago", secs(age)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(path: &std::path::Path, exists: bool, max_age: Option<u64>) -> FileCheckSpec {
        FileCheckSpec {
            path: path.to_path_buf(),
            exists,
            max_age: max_age.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_flag_appearing_and_going() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("maintenance");
        let absent = spec(&flag, false, None);
        let present = spec(&flag, true, None);
        let now = SystemTime::now();
        assert!(judge(&absent, now).ok);
        assert!(!judge(&present, now).ok);
        std::fs::write(&flag, "").unwrap();
        assert_eq!(
            judge(&absent, now),
            Outcome::fail(format!("{} exists", flag.display()))
        );
        assert!(judge(&present, now).ok);
        std::fs::remove_file(&flag).unwrap();
        assert!(judge(&absent, now).ok);
    }

    #[test]
    fn max_age_fails_a_stale_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let beat = dir.path().join("beat");
        std::fs::write(&beat, "").unwrap();
        let s = spec(&beat, true, Some(60));
        assert!(judge(&s, SystemTime::now()).ok);
        let later = SystemTime::now() + Duration::from_secs(120);
        let out = judge(&s, later);
        assert!(
            !out.ok && out.detail.contains("ago, more than 1m"),
            "{out:?}"
        );
        // A clock that went back: the file is from the future, counted fresh.
        assert!(judge(&s, SystemTime::now() - Duration::from_secs(600)).ok);
    }

    #[test]
    fn a_path_that_cannot_be_looked_at_is_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "").unwrap();
        // A path through a file: ENOTDIR, not "does not exist".
        let inside = file.join("flag");
        let out = judge(&spec(&inside, false, None), SystemTime::now());
        assert!(
            !out.ok && out.detail.starts_with("cannot look at"),
            "{out:?}"
        );
    }
}
