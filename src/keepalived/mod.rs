//! `watchdog import-keepalived`: keepalived.conf -> watchdog TOML. `parse` reads keepalived's
//! syntax into a tree; this file follows `include`s, turns `vrrp_script`s into `program`
//! rules, `vrrp_track_process`es into `process` rules and `vrrp_instance`s whose notify script
//! moves an AWS address into claims on a rule that watches the peer, and writes the TOML. The notify scripts are read by
//! [`crate::monit::script::moves`], shared with `import-monit`'s recognizer.
//!
//! Every statement is accounted for: translated, translated approximately (with a note), or
//! listed as not translated (VRRP itself: priorities, adverts, addresses on a LAN), both at
//! the top of the output and in [`Imported::untranslated`].

mod parse;

use crate::monit::parse::At;
use crate::monit::script::{self, Move};
use crate::monit::{
    duration, main_file, name, q, under, wildcard, ImportError, Imported, MainSetting, SCRIPT_LIMIT,
};
use parse::Stmt;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// keepalived's `interval` of a vrrp_script, and `advert_int`, when none is written.
const KEEPALIVED_INTERVAL_MS: u64 = 1000;
/// VRRP declares the master down after three missed adverts; the peer rule fails after as many.
const PEER_FAIL_AFTER: u32 = 3;
/// The port the peer rule checks when nothing in the configuration names one.
const DEFAULT_PORT: u16 = 80;
/// Where a program named without a path is looked for, as keepalived finds it on `PATH`.
const PATH_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
/// The watchdog's bounds of a rule's interval.
const INTERVAL_MIN_MS: u64 = 100;
const INTERVAL_MAX_MS: u64 = 3_600_000;

/// Read `paths` (and what they include), with absolute paths in `include`, the scripts and
/// notify scripts looked up under `root` when set (a copy of another host's /etc, say).
pub fn import(paths: &[PathBuf], root: Option<&Path>) -> Result<Imported, ImportError> {
    let mut r = Reader {
        root: root.map(Path::to_path_buf),
        out: Imported::default(),
    };
    let mut stmts = Vec::new();
    for p in paths {
        stmts.extend(r.file(p, 0)?);
    }
    Ok(convert(stmts, r.out, root))
}

struct Reader {
    root: Option<PathBuf>,
    /// Files read, and what reading them found (an include matching nothing, a syntax error).
    out: Imported,
}

impl Reader {
    fn file(&mut self, path: &Path, depth: usize) -> Result<Vec<Stmt>, ImportError> {
        let (text, bad) = script::read_text(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.out.files.push(path.to_path_buf());
        if let Some(line) = bad {
            self.out
                .approximate
                .push(format!("{}:{line}: {}", path.display(), script::NOT_UTF8));
        }
        let parsed = parse::parse(&text, path);
        for (at, problem) in parsed.problems {
            self.out.approximate.push(format!("{at}: {problem}"));
        }
        self.expand(parsed.stmts, path, depth)
    }

    /// `stmts` with each `include` replaced by what it includes, at any depth.
    fn expand(
        &mut self,
        stmts: Vec<Stmt>,
        file: &Path,
        depth: usize,
    ) -> Result<Vec<Stmt>, ImportError> {
        let mut out = Vec::new();
        for mut s in stmts {
            // The variants only add checks keepalived makes on what matched.
            let include = matches!(
                s.key(),
                "include" | "includer" | "includem" | "includew" | "includeb"
            );
            if include && s.block.is_none() {
                out.extend(self.include(&s, file, depth)?);
                continue;
            }
            if let Some(b) = s.block.take() {
                s.block = Some(self.expand(b, file, depth)?);
            }
            out.push(s);
        }
        Ok(out)
    }

    fn include(&mut self, s: &Stmt, file: &Path, depth: usize) -> Result<Vec<Stmt>, ImportError> {
        let mut other = |why: &str| {
            self.out
                .untranslated
                .push(format!("{}: {} -- {why}", s.at, s.text()));
            Ok(Vec::new())
        };
        let [pattern] = s.args() else {
            return other("`include` takes one file name or pattern");
        };
        if depth >= 8 {
            return other("includes nested more than 8 deep (a loop?)");
        }
        // keepalived reads a relative path from the directory of the file that includes it.
        let pattern = Path::new(&pattern.text);
        let full = if pattern.is_absolute() {
            under(self.root.as_deref(), pattern)
        } else {
            file.parent().unwrap_or(Path::new("")).join(pattern)
        };
        let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str()))
        else {
            return other("not a file path");
        };
        if dir.to_string_lossy().contains(['*', '?', '[']) {
            return other("wildcards are followed in the last path component only; include each directory's files by hand");
        }
        let mut matched: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(name, n)))
                .map(|e| e.path())
                .collect(),
            Err(e) => return other(&format!("cannot read {}: {e}", dir.display())),
        };
        matched.sort();
        if matched.is_empty() {
            self.out
                .approximate
                .push(format!("{}: {} matched no file", s.at, s.text()));
        }
        let mut out = Vec::new();
        for m in matched {
            if !self.out.files.contains(&m) {
                out.extend(self.file(&m, depth + 1)?);
            }
        }
        Ok(out)
    }
}

/// `s` as milliseconds (keepalived takes seconds, with decimals in recent versions).
fn seconds(s: &Stmt) -> Option<u64> {
    let [w] = s.args() else { return None };
    let v: f64 = w.text.parse().ok()?;
    (0.0..1e9).contains(&v).then(|| (v * 1000.0).round() as u64)
}

/// `s`'s one argument as a whole number.
fn count(s: &Stmt) -> Option<u32> {
    match s.args() {
        [w] => w.text.parse().ok(),
        _ => None,
    }
}

/// keepalived's splitting of a string into words (its `alloc_strvec_quoted_escaped`): blanks
/// separate words; `"` and `'` group; a backslash, in quotes or not, escapes the next
/// character (`\n`, `\t` and the like are control characters, `\x41` and `\101` codes).
fn split_escaped(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                any = true;
                let Some(e) = chars.next() else { break };
                let code = |chars: &mut std::iter::Peekable<std::str::Chars>,
                            radix: u32,
                            max: usize,
                            first: u32| {
                    let mut v = first;
                    for _ in 1..max {
                        match chars.peek().and_then(|d| d.to_digit(radix)) {
                            Some(d) => {
                                v = v * radix + d;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    char::from_u32(v & 0xff).unwrap_or('?')
                };
                cur.push(match e {
                    'x' if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
                        let first = chars.next().and_then(|d| d.to_digit(16)).unwrap_or(0);
                        code(&mut chars, 16, 2, first)
                    }
                    '0'..='7' => code(&mut chars, 8, 3, e.to_digit(8).unwrap_or(0)),
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'E' => '\u{1b}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    e => e,
                });
            }
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (_, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A statement's arguments as the command keepalived runs, no shell: the arguments are split
/// as keepalived splits its line (quotes removed, escapes applied), then each word split again
/// (so `"/bin/sh -c \"test -S /run/x.sock\""` is `/bin/sh`, `-c`, `test -S /run/x.sock`).
/// A blank escaped outside quotes (`check\ with\ space.sh`) is split by some keepalived
/// versions and not by others: an error, for the command to be written by hand.
fn command(s: &Stmt) -> Result<Vec<String>, String> {
    let raw = s
        .args()
        .iter()
        .map(parse::Word::written)
        .collect::<Vec<_>>()
        .join(" ");
    if s.args().iter().any(|w| {
        !w.quoted && w.text.contains("\\") && {
            let mut it = w.text.chars();
            let mut found = false;
            while let Some(c) = it.next() {
                if c == '\\' && it.next().is_some_and(char::is_whitespace) {
                    found = true;
                }
            }
            found
        }
    }) {
        return Err("a blank escaped with `\\` outside quotes: keepalived versions split it differently, so the command's words are not certain; write them by hand".into());
    }
    Ok(split_escaped(&raw)
        .iter()
        .flat_map(|w| split_escaped(w))
        .collect())
}

/// The port a check command talks to, when it shows one: a URL, or `nc -z HOST PORT`.
fn port_of(argv: &[String]) -> Option<u16> {
    for a in argv {
        if let Ok(u) = reqwest::Url::parse(a) {
            if matches!(u.scheme(), "http" | "https") {
                return u.port_or_known_default();
            }
        }
    }
    let program = argv.first()?.rsplit('/').next()?;
    if matches!(program, "nc" | "ncat" | "netcat") {
        return argv.last()?.parse().ok();
    }
    None
}

/// What one `vrrp_script` became.
struct Check {
    /// The rule's name.
    rule: String,
    /// The port its command talks to, if it shows one.
    port: Option<u16>,
}

/// Everything written so far, shared by every block.
#[derive(Default)]
struct Out {
    rules: String,
    /// Action name -> its TOML.
    actions: BTreeMap<String, String>,
    used_rules: BTreeSet<String>,
    /// vrrp_script name -> its rule.
    checks: BTreeMap<String, Check>,
    /// vrrp_track_process name -> its rule.
    processes: BTreeMap<String, String>,
    region: Option<String>,
    /// Where the first claim came from, for the notes on what the claims need.
    first_claim: Option<At>,
    /// The port of a `virtual_server`.
    service_port: Option<u16>,
    /// A claim_eip was written, which proves this node's egress first.
    eip: bool,
}

impl Out {
    /// A rule name made from `base`, not used before.
    fn rule_name(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "keepalived" } else { base };
        let mut n = name(base);
        // Room for the suffix within the 64 characters of a name.
        let short: String = base.chars().take(56).collect();
        let mut i = 2;
        while self.used_rules.contains(&n) {
            n = name(&format!("{short}-{i}"));
            i += 1;
        }
        self.used_rules.insert(n.clone());
        n
    }
}

fn convert(stmts: Vec<Stmt>, mut out: Imported, root: Option<&Path>) -> Imported {
    let mut o = Out::default();
    // vrrp_scripts first: an instance may name one defined after it.
    for s in &stmts {
        match s.key() {
            "vrrp_script" => vrrp_script(s, root, &mut o, &mut out),
            "vrrp_track_process" => vrrp_track_process(s, &mut o, &mut out),
            "virtual_server" => {
                if let Some(p) = s.args().get(1).and_then(|w| w.text.parse().ok()) {
                    o.service_port.get_or_insert(p);
                }
            }
            _ => {}
        }
    }
    for s in &stmts {
        let untranslated = |why: &str| format!("{}: {} -- {why}", s.at, s.text());
        match s.key() {
            "vrrp_script" | "vrrp_track_process" => {}
            "vrrp_instance" => vrrp_instance(s, root, &mut o, &mut out),
            "global_defs" => global_defs(s, &mut out),
            "virtual_server" | "virtual_server_group" => out.untranslated.push(untranslated(
                "no equivalent: IPVS load balancing is HAProxy's job here; the watchdog only keeps HAProxy's address on a healthy node",
            )),
            "vrrp_sync_group" => out.untranslated.push(untranslated(
                "no equivalent written: to move several addresses as one decision, list the instances' claims as the `members` of one `claim_group` action and put that in the rule's on_fail",
            )),
            "vrrp_track_file" | "track_file" => out.untranslated.push(untranslated(
                "not translated: write a rule with a `file` check (`check = { type = \"file\", path = \"...\" }`)",
            )),
            "static_ipaddress" | "static_routes" | "static_rules" => out.untranslated.push(untranslated(
                "no equivalent: addresses and routes every node keeps belong in the OS's network configuration",
            )),
            _ => out.untranslated.push(untranslated(
                "not understood: no watchdog equivalent is known",
            )),
        }
    }
    write(o, out)
}

/// `global_defs { ... }`: each statement listed with what replaces it.
fn global_defs(s: &Stmt, out: &mut Imported) {
    for g in s.block.iter().flatten() {
        let why = match g.key() {
            "router_id" => "no equivalent: alerts name the node by its instance id",
            "notification_email" | "notification_email_from" | "smtp_server"
            | "smtp_connect_timeout" | "smtp_helo_name" => {
                "no mail: every claim sends one SNS alert ([alerts] sns_topic_arn); subscribe the address to the topic"
            }
            "script_user" | "enable_script_security" => {
                "no equivalent: programs and exec actions run as the daemon's user (haproxy-watchdog under the packaged unit), never as root"
            }
            k if k.starts_with("vrrp_") || k.starts_with("garp_") || k.starts_with("gna_") => {
                "no equivalent: there is no VRRP; EC2 sends traffic for the address to the node that holds it"
            }
            _ => "not understood: no watchdog equivalent is known",
        };
        out.untranslated
            .push(format!("{}: {} -- {why}", g.at, g.text()));
    }
}

/// A `vrrp_script` becomes a rule with a `program` check and no actions.
fn vrrp_script(s: &Stmt, root: Option<&Path>, o: &mut Out, out: &mut Imported) {
    let script_name = s.args().first().map(|w| w.text.clone()).unwrap_or_default();
    if s.block.is_none() || script_name.is_empty() {
        out.untranslated.push(format!(
            "{}: {} -- a vrrp_script needs a name and a block",
            s.at,
            s.text()
        ));
        return;
    }
    if o.checks.contains_key(&script_name) {
        out.untranslated.push(format!(
            "{}: {} -- a second vrrp_script of that name: only the first is translated",
            s.at,
            s.text()
        ));
        return;
    }
    let mut argv: Option<(Vec<String>, At)> = None;
    let mut unsure = false;
    let mut interval = None;
    let mut timeout = None;
    let (mut fall, mut rise) = (1u32, 1u32);
    let mut notes = Vec::new();
    for st in s.block.iter().flatten() {
        let at = &st.at;
        let bad = |what: &str| format!("{at}: {} -- {what}", st.text());
        match st.key() {
            "script" => match command(st) {
                Ok(a) => argv = Some((a, at.clone())),
                Err(why) => {
                    out.untranslated.push(bad(&why));
                    unsure = true;
                }
            },
            "interval" => match seconds(st) {
                Some(ms) => interval = Some((ms, at.clone())),
                None => out.untranslated.push(bad("not a number of seconds")),
            },
            "timeout" => match seconds(st) {
                // keepalived takes 0 as not set: the timeout is the interval.
                Some(0) => notes.push(format!(
                    "{at}: {}: keepalived takes 0 as not set, so the timeout is the interval",
                    st.text()
                )),
                Some(ms) => timeout = Some((ms, at.clone())),
                None => out.untranslated.push(bad("not a number of seconds")),
            },
            "fall" | "rise" => match count(st) {
                Some(n) if (1..=1000).contains(&n) => {
                    if st.key() == "fall" {
                        fall = n
                    } else {
                        rise = n
                    }
                }
                _ => out.untranslated.push(bad("not a count from 1 to 1000")),
            },
            "weight" => notes.push(format!(
                "{at}: {}: no equivalent: the watchdog has no priorities; a failing rule does not move the address by itself (the other node's claim does, when its check of this node fails)",
                st.text()
            )),
            "user" => notes.push(format!(
                "{at}: {}: the program runs as the daemon's user (haproxy-watchdog under the packaged unit)",
                st.text()
            )),
            "init_fail" => notes.push(format!(
                "{at}: {}: no equivalent: a rule counts from its first check",
                st.text()
            )),
            _ => out.untranslated.push(bad("not understood in a vrrp_script")),
        }
    }
    let Some((mut argv, script_at)) = argv.filter(|(a, _)| !a.is_empty()) else {
        if unsure {
            return;
        }
        out.untranslated.push(format!(
            "{}: {} -- no `script`: nothing to check",
            s.at,
            s.text()
        ));
        return;
    };
    let rule = o.rule_name(&script_name);
    if rule != script_name {
        notes.push(format!(
            "{}: vrrp_script {}: written as rule {rule} ({}); a track_script naming it is resolved to that rule",
            s.at,
            q(&script_name),
            if name(&script_name) == rule {
                "a rule name takes letters, digits, `-` and `_`"
            } else {
                "the name is taken by another rule"
            }
        ));
    }
    let mut required = String::new();
    if !argv[0].starts_with('/') {
        let program = argv[0].clone();
        let found = PATH_DIRS
            .iter()
            .map(|d| format!("{d}/{program}"))
            .find(|p| under(root, Path::new(p)).is_file());
        let looked = match root {
            Some(r) => format!(" under {}", r.display()),
            None => String::new(),
        };
        match found {
            Some(p) if !program.contains('/') => {
                notes.push(format!(
                    "{script_at}: script: `{program}` is not an absolute path, which a program check needs: {p} is used (found{looked})"
                ));
                argv[0] = p;
            }
            _ => {
                out.untranslated.push(format!(
                    "{script_at}: script {:?} -- `{program}` is not an absolute path and is in none of {}{looked}: write its absolute path in rule {rule}'s command",
                    argv.join(" "),
                    PATH_DIRS.join(", ")
                ));
                required =
                    "# REQUIRED: the program's absolute path (keepalived found it on PATH).\n"
                        .into();
            }
        }
    }
    let (interval_ms, interval_at) = interval.unwrap_or((KEEPALIVED_INTERVAL_MS, s.at.clone()));
    let interval_ms = clamp_interval(interval_ms, &interval_at, out);
    let timeout_ms = match timeout {
        Some((t, at)) if t > interval_ms => {
            notes.push(format!(
                "{at}: timeout {} is longer than the interval {}; cut to the interval (a check must end before the next starts)",
                duration(t),
                duration(interval_ms)
            ));
            interval_ms
        }
        Some((t, at)) if t < 10 => {
            notes.push(format!(
                "{at}: timeout {}: raised to 10ms, the least a rule takes",
                duration(t)
            ));
            10
        }
        Some((t, _)) => t,
        None => interval_ms,
    };
    out.approximate.extend(notes);
    let list: Vec<String> = argv.iter().map(|a| q(a)).collect();
    let _ = write!(
        o.rules,
        "# keepalived, {}: vrrp_script {}\n[rules.{}]\n{required}check = {{ type = \"program\", command = [{}] }}\ninterval = \"{}\"\ntimeout = \"{}\"\nfail_after = {fall}\nrecover_after = {rise}\non_fail = []\non_recover = []\n\n",
        s.at,
        script_name,
        q(&rule),
        list.join(", "),
        duration(interval_ms),
        duration(timeout_ms),
    );
    out.rules += 1;
    o.checks.insert(
        script_name,
        Check {
            rule,
            port: port_of(&argv),
        },
    );
}

/// A `vrrp_track_process` becomes a rule with a `process` check and no actions.
fn vrrp_track_process(s: &Stmt, o: &mut Out, out: &mut Imported) {
    let track_name = s.args().first().map(|w| w.text.clone()).unwrap_or_default();
    if s.block.is_none() || track_name.is_empty() || o.processes.contains_key(&track_name) {
        out.untranslated.push(format!(
            "{}: {} -- a vrrp_track_process needs a name of its own and a block",
            s.at,
            s.text()
        ));
        return;
    }
    let mut process = None;
    for st in s.block.iter().flatten() {
        let at = &st.at;
        match st.key() {
            "process" => match st.args() {
                [] => out
                    .untranslated
                    .push(format!("{at}: {} -- no process named", st.text())),
                [p, rest @ ..] => {
                    if !rest.is_empty() {
                        out.approximate.push(format!(
                            "{at}: {}: its parameters are not matched; the check looks for a process named {:?}",
                            st.text(),
                            p.text
                        ));
                    }
                    process = Some(p.text.clone());
                }
            },
            "weight" | "quorum" | "quorum_max" | "delay" | "terminate_delay" | "fork_delay"
            | "param_match" | "full_command" => out.approximate.push(format!(
                "{at}: {}: no equivalent: the rule fails while no process of that name runs (a count, a delay or a weight of keepalived's has none here)",
                st.text()
            )),
            _ => out.untranslated.push(format!(
                "{at}: {} -- not understood in a vrrp_track_process",
                st.text()
            )),
        }
    }
    let Some(process) = process else {
        out.untranslated.push(format!(
            "{}: {} -- no `process`: nothing to check",
            s.at,
            s.text()
        ));
        return;
    };
    let rule = o.rule_name(&track_name);
    if rule != track_name {
        out.approximate.push(format!(
            "{}: vrrp_track_process {}: written as rule {rule}; a track_process naming it is resolved to that rule",
            s.at,
            q(&track_name)
        ));
    }
    out.approximate.push(format!(
        "{}: vrrp_track_process {track_name}: keepalived heard of the process at once from the kernel; rule {rule} looks every second. A process of another user (HAProxy's) is seen only with the process-checks.conf drop-in of the packaged unit",
        s.at
    ));
    let _ = write!(
        o.rules,
        "# keepalived, {}: vrrp_track_process {track_name}\n[rules.{}]\ncheck = {{ type = \"process\", name = {} }}\ninterval = \"1s\"\ntimeout = \"1s\"\nfail_after = 1\nrecover_after = 1\non_fail = []\non_recover = []\n\n",
        s.at,
        q(&rule),
        q(&process),
    );
    out.rules += 1;
    o.processes.insert(track_name, rule);
}

/// `ms` within the watchdog's bounds of an interval, with a note when it was not.
fn clamp_interval(ms: u64, at: &At, out: &mut Imported) -> u64 {
    let c = ms.clamp(INTERVAL_MIN_MS, INTERVAL_MAX_MS);
    if c != ms {
        out.approximate.push(format!(
            "{at}: interval {} is outside 100ms-1h; {} is used",
            duration(ms),
            duration(c)
        ));
    }
    c
}

/// `associate-address`'s arguments: allocation id, public IP, private IP.
type Eip = (Option<String>, Option<String>, Option<String>);

/// A route's claim: where, its route tables, a table was not a literal, the topic.
type Route = (At, Vec<String>, bool, Option<String>);

/// The claims an instance's notify scripts ask for.
#[derive(Default)]
struct Claims {
    /// Where, the call's arguments, and the topic its script publishes to in the same branch.
    eips: Vec<(At, Eip, Option<String>)>,
    /// Where, the address (None for one that was not a literal), and the topic.
    private: Vec<(At, Option<String>, Option<String>)>,
    /// Destination -> (where, route tables, a table was not a literal, the topic).
    routes: BTreeMap<Option<String>, Route>,
    /// A notify script's claim is left to write by hand (its branch for MASTER not known).
    by_hand: bool,
}

/// What keepalived's VRRP statements are, and what replaces them here.
fn vrrp_only(key: &str) -> Option<&'static str> {
    Some(match key {
        "state" => "no equivalent: there is no MASTER or BACKUP; both nodes run the same rules, and the address stays with whichever node claimed it last",
        "priority" | "nopreempt" | "preempt" | "preempt_delay" => "no equivalent: no priorities or preemption; the address stays where it is until that node fails (to take it back to a preferred node, give that node a rule whose claim runs when it does not hold the address, like packaging/examples/active-active.toml's home-eip)",
        "virtual_router_id" | "version" | "use_vmac" | "vmac_xmit_base" | "native_ipv6" | "check_unicast_src" => "no equivalent: there is no VRRP; the holder of the address is the node EC2 shows it on",
        "advert_int" => "no equivalent here: no rule watches a peer (the instance moves no AWS address)",
        "authentication" => "no equivalent: there are no adverts to authenticate; the instances' IAM permissions decide who may move the address",
        "interface" | "mcast_src_ip" | "unicast_ttl" | "dont_track_primary" => "no equivalent: no adverts are sent; a claim finds this node's network interface from instance metadata",
        "track_interface" => "not translated: a rule that checks something behind that interface (a `tcp` check of a neighbour) stands in for it",
        "smtp_alert" => "no mail: every claim sends one SNS alert ([alerts] sns_topic_arn)",
        "notify_backup" | "notify_fault" | "notify_stop" | "notify_deleted" => "no equivalent: there is no backup or fault state, and nothing releases an address: the other node's claim takes it; run other work from an `exec` action in a rule's on_fail or on_recover",
        "virtual_routes" | "virtual_rules" => "no equivalent: route tables in a VPC move with a `claim_route` action (aws ec2 replace-route in a notify script is translated into one)",
        k if k.starts_with("garp_") || k.starts_with("lower_prio") || k == "vrrp_garp_interval" => "no equivalent: no ARP in a VPC; EC2 sends the address's traffic to the node that holds it",
        _ => return None,
    })
}

/// The entries of a block that lists values (`unicast_peer`, `virtual_ipaddress`,
/// `track_script`), one a statement, also when several are on one line (`unicast_peer {
/// 10.0.1.12 10.0.1.13 }`). In a block of `addresses`, an entry starts at each address, the
/// words after it its options (`10.0.0.5/24 dev eth0`); in a block of names, at each word but
/// an option (`chk weight 10`, `chk reverse`).
fn entries(st: &Stmt, addresses: bool) -> Vec<Stmt> {
    let is_addr = |w: &str| {
        let a = w.split('/').next().unwrap_or("");
        a.parse::<std::net::IpAddr>().is_ok()
    };
    let mut out = Vec::new();
    for e in st.block.iter().flatten() {
        let mut cur: Vec<parse::Word> = Vec::new();
        let mut after_weight = false;
        for w in &e.words {
            let starts = if addresses {
                is_addr(&w.text)
            } else {
                !after_weight && !matches!(w.text.as_str(), "weight" | "reverse")
            };
            after_weight = w.text == "weight";
            if starts && !cur.is_empty() {
                out.push(Stmt {
                    words: std::mem::take(&mut cur),
                    at: e.at.clone(),
                    block: None,
                });
            }
            cur.push(w.clone());
        }
        out.push(Stmt {
            words: cur,
            at: e.at.clone(),
            block: e.block.clone(),
        });
    }
    out
}

/// A `vrrp_instance`: the AWS moves of its notify scripts become claims on a rule that
/// watches the peer; VRRP's own statements are listed.
fn vrrp_instance(s: &Stmt, root: Option<&Path>, o: &mut Out, out: &mut Imported) {
    let instance = s.args().first().map(|w| w.text.clone()).unwrap_or_default();
    let mut peers: Vec<(String, At)> = Vec::new();
    let mut src = None;
    // (track_script or track_process, the entry as written, where)
    let mut tracked: Vec<(&str, String, At, String)> = Vec::new();
    let mut advert: Option<(u64, At, String)> = None;
    let mut vips: Vec<(String, At, String)> = Vec::new();
    let mut claims = Claims::default();
    let mut src_stmt = None;
    // Read once the peers are known: a move to a peer is not this node's claim.
    let mut notifies = Vec::new();
    for st in s.block.iter().flatten() {
        let key = st.key();
        let block = matches!(
            key,
            "unicast_peer"
                | "track_script"
                | "track_process"
                | "virtual_ipaddress"
                | "virtual_ipaddress_excluded"
        );
        if block && st.block.is_none() {
            out.untranslated.push(format!(
                "{}: {} -- `{key}` takes a block `{{ ... }}`: not read",
                st.at,
                st.text()
            ));
            continue;
        }
        match key {
            "unicast_peer" => {
                for p in &entries(st, true) {
                    peers.push((p.key().to_owned(), p.at.clone()));
                }
            }
            "unicast_src_ip" => {
                src = st.args().first().map(|w| w.text.clone());
                src_stmt = Some(st);
            }
            "track_script" | "track_process" => {
                for t in &entries(st, false) {
                    tracked.push((key, t.text(), t.at.clone(), t.key().to_owned()));
                }
            }
            "notify_master" | "notify" => notifies.push(st),
            "advert_int" => match seconds(st) {
                Some(ms) => advert = Some((ms, st.at.clone(), st.text())),
                None => out.untranslated.push(format!(
                    "{}: {} -- not a number of seconds",
                    st.at,
                    st.text()
                )),
            },
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                for v in &entries(st, true) {
                    let ip = v.key().split('/').next().unwrap_or("").to_owned();
                    vips.push((ip, v.at.clone(), v.text()));
                }
            }
            _ => {
                let why = vrrp_only(key).unwrap_or(
                    "not understood in a vrrp_instance: no watchdog equivalent is known",
                );
                out.untranslated
                    .push(format!("{}: {} -- {why}", st.at, st.text()));
            }
        }
    }

    let peer_ips: Vec<String> = peers
        .iter()
        .map(|(p, _)| p.split('/').next().unwrap_or(p).to_owned())
        .filter(|p| src.as_deref() != Some(p.as_str()))
        .collect();
    for st in notifies {
        notify(st, &instance, &peer_ips, root, &mut claims, o, out);
    }
    // keepalived ignores its own address in unicast_peer: never watch this node as its peer.
    if let Some(own) = src.as_deref() {
        peers.retain(|(p, at)| {
            let mine = p.split('/').next() == Some(own);
            if mine {
                out.approximate.push(format!(
                    "{at}: unicast_peer {p}: this node's own address (unicast_src_ip {own}), which keepalived ignores in the list: skipped, not watched as a peer"
                ));
            }
            !mine
        });
    } else if peers.len() > 1 {
        out.approximate.push(format!(
            "{}: vrrp_instance {instance} has several unicast_peer and no unicast_src_ip: the list may include this node's own address (keepalived ignores it); check that the peer the rule watches is not this node",
            s.at
        ));
    }
    let members = write_claims(&claims, &instance, o, out);
    let has_claims = !members.is_empty();
    if let (false, Some((_, at, text))) = (has_claims, &advert) {
        let why = vrrp_only("advert_int").unwrap_or("");
        out.untranslated.push(format!("{at}: {text} -- {why}"));
    }
    let claimed: BTreeSet<&str> = claims
        .private
        .iter()
        .filter_map(|(_, ip, _)| ip.as_deref())
        .chain(claims.routes.keys().filter_map(|d| d.as_deref()))
        .map(|a| a.split('/').next().unwrap_or(a))
        .collect();
    for (ip, at, text) in &vips {
        if claimed.contains(ip.as_str()) {
            out.approximate.push(format!(
                "{at}: virtual_ipaddress {text}: the claim of {ip} adds it to this node's interface itself once EC2 sends it here"
            ));
        } else {
            out.untranslated.push(format!(
                "{at}: virtual_ipaddress {text} -- an address moved by VRRP and gratuitous ARP does not move in a VPC: make it an Elastic IP (claim_eip), a secondary private IP of the subnet (claim_private_ip) or an overlay IP routed to the holder (claim_route), moved by the notify script's `aws ec2` call"
            ));
        }
    }
    for (kind, t, at, tracked_name) in &tracked {
        let tracked_name = tracked_name.as_str();
        let rule = if *kind == "track_script" {
            o.checks.get(tracked_name).map(|c| &c.rule)
        } else {
            o.processes.get(tracked_name)
        };
        let what = if *kind == "track_script" {
            "vrrp_script"
        } else {
            "vrrp_track_process"
        };
        match rule {
            Some(rule) => out.approximate.push(format!(
                "{at}: {kind} {t}: keepalived made this node master only while it passed; here a claim goes ahead only while this node's HAProxy is ready ([haproxy]), and rule {rule} runs and reports but gates nothing (give it actions if it should act)"
            )),
            None => out.untranslated.push(format!(
                "{at}: {kind} {t} -- no {what} of that name was translated"
            )),
        }
    }
    if !has_claims {
        let why = if claims.by_hand {
            "no rule watches the peer: the notify script's claim is to be written by hand (listed), and a rule checking the peer with it in on_fail"
        } else {
            "no rule watches the peer: the instance's notify scripts move no AWS address"
        };
        if let Some(st) = src_stmt {
            out.untranslated
                .push(format!("{}: {} -- {why}", st.at, st.text()));
        }
        for (p, at) in &peers {
            out.untranslated
                .push(format!("{at}: unicast_peer {p} -- {why}"));
        }
        return;
    }

    // One claim, or several moved as one decision.
    let on_fail = if members.len() == 1 {
        members[0].0.clone()
    } else {
        let group = name(&format!("move-{instance}"));
        let list: Vec<String> = members.iter().map(|(m, _)| q(m)).collect();
        // The group's alert: the topic of its members' branch, when they share one.
        let first = members[0].1.clone();
        let common = first.filter(|t| {
            members
                .iter()
                .all(|(_, m)| m.as_deref() == Some(t.as_str()))
        });
        let topic = topic_line(&common, &s.at, &group, out);
        o.actions.insert(
            group.clone(),
            format!(
                "# vrrp_instance {instance}'s notify script moved these together: one decision, one alert.\n[actions.{}]\ntype = \"claim_group\"\nmembers = [{}]\n{topic}",
                q(&group),
                list.join(", ")
            ),
        );
        group
    };

    let port = tracked
        .iter()
        .filter(|(kind, ..)| *kind == "track_script")
        .filter_map(|(.., tracked_name)| o.checks.get(tracked_name))
        .chain(o.checks.values())
        .find_map(|c| c.port)
        .or(o.service_port);
    let rule = o.rule_name(&format!("{instance}-peer"));
    let port = port.unwrap_or_else(|| {
        out.approximate.push(format!(
            "{}: vrrp_instance {instance}: no port of the service is evident (no vrrp_script URL or `nc` port, no virtual_server): rule {rule} checks the peer's port {DEFAULT_PORT}; set the port the peer's HAProxy serves",
            s.at
        ));
        DEFAULT_PORT
    });
    let (interval_ms, advert_note) = match &advert {
        Some((ms, at, _)) => {
            let ms = clamp_interval(*ms, at, out);
            (ms, format!("{at}: advert_int {}: ", duration(ms)))
        }
        None => (
            KEEPALIVED_INTERVAL_MS,
            format!("{}: vrrp_instance {instance} (advert_int 1 s): ", s.at),
        ),
    };
    out.approximate.push(format!(
        "{advert_note}VRRP made this node master after 3 missed adverts of the peer; rule {rule} checks the peer every {} and fails after {PEER_FAIL_AFTER} failed checks in a row. The watchdog moves the address when that rule fails, and only while this node's own HAProxy is ready ([haproxy])",
        duration(interval_ms)
    ));
    let timeout_ms = interval_ms.min(2000);
    let head = format!(
        "# keepalived, {}: vrrp_instance {instance}{}.\n# VRRP made this node master when the peer's adverts stopped. Here the claims run when this\n# rule fails: the peer stops accepting connections for {PEER_FAIL_AFTER} checks in a row. A claim goes\n# ahead only while this node's own HAProxy is ready ([haproxy]). The peer's HAProxy must\n# accept connections on the peer's own address too, not only on the shared one: else this\n# rule fails while the peer serves, and this node takes the address from it.\n",
        s.at,
        src.as_deref().map(|a| format!(" on {a}")).unwrap_or_default()
    );
    let mut required = "";
    let host = match peers.first() {
        Some((p, _)) => {
            for (other, at) in peers.iter().skip(1) {
                out.approximate.push(format!(
                    "{at}: unicast_peer {other}: rule {rule} watches the first peer only; add a rule per peer if any one of them failing should move the address"
                ));
            }
            p.clone()
        }
        None => {
            out.untranslated.push(format!(
                "{}: vrrp_instance {instance} has no unicast_peer -- keepalived found its peer by multicast, which a VPC does not carry: put the other node's private IP in rule {rule}'s check, then remove `enabled = false`",
                s.at
            ));
            required = "# REQUIRED: the other node's private IP as `host` (keepalived found it by multicast),\n# then remove `enabled = false`.\nenabled = false\n";
            "peer.invalid".into()
        }
    };
    let _ = write!(
        o.rules,
        "{head}[rules.{}]\n{required}check = {{ type = \"tcp\", host = {}, port = {port} }}\ninterval = \"{}\"\ntimeout = \"{}\"\nfail_after = {PEER_FAIL_AFTER}\nrecover_after = 2\non_fail = [{}]\non_recover = []\n\n",
        q(&rule),
        q(&host),
        duration(interval_ms),
        duration(timeout_ms),
        q(&on_fail),
    );
    out.rules += 1;
}

/// Read the script `st` (a `notify_master` or `notify`) runs and note the AWS moves in it.
fn notify(
    st: &Stmt,
    instance: &str,
    peers: &[String],
    root: Option<&Path>,
    claims: &mut Claims,
    o: &mut Out,
    out: &mut Imported,
) {
    let kw = st.key();
    let untranslated = |why: String| format!("{}: {} -- {why}", st.at, st.text());
    let argv = match command(st) {
        Ok(a) => a,
        Err(why) => {
            out.untranslated.push(untranslated(why));
            return;
        }
    };
    let Some(program) = argv.first() else {
        out.untranslated
            .push(untranslated("no script named".into()));
        return;
    };
    // `/bin/sh -c "..."`: the script is the argument.
    let text = if program.ends_with("sh") && argv.get(1).is_some_and(|a| a == "-c") {
        argv.get(2).cloned()
    } else if !program.starts_with('/') {
        out.untranslated.push(untranslated(format!(
            "`{program}` is not an absolute path: the script could not be read to see what it moves"
        )));
        return;
    } else {
        let path = under(root, Path::new(program));
        out.scripts.push(path.clone());
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > SCRIPT_LIMIT => {
                out.untranslated.push(untranslated(format!(
                    "{} is larger than {} KiB, not a notify script of the kind recognized here",
                    path.display(),
                    SCRIPT_LIMIT / 1024
                )));
                return;
            }
            _ => match script::read_text(&path) {
                Ok((t, bad)) => {
                    if let Some(line) = bad {
                        out.approximate.push(format!(
                            "{}:{line}: {}",
                            path.display(),
                            script::NOT_UTF8
                        ));
                    }
                    Some(t)
                }
                Err(e) => {
                    out.untranslated.push(untranslated(format!(
                        "cannot read {}: {e}; nothing it does is translated",
                        path.display()
                    )));
                    return;
                }
            },
        }
    };
    let text = text.unwrap_or_default();
    // keepalived calls `notify` with the instance, its name and the new state after the
    // script's own arguments; only MASTER moves an address.
    let mut args: Vec<String> = argv.iter().skip(1).cloned().collect();
    let state_arg = (kw == "notify").then(|| {
        args.extend(["INSTANCE".into(), instance.to_owned(), "MASTER".into()]);
        args.len()
    });
    let m = script::moves(&text, &args, state_arg, peers);
    let passed = match state_arg {
        Some(n) => format!("keepalived passes the state as ${n}"),
        None => "the script's own arguments substituted".into(),
    };
    for (line, states, call) in &m.ignored {
        out.approximate.push(format!(
            "{}: {program}:{line}: {call}: ignored: run for {states}, not MASTER ({passed}); only the MASTER branch's calls become claims",
            st.at,
        ));
    }
    for (line, cmd) in &m.other {
        out.untranslated.push(format!(
            "{}: {program}:{line}: {cmd} -- the watchdog does not run it: add an `exec` action if it must happen",
            st.at
        ));
    }
    for (line, target, call) in &m.elsewhere {
        out.untranslated.push(format!(
            "{}: {program}:{line}: {call} -- listed: the script gives the address to {target}, which may be the peer; if it is this node, write the claim by hand",
            st.at
        ));
    }
    if !m.unsure.is_empty() {
        for (line, why, call) in &m.unsure {
            out.untranslated.push(format!(
                "{}: {program}:{line}: {call} -- {why}: not translated; write the claim for the MASTER branch by hand",
                st.at
            ));
        }
        for (line, call) in &m.seen {
            out.untranslated.push(format!(
                "{}: {program}:{line}: {call} -- in the branch for MASTER, but the script's other calls' branches are not known: not translated; write the claim for the MASTER branch by hand",
                st.at
            ));
        }
        claims.by_hand = true;
        return;
    }
    if m.moves.is_empty() && !m.elsewhere.is_empty() {
        claims.by_hand = true;
        return;
    }
    if m.moves.is_empty() {
        let why = if m.ignored.is_empty() {
            format!("{program} makes no `aws ec2 associate-address`, `assign-private-ip-addresses` or `replace-route` call: run it from an `exec` action in the on_fail of the rule that should trigger it")
        } else {
            format!("{program} makes no `aws ec2` move in its MASTER branch: nothing is claimed")
        };
        out.untranslated.push(untranslated(why));
        return;
    }
    if kw == "notify" || m.branching {
        let what = match (m.branching, m.ignored.is_empty()) {
            (true, true) => "its `aws ec2` calls in its branch for MASTER (the state keepalived passes) are translated; no other branch makes one",
            (true, false) => "its `aws ec2` calls in its branch for MASTER (the state keepalived passes) are translated; the other branches' calls are listed as ignored",
            (false, _) => "it does not branch on the state keepalived passes, so its `aws ec2` calls are taken as what it does on MASTER (keepalived also runs it on BACKUP, FAULT and STOP)",
        };
        out.approximate
            .push(format!("{}: {}: {what}", st.at, st.text()));
    }
    for t in &m.targets {
        out.approximate.push(format!(
            "{}: {program}:{t}: not used: the claim moves the address to this node's own instance and network interface (from instance metadata)",
            st.at
        ));
    }
    for u in &m.unresolved {
        out.untranslated.push(format!(
            "{}: {program}:{u} -- computed by the script, so not known here: fill it in where the TOML says REQUIRED",
            st.at
        ));
    }
    if o.region.is_none() {
        o.region = m.region.clone();
    }
    // Only this script's topic, of the branch its claims are in.
    let topic = m.topic_arn.clone();
    o.first_claim.get_or_insert_with(|| st.at.clone());
    let at = |line: usize| At {
        file: PathBuf::from(program),
        line,
    };
    for (line, mv) in m.moves {
        match mv {
            Move::Eip {
                allocation_id,
                public_ip,
                private_ip,
            } => claims.eips.push((
                at(line),
                (allocation_id, public_ip, private_ip),
                topic.clone(),
            )),
            Move::PrivateIp { addresses } if addresses.is_empty() => {
                claims.private.push((at(line), None, topic.clone()))
            }
            Move::PrivateIp { addresses } => {
                for a in addresses {
                    claims.private.push((at(line), Some(a), topic.clone()));
                }
            }
            Move::Route { table, destination } => {
                let e = claims
                    .routes
                    .entry(destination)
                    .or_insert_with(|| (at(line), Vec::new(), false, topic.clone()));
                match table {
                    Some(t) if !e.1.contains(&t) => e.1.push(t),
                    Some(_) => {}
                    None => e.2 = true,
                }
            }
        }
    }
}

/// An action's `sns_topic_arn`: the topic of the same script's `aws sns publish` in the same
/// branch as its move; else REQUIRED, and listed.
fn topic_line(topic: &Option<String>, at: &At, key: &str, out: &mut Imported) -> String {
    match topic {
        Some(t) => format!(
            "sns_topic_arn = {}   # from the notify script's `aws sns publish` in the same branch\n",
            q(t)
        ),
        None => {
            out.untranslated.push(format!(
                "{at}: action {key}: the notify script publishes to no SNS topic in the branch of this move -- every claim sends one alert: set sns_topic_arn where the TOML says REQUIRED (or once in watchdog.toml's [alerts])"
            ));
            "# sns_topic_arn = \"arn:aws:sns:REGION:ACCOUNT:NAME\"   # REQUIRED (or [alerts] in watchdog.toml): every claim sends one alert\n".into()
        }
    }
}

const REACHABILITY: &str = "# reachability = [\"10.0.0.2:53\"]   # REQUIRED: where this node proves it reaches the VPC\n# before it takes the address (one answer is enough): the VPC's DNS resolver (its base\n# address + 2), a service in another subnet. keepalived had no equivalent.\n";

/// The entry saying that claim `key` needs a `reachability` list.
fn needs_reachability(at: &At, key: &str) -> String {
    format!("{at}: reachability of action {key} -- keepalived had no equivalent, and a private address's claim needs one: name a place in the VPC this node must reach first where the TOML says REQUIRED")
}

/// A name for the claim of an address the script computes: `base` (made of the instance's
/// name), with a number when taken, so that no two such claims share one action.
fn unknown_name(base: &str, o: &Out) -> String {
    let base = if base.ends_with('-') {
        format!("{base}keepalived")
    } else {
        base.to_owned()
    };
    let base = base.as_str();
    let mut n = name(base);
    let short: String = base.chars().take(56).collect();
    let mut i = 2;
    while o.actions.contains_key(&n) {
        n = name(&format!("{short}-{i}"));
        i += 1;
    }
    n
}

/// Write each claim as an action; the names, in order. Claims of the same literal address
/// are one action; a claim whose address the script computes gets an action of its own,
/// named after `instance`.
fn write_claims(
    c: &Claims,
    instance: &str,
    o: &mut Out,
    out: &mut Imported,
) -> Vec<(String, Option<String>)> {
    let mut names = Vec::new();
    for (at, (alloc, public, private), topic) in &c.eips {
        let (key, addr) = match (alloc, public) {
            (Some(a), _) => (name(&format!("claim-{a}")), format!("allocation_id = {}\n", q(a))),
            (None, Some(p)) => (name(&format!("claim-{p}")), format!("eip = {}\n", q(p))),
            (None, None) => (
                unknown_name(&format!("claim-{instance}"), o),
                "# allocation_id = \"eipalloc-...\"   # REQUIRED: the script's allocation id was not a literal\n".into(),
            ),
        };
        let private = private
            .as_ref()
            .map(|p| {
                format!(
                    "private_ip = {}   # this node's; the other node's file needs its own\n",
                    q(p)
                )
            })
            .unwrap_or_default();
        if !o.actions.contains_key(&key) {
            let topic = topic_line(topic, at, &key, out);
            o.actions.insert(key.clone(), format!(
                "# From {at} (aws ec2 associate-address), vrrp_instance {instance}.\n# The claim also checks this node's HAProxy and its egress first, reads the owner,\n# verifies the move and holds down after it.\n[actions.{}]\ntype = \"claim_eip\"\n{addr}{private}hold_down = \"5m\"\n{topic}",
                q(&key)
            ));
        }
        names.push((key, topic.clone()));
        o.eip = true;
    }
    for (at, ip, topic) in &c.private {
        let (key, addr) = match ip {
            Some(ip) => (
                name(&format!("claim-{ip}")),
                format!("private_ip = {}\n", q(ip)),
            ),
            None => (
                unknown_name(&format!("claim-private-ip-{instance}"), o),
                "# private_ip = \"...\"   # REQUIRED: the script's address was not a literal\n"
                    .into(),
            ),
        };
        if !o.actions.contains_key(&key) {
            out.untranslated.push(needs_reachability(at, &key));
            let topic = topic_line(topic, at, &key, out);
            o.actions.insert(key.clone(), format!(
                "# From {at} (aws ec2 assign-private-ip-addresses), vrrp_instance {instance}.\n# The claim adds the address to this node's interface once EC2 shows it here; HAProxy\n# must bind it before (net.ipv4.ip_nonlocal_bind = 1, as with keepalived).\n[actions.{}]\ntype = \"claim_private_ip\"\n{addr}{REACHABILITY}hold_down = \"5m\"\n{topic}",
                q(&key)
            ));
        }
        names.push((key, topic.clone()));
    }
    for (dest, (at, tables, unresolved, topic)) in &c.routes {
        let (key, d) = match dest {
            Some(d) if d.contains('/') && !d.ends_with("/32") => {
                out.untranslated.push(format!(
                    "{at}: --destination-cidr-block {d} -- a claim_route routes one address (a /32): route one overlay IP to the holder and fill it in where the TOML says REQUIRED"
                ));
                (
                    name(&format!("claim-route-{d}")),
                    format!("# destination = \"...\"   # REQUIRED: one address; the script routed {d}\n"),
                )
            }
            Some(d) => {
                let ip = d.strip_suffix("/32").unwrap_or(d);
                (
                    name(&format!("claim-route-{ip}")),
                    format!("destination = {}\n", q(ip)),
                )
            }
            None => (
                unknown_name(&format!("claim-route-{instance}"), o),
                "# destination = \"...\"   # REQUIRED: the script's CIDR block was not a literal\n"
                    .into(),
            ),
        };
        let list: Vec<String> = tables.iter().map(|t| q(t)).collect();
        let tables = match (list.is_empty(), unresolved) {
            (false, false) => format!("route_table_ids = [{}]\n", list.join(", ")),
            (false, true) => format!("route_table_ids = [{}]   # REQUIRED: add the tables the script computed\n", list.join(", ")),
            (true, _) => "# route_table_ids = [\"rtb-...\"]   # REQUIRED: the script's route tables were not literals\n".into(),
        };
        if !o.actions.contains_key(&key) {
            out.untranslated.push(needs_reachability(at, &key));
            let topic = topic_line(topic, at, &key, out);
            o.actions.insert(key.clone(), format!(
                "# From {at} (aws ec2 replace-route), vrrp_instance {instance}, every table in one claim.\n# The claim adds the address to `lo` while the tables point here; HAProxy must bind it\n# before (net.ipv4.ip_nonlocal_bind = 1, as with keepalived). Source/destination checking\n# must be off on both nodes' ENIs, as keepalived's routing already needed.\n[actions.{}]\ntype = \"claim_route\"\n{d}{tables}{REACHABILITY}hold_down = \"5m\"\n{topic}",
                q(&key)
            ));
        }
        names.push((key, topic.clone()));
    }
    names.dedup_by(|a, b| a.0 == b.0);
    names
}

/// The TOML: what was not translated first, then the sections, the rules and the actions.
fn write(o: Out, mut out: Imported) -> Imported {
    // Every echoed statement and script line, with its secrets hidden.
    // What is echoed comes before ` -- `, the why after it: a header's value with no closing
    // quote would otherwise run into the why.
    for l in out
        .untranslated
        .iter_mut()
        .chain(out.approximate.iter_mut())
    {
        *l = match l.split_once(" -- ") {
            Some((head, why)) => format!("{} -- {why}", script::redact(head)),
            None => script::redact(l),
        };
    }
    // No global sections: they are set in one file only, and the packaged watchdog.toml
    // already has them; the output goes into conf.d as it is.
    let mut globals = String::new();
    if o.first_claim.is_some() {
        let settings: Vec<MainSetting> = o
            .region
            .iter()
            .map(|r| MainSetting {
                section: "aws",
                key: "region",
                value: q(r),
                why: "the notify script's `--region` (or its AWS_REGION). The daemon calls EC2 and SNS in this one region; unset, on EC2, it is this node's region (from instance metadata)".into(),
            })
            .collect();
        let mut notes = String::from("#   [haproxy]: a claim goes ahead only while this node's HAProxy is ready, as keepalived's\n#   track_script made a node master only while its check passed. The stats socket\n#   /run/haproxy/admin.sock is read by default: name the backend HAProxy serves (backend =\n#   \"app\") for more than the process answering.\n");
        if o.eip {
            notes.push_str("#   [egress]: before it takes the Elastic IP, a node proves through checkip_url (default\n#   https://checkip.amazonaws.com) that its own traffic reaches the internet and does not\n#   already leave from the EIP. keepalived's script did not check.\n");
        }
        globals = main_file(&settings, &notes, &mut out);
    }
    let mut acts = String::new();
    for a in o.actions.values() {
        out.actions += 1;
        acts.push_str(a);
        acts.push('\n');
    }
    let mut head =
        String::from("# Converted from keepalived by `haproxy-watchdog import-keepalived`");
    for f in &out.files {
        let _ = write!(head, "\n#   {}", f.display());
    }
    head.push_str("\n# Review it, then check it with: watchdog validate --config FILE\n");
    if !out.untranslated.is_empty() {
        head.push_str("#\n# NOT TRANSLATED (no watchdog equivalent, or not understood):\n");
        for u in &out.untranslated {
            let _ = writeln!(head, "#   {}", u.replace(['\n', '\r'], " "));
        }
    }
    if !out.approximate.is_empty() {
        head.push_str("#\n# Translated approximately:\n");
        for a in &out.approximate {
            let _ = writeln!(head, "#   {}", a.replace(['\n', '\r'], " "));
        }
    }
    out.toml = format!("{head}\n{globals}{}{acts}", o.rules);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TOML for `text` (no files read) and its report.
    fn convert_text(text: &str) -> (toml::Table, Imported) {
        let parsed = parse::parse(text, Path::new("keepalived.conf"));
        let out = convert(parsed.stmts, Imported::default(), None);
        let table = out
            .toml
            .parse()
            .unwrap_or_else(|e| panic!("{e}\n{}", out.toml));
        (table, out)
    }

    /// Every listed item names its file and line.
    fn assert_located(out: &Imported) {
        for u in out.untranslated.iter().chain(&out.approximate) {
            let (file, rest) = u.split_once(':').unwrap_or(("", ""));
            let line = rest.split(':').next().unwrap_or("");
            assert!(
                !file.is_empty() && line.parse::<usize>().is_ok(),
                "no file:line: {u}"
            );
        }
    }

    #[test]
    fn vrrp_scripts_become_program_rules_with_keepalived_defaults() {
        let (t, out) = convert_text(
            r#"vrrp_script chk_haproxy {
    script "/usr/bin/killall -0 haproxy"
}
vrrp_script chk_http {
    script "/usr/bin/curl -sf 'http://127.0.0.1:8404/ready'"
    interval 2
    timeout 5
    fall 3
    rise 5
    weight -20
    user nobody
    init_fail
}
vrrp_script chk_rel {
    script "no-such-program --x"
    interval 0.5
}
"#,
        );
        let r = &t["rules"]["chk_haproxy"];
        assert_eq!(r["check"]["type"].as_str(), Some("program"));
        let cmd: Vec<&str> = r["check"]["command"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(cmd, ["/usr/bin/killall", "-0", "haproxy"]);
        assert_eq!(r["interval"].as_str(), Some("1s"));
        assert_eq!(r["timeout"].as_str(), Some("1s"));
        assert_eq!(r["fail_after"].as_integer(), Some(1));
        assert_eq!(r["recover_after"].as_integer(), Some(1));
        assert_eq!(r["on_fail"].as_array().map(Vec::len), Some(0));
        let r = &t["rules"]["chk_http"];
        assert_eq!(
            r["check"]["command"][2].as_str(),
            Some("http://127.0.0.1:8404/ready"),
            "single quotes inside the script are honoured"
        );
        assert_eq!(r["interval"].as_str(), Some("2s"));
        assert_eq!(r["timeout"].as_str(), Some("2s"), "cut to the interval");
        assert_eq!(r["fail_after"].as_integer(), Some(3));
        assert_eq!(r["recover_after"].as_integer(), Some(5));
        let notes = out.approximate.join("\n");
        for n in [
            "keepalived.conf:7: timeout 5s is longer than the interval 2s; cut",
            "keepalived.conf:10: weight -20: no equivalent: the watchdog has no priorities",
            "keepalived.conf:11: user nobody:",
            "keepalived.conf:12: init_fail:",
        ] {
            assert!(notes.contains(n), "{n}: {notes}");
        }
        let r = &t["rules"]["chk_rel"];
        assert_eq!(r["interval"].as_str(), Some("500ms"));
        assert_eq!(r["check"]["command"][0].as_str(), Some("no-such-program"));
        assert!(out.toml.contains("# REQUIRED: the program's absolute path"));
        assert_eq!(out.untranslated.len(), 1, "{:?}", out.untranslated);
        assert!(out.untranslated[0]
            .starts_with("keepalived.conf:15: script \"no-such-program --x\" -- `no-such-program` is not an absolute path"));
        assert_eq!(out.rules, 3);
        assert_located(&out);
    }

    #[test]
    fn an_instance_with_an_inline_notify_becomes_claims_in_a_group_on_a_peer_rule() {
        let (t, out) = convert_text(
            r#"vrrp_script chk {
    script "/bin/nc -z 127.0.0.1 8443"
}
vrrp_instance VI_1 {
    state BACKUP
    priority 100
    advert_int 2
    unicast_src_ip 10.0.1.12
    unicast_peer {
        10.0.1.11
        10.0.1.13
    }
    track_script {
        chk weight 10
        missing
    }
    virtual_ipaddress {
        192.168.100.10/32
        10.9.9.9/24 dev eth0
    }
    notify_master "/bin/sh -c 'aws ec2 associate-address --public-ip 203.0.113.10 --region us-west-2; aws ec2 replace-route --route-table-id rtb-1 --destination-cidr-block 192.168.100.10/32'"
    notify_backup /etc/keepalived/backup.sh
    mystery_option 3
}
"#,
        );
        let rule = &t["rules"]["VI_1-peer"];
        assert_eq!(rule["check"]["type"].as_str(), Some("tcp"));
        assert_eq!(rule["check"]["host"].as_str(), Some("10.0.1.11"));
        assert_eq!(rule["check"]["port"].as_integer(), Some(8443));
        assert_eq!(rule["interval"].as_str(), Some("2s"));
        assert_eq!(rule["fail_after"].as_integer(), Some(3));
        assert_eq!(rule["on_fail"][0].as_str(), Some("move-VI_1"));
        let group = &t["actions"]["move-VI_1"];
        assert_eq!(group["type"].as_str(), Some("claim_group"));
        assert_eq!(group["members"].as_array().map(Vec::len), Some(2));
        let eip = &t["actions"]["claim-203.0.113.10"];
        assert_eq!(eip["type"].as_str(), Some("claim_eip"));
        assert_eq!(eip["eip"].as_str(), Some("203.0.113.10"));
        let route = &t["actions"]["claim-route-192.168.100.10"];
        assert_eq!(route["destination"].as_str(), Some("192.168.100.10"));
        assert_eq!(route["route_table_ids"][0].as_str(), Some("rtb-1"));
        assert!(
            out.toml.contains("#   [aws] region = \"us-west-2\""),
            "{}",
            out.toml
        );
        assert!(t.get("aws").is_none() && t.get("alerts").is_none() && t.get("haproxy").is_none());
        assert_eq!(out.by_hand.len(), 1, "{:?}", out.by_hand);
        assert!(out.by_hand[0].starts_with("[aws] region = \"us-west-2\" -- the notify script's"));
        assert!(eip.get("sns_topic_arn").is_none());
        assert!(out
            .toml
            .contains("# sns_topic_arn = \"arn:aws:sns:REGION:ACCOUNT:NAME\"   # REQUIRED"));
        assert!(out
            .toml
            .contains("# reachability = [\"10.0.0.2:53\"]   # REQUIRED"));

        let listed = out.untranslated.join("\n");
        for l in [
            "keepalived.conf:5: state BACKUP -- no equivalent",
            "keepalived.conf:6: priority 100 -- no equivalent",
            "keepalived.conf:15: track_script missing -- no vrrp_script",
            "keepalived.conf:19: virtual_ipaddress 10.9.9.9/24 dev eth0 -- an address moved by VRRP",
            "keepalived.conf:22: notify_backup /etc/keepalived/backup.sh -- no equivalent",
            "keepalived.conf:23: mystery_option 3 -- not understood",
            "reachability of action claim-route-192.168.100.10 --",
            "publishes to no SNS topic",
        ] {
            assert!(listed.contains(l), "{l}: {listed}");
        }
        let notes = out.approximate.join("\n");
        for n in [
            "keepalived.conf:7: advert_int 2s: VRRP made this node master after 3 missed adverts",
            "only while this node's own HAProxy is ready ([haproxy])",
            "keepalived.conf:11: unicast_peer 10.0.1.13: rule VI_1-peer watches the first peer only",
            "keepalived.conf:14: track_script chk weight 10:",
            "keepalived.conf:18: virtual_ipaddress 192.168.100.10/32: the claim of 192.168.100.10 adds it",
        ] {
            assert!(notes.contains(n), "{n}: {notes}");
        }
        assert!(!listed.contains("unicast_src_ip") && !listed.contains("advert_int"));
        assert_eq!((out.rules, out.actions), (2, 3));
        assert_located(&out);
    }

    #[test]
    fn without_a_peer_the_rule_is_disabled_and_without_an_aws_move_nothing_is_claimed() {
        let (t, out) = convert_text(
            "vrrp_instance A {\n  notify_master \"/bin/sh -c 'aws ec2 assign-private-ip-addresses --private-ip-addresses 10.0.1.50'\"\n}\nvrrp_instance LAN {\n  unicast_peer { 10.0.0.2 }\n  track_script chk\n  unicast_src_ip 10.0.0.1\n  virtual_ipaddress {\n    192.168.1.1\n  }\n}\n",
        );
        let rule = &t["rules"]["A-peer"];
        assert_eq!(rule["enabled"].as_bool(), Some(false));
        assert!(out
            .toml
            .contains("# REQUIRED: the other node's private IP as `host`"));
        assert_eq!(
            t["actions"]["claim-10.0.1.50"]["type"].as_str(),
            Some("claim_private_ip")
        );
        assert!(t["rules"].get("LAN-peer").is_none());
        let listed = out.untranslated.join("\n");
        assert!(
            listed.contains("keepalived.conf:1: vrrp_instance A has no unicast_peer"),
            "{listed}"
        );
        assert!(
            listed.contains("keepalived.conf:5: unicast_peer 10.0.0.2 -- no rule watches the peer"),
            "{listed}"
        );
        assert!(
            listed.contains("keepalived.conf:9: virtual_ipaddress 192.168.1.1 -- ")
                && listed.contains(
                    "keepalived.conf:6: track_script chk -- `track_script` takes a block"
                )
                && listed.contains(
                    "keepalived.conf:7: unicast_src_ip 10.0.0.1 -- no rule watches the peer"
                ),
            "{listed}"
        );
        assert_located(&out);
    }

    #[test]
    fn an_eip_instance_with_a_topic_validates_as_written() {
        let (t, out) = convert_text(
            r#"vrrp_script chk_haproxy {
    script "/usr/bin/killall -0 haproxy"
    interval 2
}
vrrp_instance VI_1 {
    unicast_peer {
        10.0.1.12
    }
    notify_master "/bin/sh -c 'aws ec2 associate-address --allocation-id eipalloc-0abc && aws sns publish --topic-arn arn:aws:sns:us-east-1:123456789012:ha --message x'"
}
"#,
        );
        assert!(out.untranslated.is_empty(), "{:?}", out.untranslated);
        assert_eq!(
            t["actions"]["claim-eipalloc-0abc"]["allocation_id"].as_str(),
            Some("eipalloc-0abc")
        );
        assert_eq!(
            t["actions"]["claim-eipalloc-0abc"]["sns_topic_arn"].as_str(),
            Some("arn:aws:sns:us-east-1:123456789012:ha")
        );
        assert!(out
            .toml
            .contains("#   [haproxy]: a claim goes ahead only while"));
        if let Err(e) = crate::config::from_sources(&[("out.toml".into(), out.toml.clone())]) {
            panic!("{e}\n{}", out.toml);
        }
    }

    #[test]
    fn vrrp_track_process_becomes_a_process_rule() {
        let (t, out) = convert_text(
            r#"vrrp_track_process track_haproxy {
    process haproxy -f /etc/haproxy/haproxy.cfg
    weight 10
    quorum 1
    bogus 1
}
vrrp_instance VI_1 {
    unicast_peer { 10.0.1.12 }
    track_process {
        track_haproxy
        nothing
    }
    notify_master "/bin/sh -c 'aws ec2 associate-address --public-ip 203.0.113.10; aws sns publish --topic-arn arn:aws:sns:us-east-1:123456789012:ha'"
}
"#,
        );
        let r = &t["rules"]["track_haproxy"];
        assert_eq!(r["check"]["type"].as_str(), Some("process"));
        assert_eq!(r["check"]["name"].as_str(), Some("haproxy"));
        assert_eq!(r["interval"].as_str(), Some("1s"));
        let notes = out.approximate.join("\n");
        for n in [
            "keepalived.conf:2: process haproxy -f /etc/haproxy/haproxy.cfg: its parameters are not matched",
            "keepalived.conf:3: weight 10: no equivalent",
            "keepalived.conf:10: track_process track_haproxy: keepalived made this node master only while it passed",
            "process-checks.conf",
        ] {
            assert!(notes.contains(n), "{n}: {notes}");
        }
        let listed = out.untranslated.join("\n");
        assert!(
            listed.contains("keepalived.conf:5: bogus 1 -- not understood"),
            "{listed}"
        );
        assert!(
            listed.contains("keepalived.conf:11: track_process nothing -- no vrrp_track_process"),
            "{listed}"
        );
        if let Err(e) = crate::config::from_sources(&[("out.toml".into(), out.toml.clone())]) {
            panic!("{e}\n{}", out.toml);
        }
    }

    #[test]
    fn the_same_input_gives_the_same_output_and_garbage_never_panics() {
        let text = "vrrp_script a { script /bin/true }\nvrrp_instance X { unicast_peer { 10.0.0.1 } notify \"/bin/sh -c 'aws ec2 replace-route --route-table-id rtb-2 --destination-cidr-block 10.1.0.0/16'\" }\n";
        let (t, a) = convert_text(text);
        let (_, b) = convert_text(text);
        assert_eq!(a.toml, b.toml);
        assert!(t["actions"]["claim-route-10.1.0.0-16"]
            .get("destination")
            .is_none());
        assert!(a.untranslated.iter().any(|u| u
            .contains("--destination-cidr-block 10.1.0.0/16 -- a claim_route routes one address")));
        let mut o = Out::default();
        let long = "x".repeat(100);
        let names: BTreeSet<String> = (0..3).map(|_| o.rule_name(&long)).collect();
        assert_eq!(names.len(), 3);
        assert!(names.iter().all(|n| n.len() <= 64), "{names:?}");
        for garbage in [
            "{{{{ }}}} vrrp_instance { } vrrp_script { script }".to_owned(),
            "vrrp_instance\n{\nnotify_master\nunicast_peer {\n}\n".to_owned(),
            "vrrp_script x {\n interval -1\n timeout nan\n fall 0\n rise 99999999999\n script \"\"\n}\n".to_owned(),
            "vrrp_instance Y { notify_master \"/bin/sh -c\" advert_int 1e300 }\n".to_owned(),
            "include\ninclude a b\n".repeat(3),
            "vrrp_script s {\n script \"/bin/true\"\n}\n".repeat(5_000),
        ] {
            let parsed = parse::parse(&garbage, Path::new("g"));
            let out = convert(parsed.stmts, Imported::default(), None);
            assert!(out.toml.parse::<toml::Table>().is_ok(), "{garbage}");
        }
    }

    #[test]
    fn claims_of_computed_addresses_get_an_action_each_named_after_the_instance() {
        let (t, out) = convert_text(
            r#"vrrp_instance VI_A {
    unicast_peer { 10.0.1.12 }
    notify_master "/bin/sh -c 'aws ec2 associate-address --allocation-id $(cat /etc/eip-a); aws ec2 assign-private-ip-addresses --private-ip-addresses $(cat /a); aws ec2 replace-route --route-table-id rtb-1 --destination-cidr-block $(cat /d)'"
}
vrrp_instance VI_B {
    unicast_peer { 10.0.1.12 }
    notify_master "/bin/sh -c 'aws ec2 associate-address --allocation-id $(cat /etc/eip-b); aws ec2 associate-address --allocation-id $X'"
}
vrrp_instance VI_C {
    unicast_peer { 10.0.1.12 }
    notify_master "/bin/sh -c 'aws ec2 associate-address --allocation-id eipalloc-1'"
}
vrrp_instance VI_D {
    unicast_peer { 10.0.1.12 }
    notify_master "/bin/sh -c 'aws ec2 associate-address --allocation-id eipalloc-1'"
}
"#,
        );
        let actions = t["actions"].as_table().unwrap();
        for a in [
            "claim-VI_A",
            "claim-private-ip-VI_A",
            "claim-route-VI_A",
            "claim-VI_B",
            "claim-VI_B-2",
            "claim-eipalloc-1",
        ] {
            assert!(actions.contains_key(a), "{a}: {}", out.toml);
        }
        assert!(!actions.contains_key("claim-eip"));
        assert_eq!(
            t["rules"]["VI_A-peer"]["on_fail"][0].as_str(),
            Some("move-VI_A")
        );
        assert_eq!(
            t["rules"]["VI_B-peer"]["on_fail"][0].as_str(),
            Some("move-VI_B")
        );
        // The same literal address is one claim.
        assert_eq!(
            t["rules"]["VI_C-peer"]["on_fail"][0].as_str(),
            Some("claim-eipalloc-1")
        );
        assert_eq!(
            t["rules"]["VI_D-peer"]["on_fail"][0].as_str(),
            Some("claim-eipalloc-1")
        );
        let b = out.toml.find("[actions.\"claim-VI_B\"]").unwrap();
        assert!(out.toml[..b].ends_with("vrrp_instance VI_B.\n# The claim also checks this node's HAProxy and its egress first, reads the owner,\n# verifies the move and holds down after it.\n"), "{}", out.toml);
    }

    #[test]
    fn a_block_listing_values_on_one_line_reads_as_one_a_line() {
        let conf = |peers: &str, vips: &str, tracks: &str| {
            format!("vrrp_script a {{\n script \"/bin/true\"\n}}\nvrrp_script b {{\n script \"/bin/true\"\n}}\nvrrp_instance V {{\n unicast_peer {peers}\n virtual_ipaddress {vips}\n track_script {tracks}\n notify_master \"/bin/sh -c 'aws ec2 assign-private-ip-addresses --private-ip-addresses 10.0.0.5'\"\n}}\n")
        };
        let (t1, one) = convert_text(&conf(
            "{ 10.0.1.12 10.0.1.13 }",
            "{ 10.0.0.5/24 dev eth0 10.0.0.6 }",
            "{ a weight 10 b }",
        ));
        let (t2, many) = convert_text(&conf(
            "{\n 10.0.1.12\n 10.0.1.13\n }",
            "{\n 10.0.0.5/24 dev eth0\n 10.0.0.6\n }",
            "{\n a weight 10\n b\n }",
        ));
        assert_eq!(
            t1["rules"]["V-peer"]["check"]["host"].as_str(),
            Some("10.0.1.12")
        );
        assert_eq!(t1["rules"], t2["rules"]);
        let strip = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|l| {
                    l.split_once(": ").map_or(l.clone(), |(_, r)| {
                        r.split_once(": ")
                            .map_or(r.to_owned(), |(_, r)| r.to_owned())
                    })
                })
                .collect()
        };
        assert_eq!(strip(&one.approximate), strip(&many.approximate));
        assert_eq!(strip(&one.untranslated), strip(&many.untranslated));
        let notes = one.approximate.join("\n");
        for n in [
            "unicast_peer 10.0.1.13: rule V-peer watches the first peer only",
            "virtual_ipaddress 10.0.0.5/24 dev eth0: the claim of 10.0.0.5",
            "track_script a weight 10:",
            "track_script b:",
        ] {
            assert!(notes.contains(n), "{n}: {notes}");
        }
        assert!(one
            .untranslated
            .join("\n")
            .contains("virtual_ipaddress 10.0.0.6 --"));
    }

    #[test]
    fn a_keyword_carrying_a_secret_is_redacted_in_the_report_and_the_toml() {
        let (_, out) = convert_text(
            "global_defs {\n  smtp_auth_password Sup3rSecretSMTP\n}\nvrrp_instance V {\n  authentication {\n    auth_type PASS\n    auth_pass s3cr3t\n  }\n  auth_pass s3cr3t\n}\nmy_token_keyword abc123\n",
        );
        let all = format!(
            "{}\n{:?}\n{:?}",
            out.toml, out.untranslated, out.approximate
        );
        for secret in ["Sup3rSecretSMTP", "s3cr3t", "abc123"] {
            assert!(!all.contains(secret), "{secret}: {all}");
        }
        assert!(out.toml.contains("smtp_auth_password ***"), "{}", out.toml);
    }

    #[test]
    fn a_command_with_backslash_escapes_is_split_as_keepalived_splits_it() {
        let (t, out) = convert_text(
            r#"vrrp_script sock {
    script "/bin/sh -c \"test -S /run/haproxy/admin.sock\""
}
vrrp_script tab {
    script "/usr/bin/printf a\tb \\ \'x y\'"
}
vrrp_script space {
    script /usr/local/bin/check\ with\ space.sh
}
vrrp_script plain {
    script /usr/bin/killall -0 haproxy
}
"#,
        );
        let cmd = |r: &str| -> Vec<String> {
            t["rules"][r]["check"]["command"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            cmd("sock"),
            ["/bin/sh", "-c", "test -S /run/haproxy/admin.sock"]
        );
        // keepalived splits twice, escapes applied each time: `\t` is a blank at the second.
        assert_eq!(cmd("tab"), ["/usr/bin/printf", "a", "b", " x y"]);
        assert_eq!(cmd("plain"), ["/usr/bin/killall", "-0", "haproxy"]);
        assert!(t["rules"].get("space").is_none());
        assert!(
            out.untranslated
                .iter()
                .any(|u| u.starts_with("keepalived.conf:8: script /usr/local/bin/check\\ with\\ space.sh -- a blank escaped")),
            "{:?}",
            out.untranslated
        );
        assert_eq!(out.untranslated.len(), 1, "{:?}", out.untranslated);
    }

    #[test]
    fn a_renamed_vrrp_script_is_reported_and_track_script_resolves_through_it() {
        let (t, out) = convert_text(
            r#"vrrp_script chk-haproxy {
    script "/bin/true"
}
vrrp_script "chk haproxy" {
    script "/bin/false"
}
vrrp_instance V {
    unicast_peer { 10.0.1.12 }
    track_script {
        "chk haproxy" weight 2
        chk-haproxy
    }
    notify_master "/bin/sh -c 'aws ec2 associate-address --allocation-id eipalloc-1'"
}
"#,
        );
        assert_eq!(
            t["rules"]["chk-haproxy-2"]["check"]["command"][0].as_str(),
            Some("/bin/false")
        );
        let notes = out.approximate.join("\n");
        for n in [
            "keepalived.conf:4: vrrp_script \"chk haproxy\": written as rule chk-haproxy-2 (the name is taken by another rule)",
            "keepalived.conf:10: track_script \"chk haproxy\" weight 2: keepalived made this node master only while it passed; here a claim goes ahead only while this node's HAProxy is ready ([haproxy]), and rule chk-haproxy-2 runs",
            "keepalived.conf:11: track_script chk-haproxy: keepalived made this node master only while it passed; here a claim goes ahead only while this node's HAProxy is ready ([haproxy]), and rule chk-haproxy runs",
        ] {
            assert!(notes.contains(n), "{n}: {notes}");
        }
        assert!(
            !out.untranslated.join("\n").contains("no vrrp_script"),
            "{:?}",
            out.untranslated
        );
    }

    #[test]
    fn a_timeout_of_zero_means_not_set_as_in_keepalived() {
        let (t, out) = convert_text(
            "vrrp_script a {\n  script \"/bin/true\"\n  interval 3\n  timeout 0\n}\nvrrp_script b {\n  script \"/bin/true\"\n  timeout 0.0\n}\n",
        );
        assert_eq!(t["rules"]["a"]["timeout"].as_str(), Some("3s"));
        assert_eq!(t["rules"]["b"]["timeout"].as_str(), Some("1s"));
        let notes = out.approximate.join("\n");
        assert!(
            notes.contains("keepalived.conf:4: timeout 0: keepalived takes 0 as not set"),
            "{notes}"
        );
        assert!(
            notes.contains("keepalived.conf:8: timeout 0.0: keepalived takes 0 as not set"),
            "{notes}"
        );
        assert!(!notes.contains("raised to 10ms"), "{notes}");
    }

    #[test]
    fn a_notify_script_branching_on_the_state_unreadably_leaves_the_claim_to_write_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("notify.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\naws ec2 associate-address --allocation-id eipalloc-x\ncase \"$3\" in\n  BACKUP) aws ec2 associate-address --allocation-id eipalloc-b --instance-id i-0peer ;;\nesac\n",
        )
        .unwrap();
        let (t, out) = convert_text(&format!(
            "vrrp_instance V {{\n  unicast_peer {{ 10.0.1.12 }}\n  notify {}\n}}\n",
            script.display()
        ));
        assert!(t.get("actions").is_none(), "{}", out.toml);
        let listed = out.untranslated.join("\n");
        assert!(
            listed.contains(":2: aws ec2 associate-address --allocation-id eipalloc-x -- outside the script's branches on the state")
                && listed.contains("write the claim for the MASTER branch by hand")
                && listed.contains("unicast_peer 10.0.1.12 -- no rule watches the peer: the notify script's claim is to be written by hand"),
            "{listed}"
        );
        let notes = out.approximate.join("\n");
        assert!(notes.contains(":4: aws ec2 associate-address --allocation-id eipalloc-b --instance-id i-0peer: ignored: run for BACKUP, not MASTER"), "{notes}");
        assert!(
            !notes.contains("BACKUP or FAULT is not translated"),
            "{notes}"
        );
        assert_located(&out);
    }

    /// A notify script at `dir/n.sh` with `body`, and the instance `conf` around `notify`.
    fn with_script(body: &str, conf: &str) -> (toml::Table, Imported, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("n.sh");
        std::fs::write(&script, body).unwrap();
        let text = conf.replace("SCRIPT", &script.display().to_string());
        let (t, out) = convert_text(&text);
        (t, out, dir)
    }

    #[test]
    fn this_nodes_own_address_is_never_taken_as_its_peer() {
        let (t, out, _d) = with_script(
            "aws ec2 associate-address --allocation-id eipalloc-0a\n",
            "vrrp_instance V {\n  unicast_src_ip 10.0.1.11\n  unicast_peer { 10.0.1.11 10.0.1.12 10.0.1.13 }\n  notify_master \"SCRIPT\"\n}\n",
        );
        let rule = &t["rules"]["V-peer"];
        assert_eq!(
            rule["check"]["host"].as_str(),
            Some("10.0.1.12"),
            "{}",
            out.toml
        );
        let notes = out.approximate.join("\n");
        assert!(
            notes.contains(
                "unicast_peer 10.0.1.11: this node's own address (unicast_src_ip 10.0.1.11)"
            ),
            "{notes}"
        );
        // Without unicast_src_ip, several peers may include this node.
        let (_, out, _d) = with_script(
            "aws ec2 associate-address --allocation-id eipalloc-0a\n",
            "vrrp_instance V {\n  unicast_peer { 10.0.1.11 10.0.1.12 }\n  notify_master \"SCRIPT\"\n}\n",
        );
        let notes = out.approximate.join("\n");
        assert!(
            notes.contains("may include this node's own address"),
            "{notes}"
        );
        assert_located(&out);
    }

    const INSTANCE: &str = "vrrp_instance V {\n  unicast_src_ip 10.0.1.11\n  unicast_peer { 10.0.1.12 }\n  notify \"SCRIPT\"\n}\n";

    #[test]
    fn a_notify_script_testing_the_state_in_any_form_claims_only_its_master_branch() {
        // notify_master "x.sh MASTER": the script's $1 is the state.
        let (t, out, _d) = with_script(
            "STATE=$1\ncase $STATE in\n  MASTER)\n    aws ec2 associate-address --allocation-id eipalloc-0mine\n    ;;\n  BACKUP|FAULT)\n    aws ec2 associate-address --allocation-id eipalloc-0peer\n    ;;\nesac\n",
            "vrrp_instance V {\n  unicast_peer { 10.0.1.12 }\n  notify_master \"SCRIPT MASTER\"\n}\n",
        );
        let actions = t["actions"].as_table().unwrap();
        assert_eq!(
            actions.keys().collect::<Vec<_>>(),
            ["claim-eipalloc-0mine"],
            "{}",
            out.toml
        );
        // `[ "$3" = X ] && aws ...`
        let (t, out, _d) = with_script(
            "[ \"$3\" = \"BACKUP\" ] && aws ec2 associate-address --allocation-id eipalloc-0peer\n[ \"$3\" = \"MASTER\" ] && aws ec2 associate-address --allocation-id eipalloc-0mine\n",
            INSTANCE,
        );
        let actions = t["actions"].as_table().unwrap();
        assert_eq!(
            actions.keys().collect::<Vec<_>>(),
            ["claim-eipalloc-0mine"],
            "{}",
            out.toml
        );
        assert!(
            !out.approximate.join("\n").contains("does not branch"),
            "{:?}",
            out.approximate
        );
        // A branch not readable: by hand, with the MASTER branch's own call shown.
        let (t, out, _d) = with_script(
            "case \"$3\" in\n  MASTER) aws ec2 associate-address --allocation-id eipalloc-0m ;;\nesac\naws ec2 associate-address --allocation-id eipalloc-0all\n",
            INSTANCE,
        );
        assert!(t.get("actions").is_none(), "{}", out.toml);
        let listed = out.untranslated.join("\n");
        assert!(listed.contains(":2: aws ec2 associate-address --allocation-id eipalloc-0m -- in the branch for MASTER"), "{listed}");
        assert!(
            listed
                .contains(":4: aws ec2 associate-address --allocation-id eipalloc-0all -- outside"),
            "{listed}"
        );
        assert_located(&out);
    }

    #[test]
    fn a_move_aimed_at_a_named_target_is_listed_never_claimed() {
        let (t, out, _d) = with_script(
            "aws ec2 associate-address --allocation-id eipalloc-0n --network-interface-id eni-0peer --private-ip-address 10.0.1.12\naws ec2 associate-address --allocation-id eipalloc-0p --private-ip-address 10.0.1.12\n",
            INSTANCE,
        );
        assert!(t.get("actions").is_none(), "{}", out.toml);
        let listed = out.untranslated.join("\n");
        assert!(listed.contains(":1: aws ec2 associate-address --allocation-id eipalloc-0n --network-interface-id eni-0peer --private-ip-address 10.0.1.12 -- listed: the script gives the address to --network-interface-id eni-0peer, which may be the peer; if it is this node, write the claim by hand"), "{listed}");
        assert!(
            listed.contains("--private-ip-address 10.0.1.12 (a unicast_peer)"),
            "{listed}"
        );
        assert_located(&out);
    }

    #[test]
    fn a_topic_comes_only_from_the_same_script_and_branch_as_its_claim() {
        let (t, out, _d) = with_script(
            "case \"$3\" in\n  MASTER)\n    aws ec2 associate-address --allocation-id eipalloc-0o\n    ;;\n  BACKUP)\n    aws sns publish --topic-arn arn:aws:sns:us-east-1:1:backup --message b\n    ;;\nesac\n",
            INSTANCE,
        );
        let claim = &t["actions"]["claim-eipalloc-0o"];
        assert!(claim.get("sns_topic_arn").is_none(), "{}", out.toml);
        assert!(out.toml.contains("# REQUIRED"), "{}", out.toml);
        assert!(
            out.untranslated
                .join("\n")
                .contains("action claim-eipalloc-0o: the notify script publishes to no SNS topic"),
            "{:?}",
            out.untranslated
        );
        // Another instance's script's topic is not this one's.
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.sh");
        let b = dir.path().join("b.sh");
        std::fs::write(&a, "aws ec2 associate-address --allocation-id eipalloc-0a\naws sns publish --topic-arn arn:aws:sns:us-east-1:1:a\n").unwrap();
        std::fs::write(
            &b,
            "aws ec2 associate-address --allocation-id eipalloc-0b\n",
        )
        .unwrap();
        let (t, out) = convert_text(&format!(
            "vrrp_instance A {{\n  unicast_peer {{ 10.0.1.12 }}\n  notify_master \"{}\"\n}}\nvrrp_instance B {{\n  unicast_peer {{ 10.0.1.13 }}\n  notify_master \"{}\"\n}}\n",
            a.display(),
            b.display()
        ));
        assert_eq!(
            t["actions"]["claim-eipalloc-0a"]["sns_topic_arn"].as_str(),
            Some("arn:aws:sns:us-east-1:1:a")
        );
        assert!(
            t["actions"]["claim-eipalloc-0b"]
                .get("sns_topic_arn")
                .is_none(),
            "{}",
            out.toml
        );
    }

    #[test]
    fn every_command_of_a_notify_script_not_translated_is_listed() {
        let (t, out, _d) = with_script(
            "#!/bin/bash\nnotify_slack() {\n  curl -s -X POST -H \"Authorization: Bearer xoxb-SLACK1\" https://hooks.slack.com/x?token=T2\n}\nLOG=/var/log/x\nsystemctl start haproxy\necho switching\naws ec2 associate-address --allocation-id eipalloc-0q\naws ec2 disassociate-address --association-id eipassoc-0x\naws route53 change-resource-record-sets --hosted-zone-id Z1 --change-batch file:///r.json\nnotify_slack\nexit 0\n",
            "vrrp_instance V {\n  unicast_peer { 10.0.1.12 }\n  notify_master \"SCRIPT\"\n}\n",
        );
        assert!(
            t["actions"].get("claim-eipalloc-0q").is_some(),
            "{}",
            out.toml
        );
        let listed = out.untranslated.join("\n");
        for (line, cmd) in [
            (3, "curl -s -X POST -H Authorization:"),
            (6, "systemctl start haproxy"),
            (
                9,
                "aws ec2 disassociate-address --association-id eipassoc-0x",
            ),
            (10, "aws route53 change-resource-record-sets"),
            (11, "notify_slack"),
        ] {
            assert!(
                listed.contains(&format!("n.sh:{line}: {cmd}")),
                "{line} {cmd}: {listed}"
            );
        }
        assert!(
            listed.contains(":3: curl -s -X POST -H Authorization: *** -- the watchdog does not run it: add an `exec` action if it must happen")
        );
        assert!(
            !listed.contains("SLACK1") && !listed.contains("T2"),
            "{listed}"
        );
        assert!(
            !listed.contains("echo switching")
                && !listed.contains(":5: LOG")
                && !listed.contains("exit 0"),
            "{listed}"
        );
        assert_located(&out);
    }

    #[test]
    fn every_echoed_statement_goes_through_the_shared_redaction() {
        let (_, out) = convert_text(
            "vrrp_instance V {\n  unicast_peer { 10.0.1.14 }\n  notify_backup \"/etc/keepalived/backup.sh --api-token APITOK3 --password PW4\"\n  notify_fault \"/usr/bin/curl -H 'Authorization: Bearer BEARER5' https://hooks.example/x?api_key=K6\"\n}\n",
        );
        let all = format!(
            "{}\n{:?}\n{:?}",
            out.toml, out.untranslated, out.approximate
        );
        for secret in ["APITOK3", "PW4", "BEARER5", "K6"] {
            assert!(!all.contains(secret), "{secret}: {all}");
        }
    }

    #[test]
    fn every_file_read_scripts_included_is_known_to_the_output_check() {
        let (_, out, d) = with_script(
            "aws ec2 associate-address --allocation-id eipalloc-0a\n",
            "vrrp_instance V {\n  unicast_peer { 10.0.1.12 }\n  notify_master \"SCRIPT\"\n}\n",
        );
        assert!(
            out.scripts.contains(&d.path().join("n.sh")),
            "{:?}",
            out.scripts
        );
    }
}
