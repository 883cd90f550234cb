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
    /// The file changed while its new text was being checked (an operator's edit): the new
    /// text was made from the old one, so installing it would undo that edit. Nothing was
    /// installed; the next round starts from the file as it is now.
    #[error("{} changed while its new text was being checked (an edit by hand?): not installed, so that change is kept; the next round rewrites from it", path.display())]
    ChangedMeanwhile { path: PathBuf },
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

/// A SHA-256 digest of a configuration text.
type Digest = [u8; 32];

fn digest(text: &str) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// What this process knows about one HAProxy configuration file: the contents of its lock
/// ([`FileLocks`]), so it is read and changed only by whoever holds the lock, between
/// reading the file and installing its next text.
#[derive(Debug, Default)]
pub struct FileState {
    /// SHA-256 of the last text `haproxy -c` accepted as this file, in this process.
    accepted: Option<Digest>,
    /// SHA-256 of the last text this process installed as this file, checked or not.
    installed: Option<Digest>,
}

/// The lock of one configuration file, with what this process knows about it.
pub type FileLock = Arc<tokio::sync::Mutex<FileState>>;

/// One lock per HAProxy configuration file: rules keeping blocks of the same file write one at
/// a time. Owned by the daemon, so a rule of the next configuration waits for a write of the
/// last one, and knows which of the file's texts `haproxy -c` accepted.
#[derive(Default)]
pub struct FileLocks(Mutex<HashMap<PathBuf, FileLock>>);

impl FileLocks {
    /// The lock of `path`, made on first use.
    pub fn lock_for(&self, path: &Path) -> FileLock {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(path.to_owned()).or_default().clone()
    }
}

/// Whether an install may go without `haproxy -c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPolicy {
    /// Always check (reload mode, peers, a grown block).
    Always,
    /// Runtime mode: skip the check when the new text differs from the file as it is, a text
    /// this process had accepted or installed, only in what [`servers_only_moved`] allows.
    UnlessOnlyServersMoved,
}

/// Whether `haproxy -c` ran for an install, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckDecision {
    /// Not run: the new text differs from one HAProxy accepted only in the addresses, ports
    /// and `disabled` keywords of managed server lines.
    Skipped,
    /// Run, for this reason.
    Ran(WhyChecked),
}

impl CheckDecision {
    /// `run` or `skipped`: the `check` label of `watchdog_haproxy_config_installs_total`.
    pub fn label(&self) -> &'static str {
        match self {
            CheckDecision::Skipped => "skipped",
            CheckDecision::Ran(_) => "run",
        }
    }
}

impl std::fmt::Display for CheckDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckDecision::Skipped => f.write_str(
                "only addresses, ports or `disabled` of managed server lines changed from a text haproxy -c accepted",
            ),
            CheckDecision::Ran(why) => write!(f, "{why}"),
        }
    }
}

/// Why `haproxy -c` ran for an install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhyChecked {
    /// The caller always checks: reload mode, peers, a grown block.
    Always,
    /// `haproxy -c` has not accepted a text of this file in this process yet.
    NothingAcceptedYet,
    /// The file is neither the last text `haproxy -c` accepted nor the last this process
    /// installed: someone else (an operator, a package) changed it since.
    ChangedOutside,
    /// The new text changes more than server addresses and `disabled`.
    Differs(Difference),
}

impl std::fmt::Display for WhyChecked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhyChecked::Always => f.write_str("this kind of change is always checked"),
            WhyChecked::NothingAcceptedYet => {
                f.write_str("haproxy -c has not accepted this file in this process yet")
            }
            WhyChecked::ChangedOutside => {
                f.write_str("the file changed since this process last checked or installed it")
            }
            WhyChecked::Differs(d) => write!(f, "{d}"),
        }
    }
}

/// The first difference between two configuration texts that an unchecked install may not
/// carry (line numbers count from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    /// The texts have different numbers of lines.
    LineCount { old: usize, new: usize },
    /// A line outside the managed blocks of servers differs.
    OutsideManagedBlocks { line: usize },
    /// A differing line in a managed block is not a `server NAME IPV4:PORT ...` line as
    /// [`server_line`] writes it (a name, IPv6, a port range, a leading zero, a comment).
    NotAServerAddress { line: usize },
    /// A server's new port is 0 (HAProxy then needs a check port, or uses the client's port).
    PortZero { line: usize },
    /// A server's name, indentation or options differ, not only its address or `disabled`.
    NameOrOptions { line: usize },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::LineCount { old, new } => {
                write!(f, "the number of lines changes ({old} to {new})")
            }
            Difference::OutsideManagedBlocks { line } => {
                write!(f, "line {line}, outside the managed blocks, changes")
            }
            Difference::NotAServerAddress { line } => write!(
                f,
                "line {line} is not a server line with an IPv4 address and a port"
            ),
            Difference::PortZero { line } => write!(f, "line {line} has port 0"),
            Difference::NameOrOptions { line } => write!(
                f,
                "line {line} changes a server's name or options, not only its address or `disabled`"
            ),
        }
    }
}

/// One `server` line split as [`server_line`] writes it: indentation, name, address, the
/// options after it (with their leading space) and whether it ends in ` disabled`.
struct ServerLine<'a> {
    indent: &'a str,
    name: &'a str,
    port: u16,
    options: &'a str,
}

/// `line` as a server line the watchdog writes: `server NAME A.B.C.D:PORT[ OPTIONS][
/// disabled]`, the address in dotted-quad form without leading zeros and the port a decimal
/// without one (HAProxy's configuration manual, 5.2 "Server and default-server options":
/// `<address>[:port]`). Anything else (names, IPv6, `ipv4@`, port ranges or offsets): None.
fn parse_server_line(line: &str) -> Option<ServerLine<'_>> {
    let body = line.trim_start_matches([' ', '\t']);
    let indent = &line[..line.len() - body.len()];
    let rest = body.strip_prefix("server ")?;
    let (name, rest) = rest.split_once(' ')?;
    let (addr, options) = match rest.find(' ') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (ip, port) = addr.split_once(':')?;
    let parsed_ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let parsed_port: u16 = port.parse().ok()?;
    if name.is_empty()
        || parsed_ip.to_string() != ip
        || parsed_port.to_string() != port
        || options.chars().any(|c| c.is_control())
    {
        return None;
    }
    let options = options.strip_suffix(" disabled").unwrap_or(options);
    Some(ServerLine {
        indent,
        name,
        port: parsed_port,
        options,
    })
}

/// Whether `new` differs from `old` only where an unchecked install may change a file that
/// `haproxy -c` accepted as `old`: the IPv4 address and port, and the `disabled` keyword, of
/// `server` lines inside managed blocks (`# BEGIN haproxy-watchdog servers of ...`), in the
/// forms [`server_line`] writes, with no port 0. The same number of lines, every other line
/// identical, server names and options unchanged. Errors: the first difference that needs
/// `haproxy -c`.
pub fn servers_only_moved(old: &str, new: &str) -> Result<(), Difference> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.split('\n').collect(), new.split('\n').collect());
    if a.len() != b.len() {
        return Err(Difference::LineCount {
            old: a.len(),
            new: b.len(),
        });
    }
    let mut in_block = false;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let line = i + 1;
        if x == y {
            // Identical lines, the markers among them: both texts agree on where blocks are.
            let t = x.trim();
            if t.starts_with("# BEGIN haproxy-watchdog servers of ") {
                in_block = true;
            } else if t.starts_with("# END haproxy-watchdog servers of ") {
                in_block = false;
            }
            continue;
        }
        if !in_block {
            return Err(Difference::OutsideManagedBlocks { line });
        }
        let (Some(p), Some(q)) = (parse_server_line(x), parse_server_line(y)) else {
            return Err(Difference::NotAServerAddress { line });
        };
        // A new port of 0 changes what HAProxy makes of the line (the client's port, a check
        // that needs its own). From 0 to a port (a never-used slot, written `0.0.0.0:0` when
        // the rule has no `port`, taking its first server) it only names where to connect:
        // the options HAProxy accepted with port 0 are accepted with any other.
        if q.port == 0 {
            return Err(Difference::PortZero { line });
        }
        if p.indent != q.indent || p.name != q.name || p.options != q.options {
            return Err(Difference::NameOrOptions { line });
        }
    }
    Ok(())
}

impl FileState {
    /// Whether installing `new` over `current` (the file as read under the lock) needs
    /// `haproxy -c` under `policy`.
    pub fn decide(&self, policy: CheckPolicy, current: &str, new: &str) -> CheckDecision {
        if policy == CheckPolicy::Always {
            return CheckDecision::Ran(WhyChecked::Always);
        }
        let Some(accepted) = self.accepted else {
            return CheckDecision::Ran(WhyChecked::NothingAcceptedYet);
        };
        let now = digest(current);
        if now != accepted && Some(now) != self.installed {
            return CheckDecision::Ran(WhyChecked::ChangedOutside);
        }
        match servers_only_moved(current, new) {
            Ok(()) => CheckDecision::Skipped,
            Err(d) => CheckDecision::Ran(WhyChecked::Differs(d)),
        }
    }
}

/// Install `new` as `path`, whose text is `current` as read while holding its lock (`state`
/// is that lock's contents): with `haproxy -c` ([`install`]) unless `policy` allows going
/// without it and [`FileState::decide`] finds the change cannot make the file invalid, then
/// written the same way (temporary file, fsync, rename, fsync of the directory). Returns
/// whether the check ran and why. Errors: as [`install`]; the old file stays.
pub async fn install_tracked(
    state: &mut FileState,
    policy: CheckPolicy,
    path: &Path,
    current: &str,
    new: &str,
    haproxy_bin: &Path,
    timeout: Duration,
) -> Result<CheckDecision, ConfigFileError> {
    let decision = state.decide(policy, current, new);
    let digest = digest(new);
    match decision {
        CheckDecision::Skipped => put(path, new, None, Some(current)).await?,
        CheckDecision::Ran(_) => {
            put(path, new, Some((haproxy_bin, timeout)), Some(current)).await?;
            state.accepted = Some(digest);
        }
    }
    state.installed = Some(digest);
    Ok(decision)
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
    put(path, text, Some((haproxy_bin, timeout)), None).await
}

/// Write `text` beside `path` and fsync it, have `check` (`haproxy -c` and its timeout)
/// accept it when given, rename it over `path` and fsync the directory.
///
/// `based_on`: the text of `path` that `text` was made from. Read again just before the
/// rename; if the file holds something else by then (an operator edited it while `haproxy -c`
/// ran, which can take seconds on a large file), nothing is installed
/// ([`ConfigFileError::ChangedMeanwhile`]) rather than undoing that edit. A `path` that is a
/// symbolic link is followed: the file it names is replaced and the link stays.
async fn put(
    path: &Path,
    text: &str,
    check: Option<(&Path, Duration)>,
    based_on: Option<&str>,
) -> Result<(), ConfigFileError> {
    let followed;
    let path = match tokio::fs::symlink_metadata(path).await {
        Ok(m) if m.file_type().is_symlink() => {
            followed =
                tokio::fs::canonicalize(path)
                    .await
                    .map_err(|source| ConfigFileError::Read {
                        path: path.to_owned(),
                        source,
                    })?;
            followed.as_path()
        }
        _ => path,
    };
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
        if let Some((haproxy_bin, timeout)) = check {
            check_config(haproxy_bin, &tmp, timeout).await?;
        }
        if let Some(before) = based_on {
            // A file that is not there yet reads as empty, as its callers read it.
            let now = match tokio::fs::read_to_string(path).await {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(source) => {
                    return Err(ConfigFileError::Read {
                        path: path.to_owned(),
                        source,
                    })
                }
            };
            if now != before {
                return Err(ConfigFileError::ChangedMeanwhile {
                    path: path.to_owned(),
                });
            }
        }
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
    // Not `-q`: it silences the very alerts that say what is wrong. In a process group of
    // its own: a timeout kills the whole group, so a wrapper's children (a `haproxy` that is
    // a script, a chroot's chain) do not outlive it.
    cmd.arg("-c")
        .arg("-f")
        .arg(file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let run_error = |source| ConfigFileError::Run {
        bin: haproxy_bin.to_owned(),
        source,
    };
    let child = cmd.spawn().map_err(run_error)?;
    let mut group = crate::checks::program::GroupGuard::of(child.id());
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        // Dropping the guard kills the group.
        Err(_) => {
            return Err(ConfigFileError::CheckTimeout {
                bin: haproxy_bin.to_owned(),
                timeout,
            })
        }
        Ok(Err(source)) => return Err(run_error(source)),
        Ok(Ok(o)) => {
            group.0 = None;
            o
        }
    };
    if out.status.success() {
        return Ok(());
    }
    // HAProxy writes its alerts to stderr; a wrapper may print them on stdout: both are read.
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
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

    /// A `haproxy_bin` that, asked to check a file, appends `# edited by hand` to `target`
    /// (an operator's edit while `haproxy -c` runs) and accepts.
    fn editing_checker(dir: &Path, target: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("haproxy-editing");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\necho '# edited by hand' >> '{}'\nexit 0\n",
                target.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    #[tokio::test]
    async fn an_edit_made_while_the_new_text_is_checked_is_kept_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, CFG).unwrap();
        let bin = editing_checker(dir.path(), &path);
        let new = CFG.replace("1.2.3.4:80", "10.0.0.9:80");
        let mut state = FileState::default();
        let e = install_tracked(
            &mut state,
            CheckPolicy::Always,
            &path,
            CFG,
            &new,
            &bin,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ConfigFileError::ChangedMeanwhile { .. }), "{e}");
        let now = std::fs::read_to_string(&path).unwrap();
        assert_eq!(now, format!("{CFG}# edited by hand\n"), "the edit is kept");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with("watchdog-new")),
            "no temporary file left"
        );
    }

    #[tokio::test]
    async fn a_symlinked_configuration_is_written_through_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.cfg");
        std::fs::write(&real, CFG).unwrap();
        let link = dir.path().join("haproxy.cfg");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let new = CFG.replace("1.2.3.4:80", "10.0.0.9:80");
        let mut state = FileState::default();
        install_tracked(
            &mut state,
            CheckPolicy::Always,
            &link,
            CFG,
            &new,
            Path::new("true"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), new);
    }

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

    /// A managed block of `app` with `servers` between the markers, inside a small file.
    fn file(servers: &[&str]) -> String {
        let mut t = String::from("global\n    maxconn 100\nbackend app\n    balance roundrobin\n    # BEGIN haproxy-watchdog servers of app\n");
        for s in servers {
            t.push_str("    ");
            t.push_str(s);
            t.push('\n');
        }
        t.push_str(
            "    # END haproxy-watchdog servers of app\n    server outside 10.9.9.9:80 check\n",
        );
        t
    }

    #[test]
    fn only_addresses_ports_and_disabled_of_managed_servers_may_skip_the_check() {
        let old = file(&[
            "server app1 10.0.0.1:8080 check",
            "server app2 0.0.0.0:8080 check disabled",
            "server app3 10.0.0.3:8080 check",
        ]);
        let new = file(&[
            "server app1 10.0.0.1:8080 check disabled",
            "server app2 192.168.1.7:9090 check",
            "server app3 255.255.255.254:1 check",
        ]);
        assert_eq!(servers_only_moved(&old, &new), Ok(()));
        assert_eq!(servers_only_moved(&new, &old), Ok(()));
        assert_eq!(servers_only_moved(&old, &old), Ok(()));
        // No options at all, as `server_options = ""` writes them.
        let bare = file(&["server app1 10.0.0.1:80", "server app2 0.0.0.0:80 disabled"]);
        let moved = file(&[
            "server app1 10.0.0.9:65535 disabled",
            "server app2 10.0.0.2:80",
        ]);
        assert_eq!(servers_only_moved(&bare, &moved), Ok(()));
    }

    /// Breaker's find: a `haproxy -c` cut at its timeout left its own children running (a
    /// wrapper's `sleep 40`, orphaned). The whole process group goes.
    #[tokio::test]
    async fn a_timed_out_haproxy_check_kills_its_whole_process_group() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let bin = dir.path().join("haproxy");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\nsleep 60 &\necho $! > {}\nwait\n",
                pidfile.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_config(&bin, &dir.path().join("h.cfg"), Duration::from_millis(500))
            .await
            .expect_err("it never finishes");
        assert!(matches!(e, ConfigFileError::CheckTimeout { .. }), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut alive = true;
        for _ in 0..50 {
            // SAFETY: kill(2) with signal 0 only asks whether the process exists.
            alive = unsafe { libc::kill(pid, 0) } == 0
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "));
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive, "the wrapper's child {pid} outlived the check");
    }

    /// Breaker's find: a `haproxy` wrapper that printed its `[ALERT]` on stdout was logged as
    /// "HAProxy rejects the new configuration (exit status: 1): " and nothing more.
    #[tokio::test]
    async fn a_rejection_quotes_what_haproxy_said_on_either_stream() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("haproxy");
        std::fs::write(&bin, "#!/bin/sh\necho '[ALERT] forced failure'\nexit 1\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_config(&bin, &dir.path().join("h.cfg"), Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("[ALERT] forced failure"), "{e}");
    }

    #[test]
    fn a_new_port_of_zero_always_runs_the_check() {
        let old = file(&["server app1 10.0.0.1:8080 check"]);
        let new = file(&["server app1 10.0.0.2:0 check"]);
        assert_eq!(
            servers_only_moved(&old, &new),
            Err(Difference::PortZero { line: 6 })
        );
    }

    /// The Consul bench's p99 without `port`: each first fill of a never-used slot (written
    /// `0.0.0.0:0`) ran `haproxy -c`, about 60 ms, serialized across the rules of one file.
    #[test]
    fn a_never_used_slot_taking_its_first_server_skips_the_check() {
        let old = file(&["server app1 0.0.0.0:0 check disabled"]);
        let new = file(&["server app1 10.0.0.2:8080 check"]);
        assert_eq!(servers_only_moved(&old, &new), Ok(()));
    }

    #[test]
    fn a_changed_line_outside_the_managed_blocks_always_runs_the_check() {
        let old = file(&["server app1 10.0.0.1:8080 check"]);
        let new = old.replace("balance roundrobin", "balance leastconn");
        assert_eq!(
            servers_only_moved(&old, &new),
            Err(Difference::OutsideManagedBlocks { line: 4 })
        );
        // A server line of the same backend outside the block is the operator's.
        let new = old.replace("outside 10.9.9.9:80", "outside 10.9.9.8:80");
        assert_eq!(
            servers_only_moved(&old, &new),
            Err(Difference::OutsideManagedBlocks { line: 8 })
        );
    }

    #[test]
    fn a_different_number_of_lines_always_runs_the_check() {
        let old = file(&["server app1 10.0.0.1:8080 check"]);
        let new = file(&[
            "server app1 10.0.0.1:8080 check",
            "server app2 0.0.0.0:8080 check disabled",
        ]);
        assert_eq!(
            servers_only_moved(&old, &new),
            Err(Difference::LineCount { old: 9, new: 10 })
        );
        // A trailing newline more or less is a line too.
        assert!(servers_only_moved(&old, old.trim_end()).is_err());
    }

    #[test]
    fn a_new_server_name_indentation_or_option_always_runs_the_check() {
        let old = file(&["server app1 10.0.0.1:8080 check"]);
        for changed in [
            "server app9 10.0.0.1:8080 check",
            "server app1 10.0.0.1:8080 check inter 1s",
            "server app1 10.0.0.1:8080",
            "server app1 10.0.0.2:8080 check disabled backup",
        ] {
            let new = file(&[changed]);
            assert_eq!(
                servers_only_moved(&old, &new),
                Err(Difference::NameOrOptions { line: 6 }),
                "{changed}"
            );
        }
        let new = old.replace("    server app1", "  server app1");
        assert_eq!(
            servers_only_moved(&old, &new),
            Err(Difference::NameOrOptions { line: 6 })
        );
    }

    #[test]
    fn an_address_not_written_as_the_watchdog_writes_it_runs_the_check() {
        let old = file(&["server app1 10.0.0.1:8080 check"]);
        for changed in [
            "server app1 010.0.0.1:8080 check",
            "server app1 10.0.0.1:08080 check",
            "server app1 10.0.0.1:65536 check",
            "server app1 10.0.0.1 check",
            "server app1 web.example:8080 check",
            "server app1 ipv4@10.0.0.2:8080 check",
            "server app1 [::1]:8080 check",
            "server app1 10.0.0.2:8080-8090 check",
            "server app1 10.0.0.2:+1 check",
            "server  app1 10.0.0.2:8080 check",
            "# server app1 10.0.0.2:8080 check",
            "default-server 10.0.0.2:8080 check",
        ] {
            let new = file(&[changed]);
            assert_eq!(
                servers_only_moved(&old, &new),
                Err(Difference::NotAServerAddress { line: 6 }),
                "{changed}"
            );
        }
    }

    #[test]
    fn the_check_is_skipped_only_from_a_text_this_process_had_accepted_or_installed() {
        let accepted = file(&["server app1 10.0.0.1:8080 check"]);
        let moved = file(&["server app1 10.0.0.2:8080 check"]);
        let again = file(&["server app1 10.0.0.3:8080 check disabled"]);
        let policy = CheckPolicy::UnlessOnlyServersMoved;
        let mut state = FileState::default();
        assert_eq!(
            state.decide(policy, &accepted, &moved),
            CheckDecision::Ran(WhyChecked::NothingAcceptedYet)
        );
        state.accepted = Some(digest(&accepted));
        state.installed = Some(digest(&accepted));
        assert_eq!(
            state.decide(policy, &accepted, &moved),
            CheckDecision::Skipped
        );
        // From what was installed without a check, and again from what was accepted.
        state.installed = Some(digest(&moved));
        assert_eq!(state.decide(policy, &moved, &again), CheckDecision::Skipped);
        assert_eq!(
            state.decide(policy, &accepted, &again),
            CheckDecision::Skipped
        );
        // An operator's edit in between: the file is neither.
        let edited = moved.replace("maxconn 100", "maxconn 200");
        let from_edited = edited.replace("10.0.0.2:8080", "10.0.0.3:8080");
        assert_eq!(
            state.decide(policy, &edited, &from_edited),
            CheckDecision::Ran(WhyChecked::ChangedOutside)
        );
        // Reload mode, peers, a grown block: always.
        assert_eq!(
            state.decide(CheckPolicy::Always, &accepted, &moved),
            CheckDecision::Ran(WhyChecked::Always)
        );
        assert_eq!(
            state.decide(
                policy,
                &accepted,
                &accepted.replace("maxconn 100", "maxconn 1")
            ),
            CheckDecision::Ran(WhyChecked::Differs(Difference::OutsideManagedBlocks {
                line: 2
            }))
        );
    }

    #[tokio::test]
    async fn an_unchecked_install_never_runs_haproxy_and_a_checked_one_records_its_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("haproxy.cfg");
        let accepted = file(&["server app1 10.0.0.1:8080 check"]);
        let moved = file(&["server app1 10.0.0.2:8080 check"]);
        // No file yet (it reads as empty): the first install creates it.
        // `true` as HAProxy accepts everything; a missing binary would fail any check.
        let yes = Path::new("/bin/true");
        let none = Path::new("/nonexistent/haproxy");
        let t = Duration::from_secs(5);
        let policy = CheckPolicy::UnlessOnlyServersMoved;
        let mut state = FileState::default();
        let d = install_tracked(&mut state, policy, &path, "", &accepted, yes, t)
            .await
            .expect("checked");
        assert_eq!(d, CheckDecision::Ran(WhyChecked::NothingAcceptedYet));
        let d = install_tracked(&mut state, policy, &path, &accepted, &moved, none, t)
            .await
            .expect("not checked: the binary is never run");
        assert_eq!(d, CheckDecision::Skipped);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), moved);
        let e = install_tracked(
            &mut state,
            CheckPolicy::Always,
            &path,
            &moved,
            &accepted,
            none,
            t,
        )
        .await
        .expect_err("checked, and the binary is missing");
        assert!(matches!(e, ConfigFileError::Run { .. }), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            moved,
            "the old file stays"
        );
    }
}
