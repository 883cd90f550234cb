//! The only module that knows TOML. Loads the main file and `conf.d/*.toml` in sorted order,
//! deserializes them into [`raw`] shapes and validates those into the [`model`], reporting
//! every problem at once, each with its file and the rule or section it is in.

pub mod defaults;
pub mod model;
pub mod raw;
mod validate;

pub use model::*;
pub use validate::is_opsworks_id;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// `rule "eip-web"`, `action "claim"`, `[aws]`; None for the file as a whole.
    pub item: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.item {
            Some(item) => write!(f, "{}: {}: {}", self.file.display(), item, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Everything that is wrong with a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The files a `--config PATH` stands for, in load order.
///
/// - a file: that file, then every `*.toml` in `conf.d/` beside it;
/// - a directory: every `*.toml` in it, then every `*.toml` in its `conf.d/`.
///
/// Each group is sorted by file name. A missing main file is an error; a missing `conf.d/` is not.
pub fn config_files(path: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    let one = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            item: None,
            message,
        }])
    };
    let meta = std::fs::metadata(path).map_err(|e| one(format!("cannot read: {e}")))?;
    let (mut files, dir) = if meta.is_dir() {
        let files = toml_files_in(path).map_err(|e| one(format!("cannot list directory: {e}")))?;
        (files, path.join("conf.d"))
    } else {
        let parent = path.parent().unwrap_or(Path::new("."));
        (vec![path.to_path_buf()], parent.join("conf.d"))
    };
    if dir.is_dir() {
        files.extend(toml_files_in(&dir).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: dir.clone(),
                item: None,
                message: format!("cannot list directory: {e}"),
            }])
        })?);
    }
    if files.is_empty() {
        return Err(one("no *.toml files found".into()));
    }
    Ok(files)
}

/// Every `*.toml` entry of `dir`, sorted, whatever it is: one that is not a readable file (a
/// directory, a dangling link) is reported when it is read, never skipped.
fn toml_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "toml") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Load and validate the configuration `path` stands for (see [`config_files`]).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let files = config_files(path)?;
    let mut texts = Vec::with_capacity(files.len());
    let mut unread = Vec::new();
    for f in &files {
        match read_config_file(f) {
            Ok(t) => texts.push((f.clone(), t)),
            Err(message) => unread.push(ConfigError {
                file: f.clone(),
                item: None,
                message,
            }),
        }
    }
    match (from_sources(&texts), unread.is_empty()) {
        (Ok(c), true) => Ok(c),
        // The files that could be read are checked all the same: one unreadable file does not
        // hide the others' errors (a reference into the unread file may show up as one).
        (Ok(_), false) => Err(ConfigErrors(unread)),
        (Err(ConfigErrors(more)), _) => {
            unread.extend(more);
            unread.sort_by(|a, b| a.file.cmp(&b.file));
            Err(ConfigErrors(unread))
        }
    }
}

/// One configuration file's text. Only a regular file (or a link to one) is opened: a FIFO,
/// socket or device named `*.toml` would block the read, or never end it, so it is reported
/// by its type instead. Errors are the message of a `cannot read` [`ConfigError`].
fn read_config_file(f: &Path) -> Result<String, String> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::metadata(f) {
        let t = meta.file_type();
        let what = if t.is_fifo() {
            Some("a FIFO")
        } else if t.is_socket() {
            Some("a socket")
        } else if t.is_block_device() || t.is_char_device() {
            Some("a device")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(format!(
                "cannot read: it is {what}, not a regular file (not opened)"
            ));
        }
    }
    std::fs::read_to_string(f).map_err(|e| format!("cannot read: {e}"))
}

/// Validate configuration text already in memory: `(path, contents)` in load order.
pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Config, ConfigErrors> {
    let mut errs = Errors::default();
    let mut merged = Merged::default();
    for (path, text) in sources {
        merged.add_file(path, text, &mut errs);
    }
    let config = validate::validate(merged, &mut errs);
    // Group by file, keeping each file's errors in the order they were found.
    errs.0.sort_by(|a, b| a.file.cmp(&b.file));
    match (config, errs.0.is_empty()) {
        (Some(c), true) => Ok(c),
        _ => Err(ConfigErrors(errs.0)),
    }
}

#[derive(Default)]
pub(crate) struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub fn push(&mut self, file: &Path, item: Option<&str>, message: impl Into<String>) {
        self.0.push(ConfigError {
            file: file.to_path_buf(),
            item: item.map(str::to_owned),
            message: message.into(),
        });
    }
}

/// A value read from one file, remembered with that file.
pub(crate) struct Located<T> {
    pub file: PathBuf,
    pub value: T,
    /// Keys that were written but did not parse (reported already): left out of `value`, they
    /// are not missing, and are not reported as missing again.
    pub unparsed: Vec<String>,
}

/// All files' raw contents, merged: each global section at most once, each name once.
#[derive(Default)]
pub(crate) struct Merged {
    pub sources: Vec<PathBuf>,
    pub aws: Option<Located<raw::RawAws>>,
    pub node: Option<Located<raw::RawNode>>,
    pub egress: Option<Located<raw::RawEgress>>,
    pub haproxy: Option<Located<raw::RawHaproxy>>,
    pub alerts: Option<Located<raw::RawAlerts>>,
    pub control: Option<Located<raw::RawControl>>,
    pub opsworks: Option<Located<raw::RawOpsworks>>,
    pub rules: BTreeMap<String, Located<raw::RawRule>>,
    pub actions: BTreeMap<String, Located<raw::RawAction>>,
    /// Names that were defined but did not parse: references to them are not reported again.
    pub broken_actions: Vec<String>,
}

const SECTIONS: &str = "aws, node, egress, haproxy, alerts, control, opsworks, rules, actions";

impl Merged {
    fn add_file(&mut self, path: &Path, text: &str, errs: &mut Errors) {
        self.sources.push(path.to_path_buf());
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                errs.push(path, None, format!("not valid TOML: {}", one_line(&e)));
                return;
            }
        };
        for (key, value) in table {
            match key.as_str() {
                "aws" => section(&mut self.aws, "[aws]", path, value, errs),
                "node" => section(&mut self.node, "[node]", path, value, errs),
                "egress" => section(&mut self.egress, "[egress]", path, value, errs),
                "haproxy" => section(&mut self.haproxy, "[haproxy]", path, value, errs),
                "alerts" => section(&mut self.alerts, "[alerts]", path, value, errs),
                "control" => section(&mut self.control, "[control]", path, value, errs),
                "opsworks" => section(&mut self.opsworks, "[opsworks]", path, value, errs),
                "rules" => named(&mut self.rules, "rule", path, value, errs, &mut Vec::new()),
                "actions" => named(
                    &mut self.actions,
                    "action",
                    path,
                    value,
                    errs,
                    &mut self.broken_actions,
                ),
                other => errs.push(
                    path,
                    None,
                    format!("unknown top-level key `{other}`, expected one of: {SECTIONS}"),
                ),
            }
        }
    }
}

fn section<T: serde::de::DeserializeOwned>(
    slot: &mut Option<Located<T>>,
    label: &str,
    path: &Path,
    value: toml::Value,
    errs: &mut Errors,
) {
    if let Some(prev) = slot {
        errs.push(
            path,
            Some(label),
            format!(
                "already set in {}; set each section in one file only",
                prev.file.display()
            ),
        );
        return;
    }
    let (parsed, problems, unparsed) = deserialize_all::<T>(value);
    for p in problems {
        errs.push(path, Some(label), p);
    }
    if let Some(v) = parsed {
        *slot = Some(Located {
            file: path.to_path_buf(),
            value: v,
            unparsed,
        })
    }
}

/// Deserialize `value`, reporting every bad key rather than the first: serde stops at the
/// first error, so the key (or the key of a nested table, such as one of `check`'s) whose
/// removal clears that error is taken out and the rest tried again. What is left, when it
/// deserializes, is returned too, so the semantic checks of the other keys still run and
/// their errors are reported in the same pass. A required key of the wrong type is given a
/// stand-in of the type it wants instead (the item is then built without the top-level key
/// it is in), and a table that cannot be built (no `type`) goes with its top-level key, so
/// the rest is still read. The keys taken out are returned last, so that nothing reports
/// them missing.
fn deserialize_all<T: serde::de::DeserializeOwned>(
    value: toml::Value,
) -> (Option<T>, Vec<String>, Vec<String>) {
    let mut table = match value {
        toml::Value::Table(t) => t,
        other => {
            return match T::deserialize(other) {
                Ok(v) => (Some(v), Vec::new(), Vec::new()),
                Err(e) => (None, vec![user_terms(one_line(&e))], Vec::new()),
            }
        }
    };
    let try_table = |t: &toml::Table| {
        T::deserialize(toml::Value::Table(t.clone())).map_err(|e| user_terms(one_line(&e)))
    };
    let mut problems = Vec::new();
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut unparsed: Vec<String> = Vec::new();
    // The top-level keys that hold a required key given a stand-in value: taken out before
    // the item is built, so the stand-in says nothing more (None: one is itself top-level,
    // and the item is not built).
    let mut stood_in: Option<Vec<String>> = Some(Vec::new());
    // Each round removes one key; a table has few, so this ends quickly.
    for _ in 0..64 {
        let msg = match try_table(&table) {
            Ok(v) => {
                let built = match &stood_in {
                    Some(tops) if tops.is_empty() => Some(v),
                    Some(tops) => {
                        for top in tops {
                            table.remove(top);
                            unparsed.push(top.clone());
                        }
                        try_table(&table).ok()
                    }
                    None => None,
                };
                return (built, problems, unparsed);
            }
            Err(m) => m,
        };
        // A key taken out that turns out to be required (another error came first when it
        // was taken out): a value of the type it wants instead, if one clears it, so that
        // the rest of the item is still read; else its own error has been reported.
        let missed = removed.iter().position(|k| misses(&msg, k));
        if let Some(i) = missed {
            let path = removed.remove(i);
            match fixed_by_stand_in(&table, &path, &try_table) {
                Some(fixed) => {
                    table = fixed;
                    stand_in_under(&mut stood_in, &path);
                    continue;
                }
                None => return (None, problems, unparsed),
            }
        }
        problems.push(msg.clone());
        // The deepest keys first, so a bad key inside `check` (or its `source`) costs only
        // that key.
        let mut paths: Vec<Vec<String>> = Vec::new();
        key_paths(&table, &mut Vec::new(), &mut paths);
        paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let culprit = |p: &Vec<String>| {
            match try_table(&without(&table, p)) {
                Ok(_) => true,
                // A required key: taking it out only trades one error for another. It is the
                // culprit if a value of another type would do (`port = "80"`).
                Err(m) if misses(&m, p) => fixed_by_stand_in(&table, p, &try_table).is_some(),
                Err(m) => m != msg,
            }
        };
        // A table without a required key (`source = { group = "g" }` has no `type`): serde
        // names the key, not the table (which every other key would otherwise be blamed
        // for, in turn).
        if let Some(path) = lacking(&table, &msg, &paths, &try_table) {
            let key = path.join(".");
            if let Some(last) = problems.last_mut() {
                *last = naming_key(last, &path);
            }
            // The whole top-level key it is in goes (a table without its kind cannot be
            // built, and taking out only it would make its parent miss it): the rest of
            // the item is still read.
            let top = path.first().cloned().unwrap_or_default();
            table.remove(&top);
            unparsed.push(key);
            unparsed.push(top.clone());
            removed.push(vec![top]);
            continue;
        }
        // A key inside a table first; then keys that share the message (`send = 1, expect =
        // 1` say the same, so taking out either leaves it); then a whole top-level key.
        let culprits = match paths.iter().filter(|p| p.len() > 1).find(|p| culprit(p)) {
            Some(p) => vec![p.clone()],
            None => match echoed(&table, &msg, &paths, &try_table) {
                Some(p) => vec![p],
                None => sharing(&table, &msg, &paths, &try_table),
            },
        };
        if culprits.is_empty() {
            return (None, problems, unparsed);
        }
        let first = problems.pop().unwrap_or_default();
        for p in &culprits {
            problems.push(naming_key(&first, p));
            let out = without(&table, p);
            let required = matches!(try_table(&out), Err(m) if misses(&m, p));
            // A required key is given a value of the type it wants instead, so that the
            // rest of the item is still read (its other errors reported in the same pass);
            // the item is then not built, lest that value say more.
            match required
                .then(|| fixed_by_stand_in(&table, p, &try_table))
                .flatten()
            {
                Some(fixed) => {
                    table = fixed;
                    stand_in_under(&mut stood_in, p);
                }
                // A required key nothing fixes (an unknown `type`): the top-level key it is
                // in goes, so the rest of the item is still read.
                None if required && p.len() > 1 => {
                    table.remove(&p[0]);
                    unparsed.push(p[0].clone());
                    removed.push(vec![p[0].clone()]);
                }
                None => {
                    table = out;
                    removed.push(p.clone());
                }
            }
            unparsed.push(p.join("."));
        }
    }
    (None, problems, unparsed)
}

/// The keys of `table` (among `paths`, deepest first) that each give the error `msg`: taken
/// out one by one (those whose absence is itself an error stay) until `msg` is gone, then
/// kept only if putting that one back alone brings `msg` back. Two keys with the same wrong
/// value make one message, which taking out either leaves as it was. Empty when no set of
/// keys clears `msg`.
fn sharing<T>(
    table: &toml::Table,
    msg: &str,
    paths: &[Vec<String>],
    try_table: &impl Fn(&toml::Table) -> Result<T, String>,
) -> Vec<Vec<String>> {
    let mut t = table.clone();
    let mut taken: Vec<Vec<String>> = Vec::new();
    let mut cleared = false;
    for p in paths {
        // A key inside one already taken out is gone with it.
        if taken.iter().any(|q| p.starts_with(q)) {
            continue;
        }
        let mut next = without(&t, p);
        match try_table(&next) {
            // A required key stays, unless a value of another type clears every error (the
            // last of the keys sharing the message: `service = 1`).
            Err(m) if misses(&m, p) => match fixed_by_stand_in(&t, p, try_table) {
                Some(fixed) => {
                    next = fixed;
                    cleared = true;
                }
                None => continue,
            },
            Err(m) if m == msg => {}
            _ => cleared = true,
        }
        t = next;
        taken.push(p.clone());
        if cleared {
            break;
        }
    }
    if !cleared {
        return Vec::new();
    }
    let culprits: Vec<Vec<String>> = taken
        .into_iter()
        .filter(|p| {
            let mut back = t.clone();
            if let Some(v) = value_at(table, p) {
                set_path(&mut back, p, v.clone());
            }
            matches!(try_table(&back), Err(m) if m == msg)
        })
        .collect();
    // A key inside another culprit (`on_fail = { a = 1 }`: `on_fail.a` put back alone makes
    // `on_fail` a table again) is that one's error, not its own.
    culprits
        .iter()
        .filter(|p| {
            !culprits
                .iter()
                .any(|q| q.len() < p.len() && p.starts_with(q))
        })
        .cloned()
        .collect()
}

/// `table` with a value of another type at `path` (a required key) that clears the errors
/// of the top-level key it is in: what `try_table` says of the result is nothing, or the
/// same as of `table` without that top-level key (another key's error, such as the rule's
/// `fail_after = "3"` beside `check.port = "x"`). None: no type does.
fn fixed_by_stand_in<T>(
    table: &toml::Table,
    path: &[String],
    try_table: &impl Fn(&toml::Table) -> Result<T, String>,
) -> Option<toml::Table> {
    // What is wrong outside the top-level key; unless the error now is something else (in
    // that key), no value here is what fails.
    let rest = match path {
        [top, _, ..] => {
            let mut t = table.clone();
            t.remove(top);
            try_table(&t).err()
        }
        _ => None,
    };
    let rest = rest.filter(|r| try_table(table).err().as_ref() != Some(r));
    stand_ins().into_iter().find_map(|v| {
        let mut t = table.clone();
        set_path(&mut t, path, v);
        match try_table(&t) {
            Ok(_) => Some(t),
            Err(m) if rest.as_ref() == Some(&m) => Some(t),
            Err(_) => None,
        }
    })
}

/// The key inside a table (among `paths`, deepest first) whose value `msg` is about: given
/// another value of the same kind (a marker), the error names the marker instead. For errors
/// no removal can locate: an unknown `type` of a `source` (required, and taking it out only
/// says it is missing), a string where a `source` table goes.
fn echoed<T>(
    table: &toml::Table,
    msg: &str,
    paths: &[Vec<String>],
    try_table: &impl Fn(&toml::Table) -> Result<T, String>,
) -> Option<Vec<String>> {
    const MARK: &str = "zz-watchdog-probe";
    const MARK_INT: i64 = 987_654_321;
    paths.iter().filter(|p| p.len() > 1).find_map(|p| {
        let (marker, was, mark) = match value_at(table, p)? {
            toml::Value::String(v) => (
                toml::Value::String(MARK.into()),
                v.clone(),
                MARK.to_string(),
            ),
            toml::Value::Integer(v) => (
                toml::Value::Integer(MARK_INT),
                v.to_string(),
                MARK_INT.to_string(),
            ),
            _ => return None,
        };
        let mut t = table.clone();
        set_path(&mut t, p, marker);
        let m = try_table(&t).err()?;
        // The same message with the value swapped: serde quotes a string "so", a variant or
        // a number `so`.
        let swapped = |q: char| msg.replacen(&format!("{q}{was}{q}"), &format!("{q}{mark}{q}"), 1);
        (m != msg && (m == swapped('"') || m == swapped('`'))).then(|| p.clone())
    })
}

/// For `msg` saying `missing field `f``: the table (among `paths`, deepest first, top-level
/// tables too) that lacks `f` and is the one meant: given an `f` of some type, the error is
/// gone or becomes another about that table (an unknown kind), not `unknown field `f``
/// (a table that takes no `f`).
fn lacking<T>(
    table: &toml::Table,
    msg: &str,
    paths: &[Vec<String>],
    try_table: &impl Fn(&toml::Table) -> Result<T, String>,
) -> Option<Vec<String>> {
    let field = msg.strip_prefix("missing field `")?.split('`').next()?;
    paths
        .iter()
        .filter(|p| {
            value_at(table, p)
                .and_then(toml::Value::as_table)
                .is_some_and(|t| !t.contains_key(field))
        })
        .find(|p| {
            let mut with = p.to_vec();
            with.push(field.to_string());
            stand_ins().into_iter().any(|v| {
                let mut t = table.clone();
                set_path(&mut t, &with, v);
                match try_table(&t) {
                    Ok(_) => true,
                    Err(m) => m != msg && !m.contains(&format!("unknown field `{field}`")),
                }
            })
        })
        .cloned()
}

/// `table` without the key at `path`.
fn without(table: &toml::Table, path: &[String]) -> toml::Table {
    let mut t = table.clone();
    remove_path(&mut t, path);
    t
}

/// Does `msg` say the key at `path` is missing?
fn misses(msg: &str, path: &[String]) -> bool {
    let leaf = path.last().map(String::as_str).unwrap_or_default();
    msg.contains(&format!("missing field `{leaf}`"))
}

/// Note that the key at `path` was given a stand-in: its top-level key is taken out before
/// the item is built; a top-level key itself means the item is not built (None).
fn stand_in_under(stood_in: &mut Option<Vec<String>>, path: &[String]) {
    match (stood_in.as_mut(), path) {
        (Some(tops), [top, _, ..]) => tops.push(top.clone()),
        _ => *stood_in = None,
    }
}

/// The value at `path` in `table`.
fn value_at<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for k in parents {
        t = t.get(k)?.as_table()?;
    }
    t.get(last)
}

/// Put `value` at `path` in `table`, making the tables above it that are missing.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [k] => {
            table.insert(k.clone(), value);
        }
        [k, rest @ ..] => {
            let inner = table
                .entry(k.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = inner {
                set_path(inner, rest, value);
            }
        }
    }
}

/// `msg`, serde's message for the key at `path`, naming that key. Inside a tagged kind (an
/// action, a rule's `check`) serde's message names no key, or only the table above the tag
/// (`; in `check``: the tag's buffering loses the path below it). A message that names the
/// key itself (`unknown field `bogus``) gets the table it is in.
fn naming_key(msg: &str, path: &[String]) -> String {
    let key = path.join(".");
    let leaf = path.last().cloned().unwrap_or_default();
    let names_leaf = msg.contains(&format!("`{leaf}`"));
    let mut out = msg.to_string();
    let within = |out: &mut String, whole: &str| {
        if let Some(at) = out.rfind("; in `") {
            let table = out[at + "; in `".len()..].trim_end_matches('`');
            if whole.starts_with(table) && whole != table {
                out.truncate(at);
            }
        }
    };
    if names_leaf {
        let table = path[..path.len().saturating_sub(1)].join(".");
        if !table.is_empty() {
            within(&mut out, &table);
            if !out.contains("; in `") {
                out.push_str(&format!("; in `{table}`"));
            }
        }
        return out;
    }
    within(&mut out, &key);
    if !out.contains("; in `") {
        out.push_str(&format!("; in `{key}`"));
    }
    out
}

/// Every key of `table` and of the tables within it, each as its path from `table`.
fn key_paths(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (k, v) in table {
        prefix.push(k.clone());
        out.push(prefix.clone());
        if let toml::Value::Table(inner) = v {
            key_paths(inner, prefix, out);
        }
        prefix.pop();
    }
}

/// A value of each TOML type, put in place of a required key to find whether its type is
/// what failed.
fn stand_ins() -> [toml::Value; 5] {
    [
        toml::Value::Integer(1),
        toml::Value::String("1".into()),
        toml::Value::Boolean(true),
        toml::Value::Array(Vec::new()),
        toml::Value::Table(toml::Table::new()),
    ]
}

/// Take the key at `path` out of `table`, if it is there.
fn remove_path(table: &mut toml::Table, path: &[String]) {
    match path {
        [] => {}
        [k] => {
            table.remove(k);
        }
        [k, rest @ ..] => {
            if let Some(toml::Value::Table(inner)) = table.get_mut(k) {
                remove_path(inner, rest);
            }
        }
    }
}

fn named<T: serde::de::DeserializeOwned>(
    map: &mut BTreeMap<String, Located<T>>,
    what: &str,
    path: &Path,
    value: toml::Value,
    errs: &mut Errors,
    broken: &mut Vec<String>,
) {
    let toml::Value::Table(table) = value else {
        errs.push(
            path,
            None,
            format!("`{what}s` must be a table of {what}s by name, like [{what}s.NAME]"),
        );
        return;
    };
    for (name, body) in table {
        let label = format!("{what} \"{name}\"");
        if let Err(e) = validate::check_name(&name) {
            errs.push(path, Some(&label), e.to_string());
        }
        if let Some(prev) = map.get(&name) {
            errs.push(
                path,
                Some(&label),
                format!(
                    "duplicate {what} name: already defined in {}",
                    prev.file.display()
                ),
            );
            continue;
        }
        let (parsed, problems, unparsed) = deserialize_all::<T>(body);
        for p in problems {
            errs.push(path, Some(&label), p);
        }
        match parsed {
            Some(v) => {
                map.insert(
                    name,
                    Located {
                        file: path.to_path_buf(),
                        value: v,
                        unparsed,
                    },
                );
            }
            None => broken.push(name),
        }
    }
}

/// serde names what it expected by our Rust types (`internally tagged enum RawAction`,
/// `struct RawRule`); say it in the terms of the file instead.
fn user_terms(msg: String) -> String {
    const TERMS: &[(&str, &str)] = &[
        (
            "internally tagged enum RawAction",
            "an action: a table with `type` = \"claim_eip\", \"claim_private_ip\", \"claim_route\", \"claim_group\", \"sns\" or \"exec\"",
        ),
        (
            "internally tagged enum RawCheck",
            "a check: a table with `type` = \"http\", \"haproxy\", \"egress\", \"tcp\", \"program\", \"process\", \"file\" or \"backend_sync\"",
        ),
        (
            "internally tagged enum RawSource",
            "a source: a table with `type` = \"asg\" or \"consul\"",
        ),
        (
            "data did not match any variant of untagged enum StatusPattern",
            "expected a status code like 200 or a class like \"2xx\"",
        ),
        ("variant identifier", "a string naming the kind"),
        ("expected i64", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected u64", "expected an integer"),
        ("expected u32", "expected an integer"),
        ("expected u16", "expected an integer"),
        ("expected u8", "expected an integer"),
        ("expected usize", "expected an integer"),
        ("expected a sequence", "expected a list"),
        ("expected path string", "expected a string (a path)"),
        ("expected f64", "expected a number"),
        ("struct RawRule", "a rule: a table like [rules.NAME]"),
    ];
    let mut msg = msg;
    for (ours, theirs) in TERMS {
        msg = msg.replace(ours, theirs);
    }
    // Any other of our types is a table of settings.
    while let Some(at) = msg.find("struct Raw") {
        let end = msg[at + "struct ".len()..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(msg.len(), |n| at + "struct ".len() + n);
        msg.replace_range(at..end, "a table");
    }
    msg
}

/// toml's messages span several lines (with a source excerpt); keep the gist on one line.
fn one_line(e: &dyn fmt::Display) -> String {
    let s = e.to_string();
    // Drop toml's source excerpt: `  |`, `3 | text`, `  ^`.
    let excerpt = |l: &str| {
        l.starts_with('^')
            || l.split_once('|')
                .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()))
    };
    let lines: Vec<&str> = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !excerpt(l))
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
