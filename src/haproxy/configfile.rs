//! The HAProxy configuration file on disk: the managed block of server slots that runtime
//! mode keeps equal to what it set live, whole files rendered by reload mode, and the one way
//! both are installed: checked with `haproxy -c`, then renamed into place.

use super::server::Slot;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn begin_marker(backend: &str) -> String {
    format!("# BEGIN haproxy-watchdog servers of {backend}")
}
pub fn end_marker(backend: &str) -> String {
    format!("# END haproxy-watchdog servers of {backend}")
}

/// Why a HAProxy configuration file could not be read, edited or installed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// Reading the file failed.
    #[error("HAProxy configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file has neither marker of `backend`'s managed block; says which lines to add.
    #[error("no managed block for backend {backend}: {}", block_help(backend))]
    NoBlock { backend: String },
    /// The file has neither marker of `peers` section `section`'s managed block; says which
    /// lines to add.
    #[error(
        "no managed block for peers section {section}: add these two lines inside `peers {section}` of the HAProxy configuration: \"{}\" and \"{}\"",
        peers_begin_marker(section),
        peers_end_marker(section)
    )]
    NoPeersBlock { section: String },
    /// The markers are there but not as one `begin` line followed by one `end` line.
    #[error(
        "the managed block is broken: expected one \"{begin}\" line followed by one \"{end}\" line"
    )]
    BrokenBlock { begin: String, end: String },
    /// Writing the new file beside the old one failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Renaming the checked new file over the old one failed.
    #[error("cannot rename {} to {}: {source}", from.display(), to.display())]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    /// `haproxy -c` ran past the timeout (it was killed).
    #[error("`{} -c` did not finish within {}", bin.display(), humantime::format_duration(*timeout))]
    CheckTimeout { bin: PathBuf, timeout: Duration },
    /// The HAProxy binary could not be started.
    #[error("cannot run {}: {source}", bin.display())]
    Run {
        bin: PathBuf,
        source: std::io::Error,
    },
    /// `haproxy -c` rejected the file. `detail` is HAProxy's own text: up to three of its
    /// `[ALERT]` or error lines joined with " | ", else the start of what it printed.
    #[error("HAProxy rejects the new configuration ({status}): {detail}")]
    Rejected {
        status: std::process::ExitStatus,
        detail: String,
    },
}

/// The markers of the managed block of `peers` section `section`.
fn peers_begin_marker(section: &str) -> String {
    format!("# BEGIN haproxy-watchdog peers of {section}")
}
fn peers_end_marker(section: &str) -> String {
    format!("# END haproxy-watchdog peers of {section}")
}

/// The lines an operator adds to a backend to hand its servers to the watchdog.
pub fn block_help(backend: &str) -> String {
    format!(
        "add these two lines inside `backend {backend}` of the HAProxy configuration, then reload it once: \"{}\" and \"{}\"",
        begin_marker(backend),
        end_marker(backend)
    )
}

/// Where the managed block of `backend` sits in `text`.
#[derive(Debug)]
pub struct Block {
    /// Line index of the BEGIN marker; the block's lines are between it and `end`.
    begin: usize,
    end: usize,
    indent: String,
}

pub fn find_block(text: &str, backend: &str) -> Result<Block, ConfigFileError> {
    find_marked(text, &begin_marker(backend), &end_marker(backend), || {
        ConfigFileError::NoBlock {
            backend: backend.to_owned(),
        }
    })
}

/// The managed block of `peers` section `section`: `peer` lines, one per group member.
pub fn find_peers_block(text: &str, section: &str) -> Result<Block, ConfigFileError> {
    let (b, e) = (peers_begin_marker(section), peers_end_marker(section));
    find_marked(text, &b, &e, || ConfigFileError::NoPeersBlock {
        section: section.to_owned(),
    })
}

fn find_marked(
    text: &str,
    b: &str,
    e: &str,
    missing: impl FnOnce() -> ConfigFileError,
) -> Result<Block, ConfigFileError> {
    let lines: Vec<&str> = text.lines().collect();
    let find = |m: &str| {
        let at: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].trim() == m).collect();
        at
    };
    match (find(b).as_slice(), find(e).as_slice()) {
        ([begin], [end]) if begin < end => Ok(Block {
            begin: *begin,
            end: *end,
            indent: lines[*begin][..lines[*begin].len() - lines[*begin].trim_start().len()]
                .to_owned(),
        }),
        ([], []) => Err(missing()),
        _ => Err(ConfigFileError::BrokenBlock {
            begin: b.to_owned(),
            end: e.to_owned(),
        }),
    }
}

/// This node's peer name as HAProxy takes it: `localpeer <name>` in `global` (None: HAProxy
/// uses the host name, or `-L` from its command line).
pub fn local_peer_name(text: &str) -> Option<String> {
    let mut in_global = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            in_global = t == "global" || t.starts_with("global ");
            continue;
        }
        if in_global {
            let mut w = t.split_whitespace();
            if w.next() == Some("localpeer") {
                return w.next().map(str::to_owned);
            }
        }
    }
    None
}

/// The `peer` lines of a peers section's managed block: one per member of the group, and
/// this node's own (`local` at `own`) whether the group lists it yet or not (HAProxy drops
/// a peers section without its local peer, and binds the local peer's address). A member at
/// this node's own address under another name (`localpeer` is the host name, the group
/// names instance ids) is this node: it is not listed twice.
pub fn peer_lines(
    members: &std::collections::BTreeMap<String, super::server::Target>,
    local: &str,
    own: super::server::Target,
) -> Vec<String> {
    let mut all = members.clone();
    all.retain(|_, t| *t != own);
    all.insert(local.to_owned(), own);
    all.iter().map(|(id, t)| format!("peer {id} {t}")).collect()
}

/// The text of one server line (without indentation).
pub fn server_line(slot: &Slot, default_port: u16, options: &str) -> String {
    let addr = match slot.target {
        Some(t) => t.to_string(),
        None => format!("0.0.0.0:{default_port}"),
    };
    let mut line = format!("server {} {addr}", slot.name);
    if !options.is_empty() {
        line.push(' ');
        line.push_str(options);
    }
    if !slot.serving() {
        line.push_str(" disabled");
    }
    line
}

/// The names of the `server` lines in `block`: the slots this rule owns. A server of the
/// same backend outside the block, whatever its name, is the operator's.
pub fn block_server_names(text: &str, block: &Block) -> std::collections::BTreeSet<String> {
    text.lines()
        .skip(block.begin + 1)
        .take(block.end.saturating_sub(block.begin + 1))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("server"))
                .then(|| words.next())
                .flatten()
                .map(str::to_owned)
        })
        .collect()
}

/// `text` with the block's lines replaced by `servers` (each indented like the marker).
pub fn replace_block(text: &str, block: &Block, servers: &[String]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len() + servers.len() * 64);
    for l in &lines[..=block.begin] {
        out.push_str(l);
        out.push('\n');
    }
    for s in servers {
        out.push_str(&block.indent);
        out.push_str(s);
        out.push('\n');
    }
    for l in &lines[block.end..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// One lock per HAProxy configuration file: rules keeping blocks of the same file write one at
/// a time. Owned by the daemon, so a rule of the next configuration waits for a write of the
/// last one.
#[derive(Default)]
pub struct FileLocks(Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>);

impl FileLocks {
    /// The lock of `path`, made on first use.
    pub fn lock_for(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(path.to_owned()).or_default().clone()
    }
}

pub async fn read(path: &Path) -> Result<String, ConfigFileError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|source| ConfigFileError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Install `text` as `path`: write a temporary file beside it (same owner-visible mode),
/// have `haproxy -c` accept it, then rename it over the old file. A file HAProxy rejects is
/// never installed; the old one stays.
pub async fn install(
    path: &Path,
    text: &str,
    haproxy_bin: &Path,
    timeout: Duration,
) -> Result<(), ConfigFileError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "haproxy.cfg".into());
    let tmp = dir.join(format!(".{name}.watchdog-new"));
    let result = async {
        let mode = tokio::fs::metadata(path)
            .await
            .ok()
            .map(|m| m.permissions());
        write_synced(&tmp, text, mode)
            .await
            .map_err(|source| ConfigFileError::Write {
                path: tmp.clone(),
                source,
            })?;
        check_config(haproxy_bin, &tmp, timeout).await?;
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(|source| ConfigFileError::Rename {
                from: tmp.clone(),
                to: path.to_owned(),
                source,
            })?;
        if let Ok(d) = tokio::fs::File::open(dir).await {
            let _ = d.sync_all().await;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

async fn write_synced(
    path: &Path,
    text: &str,
    mode: Option<std::fs::Permissions>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path).await?;
    if let Some(m) = mode {
        f.set_permissions(m).await?;
    }
    f.write_all(text.as_bytes()).await?;
    f.sync_all().await
}

/// `haproxy -c -f FILE`: does HAProxy accept this configuration?
pub async fn check_config(
    haproxy_bin: &Path,
    file: &Path,
    timeout: Duration,
) -> Result<(), ConfigFileError> {
    let mut cmd = tokio::process::Command::new(haproxy_bin);
    // Not `-q`: it silences the very alerts that say what is wrong.
    cmd.arg("-c")
        .arg("-f")
        .arg(file)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => {
            return Err(ConfigFileError::CheckTimeout {
                bin: haproxy_bin.to_owned(),
                timeout,
            })
        }
        Ok(Err(source)) => {
            return Err(ConfigFileError::Run {
                bin: haproxy_bin.to_owned(),
                source,
            })
        }
        Ok(Ok(o)) => o,
    };
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let first: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[ALERT]") || l.contains("error"))
        .take(3)
        .collect();
    Err(ConfigFileError::Rejected {
        status: out.status,
        detail: if first.is_empty() {
            text.trim().chars().take(300).collect::<String>()
        } else {
            first.join(" | ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::server::Target;

    const CFG: &str = "backend app\n    balance roundrobin\n    # BEGIN haproxy-watchdog servers of app\n    server old 1.2.3.4:80\n    # END haproxy-watchdog servers of app\n\nbackend other\n";

    #[test]
    fn block_is_replaced_in_place_with_its_indentation() {
        let b = find_block(CFG, "app").unwrap();
        let out = replace_block(CFG, &b, &["server app1 10.0.0.1:80 check".into()]);
        assert_eq!(
            out,
            CFG.replace("server old 1.2.3.4:80", "server app1 10.0.0.1:80 check")
        );
    }

    #[test]
    fn missing_or_broken_markers_say_what_to_add() {
        let e = find_block(CFG, "other").unwrap_err().to_string();
        assert!(
            e.contains("# BEGIN haproxy-watchdog servers of other"),
            "{e}"
        );
        let twice = format!("{CFG}    # BEGIN haproxy-watchdog servers of app\n");
        assert!(find_block(&twice, "app")
            .unwrap_err()
            .to_string()
            .contains("broken"));
        let reversed =
            "# END haproxy-watchdog servers of a\n# BEGIN haproxy-watchdog servers of a\n";
        assert!(find_block(reversed, "a")
            .unwrap_err()
            .to_string()
            .contains("broken"));
    }

    #[test]
    fn the_peers_block_always_holds_this_nodes_own_line() {
        let cfg = "global\n    localpeer i-0ccccccccccccccc3\n    maxconn 10\npeers mesh\n    # BEGIN haproxy-watchdog peers of mesh\n    peer i-0ccccccccccccccc3 10.0.1.13:10000\n    # END haproxy-watchdog peers of mesh\n";
        assert_eq!(local_peer_name(cfg).as_deref(), Some("i-0ccccccccccccccc3"));
        // Only `global` sets it; a comment does not.
        assert_eq!(local_peer_name("defaults\n  localpeer x\n"), None);
        assert_eq!(local_peer_name("global\n  # localpeer x\n"), None);
        let t = |ip: &str| Target {
            ip: ip.parse().unwrap(),
            port: 10000,
        };
        let group: std::collections::BTreeMap<String, Target> = [
            ("i-0aaaaaaaaaaaaaaa1".to_owned(), t("10.0.1.11")),
            ("i-0bbbbbbbbbbbbbbb2".to_owned(), t("10.0.1.12")),
        ]
        .into();
        // This node Pending:Wait or Standby: the group lists only the others.
        let lines = peer_lines(&group, "i-0ccccccccccccccc3", t("10.0.1.13"));
        assert_eq!(
            lines,
            [
                "peer i-0aaaaaaaaaaaaaaa1 10.0.1.11:10000",
                "peer i-0bbbbbbbbbbbbbbb2 10.0.1.12:10000",
                "peer i-0ccccccccccccccc3 10.0.1.13:10000",
            ]
        );
        // An empty group (allow_empty) still leaves this node's line.
        let lines = peer_lines(&Default::default(), "lb-1", t("10.0.1.13"));
        assert_eq!(lines, ["peer lb-1 10.0.1.13:10000"]);
        // Listed by the group: once, at this node's own address.
        let mut with_self = group.clone();
        with_self.insert("i-0ccccccccccccccc3".into(), t("10.0.1.99"));
        let lines = peer_lines(&with_self, "i-0ccccccccccccccc3", t("10.0.1.13"));
        assert_eq!(lines.len(), 3);
        assert!(lines.contains(&"peer i-0ccccccccccccccc3 10.0.1.13:10000".to_owned()));
        // The group names this node by instance id, `localpeer` by host name: one line.
        let mut by_id = group.clone();
        by_id.insert("i-0ccccccccccccccc3".into(), t("10.0.1.13"));
        let lines = peer_lines(&by_id, "lb-3", t("10.0.1.13"));
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.contains(&"peer lb-3 10.0.1.13:10000".to_owned()));
        let b = find_peers_block(cfg, "mesh").unwrap();
        assert!(replace_block(cfg, &b, &lines)
            .contains("    peer i-0aaaaaaaaaaaaaaa1 10.0.1.11:10000\n"));
    }

    #[test]
    fn server_lines() {
        let serving = Slot {
            name: "app1".into(),
            target: Some(Target {
                ip: "10.0.0.1".parse().unwrap(),
                port: 8080,
            }),
            addressable: true,
            maint: false,
            draining: false,
        };
        assert_eq!(
            server_line(&serving, 8080, "check"),
            "server app1 10.0.0.1:8080 check"
        );
        let free = Slot {
            target: None,
            maint: true,
            ..serving.clone()
        };
        assert_eq!(
            server_line(&free, 8080, "check"),
            "server app1 0.0.0.0:8080 check disabled"
        );
    }
}
