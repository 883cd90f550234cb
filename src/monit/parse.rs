//! monit's control file, the shapes operators have: `set daemon N`, `include GLOB`, and
//! `check host NAME with address ADDR` blocks of `if failed ... then ACTION [else if succeeded
//! then ACTION]`. monit's grammar is free-form (a test may span lines, as the OpsWorks recipe's
//! does), so the file is read as a stream of tokens. Anything else becomes an [`Item::Other`]
//! with its lines, for the report: nothing is dropped.

use std::path::{Path, PathBuf};

/// Where a token or statement came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    quoted: bool,
    line: usize,
}

impl Token {
    fn is(&self, word: &str) -> bool {
        !self.quoted && self.text.eq_ignore_ascii_case(word)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `set daemon N`: the cycle, in seconds.
    Daemon {
        seconds: u64,
        at: At,
    },
    Include {
        pattern: String,
        at: At,
    },
    Host(Host),
    /// A statement with no watchdog equivalent (or not understood), as written.
    Other {
        text: String,
        at: At,
        why: String,
    },
    /// Read, but worth telling: an unterminated quote, say.
    Warning {
        at: At,
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub at: At,
    pub tests: Vec<Test>,
}

/// One `if failed ... then ...` of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    pub at: At,
    pub text: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub https: bool,
    pub request: Option<String>,
    pub host_header: Option<String>,
    /// Statuses that pass: None = monit's default (anything below 400).
    pub status: Option<Status>,
    pub content: Option<String>,
    pub timeout_secs: Option<u64>,
    /// `for N cycles`.
    pub cycles: Option<u32>,
    /// `N times within M cycles`: (N, M).
    pub times_within: Option<(u32, u32)>,
    pub on_fail: Action,
    pub on_recover: Option<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Equal(u16),
    Below(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `exec "PROGRAM ARGS"`: monit splits the string on spaces and runs it without a shell.
    Exec(String),
    /// `alert`, `restart`, ...: no equivalent; the word is kept for the report.
    Other(String),
}

/// Split `text` into tokens; an unterminated quote runs to the end of its line (the OpsWorks
/// recipe's monitrc has one) and is reported.
fn tokenize(text: &str, file: &Path, warnings: &mut Vec<Item>) -> Vec<Token> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut chars = raw.char_indices().peekable();
        while let Some(&(start, c)) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c == '#' {
                break;
            } else if c == '"' || c == '\'' {
                chars.next();
                let mut s = String::new();
                let mut closed = false;
                for (_, d) in chars.by_ref() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    s.push(d);
                }
                if !closed {
                    warnings.push(Item::Warning {
                        at: At {
                            file: file.to_path_buf(),
                            line,
                        },
                        text: format!(
                            "unterminated quote: read {c}{s} to the end of the line as one string"
                        ),
                    });
                }
                out.push(Token {
                    text: s,
                    quoted: true,
                    line,
                });
            } else {
                let mut end = raw.len();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_whitespace() || d == '#' || d == '"' || d == '\'' {
                        end = j;
                        break;
                    }
                    chars.next();
                }
                out.push(Token {
                    text: raw[start..end].to_owned(),
                    quoted: false,
                    line,
                });
            }
        }
    }
    out
}

fn top_level(t: &Token) -> bool {
    t.is("set") || t.is("check") || t.is("include")
}

fn join(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| {
            if t.quoted {
                format!("\"{}\"", t.text)
            } else {
                t.text.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parse one file's text.
pub fn parse(text: &str, file: &Path) -> Vec<Item> {
    let mut items = Vec::new();
    let tokens = tokenize(text, file, &mut items);
    let at = |line: usize| At {
        file: file.to_path_buf(),
        line,
    };
    let mut i = 0;
    while i < tokens.len() {
        // A statement runs to the next top-level keyword.
        let start = i;
        i += 1;
        while i < tokens.len() && !top_level(&tokens[i]) {
            i += 1;
        }
        let stmt = &tokens[start..i];
        let first = &stmt[0];
        let other = |why: &str| Item::Other {
            text: join(stmt),
            at: at(first.line),
            why: why.to_owned(),
        };
        if first.is("set") {
            match stmt.get(1) {
                Some(t) if t.is("daemon") => match stmt.get(2).and_then(|t| t.text.parse().ok()) {
                    Some(seconds) => {
                        items.push(Item::Daemon {
                            seconds,
                            at: at(first.line),
                        });
                        if stmt.len() > 3 {
                            items.push(Item::Other {
                                text: join(&stmt[3..]),
                                at: at(stmt[3].line),
                                why: "no equivalent: every rule starts checking at once".into(),
                            });
                        }
                    }
                    None => items.push(other("`set daemon` without a number of seconds")),
                },
                _ => items.push(other(
                    "no equivalent: the watchdog logs to stderr/journald and alerts through SNS",
                )),
            }
        } else if first.is("include") {
            match stmt.get(1) {
                Some(p) if stmt.len() == 2 => items.push(Item::Include {
                    pattern: p.text.clone(),
                    at: at(first.line),
                }),
                _ => items.push(other("`include` takes one path or pattern")),
            }
        } else if stmt.get(1).is_some_and(|t| t.is("host")) {
            host(stmt, file, &mut items);
        } else if first.is("check") {
            items.push(other(
                "only `check host` is translated; the watchdog checks HTTP endpoints and HAProxy, not processes, files or the system",
            ));
        } else {
            items.push(other("not a monit statement this importer knows"));
        }
    }
    items
}

/// `check host NAME with address ADDR` and the tests that follow it.
fn host(stmt: &[Token], file: &Path, items: &mut Vec<Item>) {
    let at = |line: usize| At {
        file: file.to_path_buf(),
        line,
    };
    // check host NAME with address|addr ADDR
    let address = match stmt.get(3..5) {
        Some([w, a]) if w.is("with") && (a.is("address") || a.is("addr")) => stmt.get(5),
        _ => None,
    };
    let (Some(name), Some(address)) = (stmt.get(2), address) else {
        items.push(Item::Other {
            text: join(stmt),
            at: at(stmt[0].line),
            why: "expected `check host NAME with address ADDRESS`".into(),
        });
        return;
    };
    let mut h = Host {
        name: name.text.clone(),
        address: address.text.clone(),
        at: at(stmt[0].line),
        tests: Vec::new(),
    };
    let body = &stmt[6..];
    let mut i = 0;
    while i < body.len() {
        let start = i;
        if !body[i].is("if") {
            // `group`, `depends on`, `every`, `mode`, ...: up to the next `if`.
            while i < body.len() && !body[i].is("if") {
                i += 1;
            }
            items.push(Item::Other {
                text: join(&body[start..i]),
                at: at(body[start].line),
                why: "no equivalent in a watchdog rule".into(),
            });
            continue;
        }
        // if COND then ACTION [else if succeeded|passed then ACTION]
        let Some(then) = (i..body.len()).find(|&j| body[j].is("then")) else {
            items.push(Item::Other {
                text: join(&body[start..]),
                at: at(body[start].line),
                why: "an `if` without `then`".into(),
            });
            return;
        };
        let (on_fail, mut next) = action(body, then + 1);
        let mut on_recover = None;
        if next + 3 < body.len()
            && body[next].is("else")
            && body[next + 1].is("if")
            && (body[next + 2].is("succeeded") || body[next + 2].is("passed"))
            && body[next + 3].is("then")
        {
            let (a, n) = action(body, next + 4);
            on_recover = Some(a);
            next = n;
        }
        let stmt_tokens = &body[start..next];
        match condition(&body[start + 1..then]) {
            Ok(c) => h.tests.push(Test {
                at: at(body[start].line),
                text: join(stmt_tokens),
                on_fail,
                on_recover,
                ..c
            }),
            Err(why) => items.push(Item::Other {
                text: join(stmt_tokens),
                at: at(body[start].line),
                why,
            }),
        }
        i = next;
    }
    items.push(Item::Host(h));
}

/// The action starting at `i`, and where the tokens after it start.
fn action(t: &[Token], i: usize) -> (Action, usize) {
    let Some(first) = t.get(i) else {
        return (Action::Other("nothing".into()), i);
    };
    if first.is("exec") {
        let Some(cmd) = t.get(i + 1) else {
            return (Action::Other("exec".into()), i + 1);
        };
        let mut n = i + 2;
        // `as uid U [and gid G]`, `repeat every N cycles`: the watchdog runs as its own user
        // and runs an action once per transition.
        while n < t.len() && !t[n].is("if") && !t[n].is("else") {
            n += 1;
        }
        (Action::Exec(cmd.text.clone()), n)
    } else {
        (Action::Other(first.text.clone()), i + 1)
    }
}

/// The tokens between `if` and `then`.
fn condition(t: &[Token]) -> Result<Test, String> {
    let mut c = Test {
        at: At {
            file: PathBuf::new(),
            line: 0,
        },
        text: String::new(),
        host: None,
        port: None,
        https: false,
        request: None,
        host_header: None,
        status: None,
        content: None,
        timeout_secs: None,
        cycles: None,
        times_within: None,
        on_fail: Action::Other(String::new()),
        on_recover: None,
    };
    if !t.first().is_some_and(|f| f.is("failed")) {
        return Err("only `if failed ...` connection tests are translated (resource tests such as cpu or memory have no equivalent)".into());
    }
    let number = |k: usize| -> Result<u64, String> {
        t.get(k)
            .and_then(|x| x.text.parse().ok())
            .ok_or_else(|| format!("expected a number after `{}`", t[k - 1].text))
    };
    let mut protocol = None;
    let mut k = 1;
    while k < t.len() {
        let w = &t[k];
        if w.is("with") || w.is("ipv4") || w.is("and") {
            k += 1;
        } else if w.is("host") {
            c.host = t.get(k + 1).map(|x| x.text.clone());
            k += 2;
        } else if w.is("port") {
            c.port = Some(u16::try_from(number(k + 1)?).map_err(|_| "port out of range")?);
            k += 2;
        } else if w.is("type") {
            if !t.get(k + 1).is_some_and(|x| x.is("tcp")) {
                return Err("only TCP connection tests are translated".into());
            }
            k += 2;
        } else if w.is("tcp") {
            k += 1;
        } else if w.is("protocol") {
            protocol = t.get(k + 1).map(|x| x.text.to_ascii_lowercase());
            k += 2;
        } else if w.is("request") {
            c.request = t.get(k + 1).map(|x| x.text.clone());
            k += 2;
        } else if w.is("hostheader") {
            c.host_header = t.get(k + 1).map(|x| x.text.clone());
            k += 2;
        } else if w.is("status") {
            let (op, at) = match t.get(k + 1).map(|x| x.text.as_str()) {
                Some("=" | "==") => ("=", k + 2),
                Some("<") => ("<", k + 2),
                Some(o) if o.starts_with(['>', '!']) => {
                    return Err(format!("`status {o}` has no equivalent (only = and <)"))
                }
                _ => ("=", k + 1),
            };
            let n = u16::try_from(number(at)?).map_err(|_| "status out of range")?;
            c.status = Some(if op == "<" {
                Status::Below(n)
            } else {
                Status::Equal(n)
            });
            k = at + 1;
        } else if w.is("content") {
            match t.get(k + 1).map(|x| x.text.as_str()) {
                Some("=" | "==") => {}
                _ => return Err("only `content = \"...\"` is translated".into()),
            }
            c.content = t.get(k + 2).map(|x| x.text.clone());
            k += 3;
        } else if w.is("timeout") {
            c.timeout_secs = Some(number(k + 1)?);
            k += 2;
            if t.get(k)
                .is_some_and(|x| x.is("seconds") || x.is("second") || x.is("sec"))
            {
                k += 1;
            }
        } else if w.is("for") {
            c.cycles = Some(u32::try_from(number(k + 1)?).map_err(|_| "too many cycles")?);
            if !t
                .get(k + 2)
                .is_some_and(|x| x.is("cycles") || x.is("cycle"))
            {
                return Err("expected `for N cycles`".into());
            }
            k += 3;
        } else if w.text.parse::<u32>().is_ok()
            && t.get(k + 1).is_some_and(|x| x.is("times"))
            && t.get(k + 2).is_some_and(|x| x.is("within"))
        {
            let n = number(k)? as u32;
            let m = number(k + 3)? as u32;
            c.times_within = Some((n, m));
            k += 5;
        } else {
            return Err(format!("`{}` has no equivalent", w.text));
        }
    }
    match protocol.as_deref() {
        Some("http") => {}
        Some("https") => c.https = true,
        Some(p) => return Err(format!("protocol {p}: only HTTP and HTTPS tests are translated")),
        None => return Err("a test without `protocol HTTP` only checks that the port accepts a connection; the watchdog checks HTTP".into()),
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpsWorks recipe's monitrc, rendered: a test spread over lines, an unterminated quote.
    const SEED: &str = r#"check host 54.173.141.243 with address 54.173.141.243
    if failed
        port 80
        protocol HTTP
        request /
        timeout 30 seconds
        for 3 cycles
        then exec "/etc/failtome.sh
"#;

    #[test]
    fn the_seed_monitrc_is_one_host_with_one_test() {
        let items = parse(SEED, Path::new("haproxywatch.monitrc"));
        let Some(Item::Host(h)) = items.iter().find(|i| matches!(i, Item::Host(_))) else {
            panic!("{items:?}")
        };
        assert_eq!(h.address, "54.173.141.243");
        let t = &h.tests[0];
        assert_eq!(
            (
                t.port,
                t.https,
                t.request.as_deref(),
                t.timeout_secs,
                t.cycles
            ),
            (Some(80), false, Some("/"), Some(30), Some(3))
        );
        assert_eq!(t.on_fail, Action::Exec("/etc/failtome.sh".into()));
        assert_eq!(t.at.line, 2);
        assert!(items.iter().any(
            |i| matches!(i, Item::Warning { at, text } if at.line == 8 && text.contains("unterminated quote"))
        ));
    }

    #[test]
    fn what_has_no_equivalent_is_kept_with_its_line() {
        let text = r#"
set daemon 30 with start delay 240
set logfile syslog
set alert ops@example.com
include /etc/monit.d/*
check process haproxy with pidfile /run/haproxy.pid
  start program = "/etc/init.d/haproxy start"
check host web with address 10.0.0.5
  group www
  if failed port 443 protocol https request "/health" status = 200 content = "OK"
     with timeout 5 seconds 2 times within 3 cycles then alert
     else if succeeded then exec "/usr/local/bin/ok"
  if failed port 25 protocol smtp then alert
  if cpu > 80% then alert
"#;
        let items = parse(text, Path::new("monitrc"));
        let others: Vec<(usize, &str)> = items
            .iter()
            .filter_map(|i| match i {
                Item::Other { at, text, .. } => Some((at.line, text.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            others,
            [
                (2, "with start delay 240"),
                (3, "set logfile syslog"),
                (4, "set alert ops@example.com"),
                (6, "check process haproxy with pidfile /run/haproxy.pid start program = \"/etc/init.d/haproxy start\""),
                (9, "group www"),
                (13, "if failed port 25 protocol smtp then alert"),
                (14, "if cpu > 80% then alert"),
            ]
        );
        assert!(items.contains(&Item::Daemon {
            seconds: 30,
            at: At {
                file: "monitrc".into(),
                line: 2
            }
        }));
        assert!(items
            .iter()
            .any(|i| matches!(i, Item::Include { pattern, .. } if pattern == "/etc/monit.d/*")));
        let Some(Item::Host(h)) = items.iter().find(|i| matches!(i, Item::Host(_))) else {
            panic!()
        };
        assert_eq!(h.tests.len(), 1);
        let t = &h.tests[0];
        assert!(t.https);
        assert_eq!(t.status, Some(Status::Equal(200)));
        assert_eq!(t.content.as_deref(), Some("OK"));
        assert_eq!(t.times_within, Some((2, 3)));
        assert_eq!(t.on_fail, Action::Other("alert".into()));
        assert_eq!(t.on_recover, Some(Action::Exec("/usr/local/bin/ok".into())));
    }
}
