//! `watchdog import-monit`: monit rules -> watchdog TOML. `parse` reads monit's control files,
//! `script` recognizes failover scripts; this file follows `include`s and writes the TOML.
//!
//! Every statement is accounted for: translated, translated approximately (with a note), or
//! listed as not translated, both at the top of the output and in [`Imported::untranslated`].

pub(crate) mod parse;
pub(crate) mod script;

use parse::{Action, At, Cond, Item, Kind, Rate, Service, Status, Test};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// monit's own timeout of a connection test when none is written.
const MONIT_TIMEOUT_SECS: u64 = 5;
/// monit's own timeout of a `check program` when none is written (5 minutes).
const MONIT_PROGRAM_TIMEOUT_SECS: u64 = 300;
/// The longest `max_age` the watchdog takes (30 days).
const MAX_AGE_LIMIT_SECS: u64 = 30 * 86400;
/// The cycle of OpsWorks' monit, used when no `set daemon` says otherwise.
const DEFAULT_CYCLE_SECS: u64 = 60;
/// The longest `interval` the watchdog takes (1h).
const MAX_INTERVAL_SECS: u64 = 3600;

/// How often a block's rules check: monit's cycle, times N for `every N cycles`.
#[derive(Clone, Copy)]
struct Interval {
    secs: u64,
    every: Option<u32>,
}
/// Scripts larger than this are not failover scripts of the kind recognized here.
pub(crate) const SCRIPT_LIMIT: u64 = 256 * 1024;

/// What an importer (`import-monit`, `import-keepalived`) made of its input.
#[derive(Debug, Default)]
pub struct Imported {
    /// The watchdog TOML, what was not translated listed at its top as comments.
    pub toml: String,
    /// `file:line: statement -- why`, for what has no equivalent.
    pub untranslated: Vec<String>,
    /// Translated, but not exactly: what differs.
    pub approximate: Vec<String>,
    /// `[section] key = value -- why`, for a value found that belongs in a section of the
    /// main file: the output leaves those sections alone, so it is written as a comment there
    /// and set by hand (see [`main_file`]).
    pub by_hand: Vec<String>,
    /// Every file read, includes included, in the order read.
    pub files: Vec<PathBuf>,
    /// The scripts read to translate actions (failover and notify scripts): with `files`,
    /// what `-o` must not overwrite.
    pub scripts: Vec<PathBuf>,
    /// Rules written.
    pub rules: usize,
    /// Actions written.
    pub actions: usize,
}

/// The packaged main file, installed there; an importer's output goes into its `conf.d/`.
pub(crate) const MAIN_FILE: &str = "/etc/haproxy-watchdog/watchdog.toml";

/// A value an importer found for a section of the main file (`[aws]`, `[egress]`,
/// `[opsworks]`, ...).
pub(crate) struct MainSetting {
    /// `aws`, `egress`, `opsworks`.
    pub section: &'static str,
    pub key: &'static str,
    /// The value as TOML.
    pub value: String,
    /// Where it came from, and what applies without it.
    pub why: String,
}

/// The output's comment block for the main file's sections: each of `settings` (also listed
/// in [`Imported::by_hand`], for the report), then `notes` (comment lines, `#   `).
///
/// An importer writes no section of its own: each section is set in one file only, and the
/// packaged main file has them all, so a section in the output would fail
/// `validate` once the output is in `conf.d/` beside it.
pub(crate) fn main_file(settings: &[MainSetting], notes: &str, out: &mut Imported) -> String {
    if settings.is_empty() && notes.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "# SET THESE IN {MAIN_FILE} by hand. This file goes into its\n# conf.d/ and leaves the sections to it: each section is set in one file only.\n"
    );
    for m in settings {
        let line = format!("[{}] {} = {}", m.section, m.key, m.value);
        let why = m.why.replace(['\n', '\r'], " ");
        out.by_hand.push(format!("{line} -- {why}"));
        let _ = writeln!(s, "#   {line}");
        let mut cur = String::from("#     ");
        for w in why.split_whitespace() {
            if cur.len() > 6 && cur.len() + 1 + w.len() > 92 {
                let _ = writeln!(s, "{}", cur.trim_end());
                cur = String::from("#     ");
            }
            cur.push_str(w);
            cur.push(' ');
        }
        let _ = writeln!(s, "{}", cur.trim_end());
    }
    s.push_str(notes);
    s.push('\n');
    s
}

/// Input an importer could not read at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file named on the command line, or included, could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
}

/// Read `paths` (and what they include), with absolute paths in `include` and `exec` looked up
/// under `root` when set (a copy of another host's /etc, say).
pub fn import(paths: &[PathBuf], root: Option<&Path>) -> Result<Imported, ImportError> {
    let mut r = Reader {
        root: root.map(Path::to_path_buf),
        items: Vec::new(),
        files: Vec::new(),
    };
    for p in paths {
        r.file(p, 0)?;
    }
    Ok(convert(r.items, r.files, root))
}

struct Reader {
    root: Option<PathBuf>,
    items: Vec<Item>,
    files: Vec<PathBuf>,
}

/// `path` as seen from here: absolute paths go under `root`.
pub(crate) fn under(root: Option<&Path>, path: &Path) -> PathBuf {
    match (root, path.strip_prefix("/")) {
        (Some(r), Ok(rel)) => r.join(rel),
        _ => path.to_path_buf(),
    }
}

impl Reader {
    fn file(&mut self, path: &Path, depth: usize) -> Result<(), ImportError> {
        let (text, bad) = script::read_text(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.files.push(path.to_path_buf());
        if let Some(line) = bad {
            self.items.push(Item::Warning {
                at: At {
                    file: path.to_path_buf(),
                    line,
                },
                text: script::NOT_UTF8.into(),
            });
        }
        for item in parse::parse(&text, path) {
            match item {
                Item::Include { pattern, at } => self.include(&pattern, at, depth)?,
                other => self.items.push(other),
            }
        }
        Ok(())
    }

    fn include(&mut self, pattern: &str, at: At, depth: usize) -> Result<(), ImportError> {
        let other = |why: String| Item::Other {
            text: format!("include {pattern}"),
            at: at.clone(),
            why,
        };
        if depth >= 8 {
            self.items
                .push(other("includes nested more than 8 deep (a loop?)".into()));
            return Ok(());
        }
        let full = under(self.root.as_deref(), Path::new(pattern));
        let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str()))
        else {
            self.items.push(other("not a file path".into()));
            return Ok(());
        };
        if dir.to_string_lossy().contains(['*', '?', '[']) {
            self.items.push(other(
                "wildcards are followed in the last path component only".into(),
            ));
            return Ok(());
        }
        let mut matched: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(name, n)))
                .map(|e| e.path())
                .collect(),
            Err(e) => {
                self.items
                    .push(other(format!("cannot read {}: {e}", dir.display())));
                return Ok(());
            }
        };
        matched.sort();
        if matched.is_empty() {
            self.items.push(Item::Warning {
                at,
                text: format!("include {pattern} matched no file"),
            });
        }
        for m in matched {
            if self.files.contains(&m) {
                continue;
            }
            self.file(&m, depth + 1)?;
        }
        Ok(())
    }
}

/// Shell-style `*` and `?` (no character classes).
pub(crate) fn wildcard(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    !name.starts_with('.') && go(&p, &n)
}

/// A TOML string on one line: control characters (a `send "...\r\n"`) escaped, where the
/// toml crate would write a multi-line string inside an inline table.
pub(crate) fn q(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return toml::Value::String(s.to_owned()).to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A valid watchdog name (`A-Z a-z 0-9 - _ .`, at most 64) made from `s`.
pub(crate) fn name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if n.is_empty() {
        "monit".into()
    } else {
        n
    }
}

/// `name` with `-N` after it, cut to fit a name's 64 characters.
fn suffixed(name: &str, n: usize) -> String {
    let suffix = format!("-{n}");
    // ASCII only: see [`name`].
    let keep = name.len().min(64 - suffix.len());
    format!("{}{suffix}", &name[..keep])
}

/// The rule name for `wanted` (monit's block name, `-N` for its Nth test): made valid, then,
/// when that is taken, `-N`, `-N+1`... after it (`first` first). Any change is noted.
fn rule_name(
    wanted: &str,
    first: usize,
    used: &BTreeMap<String, At>,
    t: &Test,
    out: &mut Imported,
) -> String {
    let valid = name(wanted);
    if valid != wanted {
        out.approximate.push(format!(
            "{}: rule {}: monit's name {wanted:?} made a valid watchdog name (A-Z a-z 0-9 - _ ., at most 64 characters)",
            t.at,
            q(&valid)
        ));
    }
    let Some(taken_by) = used.get(&valid) else {
        return valid;
    };
    let mut n = first;
    let rule = loop {
        let r = suffixed(&valid, n);
        if !used.contains_key(&r) {
            break r;
        }
        n += 1;
    };
    out.approximate.push(format!(
        "{}: rule {}: renamed, as {} is the rule of {taken_by} already",
        t.at,
        q(&rule),
        q(&valid)
    ));
    rule
}

/// An action to write, keyed by its name.
enum Out {
    /// Boxed: a failover script's settings are far larger than an argv.
    Claim {
        f: Box<script::Failover>,
        from: String,
    },
    Exec {
        argv: Vec<String>,
    },
}

fn convert(items: Vec<Item>, files: Vec<PathBuf>, root: Option<&Path>) -> Imported {
    let mut out = Imported {
        files,
        ..Default::default()
    };
    let mut cycle = None;
    let mut services = Vec::new();
    for item in items {
        match item {
            Item::Daemon { seconds, at } => {
                if cycle.is_some() {
                    out.approximate
                        .push(format!("{at}: a second `set daemon`; the last one counts"));
                }
                cycle = Some(seconds);
            }
            Item::Service(s) => services.push(s),
            Item::Other { text, at, why } => {
                out.untranslated.push(format!("{at}: {text} -- {why}"))
            }
            Item::Warning { at, text } => out.approximate.push(format!("{at}: {text}")),
            Item::Include { .. } => {}
        }
    }
    let cycle = cycle.unwrap_or_else(|| {
        out.approximate.push(format!(
            "no `set daemon`: rules check every {DEFAULT_CYCLE_SECS} s, the cycle of OpsWorks' monit"
        ));
        DEFAULT_CYCLE_SECS
    });

    let mut actions: BTreeMap<String, Out> = BTreeMap::new();
    let mut rules = String::new();
    // Each rule name written, and the test it came from.
    let mut used_rules: BTreeMap<String, At> = BTreeMap::new();
    for s in &services {
        // `every N cycles`: monit tests the block on every Nth cycle, so its rules check every
        // N cycles, and `for M cycles` counts M of those checks, as it did for monit.
        let interval = match &s.every {
            None => Interval {
                secs: cycle,
                every: None,
            },
            Some((n, at)) => {
                let mut secs = cycle.saturating_mul(u64::from(*n));
                let mut note = format!(
                    "{at}: every {n} cycles: the block's rules check every {secs} s ({n} x the {cycle} s cycle), their fail_after and recover_after counting those checks as monit counted cycles"
                );
                if secs > MAX_INTERVAL_SECS && cycle <= MAX_INTERVAL_SECS {
                    secs = MAX_INTERVAL_SECS;
                    note = format!(
                        "{at}: every {n} cycles: {n} x the {cycle} s cycle is longer than 1h, the longest interval; the block's rules check every 1h"
                    );
                }
                out.approximate.push(note);
                Interval {
                    secs,
                    every: Some(*n),
                }
            }
        };
        // Every block is accounted for: a rule, or a listed line.
        if s.tests.is_empty() {
            out.untranslated.push(format!(
                "{}: {} -- no test of the block translates (any it has is listed), so no rule is written",
                s.at,
                s.text.replace('\n', " ")
            ));
        }
        let mut tests = s.tests.clone();
        let mut written = 0;
        let mut i = 0;
        loop {
            if i == tests.len() {
                // A file's timestamp tests stood for monit's own existence test; when none
                // translates, that test is still there (a rule, or listed).
                let no_existence = !tests
                    .iter()
                    .any(|t| matches!(t.cond, Cond::Missing | Cond::Present));
                if written > 0
                    || !no_existence
                    || tests.is_empty()
                    || !matches!(s.kind, Kind::File { .. })
                {
                    break;
                }
                tests.push(Test {
                    at: s.at.clone(),
                    text: format!("{} (monit's own test: does it exist)", s.text),
                    cond: Cond::Missing,
                    on_fail: Action::Implicit,
                    on_recover: None,
                    fail_rate: None,
                    recover_rate: None,
                    dropped: Vec::new(),
                    ..tests[0].clone()
                });
            }
            let t = &tests[i];
            i += 1;
            let i = i - 1;
            // Before the actions, so that a test that does not translate leaves none behind.
            let probe = match probe(s, t, &mut out) {
                Ok(p) => p,
                Err(why) => {
                    out.untranslated.push(format!(
                        "{}: {} -- {why}",
                        t.at,
                        t.text.replace('\n', " ")
                    ));
                    continue;
                }
            };
            // The block's name, `-N` for its Nth test; a name taken already (block `web-2`
            // after block `web`'s second test), or made valid, is noted.
            let wanted = if i > 0 && t.on_fail != Action::Implicit {
                format!("{}-{}", s.name, i + 1)
            } else {
                s.name.clone()
            };
            let rule = rule_name(&wanted, i + 1, &used_rules, t, &mut out);
            used_rules.insert(rule.clone(), t.at.clone());
            let on_fail = action_for(&t.on_fail, t, root, &mut actions, &mut out);
            let on_recover = t
                .on_recover
                .as_ref()
                .and_then(|a| action_for(a, t, root, &mut actions, &mut out));
            rules.push_str(&rule_toml(
                &rule, probe, t, interval, on_fail, on_recover, &mut out,
            ));
            out.rules += 1;
            written += 1;
        }
    }

    // Each claim's failover script, and the program that ran it.
    let claims: Vec<(&script::Failover, &str)> = actions
        .values()
        .filter_map(|a| match a {
            Out::Claim { f, from } => Some((&**f, from.as_str())),
            Out::Exec { .. } => None,
        })
        .collect();
    let mut settings = Vec::new();
    // SNS lives in the topic's region; the script's --region is the next best hint.
    let region = claims.iter().find_map(|(f, from)| {
        let (r, what) = f
            .topic_arn
            .as_deref()
            .and_then(|t| t.split(':').nth(3))
            .map(|r| (r.to_owned(), "its SNS topic's region"))
            .or_else(|| {
                f.sns_region
                    .clone()
                    .map(|r| (r, "the --region of its SNS call"))
            })
            .or_else(|| {
                f.region
                    .clone()
                    .map(|r| (r, "the --region of its associate call"))
            })?;
        Some((r, what, from))
    });
    if let Some((r, what, from)) = region {
        settings.push(MainSetting {
            section: "aws",
            key: "region",
            value: q(&r),
            why: format!("from {from}: {what}. The daemon calls EC2 and SNS in this one region; unset, on EC2, it is this node's region (from instance metadata), which must then be the topic's too"),
        });
    }
    if let Some((u, from)) = claims
        .iter()
        .find_map(|(f, from)| f.checkip_url.clone().map(|u| (u, from)))
    {
        settings.push(MainSetting {
            section: "egress",
            key: "checkip_url",
            value: q(&u),
            why: format!("from {from}: before a claim, this service says which public address this node's traffic leaves from (and that it is not the EIP); without it, https://checkip.amazonaws.com"),
        });
    }
    if let Some((f, from)) = claims.iter().find(|(f, _)| f.provider == "opsworks") {
        if let Some(r) = &f.region {
            settings.push(MainSetting {
                section: "opsworks",
                key: "region",
                value: q(r),
                why: format!("from {from}: the region it called OpsWorks in; without it, us-east-1, where stacks made before OpsWorks had regional endpoints answer"),
            });
        }
        if let Some(id) = &f.opsworks_instance_id {
            settings.push(MainSetting {
                section: "opsworks",
                key: "instance_id",
                value: q(id),
                why: format!("from {from}: this node's OpsWorks instance id (each node has its own); without it, it is read from the OpsWorks agent's file, /etc/aws/opsworks/instance-agent.yml"),
            });
        }
    }
    let globals = main_file(&settings, "", &mut out);

    let mut acts = String::new();
    for (n, a) in &actions {
        out.actions += 1;
        match a {
            Out::Exec { argv } => {
                let list: Vec<String> = argv.iter().map(|s| q(s)).collect();
                let _ = writeln!(
                    acts,
                    "[actions.{}]\ntype = \"exec\"\ncommand = [{}]\ntimeout = \"30s\"\n",
                    q(n),
                    list.join(", ")
                );
            }
            Out::Claim { f, from } => {
                let _ = writeln!(acts, "# From {from}: checkip, associate, notify; the claim does all three,\n# and also checks the local HAProxy, holds down after a move and verifies it.\n[actions.{}]\ntype = \"claim_eip\"\nprovider = {}", q(n), q(f.provider));
                match (&f.eip, &f.allocation_id) {
                    (_, Some(a)) if f.provider == "ec2" => {
                        let _ = writeln!(acts, "allocation_id = {}", q(a));
                    }
                    (Some(e), _) => {
                        let _ = writeln!(acts, "eip = {}", q(e));
                    }
                    _ => acts.push_str(
                        "# eip = \"...\"   # REQUIRED: the script's address was not a literal\n",
                    ),
                }
                if let (Some(ip), "ec2") = (&f.private_ip, f.provider) {
                    let _ = writeln!(acts, "private_ip = {}", q(ip));
                }
                acts.push_str("hold_down = \"5m\"\n");
                match &f.topic_arn {
                    Some(t) => {
                        let _ = writeln!(acts, "sns_topic_arn = {}", q(t));
                    }
                    None => acts.push_str("# sns_topic_arn = \"arn:aws:sns:...\"   # REQUIRED: the script published no literal topic\n"),
                }
                acts.push('\n');
            }
        }
    }

    let mut head = String::from("# Converted from monit by `haproxy-watchdog import-monit`");
    for f in &out.files {
        let _ = write!(head, "\n#   {}", f.display());
    }
    head.push_str("\n# Review it, then check it with: watchdog validate --config FILE\n");
    if !out.untranslated.is_empty() {
        head.push_str("#\n# NOT TRANSLATED (no watchdog equivalent, or not understood):\n");
        for u in &out.untranslated {
            let _ = writeln!(head, "#   {}", u.replace('\n', " "));
        }
    }
    if !out.approximate.is_empty() {
        head.push_str("#\n# Translated approximately:\n");
        for a in &out.approximate {
            let _ = writeln!(head, "#   {}", a.replace('\n', " "));
        }
    }
    // No section of the main file: see `main_file`.
    out.toml = format!("{head}\n{globals}{rules}{acts}");
    out
}

/// The action `a` becomes, registered in `actions`; None when it has no equivalent.
fn action_for(
    a: &Action,
    t: &Test,
    root: Option<&Path>,
    actions: &mut BTreeMap<String, Out>,
    out: &mut Imported,
) -> Option<String> {
    let cmd = match a {
        Action::Exec(cmd) => cmd,
        Action::Implicit => {
            out.untranslated.push(format!(
                "{}: {} -- when it fails, monit restarts the service (its `start program`) or alerts; no equivalent: the watchdog does not restart services, let systemd do it (Restart=on-failure in the service's unit). The rule is written with no action: add one to on_fail if something should follow",
                t.at, t.text
            ));
            return None;
        }
        Action::Other(word)
            if ["restart", "start", "stop"]
                .iter()
                .any(|w| word.eq_ignore_ascii_case(w)) =>
        {
            out.untranslated.push(format!(
                "{}: then {word} -- no equivalent: monit {word}s the service, the watchdog does not; let systemd restart it (Restart=on-failure in the service's unit), and give the rule an action if something should follow",
                t.at
            ));
            return None;
        }
        Action::Other(word) => {
            out.untranslated.push(format!(
                "{}: then {word} -- no equivalent: monit's {word} acts on monit itself or sends mail; add an `sns` or `exec` action to the rule",
                t.at
            ));
            return None;
        }
    };
    // monit splits the string on blanks, a '...' word one argument, and runs it without a
    // shell.
    let argv = match parse::argv(cmd) {
        Ok(a) => a,
        Err(why) => {
            out.untranslated.push(format!(
                "{}: exec {} -- {why}; write the action's `command` by hand",
                t.at,
                q(&parse::redact(cmd))
            ));
            return None;
        }
    };
    let program = argv.first()?;
    // `/bin/sh -c '...'`: the script is the argument, as for import-keepalived's notify.
    let inline = (program.ends_with("sh") && argv.get(1).is_some_and(|a| a == "-c"))
        .then(|| argv.get(2).cloned())
        .flatten();
    let text = match &inline {
        Some(s) => Some(s.clone()),
        None => {
            let path = under(root, Path::new(program));
            let text = std::fs::metadata(&path)
                .ok()
                .filter(|m| m.len() <= SCRIPT_LIMIT)
                .and_then(|_| {
                    out.scripts.push(path.clone());
                    script::read_text(&path).ok()
                })
                .map(|(text, bad)| {
                    if let Some(line) = bad {
                        out.approximate.push(format!(
                            "{}:{line}: {}",
                            path.display(),
                            script::NOT_UTF8
                        ));
                    }
                    text
                });
            if text.is_none() {
                out.approximate.push(format!(
                    "{}: could not read {} to see whether it is a failover script; it stays an `exec` action",
                    t.at,
                    path.display()
                ));
            }
            text
        }
    };
    // What the claim came from, for its notes.
    let from = match inline {
        Some(_) => format!("{program} -c '...'"),
        None => program.clone(),
    };
    // A move aimed at a named instance or ENI (often the peer's) is no claim of this node's:
    // listed, and the exec stays an exec.
    let failover = match text.as_deref().and_then(script::classify) {
        Some(f) => match &f.elsewhere {
            Some(reason) => {
                out.untranslated
                    .push(format!("{}: {from}: {}", t.at, script::redact(reason)));
                None
            }
            None => Some(f),
        },
        None => None,
    };
    if let Some(f) = failover {
        for u in &f.unresolved {
            out.approximate.push(format!(
                "{}: {from}: {u} is computed by the script; fill it in by hand",
                t.at
            ));
        }
        if f.provider == "opsworks" && f.allocation_id.is_some() {
            out.approximate.push(format!(
                "{}: {from}: OpsWorks names the EIP by its address",
                t.at
            ));
        }
        let key = match (&f.eip, &f.allocation_id) {
            (Some(e), _) => format!("claim-{}", name(e)),
            (None, Some(a)) => format!("claim-{}", name(a)),
            _ => "claim-eip".into(),
        };
        actions.entry(key.clone()).or_insert(Out::Claim {
            f: Box::new(f),
            from,
        });
        return Some(key);
    }
    if !program.starts_with('/') {
        out.untranslated.push(format!(
            "{}: exec {:?} -- the program must be an absolute path",
            t.at,
            parse::redact(cmd)
        ));
        return None;
    }
    let key = format!(
        "exec-{}",
        name(
            Path::new(program)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("program")
        )
    );
    let mut key_n = key.clone();
    let mut n = 2;
    loop {
        match actions.get(&key_n) {
            Some(Out::Exec { argv: a }) if *a == argv => break,
            None => {
                actions.insert(key_n.clone(), Out::Exec { argv });
                break;
            }
            _ => {
                key_n = format!("{key}-{n}");
                n += 1;
            }
        }
    }
    Some(key_n)
}

/// The literal text a monit `content` regex (POSIX extended) stands for, when it is one.
#[derive(Debug, PartialEq, Eq)]
struct Literal {
    text: String,
    /// It had `^` or `$`, which a search for the text anywhere cannot keep.
    anchored: bool,
    /// It had `.`, which matches any character to monit and only itself here.
    dots: bool,
}

/// `re` as literal text: `^` and `$` at its ends dropped, `\X` read as `X`. None when it has
/// operators (`*`, `+`, `?`, `[...]`, `(...)`, `|`, `{N}`), so no one text stands for it.
fn regex_literal(re: &str) -> Option<Literal> {
    let mut s = re;
    let mut anchored = false;
    if let Some(rest) = s.strip_prefix('^') {
        s = rest;
        anchored = true;
    }
    if let Some(rest) = s.strip_suffix('$') {
        if !rest.ends_with('\\') {
            s = rest;
            anchored = true;
        }
    }
    let mut text = String::new();
    let mut dots = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => text.push(e),
                _ => return None,
            },
            '*' | '+' | '?' | '[' | ']' | '(' | ')' | '|' | '^' | '$' => return None,
            '{' if chars.peek().is_some_and(char::is_ascii_digit) => return None,
            '.' => {
                dots = true;
                text.push('.');
            }
            c => text.push(c),
        }
    }
    (!text.is_empty()).then_some(Literal {
        text,
        anchored,
        dots,
    })
}

/// A duration in watchdog syntax.
pub(crate) fn duration(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The count a rate becomes (N consecutive cycles), with a note when it is not exact.
fn count(rate: Option<Rate>, what: &str, at: &At, out: &mut Imported) -> u32 {
    match rate {
        None => 1,
        Some(Rate::Cycles(n)) => n,
        Some(Rate::Within(n, m)) if n == m => n,
        Some(Rate::Within(n, m)) => {
            out.approximate.push(format!(
                "{at}: {what} `{n} times within {m} cycles` became {n} consecutive {what} cycles"
            ));
            n
        }
    }
    .max(1)
}

/// What a test checks, as a watchdog `check` table, and the timeout monit gave it.
struct Probe {
    check: String,
    /// The timeout monit used and what to call it in a note; None: monit has none (a
    /// process or file test), the watchdog's default applies.
    timeout: Option<(u64, String)>,
}

/// The `check` of test `t` of block `s`, or why it has none.
fn probe(s: &Service, t: &Test, out: &mut Imported) -> Result<Probe, String> {
    match (&t.cond, &s.kind) {
        (Cond::Connection, kind) => {
            let ms = t.timeout_ms.unwrap_or(MONIT_TIMEOUT_SECS * 1000).max(1);
            let check = if t.tcp {
                tcp_check(kind.address(), t, out)
            } else {
                http_check(kind.address(), t, out)
            };
            Ok(Probe {
                check,
                timeout: Some((ms, format!("timeout {}", duration(ms)))),
            })
        }
        (Cond::Missing, Kind::Process { pidfile, matching }) => {
            let check = match (pidfile, matching) {
                (Some(p), _) if p.starts_with('/') => {
                    format!("{{ type = \"process\", pidfile = {} }}", q(p))
                }
                (Some(p), _) => {
                    return Err(format!(
                        "pidfile {p:?} is not an absolute path; write `pidfile` by hand"
                    ))
                }
                (None, Some(re)) => {
                    let Some(n) = process_name(re) else {
                        return Err(format!(
                            "matching {re:?} is a regular expression, not a plain process name: monit matched it against the whole command line, the watchdog compares the command name (`name`) or reads a `pidfile`; write one of them by hand"
                        ));
                    };
                    out.approximate.push(format!(
                        "{}: matching {re:?}: monit matched it anywhere in the command line; the watchdog wants a process whose command name is {n:?}",
                        t.at
                    ));
                    format!("{{ type = \"process\", name = {} }}", q(&n))
                }
                (None, None) => return Err("neither pidfile nor matching".into()),
            };
            Ok(Probe {
                check,
                timeout: None,
            })
        }
        (Cond::Missing | Cond::Present, Kind::File { path }) => {
            absolute(path)?;
            Ok(Probe {
                check: format!(
                    "{{ type = \"file\", path = {}, exists = {} }}",
                    q(path),
                    t.cond == Cond::Missing
                ),
                timeout: None,
            })
        }
        (
            Cond::OlderThan {
                seconds,
                either_time,
            },
            Kind::File { path },
        ) => {
            absolute(path)?;
            if let Some(present) = s.tests.iter().find(|o| o.cond == Cond::Present) {
                return Err(format!(
                    "monit tests the age only while the file exists, and this block's normal state is absent (`if exist`, line {}): a rule with max_age would fail every cycle the file is absent, so none is written; if the file's age matters once it appears, write a `program` rule that tests it",
                    present.at.line
                ));
            }
            if !(1..=MAX_AGE_LIMIT_SECS).contains(seconds) {
                return Err(format!("an age of {seconds} s: max_age takes 1s to 30d"));
            }
            if *either_time {
                out.approximate.push(format!(
                    "{}: `timestamp` is the later of the file's change and modification times to monit; max_age looks at the modification time (a chmod or chown no longer makes the file young)",
                    t.at
                ));
            }
            if !s.tests.iter().any(|o| o.cond == Cond::Missing) {
                out.approximate.push(format!(
                    "{}: a missing file fails this rule too (monit ran its own existence test for that)",
                    t.at
                ));
            }
            Ok(Probe {
                check: format!(
                    "{{ type = \"file\", path = {}, exists = true, max_age = \"{}\" }}",
                    q(path),
                    age(*seconds)
                ),
                timeout: None,
            })
        }
        (Cond::ExitCodes(pass), Kind::Program { path, timeout_ms }) => {
            // monit splits the path on blanks, a '...' word one argument, and runs it
            // without a shell.
            let argv = parse::argv(path)
                .map_err(|why| format!("{why}; write the rule's `command` by hand"))?;
            if !argv[0].starts_with('/') {
                return Err(format!(
                    "the program {:?} is not an absolute path: the watchdog runs it without a shell or PATH search; write `command` with the full path by hand",
                    argv[0]
                ));
            }
            let command: Vec<String> = argv.iter().map(|a| q(a)).collect();
            let codes: Vec<String> = pass.iter().map(u8::to_string).collect();
            let timeout = match timeout_ms {
                Some(ms) => (*ms, format!("timeout {}", duration(*ms))),
                None => (
                    MONIT_PROGRAM_TIMEOUT_SECS * 1000,
                    format!(
                        "monit's program timeout ({}, its default)",
                        duration(MONIT_PROGRAM_TIMEOUT_SECS * 1000)
                    ),
                ),
            };
            Ok(Probe {
                check: format!(
                    "{{ type = \"program\", command = [{}], expect_exit = [{}] }}",
                    command.join(", "),
                    codes.join(", ")
                ),
                timeout: Some(timeout),
            })
        }
        // The parser makes no other pair.
        (cond, kind) => Err(format!("{cond:?} in a {kind:?}: not translated")),
    }
}

fn absolute(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not an absolute path; write `path` by hand"
        ))
    }
}

/// A `matching` regular expression that is a plain process name: letters, digits, `-`, `_`
/// and `.`, perhaps between `^` and `$`.
fn process_name(re: &str) -> Option<String> {
    let n = re.strip_prefix('^').unwrap_or(re);
    let n = n.strip_suffix('$').unwrap_or(n);
    (!n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    .then(|| n.to_owned())
}

/// An age in watchdog syntax, in the largest unit that divides it.
fn age(seconds: u64) -> String {
    if seconds % 3600 == 0 {
        format!("{}h", seconds / 3600)
    } else if seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// The literal text a monit regular expression (`content`, `expect`) stands for, with notes
/// on what differs; None (listed) when no one text stands for it.
fn literal_for(what: &str, re: &str, fix: &str, t: &Test, out: &mut Imported) -> Option<String> {
    let Some(l) = regex_literal(re) else {
        out.untranslated.push(format!(
            "{}: {what} = {re:?} -- a regular expression that no literal text stands for; {fix}",
            t.at
        ));
        return None;
    };
    if l.anchored {
        out.approximate.push(format!(
            "{}: {what} = {re:?}: the anchors ^ and $ are dropped; the watchdog looks for {:?} anywhere in the {}",
            t.at,
            l.text,
            if what == "content" { "body" } else { "answer" }
        ));
    }
    // Stricter than monit's test, never looser: it fails closed, where a dropped `content`
    // would pass a body monit failed.
    if l.dots {
        let (field, whole) = if what == "content" {
            ("body_contains", "a body")
        } else {
            ("expect", "an answer")
        };
        out.approximate.push(format!(
            "{}: {what} = {re:?}: `.` matches any character to monit; the watchdog looks for the literal text {:?}, a stricter test: {whole} with another character there fails the rule (edit `{field}` if that can happen)",
            t.at, l.text
        ));
    }
    Some(l.text)
}

/// `if failed [host H] port P [type tcp] [send S] [expect E]`.
fn tcp_check(address: &str, t: &Test, out: &mut Imported) -> String {
    let host = t.host.as_deref().unwrap_or(address);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut check = format!(
        "{{ type = \"tcp\", host = {}, port = {}",
        q(host),
        t.port.unwrap_or(0)
    );
    if let Some(s) = t.send.as_deref().filter(|s| !s.is_empty()) {
        let _ = write!(check, ", send = {}", q(s));
    }
    if let Some(e) = t.expect.as_deref().filter(|e| !e.is_empty()) {
        let fix = "the check only connects (and sends): set `expect` by hand";
        if let Some(text) = literal_for("expect", e, fix, t, out) {
            let _ = write!(check, ", expect = {}", q(&text));
        }
    }
    check.push_str(" }");
    check
}

/// `if failed [host H] port P protocol HTTP[S] ...` or `if failed url URL ...`.
fn http_check(address: &str, t: &Test, out: &mut Imported) -> String {
    let url = match &t.url {
        Some(u) => u.clone(),
        None => {
            let scheme = if t.https { "https" } else { "http" };
            let host = t.host.as_deref().unwrap_or(address);
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            let port = t.port.unwrap_or(if t.https { 443 } else { 80 });
            let request = t.request.as_deref().unwrap_or("/");
            let request = if request.starts_with('/') {
                request.to_owned()
            } else {
                format!("/{request}")
            };
            format!("{scheme}://{host}:{port}{request}")
        }
    };
    if url.starts_with("https://") {
        out.approximate.push(format!(
            "{}: https: monit did not verify the server's certificate (not unless told to, `ssl verify enable`), the watchdog does: a self-signed certificate, or one for another name, fails the rule; check the http port instead, or give the server a certificate this machine trusts",
            t.at
        ));
    }
    let status = match &t.status {
        None => vec!["\"2xx\"".to_owned(), "\"3xx\"".to_owned()],
        Some(Status::Equal(n)) => vec![n.to_string()],
        Some(Status::Below(n)) => {
            let mut v: Vec<String> = (1..n / 100).map(|c| format!("\"{c}xx\"")).collect();
            v.extend((n / 100 * 100..*n).map(|c| c.to_string()));
            v
        }
    };
    let mut check = format!(
        "{{ type = \"http\", url = {}, expect_status = [{}]",
        q(&url),
        status.join(", ")
    );
    if let Some(h) = &t.host_header {
        let _ = write!(check, ", host = {}", q(h));
    }
    if let Some(c) = &t.content {
        let fix = "the check does not look at the body: set `body_contains` by hand";
        if let Some(text) = literal_for("content", c, fix, t, out) {
            let _ = write!(check, ", body_contains = {}", q(&text));
        }
    }
    check.push_str(" }");
    check
}

fn rule_toml(
    rule: &str,
    probe: Probe,
    t: &Test,
    interval: Interval,
    on_fail: Option<String>,
    on_recover: Option<String>,
    out: &mut Imported,
) -> String {
    for d in &t.dropped {
        out.untranslated.push(format!("{}: {d}", t.at));
    }
    let mut disabled = String::new();
    if let Some(user) = &t.url_user {
        out.untranslated.push(format!(
            "{}: the URL's user name ({user:?}) and password -- not copied into the TOML; the rule is written with `enabled = false`: put the credentials in its URL yourself, or let the endpoint answer without them, then remove that line",
            t.at
        ));
        let _ = write!(
            disabled,
            "# monit sent user {} and a password with this URL; they are not copied here.\nenabled = false\n",
            q(user)
        );
    }
    let check = probe.check;
    let fail_after = count(t.fail_rate, "failed", &t.at, out);
    let recover_after = count(t.recover_rate, "succeeded", &t.at, out);
    if let Some(n) = t.retry {
        out.approximate.push(format!(
            "{}: `retry {n}`: monit retried a failed connection within the same cycle before the test counted as failed; the watchdog makes one attempt per cycle and counts a failed attempt toward fail_after = {fail_after} (raise fail_after, or shorten the interval, for more tolerance)",
            t.at
        ));
    }
    let Interval {
        secs: interval,
        every,
    } = interval;
    let timeout = match probe.timeout {
        Some((ms, what)) if ms > interval * 1000 => {
            out.approximate.push(match every {
                None => format!(
                    "{}: {what} is longer than the {interval} s cycle; cut to the cycle",
                    t.at
                ),
                Some(n) => format!(
                    "{}: {what} is longer than the rule's {interval} s interval (every {n} cycles); cut to the interval",
                    t.at
                ),
            });
            interval * 1000
        }
        Some((ms, _)) => ms,
        // The watchdog's default, within the cycle.
        None => (MONIT_TIMEOUT_SECS * 1000).min(interval * 1000),
    };
    let list = |a: Option<String>| {
        a.map(|n| format!("[{}]", q(&n)))
            .unwrap_or_else(|| "[]".into())
    };
    format!(
        "# monit, {}: {}\n[rules.{}]\n{disabled}check = {check}\ninterval = \"{interval}s\"\ntimeout = \"{}\"\nfail_after = {fail_after}\nrecover_after = {recover_after}\non_fail = {}\non_recover = {}\n\n",
        t.at,
        t.text.replace('\n', " "),
        q(rule),
        duration(timeout),
        list(on_fail),
        list(on_recover),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_the_shell() {
        assert!(wildcard("*", "haproxywatch.monitrc"));
        assert!(wildcard("*.monitrc", "haproxywatch.monitrc"));
        assert!(!wildcard("*.conf", "haproxywatch.monitrc"));
        assert!(wildcard("h?proxy*", "haproxy.conf"));
        assert!(!wildcard("*", ".hidden"));
    }

    #[test]
    fn strings_with_control_characters_stay_on_one_line() {
        for s in [
            "PING\r\n",
            "a\"b\\c\t\u{0}\u{7f}",
            "plain",
            "it's \"quoted\"",
        ] {
            let text = format!("x = {}", q(s));
            assert!(!text.contains('\n'), "{text}");
            let t: toml::Table = text.parse().unwrap();
            assert_eq!(t["x"].as_str(), Some(s), "{text}");
        }
    }

    #[test]
    fn names_are_valid_watchdog_names() {
        assert_eq!(name("54.173.141.243"), "54.173.141.243");
        assert_eq!(name("web server/1"), "web-server-1");
    }

    #[test]
    fn content_regexes_become_literal_text_only_when_one_text_stands_for_them() {
        let lit = |re: &str| regex_literal(re).map(|l| (l.text, l.anchored, l.dots));
        assert_eq!(lit("OK"), Some(("OK".into(), false, false)));
        assert_eq!(lit("^OK$"), Some(("OK".into(), true, false)));
        assert_eq!(
            lit(r#"^\{"status":"UP","#),
            Some((r#"{"status":"UP","#.into(), true, false))
        );
        assert_eq!(lit(r#"\"up\""#), Some((r#""up""#.into(), false, false)));
        assert_eq!(lit("v1.2"), Some(("v1.2".into(), false, true)));
        assert_eq!(lit(r"costs \$5$"), Some(("costs $5".into(), true, false)));
        for re in ["(ok|fine)", "a*", "[0-9]", r"\d+", "x{2}", "^$", "a?"] {
            assert_eq!(lit(re), None, "{re}");
        }
    }

    /// The TOML for `text` (no files read: scripts stay `exec` actions) and its report.
    fn convert_text(text: &str) -> (toml::Table, Imported) {
        let out = convert(parse::parse(text, Path::new("monitrc")), vec![], None);
        (out.toml.parse().unwrap(), out)
    }

    #[test]
    fn url_tests_become_http_rules_with_recover_after_and_notes() {
        let (t, out) = convert_text(
            r#"set daemon 30
check host web.example.com with address 203.0.113.20
  if failed url http://web.example.com/health with timeout 2 seconds and retry 3 for 15 cycles
     then exec "/usr/local/bin/to-backup.sh"
  else if succeeded for 20 cycles then exec "/usr/local/bin/to-main.sh"
  if failed url https://web.example.com:8443/ready content = "^ready$" timeout 500 ms
     3 times within 5 cycles then exec "/usr/local/bin/to-backup.sh"
"#,
        );
        assert!(out.untranslated.is_empty(), "{:?}", out.untranslated);
        let r = &t["rules"]["web.example.com"];
        assert_eq!(
            r["check"]["url"].as_str(),
            Some("http://web.example.com/health")
        );
        assert_eq!(r["interval"].as_str(), Some("30s"));
        assert_eq!(r["timeout"].as_str(), Some("2s"));
        assert_eq!(r["fail_after"].as_integer(), Some(15));
        assert_eq!(r["recover_after"].as_integer(), Some(20));
        assert_eq!(r["on_recover"][0].as_str(), Some("exec-to-main.sh"));
        assert!(out
            .approximate
            .iter()
            .any(|a| a.starts_with("monitrc:3: `retry 3`")));
        let r = &t["rules"]["web.example.com-2"];
        assert_eq!(
            r["check"]["url"].as_str(),
            Some("https://web.example.com:8443/ready")
        );
        assert_eq!(r["check"]["body_contains"].as_str(), Some("ready"));
        assert_eq!(r["timeout"].as_str(), Some("500ms"));
        assert_eq!(r["fail_after"].as_integer(), Some(3));
        assert!(crate::config::from_sources(&[("out.toml".into(), out.toml.clone())]).is_ok());
    }

    #[test]
    fn url_credentials_leave_the_rule_disabled_and_are_listed_without_the_password() {
        let (t, out) = convert_text(
            "check host h with address 10.0.0.1\n if failed url http://admin:hunter2@h.example.com/status content = \"(ok|fine)\" then alert\n",
        );
        assert!(!out.toml.contains("hunter2"), "{}", out.toml);
        let r = &t["rules"]["h"];
        assert_eq!(r["enabled"].as_bool(), Some(false));
        assert_eq!(
            r["check"]["url"].as_str(),
            Some("http://h.example.com/status")
        );
        assert!(r["check"].get("body_contains").is_none());
        let listed = out.untranslated.join("\n");
        assert!(
            listed
                .contains("monitrc:2: the URL's user name (\"admin\") and password -- not copied"),
            "{listed}"
        );
        assert!(
            listed.contains("monitrc:2: content = \"(ok|fine)\" -- a regular expression"),
            "{listed}"
        );
        assert!(listed.contains("then alert -- no equivalent"), "{listed}");
    }

    /// What was written validates as is.
    fn assert_valid(out: &Imported) {
        if let Err(e) = crate::config::from_sources(&[("out.toml".into(), out.toml.clone())]) {
            panic!("{e}\n{}", out.toml);
        }
    }

    /// The rule named `name` of `t`, with what its `check` is.
    fn check<'a>(t: &'a toml::Table, rule: &str) -> &'a toml::Value {
        &t["rules"][rule]["check"]
    }

    #[test]
    fn a_process_becomes_a_process_rule_and_its_port_tests_tcp_or_http_rules() {
        let (t, out) = convert_text(
            r#"set daemon 10
check process haproxy with pidfile /var/run/haproxy.pid
  start program = "/etc/init.d/haproxy start"
  if does not exist for 3 cycles then exec "/usr/local/bin/failover"
     else if succeeded for 2 cycles then exec "/usr/local/bin/failback"
  if failed port 443 type tcp with timeout 2 seconds 2 times within 4 cycles then exec "/usr/local/bin/failover"
  if failed host 127.0.0.1 port 6379 send "PING\r\n" expect "^\+PONG" then exec "/usr/local/bin/failover"
  if failed port 80 protocol http request "/health" then restart
check process nginx matching "nginx"
check process php matching "php-fpm: master.*"
"#,
        );
        let haproxy = check(&t, "haproxy");
        assert_eq!(haproxy.as_table().unwrap().len(), 2, "{haproxy}");
        assert_eq!(haproxy["type"].as_str(), Some("process"));
        assert_eq!(haproxy["pidfile"].as_str(), Some("/var/run/haproxy.pid"));
        let r = &t["rules"]["haproxy"];
        assert_eq!(r["fail_after"].as_integer(), Some(3));
        assert_eq!(r["recover_after"].as_integer(), Some(2));
        assert_eq!(r["timeout"].as_str(), Some("5s"));
        assert_eq!(r["on_fail"][0].as_str(), Some("exec-failover"));
        assert_eq!(r["on_recover"][0].as_str(), Some("exec-failback"));

        let tcp = check(&t, "haproxy-2");
        assert_eq!(
            tcp.as_table().unwrap().clone(),
            toml::toml! { type = "tcp"  host = "localhost"  port = 443 }
        );
        assert_eq!(t["rules"]["haproxy-2"]["timeout"].as_str(), Some("2s"));
        assert_eq!(t["rules"]["haproxy-2"]["fail_after"].as_integer(), Some(2));
        let redis = check(&t, "haproxy-3");
        assert_eq!(
            redis.as_table().unwrap().clone(),
            toml::toml! { type = "tcp"  host = "127.0.0.1"  port = 6379  send = "PING\r\n"  expect = "+PONG" }
        );
        let http = check(&t, "haproxy-4");
        assert_eq!(http["url"].as_str(), Some("http://localhost:80/health"));
        assert_eq!(
            t["rules"]["haproxy-4"]["on_fail"].as_array().unwrap().len(),
            0
        );

        assert_eq!(
            check(&t, "nginx").as_table().unwrap().clone(),
            toml::toml! { type = "process"  name = "nginx" }
        );
        assert!(t["rules"].get("php").is_none());
        assert_valid(&out);

        let listed = out.untranslated.join("\n");
        for want in [
            "monitrc:3: start program = \"/etc/init.d/haproxy start\" -- no equivalent: monit starts, stops and restarts services, the watchdog does not; let systemd restart the service (Restart=on-failure in its unit)",
            "monitrc:8: then restart -- no equivalent: monit restarts the service, the watchdog does not; let systemd restart it (Restart=on-failure",
            "monitrc:9: check process nginx matching \"nginx\" (monit's own test: does it exist) -- when it fails, monit restarts the service",
            "monitrc:10: check process php matching \"php-fpm: master.*\" (monit's own test: does it exist) -- matching \"php-fpm: master.*\" is a regular expression, not a plain process name",
        ] {
            assert!(listed.contains(want), "{want}\n{listed}");
        }
        let approx = out.approximate.join("\n");
        for want in [
            "monitrc:6: failed `2 times within 4 cycles` became 2 consecutive failed cycles",
            "monitrc:7: expect = \"^\\\\+PONG\": the anchors ^ and $ are dropped; the watchdog looks for \"+PONG\" anywhere in the answer",
            "monitrc:9: matching \"nginx\": monit matched it anywhere in the command line; the watchdog wants a process whose command name is \"nginx\"",
        ] {
            assert!(approx.contains(want), "{want}\n{approx}");
        }
    }

    #[test]
    fn a_program_becomes_a_program_rule_with_its_timeout_cut_to_the_cycle() {
        let (t, out) = convert_text(
            r#"set daemon 30
check program haproxy-config with path "/usr/sbin/haproxy -c -f /etc/haproxy/haproxy.cfg" with timeout 10 seconds
  if status != 0 for 2 cycles then exec "/usr/local/bin/page config"
check program slow with path /usr/local/bin/slow-check
  if status > 1 then alert
check program relative with path "check_haproxy --quiet"
  if status != 0 then alert
check program quiet with path /usr/local/bin/x
"#,
        );
        let r = &t["rules"]["haproxy-config"];
        assert_eq!(
            r["check"].as_table().unwrap().clone(),
            toml::toml! {
                type = "program"
                command = ["/usr/sbin/haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"]
                expect_exit = [0]
            }
        );
        assert_eq!(r["timeout"].as_str(), Some("10s"));
        assert_eq!(r["fail_after"].as_integer(), Some(2));
        let slow = &t["rules"]["slow"];
        assert_eq!(slow["check"]["expect_exit"].as_array().unwrap().len(), 2);
        assert_eq!(slow["timeout"].as_str(), Some("30s"));
        assert!(out.approximate.iter().any(|a| a
            == "monitrc:5: monit's program timeout (300s, its default) is longer than the 30 s cycle; cut to the cycle"));
        assert!(t["rules"].get("relative").is_none());
        assert_valid(&out);
        let listed = out.untranslated.join("\n");
        assert!(listed.contains("monitrc:7: if status != 0 then alert -- the program \"check_haproxy\" is not an absolute path"), "{listed}");
        assert!(
            listed.contains(
                "monitrc:8: check program quiet with path /usr/local/bin/x -- no `if status` test"
            ),
            "{listed}"
        );
        // No action left behind by the test that did not translate.
        assert!(t
            .get("actions")
            .is_some_and(|a| a.as_table().unwrap().len() == 1));
    }

    #[test]
    fn a_file_becomes_file_rules_for_existence_and_age() {
        let (t, out) = convert_text(
            r#"set daemon 60
check file maintenance with path /etc/haproxy/maintenance
  if exist then exec "/usr/local/bin/standby"
check file heartbeat with path /var/run/app.heartbeat
  if does not exist then exec "/usr/local/bin/failover"
  if timestamp > 2 hours then exec "/usr/local/bin/failover"
  if mtime > 90 seconds for 2 cycles then exec "/usr/local/bin/failover"
  if timestamp > 31 days then alert
  if changed timestamp then alert
check file flag with path /run/flag
check file rel with path run/flag
"#,
        );
        assert_eq!(
            check(&t, "maintenance").as_table().unwrap().clone(),
            toml::toml! { type = "file"  path = "/etc/haproxy/maintenance"  exists = false }
        );
        assert_eq!(
            t["rules"]["maintenance"]["on_fail"][0].as_str(),
            Some("exec-standby")
        );
        assert_eq!(
            check(&t, "heartbeat").as_table().unwrap().clone(),
            toml::toml! { type = "file"  path = "/var/run/app.heartbeat"  exists = true }
        );
        assert_eq!(check(&t, "heartbeat-2")["max_age"].as_str(), Some("2h"));
        assert_eq!(check(&t, "heartbeat-3")["max_age"].as_str(), Some("90s"));
        assert_eq!(
            t["rules"]["heartbeat-3"]["fail_after"].as_integer(),
            Some(2)
        );
        assert_eq!(check(&t, "flag")["exists"].as_bool(), Some(true));
        assert!(t["rules"].get("rel").is_none());
        assert_valid(&out);
        let listed = out.untranslated.join("\n");
        for want in [
            "monitrc:8: if timestamp > 31 days then alert -- an age of 2678400 s: max_age takes 1s to 30d",
            "monitrc:9: if changed timestamp then alert -- no equivalent",
            "monitrc:10: check file flag with path /run/flag (monit's own test: does it exist) -- when it fails, monit restarts the service",
            "monitrc:11: check file rel with path run/flag (monit's own test: does it exist) -- \"run/flag\" is not an absolute path",
        ] {
            assert!(listed.contains(want), "{want}\n{listed}");
        }
        assert!(out
            .approximate
            .iter()
            .any(|a| a.starts_with("monitrc:6: `timestamp` is the later")));
        assert!(!out
            .approximate
            .iter()
            .any(|a| a.starts_with("monitrc:7: `timestamp`")));
    }

    /// A tester's find: `exec "/usr/local/bin/give_eip_to_peer.sh"`, whose script runs
    /// `aws ec2 associate-address ... --instance-id $PEER_INSTANCE` (a literal), became this
    /// node claiming the address on its own failure.
    #[test]
    fn a_script_that_moves_the_address_to_a_named_instance_is_listed_not_claimed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("give.sh"),
            "#!/bin/sh\nPEER_INSTANCE=i-0peer0000000000001\n\
             aws ec2 associate-address --public-ip 54.20.20.20 --instance-id $PEER_INSTANCE --allow-reassociation\n",
        )
        .unwrap();
        let text = r#"set daemon 10
check host web with address 127.0.0.1
  if failed port 80 protocol http for 3 cycles then exec "/give.sh"
"#;
        let out = convert(
            parse::parse(text, Path::new("monitrc")),
            vec![],
            Some(dir.path()),
        );
        let t: toml::Table = out.toml.parse().unwrap();
        let actions = t
            .get("actions")
            .and_then(|a| a.as_table())
            .cloned()
            .unwrap_or_default();
        assert!(
            actions
                .values()
                .all(|a| a["type"].as_str() != Some("claim_eip")),
            "{}",
            out.toml
        );
        let listed = out.untranslated.join("\n");
        assert!(
            listed.contains("monitrc:3: /give.sh: the script gives the address to")
                && listed.contains("which may be the peer"),
            "{listed}"
        );
    }

    #[test]
    fn cycles_and_failover_scripts_work_for_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("failtome.sh"),
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/monit/etc/failtome.sh"),
            )
            .unwrap(),
        )
        .unwrap();
        let text = r#"set daemon 10
check process haproxy with pidfile /run/haproxy.pid
  if does not exist 2 times within 3 cycles then exec "/failtome.sh"
check program cfg with path /usr/sbin/check
  if status != 0 for 4 cycles then exec "/failtome.sh"
check file maint with path /etc/maint
  if exist for 5 cycles then exec "/failtome.sh"
"#;
        let out = convert(
            parse::parse(text, Path::new("monitrc")),
            vec![],
            Some(dir.path()),
        );
        let t: toml::Table = out.toml.parse().unwrap();
        for (rule, fail_after) in [("haproxy", 2), ("cfg", 4), ("maint", 5)] {
            let r = &t["rules"][rule];
            assert_eq!(r["fail_after"].as_integer(), Some(fail_after), "{rule}");
            assert_eq!(
                r["on_fail"][0].as_str(),
                Some("claim-54.173.141.243"),
                "{rule}"
            );
        }
        assert_eq!(t["actions"].as_table().unwrap().len(), 1);
        assert_valid(&out);
        assert_eq!(
            t["actions"]["claim-54.173.141.243"]["type"].as_str(),
            Some("claim_eip")
        );
    }

    /// A tester's find: the output held `[aws]`, `[egress]` and `[opsworks]`, which the
    /// packaged main file already sets, so the documented layout (the output in its conf.d/)
    /// did not validate. The failover script's values are comments and report lines now.
    #[test]
    fn a_failover_claim_writes_no_section_of_the_main_file_and_lists_its_values_to_set_by_hand() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/monit");
        let main = (
            PathBuf::from("watchdog.toml"),
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/watchdog.toml"),
            )
            .unwrap(),
        );
        for (root, want) in [
            // The seed's OpsWorks script.
            (
                fixtures.clone(),
                &[
                    "[aws] region = \"us-east-1\" -- from /etc/failtome.sh: its SNS topic's region",
                    "[egress] checkip_url = \"http://checkip.amazonaws.com\" -- from /etc/failtome.sh",
                    "[opsworks] region = \"us-east-1\" -- from /etc/failtome.sh",
                    "[opsworks] instance_id = \"4d6d1710-ded9-42a1-b08e-b043ad7af1e2\" -- from /etc/failtome.sh",
                ][..],
            ),
            // An EC2 one.
            (
                fixtures.join("kinds"),
                &[
                    "[aws] region = \"eu-west-1\" -- from /etc/failtome.sh: its SNS topic's region",
                    "[egress] checkip_url = \"https://checkip.amazonaws.com\" -- from /etc/failtome.sh",
                ][..],
            ),
        ] {
            let text = "set daemon 10\ncheck process haproxy with pidfile /run/haproxy.pid\n  if does not exist then exec \"/etc/failtome.sh\"\n";
            let out = convert(parse::parse(text, Path::new("monitrc")), vec![], Some(&root));
            let t: toml::Table = out.toml.parse().unwrap();
            for section in ["aws", "egress", "opsworks", "alerts", "haproxy", "node"] {
                assert!(t.get(section).is_none(), "[{section}]\n{}", out.toml);
            }
            assert_eq!(out.by_hand.len(), want.len(), "{:?}", out.by_hand);
            for (got, want) in out.by_hand.iter().zip(want) {
                assert!(got.starts_with(want), "{got}\n{want}");
                // And in the output, under the heading, as a comment.
                let (line, _) = got.split_once(" -- ").unwrap();
                assert!(
                    out.toml.contains(&format!("\n#   {line}\n")),
                    "{line}\n{}",
                    out.toml
                );
            }
            assert!(out
                .toml
                .contains("# SET THESE IN /etc/haproxy-watchdog/watchdog.toml by hand."));
            assert!(out.untranslated.is_empty(), "{:?}", out.untranslated);
            // The claim keeps its topic, and validates beside the packaged main file.
            let claim = t["actions"].as_table().unwrap().values().next().unwrap();
            assert_eq!(claim["type"].as_str(), Some("claim_eip"));
            assert!(claim["sns_topic_arn"].as_str().is_some());
            let conf_d = (PathBuf::from("conf.d/10-from-monit.toml"), out.toml.clone());
            if let Err(e) = crate::config::from_sources(&[main.clone(), conf_d]) {
                panic!("{e}\n{}", out.toml);
            }
            assert_valid(&out);
        }
    }

    /// A tester's find: command strings were split on blanks, so `'two words'` became two
    /// arguments and `/bin/sh -c '...'` a check that could never pass. monit groups a
    /// '...' word into one argument, in program paths and exec actions alike; what cannot be
    /// split unambiguously is listed, not written.
    #[test]
    fn command_strings_are_split_as_monit_splits_them_quoted_words_kept_whole() {
        let (t, out) = convert_text(
            r#"set daemon 30
check program web with path "/bin/sh -c 'curl -sf http://127.0.0.1/ | grep -q ok'"
  if status != 0 then exec "/usr/local/bin/page 'web is down' now"
check program chk with path "/usr/local/bin/check.sh arg1 'two words'"
  if status != 0 then exec "/usr/local/bin/x it's"
check program odd with path "/usr/local/bin/check.sh 'a'b"
  if status != 0 then alert
"#,
        );
        assert_eq!(
            t["rules"]["web"]["check"]["command"],
            toml::Value::Array(
                ["/bin/sh", "-c", "curl -sf http://127.0.0.1/ | grep -q ok"]
                    .map(|a| toml::Value::String(a.into()))
                    .to_vec()
            )
        );
        assert_eq!(
            t["actions"]["exec-page"]["command"],
            toml::Value::Array(
                ["/usr/local/bin/page", "web is down", "now"]
                    .map(|a| toml::Value::String(a.into()))
                    .to_vec()
            )
        );
        assert_eq!(
            t["rules"]["chk"]["check"]["command"][2].as_str(),
            Some("two words")
        );
        assert!(t["rules"].get("odd").is_none());
        assert_eq!(t["actions"].as_table().unwrap().len(), 1);
        let listed = out.untranslated.join("\n");
        for want in [
            "monitrc:5: exec \"/usr/local/bin/x it's\" -- a quote inside a word",
            "monitrc:7: if status != 0 then alert -- a quote inside a word of the command",
        ] {
            assert!(listed.contains(want), "{want}\n{listed}");
        }
        assert_valid(&out);
    }

    /// `exec "/bin/bash -c '...aws ec2 associate-address...'"`: the inline script reaches the
    /// failover recognizer, as import-keepalived's `/bin/sh -c '...'` does.
    #[test]
    fn command_strings_an_inline_shell_script_is_read_for_a_failover() {
        let (t, _) = convert_text(
            "check process haproxy with pidfile /run/haproxy.pid\n  if failed port 443 type tcp then exec \"/bin/bash -c 'aws ec2 associate-address --allocation-id eipalloc-1 --allow-reassociation'\"\n",
        );
        let claim = &t["actions"]["claim-eipalloc-1"];
        assert_eq!(claim["type"].as_str(), Some("claim_eip"));
        assert_eq!(claim["allocation_id"].as_str(), Some("eipalloc-1"));
        assert_eq!(
            t["rules"]["haproxy-2"]["on_fail"][0].as_str(),
            Some("claim-eipalloc-1")
        );
    }

    /// A tester's find: `protocol https` became an http check that verifies the certificate,
    /// which monit's did not; the watchdog has no key to turn verification off, so every https
    /// translation says so.
    #[test]
    fn https_translations_note_that_the_watchdog_verifies_the_certificate_monit_did_not() {
        let (t, out) = convert_text(
            "set daemon 10\ncheck host lb with address 127.0.0.1\n  if failed port 18443 protocol https then alert\n  if failed url https://lb.example.com/ then alert\n  if failed port 80 protocol http then alert\n",
        );
        assert_eq!(
            check(&t, "lb")["url"].as_str(),
            Some("https://127.0.0.1:18443/")
        );
        let notes: Vec<&String> = out
            .approximate
            .iter()
            .filter(|a| a.contains("monit did not verify the server's certificate"))
            .collect();
        assert_eq!(notes.len(), 2, "{:?}", out.approximate);
        assert!(notes[0].starts_with("monitrc:3: https: "), "{notes:?}");
        assert!(notes[0].contains("a self-signed certificate"), "{notes:?}");
        assert!(notes[1].starts_with("monitrc:4: "), "{notes:?}");
        assert_valid(&out);
    }

    /// A tester's find: `if exist` with `if timestamp > N` gave an `exists = true, max_age`
    /// rule that failed every cycle while the file was absent, its normal state. monit tests
    /// the age only while the file exists: that is listed, not written.
    #[test]
    fn a_timestamp_test_in_a_block_whose_normal_state_is_absent_is_listed_not_written() {
        let (t, out) = convert_text(
            "set daemon 30\ncheck file maint with path /etc/haproxy/maintenance\n  if exist then exec \"/usr/local/bin/standby\"\n  if modification timestamp > 2 hours then alert\n",
        );
        assert_eq!(
            check(&t, "maint").as_table().unwrap().clone(),
            toml::toml! { type = "file"  path = "/etc/haproxy/maintenance"  exists = false }
        );
        assert_eq!(t["rules"].as_table().unwrap().len(), 1, "{}", out.toml);
        let listed = out.untranslated.join("\n");
        assert!(
            listed.contains("monitrc:4: if modification timestamp > 2 hours then alert -- monit tests the age only while the file exists, and this block's normal state is absent (`if exist`, line 3)"),
            "{listed}"
        );
        assert_valid(&out);
    }

    /// A tester's find: `with http headers [Authorization: Basic ...]` was echoed into the
    /// report and the TOML's comments, and the test listed as "`http` has no equivalent".
    #[test]
    fn secrets_in_echoed_statements_are_redacted_and_http_headers_listed_with_why() {
        let (t, out) = convert_text(
            r#"set daemon 30
check host web with address 10.0.0.1
  if failed port 80 protocol http with http headers [Authorization: Basic YWRtaW46UGE1NXdvcmQ=, Cookie: sid=s3cr3t1] then alert
  if failed port 81 protocol http then exec "/usr/local/bin/notify --token t0k3n2 relative's"
check program p with path "/usr/local/bin/check --password=hunter2 -H 'Authorization: Bearer abcdef3'"
  if status != 0 then alert
  start program = "/usr/bin/x --secret sekrit4"
"#,
        );
        for secret in [
            "YWRtaW46UGE1NXdvcmQ=",
            "s3cr3t1",
            "t0k3n2",
            "hunter2",
            "abcdef3",
            "sekrit4",
        ] {
            let report = format!("{:?} {:?}", out.untranslated, out.approximate);
            assert!(!report.contains(secret), "{secret}: {report}");
            // The comments; the program's own command is the translation, not an echo.
            let comments: String = out.toml.lines().filter(|l| l.starts_with('#')).collect();
            assert!(!comments.contains(secret), "{secret}: {comments}");
        }
        let listed = out.untranslated.join("\n");
        assert!(
            listed.contains("monitrc:3: if failed port 80 protocol http with http headers [Authorization: ***, Cookie: ***] then alert -- `http headers [...]`: the watchdog's http check sends a Host header only"),
            "{listed}"
        );
        assert!(!listed.contains("`http` has no equivalent"), "{listed}");
        assert_eq!(
            check(&t, "web")["url"].as_str(),
            Some("http://10.0.0.1:81/")
        );
        assert_eq!(t["rules"].as_table().unwrap().len(), 2, "{}", out.toml);
        assert!(
            listed.contains("--secret \"***\"") || listed.contains("--secret ***"),
            "{listed}"
        );
    }

    /// A tester's find: an `AWS_SECRET_ACCESS_KEY=` assignment, `--api-key X`, `-pPASSWORD`
    /// and a request's `?api_key=` were echoed in clear, on stderr and in the rule's
    /// `# monit, file:line:` comment. Every echo is redacted; what the translation runs (the
    /// program's command, the action's command, the URL) is written as it is, so it works.
    #[test]
    fn secrets_are_redacted_in_every_echo_and_kept_in_what_the_translation_runs() {
        let (t, out) = convert_text(
            r#"set daemon 10
check program chk with path "/usr/bin/env AWS_SECRET_ACCESS_KEY=AWSSK16 /usr/local/bin/chk --api-key APIKEY17 -pMYSQLPW15"
  if status != 0 then exec "/usr/local/bin/page.sh --key KEY18 --auth-token=AT19"
check host web with address 127.0.0.1
  if failed port 80 protocol http request "/health?api_key=APIKEY13&x=1" then exec "/usr/local/bin/page.sh secret=SECR14"
  if cpu > 95% then exec "/usr/bin/env DB_PASSWORD=DBPW20 /usr/local/bin/page.sh -H 'Authorization: Bearer BEARER21'"
"#,
        );
        let secrets = [
            "AWSSK16",
            "APIKEY17",
            "MYSQLPW15",
            "KEY18",
            "AT19",
            "APIKEY13",
            "SECR14",
            "DBPW20",
            "BEARER21",
        ];
        let report = format!("{:?} {:?}", out.untranslated, out.approximate);
        let comments: String = out
            .toml
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for secret in secrets {
            assert!(!report.contains(secret), "{secret}: {report}");
            assert!(!comments.contains(secret), "{secret}: {comments}");
        }
        assert!(
            comments.contains("monitrc:3: if status != 0 then exec \"/usr/local/bin/page.sh --key *** --auth-token=***\""),
            "{comments}"
        );
        assert!(
            comments.contains("request \"/health?api_key=***&x=1\""),
            "{comments}"
        );
        // The translation, as written.
        assert_eq!(
            check(&t, "chk")["command"],
            toml::Value::Array(
                [
                    "/usr/bin/env",
                    "AWS_SECRET_ACCESS_KEY=AWSSK16",
                    "/usr/local/bin/chk",
                    "--api-key",
                    "APIKEY17",
                    "-pMYSQLPW15"
                ]
                .map(|a| toml::Value::String(a.into()))
                .to_vec()
            )
        );
        assert_eq!(
            check(&t, "web")["url"].as_str(),
            Some("http://127.0.0.1:80/health?api_key=APIKEY13&x=1")
        );
        let commands: Vec<String> = t["actions"]
            .as_table()
            .unwrap()
            .values()
            .map(|a| a["command"].to_string())
            .collect();
        let commands = commands.join(" ");
        for secret in ["KEY18", "AT19", "SECR14"] {
            assert!(commands.contains(secret), "{secret}: {commands}");
        }
        assert_valid(&out);
    }

    /// A tester's find: `every 2 cycles` was listed as "no equivalent" and the block's rules
    /// checked every cycle, so `for 3 cycles` failed after 45 s where monit took 90 s; and an
    /// exec's `repeat every N cycles` and `as uid U and gid G` were dropped silently. The
    /// interval is N cycles (a timeout cut to it, 1h at most), noted; `every "CRON"` and the
    /// exec tails are listed with why.
    #[test]
    fn every_n_cycles_multiplies_the_interval_and_exec_tails_are_listed_with_why() {
        let (t, out) = convert_text(
            r#"set daemon 15
check host a with address 127.0.0.1
  every 2 cycles
  if failed port 80 for 3 cycles then exec "/usr/local/bin/page.sh a"
check host b with address 127.0.0.1
  if failed port 81 for 3 cycles then exec "/usr/local/bin/page.sh b"
check program c with path "/usr/local/bin/c.sh" with timeout 40 seconds
  every 2 cycles
  if status != 0 for 2 cycles then exec "/usr/local/bin/page.sh c" repeat every 5 cycles
check program d with path "/usr/local/bin/d.sh" timeout 20 seconds
  if status != 0 then exec "/usr/local/bin/page.sh d" as uid nobody and gid nogroup
check host e with address 127.0.0.1
  every "* 8-19 * * 1-5"
  if failed port 82 then exec "/usr/local/bin/page.sh e"
check host f with address 127.0.0.1
  every 300 cycles
  if failed port 83 then exec "/usr/local/bin/page.sh f"
"#,
        );
        let rule = |n: &str| {
            let r = &t["rules"][n];
            (
                r["interval"].as_str().unwrap().to_owned(),
                r["timeout"].as_str().unwrap().to_owned(),
                r["fail_after"].as_integer().unwrap(),
            )
        };
        // 3 checks 30 s apart: 90 s, as monit took.
        assert_eq!(rule("a"), ("30s".into(), "5s".into(), 3));
        assert_eq!(rule("b"), ("15s".into(), "5s".into(), 3));
        assert_eq!(rule("c"), ("30s".into(), "30s".into(), 2));
        assert_eq!(rule("d"), ("15s".into(), "15s".into(), 1));
        assert_eq!(rule("e"), ("15s".into(), "5s".into(), 1));
        assert_eq!(rule("f"), ("3600s".into(), "5s".into(), 1));
        let notes = out.approximate.join("\n");
        for want in [
            "monitrc:3: every 2 cycles: the block's rules check every 30 s (2 x the 15 s cycle)",
            "monitrc:9: timeout 40s is longer than the rule's 30 s interval (every 2 cycles); cut to the interval",
            "monitrc:11: timeout 20s is longer than the 15 s cycle; cut to the cycle",
            "monitrc:16: every 300 cycles: 300 x the 15 s cycle is longer than 1h",
        ] {
            assert!(notes.contains(want), "{want}\n{notes}");
        }
        let listed = out.untranslated.join("\n");
        for want in [
            "monitrc:9: exec \"/usr/local/bin/page.sh c\" repeat every 5 cycles -- no equivalent: the watchdog runs an action once per transition",
            "monitrc:11: exec \"/usr/local/bin/page.sh d\" as uid nobody and gid nogroup -- no equivalent: an `exec` action runs as the daemon's user",
            "monitrc:13: every \"* 8-19 * * 1-5\" -- no equivalent: the watchdog checks at a fixed interval, not on a schedule",
        ] {
            assert!(listed.contains(want), "{want}\n{listed}");
        }
        assert!(!listed.contains("every 2 cycles"), "{listed}");
        // The actions are written, without their tails.
        assert_eq!(t["actions"].as_table().unwrap().len(), 6, "{}", out.toml);
        assert_valid(&out);
    }

    /// A tester's find: docs/migration.md said a regular expression that no literal text stands
    /// for is listed, but `content = "a.b"` was translated as the literal `a.b`. That stays (the
    /// docs now say so): a `.` taken literally makes the check stricter than monit's, so it
    /// fails closed, where listing it and checking the status alone would pass a body monit
    /// failed. The note says so, for `content` and `expect` alike.
    #[test]
    fn a_dot_in_a_content_or_expect_regex_is_a_literal_dot_a_stricter_check_noted() {
        let (t, out) = convert_text(
            r#"set daemon 10
check host h with address 127.0.0.1
  if failed port 80 protocol http request "/v" content = "v1.2" then alert
  if failed port 6379 send "INFO\r\n" expect "role:master.connected" then alert
  if failed port 81 protocol http content = "v1.*" then alert
"#,
        );
        assert_eq!(check(&t, "h")["body_contains"].as_str(), Some("v1.2"));
        assert_eq!(
            check(&t, "h-2")["expect"].as_str(),
            Some("role:master.connected")
        );
        let notes = out.approximate.join("\n");
        for want in [
            "monitrc:3: content = \"v1.2\": `.` matches any character to monit; the watchdog looks for the literal text \"v1.2\", a stricter test: a body with another character there fails the rule (edit `body_contains`",
            "monitrc:4: expect = \"role:master.connected\": `.` matches any character to monit; the watchdog looks for the literal text \"role:master.connected\", a stricter test: an answer with another character there fails the rule (edit `expect`",
        ] {
            assert!(notes.contains(want), "{want}\n{notes}");
        }
        // An operator other than `.`: no one text stands for it, listed.
        assert!(check(&t, "h-3").get("body_contains").is_none());
        assert!(
            out.untranslated
                .join("\n")
                .contains("monitrc:5: content = \"v1.*\" -- a regular expression that no literal text stands for"),
            "{:?}",
            out.untranslated
        );
        assert_valid(&out);
    }

    /// A tester's find: block `web-2` was silently named `web-2-1`, as block `web`'s second
    /// test had `web-2` already. Every rule not named as its block (and test number) is noted,
    /// and no two rules share a name, however long or odd the block's name.
    #[test]
    fn every_rule_renamed_from_its_blocks_name_is_noted_and_names_never_clash() {
        let long = "x".repeat(70);
        let (t, out) = convert_text(&format!(
            r#"set daemon 10
check host web with address 127.0.0.1
  if failed port 80 then alert
  if failed port 81 then alert
check host web-2 with address 127.0.0.1
  if failed port 82 then alert
check host "web 2" with address 127.0.0.1
  if failed port 83 then alert
check host {long} with address 127.0.0.1
  if failed port 84 then alert
  if failed port 85 then alert
"#
        ));
        let mut rules: Vec<&String> = t["rules"].as_table().unwrap().keys().collect();
        rules.sort();
        let x64 = "x".repeat(64);
        let x62 = format!("{}-2", "x".repeat(62));
        assert_eq!(
            rules,
            [
                "web",
                "web-2",
                "web-2-1",
                "web-2-2",
                x62.as_str(),
                x64.as_str()
            ],
            "{}",
            out.toml
        );
        let notes = out.approximate.join("\n");
        for want in [
            "monitrc:6: rule \"web-2-1\": renamed, as \"web-2\" is the rule of monitrc:4 already",
            "monitrc:8: rule \"web-2\": monit's name \"web 2\" made a valid watchdog name",
            "monitrc:8: rule \"web-2-2\": renamed, as \"web-2\" is the rule of monitrc:4 already",
            &format!("monitrc:10: rule \"{x64}\": monit's name \"{long}\" made a valid watchdog name"),
            &format!("monitrc:11: rule \"{x62}\": renamed, as \"{x64}\" is the rule of monitrc:10 already"),
        ] {
            assert!(notes.contains(want), "{want}\n{notes}");
        }
        assert_valid(&out);
    }

    /// A tester's find: a `check file` whose only tests did not translate got no rule, and
    /// monit's own existence test was not listed either.
    #[test]
    fn every_block_is_accounted_for_a_rule_or_a_listed_line() {
        let (t, out) = convert_text(
            r#"set daemon 30
check file old with path /var/run/old
  if timestamp > 40 days then alert
  if access time > 1 hour then alert
check file rel with path var/run/rel
  if timestamp > 40 days then alert
check host quiet with address 10.0.0.9
check host bad with address 10.0.0.8
  if failed port 53 type udp then alert
"#,
        );
        assert_eq!(
            check(&t, "old").as_table().unwrap().clone(),
            toml::toml! { type = "file"  path = "/var/run/old"  exists = true }
        );
        assert_eq!(t["rules"].as_table().unwrap().len(), 1, "{}", out.toml);
        let listed = out.untranslated.join("\n");
        for want in [
            "monitrc:3: if timestamp > 40 days then alert -- an age of 3456000 s",
            "monitrc:4: if access time > 1 hour then alert -- ",
            "monitrc:2: check file old with path /var/run/old (monit's own test: does it exist) -- when it fails, monit restarts the service",
            "monitrc:6: if timestamp > 40 days then alert -- \"var/run/rel\" is not an absolute path",
            "monitrc:5: check file rel with path var/run/rel (monit's own test: does it exist) -- \"var/run/rel\" is not an absolute path",
            "monitrc:7: check host quiet with address 10.0.0.9 -- no test of the block translates",
            "monitrc:8: check host bad with address 10.0.0.8 -- no test of the block translates",
            "monitrc:9: if failed port 53 type udp then alert -- only TCP",
        ] {
            assert!(listed.contains(want), "{want}\n{listed}");
        }
        assert_valid(&out);
    }

    #[test]
    fn the_same_input_gives_the_same_output() {
        let text = "check process a with pidfile /a.pid\n if failed port 1 then alert\ncheck file f with path /f\ncheck program p with path /p\n if status > 3 then alert\n";
        let (_, a) = convert_text(text);
        let (_, b) = convert_text(text);
        assert_eq!(a.toml, b.toml);
    }

    /// Every prefix of the fixture's monit files (tests cut anywhere), converted without a
    /// panic, and whatever was written is TOML.
    #[test]
    fn no_input_panics_the_conversion() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/monit/kinds/etc/monit");
        let mut text = std::fs::read_to_string(dir.join("monitrc")).unwrap();
        for f in ["haproxy.conf", "maintenance.conf", "redis.conf"] {
            text.push_str(&std::fs::read_to_string(dir.join("conf.d").join(f)).unwrap());
        }
        text.push_str("check host h with address ::1\n if failed port 1 send \"\\0x01\" expect \"a.b$\" then alert\ncheck file t with path /t\n if timestamp > 0 seconds then alert\n");
        for end in (0..=text.len()).filter(|&e| text.is_char_boundary(e)) {
            let out = convert(
                parse::parse(&text[..end], Path::new("monitrc")),
                vec![],
                None,
            );
            assert!(out.toml.parse::<toml::Table>().is_ok(), "{}", out.toml);
        }
    }
}
