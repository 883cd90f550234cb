//! The configuration reference is checked against the types that read the configuration:
//! every key an operator can write has a row in `docs/configuration.md` and a line in the
//! commented sample `packaging/watchdog.toml`, and every field in `raw.rs` has a `///`.
//!
//! The keys are not listed by hand. They are found by asking the loader itself
//! ([`from_sources`]): a table holding only an unknown key is rejected by
//! `deny_unknown_fields` with serde's "unknown field `x`, expected one of `a`, `b`, ..."; a
//! table without `type` is a kind (serde's "missing field `type`"), whose kinds an unknown
//! `type` lists ("unknown variant `x`, expected one of ..."); a key whose value, set to a table
//! holding only an unknown key, answers either way is itself a table and is walked the same
//! way. A field added to a raw type therefore shows up here without anyone touching this
//! file, and fails the test until it is documented.

use super::from_sources;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// A key no configuration has: its only job is to be rejected.
const PROBE: &str = "zzz_not_a_key";

/// A table of the configuration: the keys leading to it, each with the `type` it was given
/// (for a kind such as `check` or `source`), e.g. `rules`, `NAME`, `check` + "backend_sync".
type Path = Vec<(String, Option<String>)>;

/// The heading this table has in `docs/configuration.md` and in `packaging/watchdog.toml`:
/// `[rules.NAME.check] type = "http"`.
fn heading(path: &Path) -> String {
    let keys: Vec<&str> = path.iter().map(|(k, _)| k.as_str()).collect();
    match &path.last().and_then(|(_, t)| t.clone()) {
        Some(t) => format!("[{}] type = \"{t}\"", keys.join(".")),
        None => format!("[{}]", keys.join(".")),
    }
}

/// The errors the loader gives for a file holding `leaf` at `path` (each level with its type).
fn load_errors(path: &Path, leaf: toml::Table) -> Vec<String> {
    let mut value = leaf;
    if let Some((_, Some(t))) = path.last() {
        value
            .entry("type")
            .or_insert(toml::Value::String(t.clone()));
    }
    for i in (0..path.len()).rev() {
        let mut outer = toml::Table::new();
        if i > 0 {
            if let Some(t) = &path[i - 1].1 {
                outer.insert("type".into(), toml::Value::String(t.clone()));
            }
        }
        outer.insert(path[i].0.clone(), toml::Value::Table(value));
        value = outer;
    }
    let text = toml::to_string(&value).expect("a probe serializes");
    match from_sources(&[(PathBuf::from("probe.toml"), text)]) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.into_iter().map(|e| e.message).collect(),
    }
}

fn probe_table() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert(PROBE.into(), toml::Value::Integer(1));
    t
}

/// The names after `prefix` in one of the loader's messages: serde's "expected one of `a`,
/// `b`", "expected `a` or `b`" and "expected `a`", or the loader's own "expected one of: a, b".
/// A nested table's message ends in "; in `check`", which is not part of the list.
fn names_after(messages: &[String], prefix: &str) -> Option<Vec<String>> {
    let rest = messages.iter().find_map(|m| m.split_once(prefix))?.1;
    let list = rest.split(';').next().unwrap_or("");
    let list = list.split_once("expected").map_or("", |(_, l)| l);
    let names: Vec<String> = if list.contains('`') {
        // `a`, `b` or `c`: every other piece between backticks is a name.
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    } else {
        let list = list
            .trim_start()
            .trim_start_matches("one of")
            .trim_start_matches(':');
        list.split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    };
    Some(names)
}

/// What the loader says a table at `path` is.
enum Shape {
    /// Keys, in the order serde lists them.
    Table(Vec<String>),
    /// A kind: its `type`s.
    Kinds(Vec<String>),
    /// Neither: a value such as a string or a list (or a map of names, see `walk`).
    Value,
}

fn shape(path: &Path) -> Shape {
    let messages = load_errors(path, probe_table());
    let unknown = |what: &str| format!("unknown {what} `{PROBE}`");
    if let Some(keys) = names_after(&messages, &unknown("top-level key")) {
        return Shape::Table(keys);
    }
    if let Some(keys) = names_after(&messages, &unknown("field")) {
        return Shape::Table(keys);
    }
    if messages.iter().any(|m| m.contains("missing field `type`")) {
        let mut leaf = toml::Table::new();
        leaf.insert("type".into(), toml::Value::String(PROBE.into()));
        let messages = load_errors(path, leaf);
        let kinds = names_after(&messages, &unknown("variant"))
            .unwrap_or_else(|| panic!("{}: no list of kinds in {messages:?}", heading(path)));
        return Shape::Kinds(kinds);
    }
    Shape::Value
}

/// Every table below `path` with its keys, by heading.
fn walk(path: &Path, out: &mut BTreeMap<String, Vec<String>>) {
    match shape(path) {
        Shape::Table(keys) => {
            // The top level is only a list of tables; its names are headings, not keys.
            if !path.is_empty() {
                let previous = out.insert(heading(path), keys.clone());
                assert!(
                    previous.is_none(),
                    "two tables are called {}",
                    heading(path)
                );
            }
            for k in keys {
                let mut below = path.clone();
                below.push((k, None));
                walk(&below, out);
            }
        }
        Shape::Kinds(kinds) => {
            for t in kinds {
                let mut this = path.clone();
                this.last_mut().expect("a kind is a key's value").1 = Some(t);
                walk(&this, out);
            }
        }
        // `[rules]` and `[actions]` are tables of names: `[rules.NAME]`.
        Shape::Value if path.len() == 1 => {
            let mut named = path.clone();
            named.push(("NAME".into(), None));
            match shape(&named) {
                Shape::Value => {}
                _ => walk(&named, out),
            }
        }
        Shape::Value => {}
    }
}

/// Every table of the configuration with its keys, as the loader knows them.
fn reference() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    walk(&Vec::new(), &mut out);
    out
}

/// The keys each heading of a document lists: in Markdown, table rows starting with
/// `` | `key` | `` under a heading reading `` `[aws]` ``; in TOML, `key =` lines (commented or
/// not) under `[aws]` or `# [aws]`, with a `type = "..."` line right after the header naming
/// the kind.
fn documented(text: &str, markdown: bool) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut typed = false;
    for line in text.lines() {
        if markdown {
            if let Some(h) = line.strip_prefix('#') {
                let h = h.trim_start_matches('#').trim().trim_matches('`');
                current = h.starts_with('[').then(|| h.to_owned());
            } else if let (Some(h), Some(row)) = (&current, line.strip_prefix("| `")) {
                if let Some((key, _)) = row.split_once("` |") {
                    out.entry(h.clone()).or_default().push(key.to_owned());
                }
            }
            continue;
        }
        let line = line.trim_start_matches('#').trim();
        if line.starts_with('[') {
            current = line
                .split_once(']')
                .map(|(h, _)| format!("{h}]"))
                .filter(|h| !h.contains(' '));
            typed = false;
            continue;
        }
        let Some(h) = &current else { continue };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if key == "type" && !typed {
            typed = true;
            let kind = value
                .split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            let with_kind = format!("{h} type = \"{kind}\"");
            current = Some(with_kind);
            continue;
        }
        out.entry(h.clone()).or_default().push(key.to_owned());
    }
    out
}

fn missing(
    reference: &BTreeMap<String, Vec<String>>,
    doc: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut gaps = Vec::new();
    for (heading, keys) in reference {
        for k in keys {
            if !doc.get(heading).is_some_and(|d| d.contains(k)) {
                gaps.push(format!("{heading} {k}"));
            }
        }
    }
    gaps
}

fn repo_file(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_walk_finds_every_kind_of_table() {
    let r = reference();
    // If the loader's messages changed shape, the walk would quietly find nothing: these
    // tables stand for each way of getting there (a section, a named table, a kind, a
    // kind inside a kind, a table inside a kind).
    for h in [
        "[aws]",
        "[rules.NAME]",
        "[actions.NAME] type = \"claim_eip\"",
        "[rules.NAME.check] type = \"http\"",
        "[rules.NAME.check.source] type = \"consul\"",
        "[rules.NAME.check.reload]",
    ] {
        assert!(r.contains_key(h), "{h} not found; found {:?}", r.keys());
    }
    assert!(r["[aws]"].contains(&"region".to_owned()), "{r:?}");
}

#[test]
fn every_key_is_in_the_configuration_reference() {
    let doc = documented(&repo_file("docs/configuration.md"), true);
    let gaps = missing(&reference(), &doc);
    assert!(
        gaps.is_empty(),
        "docs/configuration.md has no row (| `key` | ...) under the heading for:\n  {}",
        gaps.join("\n  ")
    );
}

#[test]
fn every_key_is_in_the_sample_configuration() {
    let doc = documented(&repo_file("packaging/watchdog.toml"), false);
    let gaps = missing(&reference(), &doc);
    assert!(
        gaps.is_empty(),
        "packaging/watchdog.toml has no `key =` line (commented or not) under the header for:\n  {}",
        gaps.join("\n  ")
    );
}

/// Every field of every struct in `raw.rs`: its struct, its name, and whether a `///` line
/// stands above it (attributes such as `#[serde(default)]` in between are skipped).
fn raw_fields() -> Vec<(String, String, bool)> {
    let lines: Vec<&str> = include_str!("raw.rs").lines().map(str::trim).collect();
    let mut fields = Vec::new();
    let mut strukt = None;
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            strukt = rest.split([' ', '{']).next().map(str::to_owned);
        } else if *line == "}" {
            strukt = None;
        } else if let (Some(s), Some(field)) = (&strukt, line.strip_prefix("pub ")) {
            if let Some((name, _)) = field.split_once(':') {
                let above = lines[..i].iter().rev().find(|l| !l.starts_with("#["));
                let documented = above.is_some_and(|l| l.starts_with("///"));
                fields.push((s.clone(), name.trim().to_owned(), documented));
            }
        }
    }
    fields
}

#[test]
fn every_raw_field_has_a_doc_comment() {
    let undocumented: Vec<String> = raw_fields()
        .into_iter()
        .filter(|(_, _, documented)| !documented)
        .map(|(s, f, _)| format!("{s}.{f}"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "fields without a `///` in src/config/raw.rs: {undocumented:?}"
    );
}

#[test]
fn the_scan_of_raw_rs_and_the_walk_find_the_same_keys() {
    // Each side checks the other: a field the line scan missed would escape the `///` test,
    // a table the walk missed would escape the documentation tests.
    let scanned: BTreeSet<String> = raw_fields().into_iter().map(|(_, f, _)| f).collect();
    let walked: BTreeSet<String> = reference().into_values().flatten().collect();
    assert_eq!(scanned, walked);
}
