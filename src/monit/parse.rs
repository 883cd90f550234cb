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
    /// The statement as written, passwords replaced by `***`.
    pub text: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub https: bool,
    /// `url URL`: the URL as written, without user name, password or fragment.
    pub url: Option<String>,
    /// The user name of a `url` that had a password; the password is never kept.
    pub url_user: Option<String>,
    pub request: Option<String>,
    pub host_header: Option<String>,
    /// Statuses that pass: None = monit's default (anything below 400).
    pub status: Option<Status>,
    /// `content = "REGEX"`, as written.
    pub content: Option<String>,
    pub timeout_ms: Option<u64>,
    /// `retry N`: monit's attempts within one cycle before the test counts as failed.
    pub retry: Option<u32>,
    /// `for N cycles` or `N times within M cycles` before `then`.
    pub fail_rate: Option<Rate>,
    /// The same after `else if succeeded`.
    pub recover_rate: Option<Rate>,
    /// Parts of the test with no equivalent, each with why; the rest is translated.
    pub dropped: Vec<String>,
    pub on_fail: Action,
    pub on_recover: Option<Action>,
}

/// How many cycles a test must fail (or succeed) before monit acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// `[for] N cycles`.
    Cycles(u32),
    /// `[for] N [times] [within] M cycles`: (N, M).
    Within(u32, u32),
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
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if d == c && !escaped {
                        closed = true;
                        break;
                    }
                    // `content = "\"up\""`: the backslash stays, for the regular expression.
                    escaped = d == '\\' && !escaped;
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

/// The tokens as written, for the report: passwords become `***` (the password of a URL, the
/// word after `password`, and `allow USER:PASSWORD` of `set httpd`).
fn join(tokens: &[Token]) -> String {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let before = |n: usize| i.checked_sub(n).map(|j| &tokens[j]);
            let after_allow = before(1).is_some_and(|p| p.is("allow"));
            let text = if before(1).is_some_and(|p| p.is("password"))
                || (before(1).is_some_and(|p| p.text.ends_with(':'))
                    && before(2).is_some_and(|p| p.is("allow")))
            {
                "***".to_owned()
            } else if after_allow && !t.quoted {
                redact_allow(&t.text)
            } else {
                redact_url(&t.text)
            };
            if t.quoted {
                format!("\"{text}\"")
            } else {
                text
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `scheme://user:password@rest` -> `scheme://user:***@rest`.
fn redact_url(s: &str) -> String {
    let Some(scheme) = s.find("://") else {
        return s.to_owned();
    };
    let rest = &s[scheme + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority
        .rfind('@')
        .map(|at| (at, authority[..at].split_once(':')))
    {
        Some((at, Some((user, _)))) => {
            format!("{}://{user}:***@{}", &s[..scheme], &rest[at + 1..])
        }
        _ => s.to_owned(),
    }
}

/// `allow admin:monit` -> `allow admin:***`; addresses (`allow ::1`, `allow 10.0.0.0/8`) and
/// groups (`allow @ops`) stay.
fn redact_allow(s: &str) -> String {
    if s.parse::<std::net::IpAddr>().is_ok() || s.contains('/') || s.starts_with('@') {
        return s.to_owned();
    }
    match s.split_once(':') {
        Some((user, pass)) if !user.is_empty() && !pass.is_empty() => format!("{user}:***"),
        _ => s.to_owned(),
    }
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
        let mut recover_rate = Ok(None);
        // else if succeeded|passed [RATE] then ACTION
        if next + 2 < body.len()
            && body[next].is("else")
            && body[next + 1].is("if")
            && (body[next + 2].is("succeeded") || body[next + 2].is("passed"))
        {
            if let Some(then) = (next + 3..body.len()).find(|&j| body[j].is("then")) {
                recover_rate = match rate(&body[next + 3..then], 0) {
                    Ok(Some((r, n))) if next + 3 + n == then => Ok(Some(r)),
                    Ok(None) if then == next + 3 => Ok(None),
                    Ok(_) => Err(Untranslatable::BadRecoverRate),
                    Err(e) => Err(e),
                };
                let (a, n) = action(body, then + 1);
                on_recover = Some(a);
                next = n;
            }
        }
        let stmt_tokens = &body[start..next];
        match condition(&body[start + 1..then]).and_then(|c| Ok((c, recover_rate?))) {
            Ok((c, recover_rate)) => h.tests.push(Test {
                at: at(body[start].line),
                text: join(stmt_tokens),
                on_fail,
                on_recover,
                recover_rate,
                ..c
            }),
            Err(why) => items.push(Item::Other {
                text: join(stmt_tokens),
                at: at(body[start].line),
                why: why.to_string(),
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

/// Why one `if ... then ...` statement of a monit `check host` is not translated into a
/// test: monit allows it (monit manual, "Connection testing" and "Service poll time"), the
/// watchdog has no equivalent or cannot read it. The text is the statement's `why` in the
/// import's list of what was not translated.
#[derive(Debug, thiserror::Error)]
pub enum Untranslatable {
    /// `for` not followed by a rate.
    #[error("expected `for N cycles` or `for N times within M cycles`")]
    ForWithoutRate,
    /// A number that does not start a rate.
    #[error("expected `N cycles` or `N times within M cycles`")]
    BadRate,
    /// A rate of zero cycles or times.
    #[error("a count of 0 cycles")]
    ZeroCycles,
    /// `N times within M cycles` with N above M.
    #[error("{times} times within {cycles} cycles: more times than cycles")]
    MoreTimesThanCycles { times: u32, cycles: u32 },
    /// An `else if succeeded` whose rate is not one or is followed by more.
    #[error("expected `else if succeeded [for N cycles] then`")]
    BadRecoverRate,
    /// A resource test (`if cpu ...`, `if memory ...`), not `if failed`.
    #[error("only `if failed ...` connection tests are translated (resource tests such as cpu or memory have no equivalent)")]
    NotAConnectionTest,
    /// A keyword that takes a number without one.
    #[error("expected a number after `{after}`")]
    NumberExpected { after: String },
    /// `url` at the end of the test.
    #[error("expected a URL after `url`")]
    UrlExpected,
    /// `port` above 65535.
    #[error("port out of range")]
    PortOutOfRange,
    /// `type udp` (or another type).
    #[error("only TCP connection tests are translated")]
    NotTcp,
    /// `status >`, `status !=` and the like.
    #[error("`status {op}` has no equivalent (only = and <)")]
    StatusOperator { op: String },
    /// `status` above 65535.
    #[error("status out of range")]
    StatusOutOfRange,
    /// `content` without `=` or `!=`.
    #[error("expected `content = \"...\"` or `content != \"...\"`")]
    BadContent,
    /// `retry` above `u32::MAX`.
    #[error("retry out of range")]
    RetryOutOfRange,
    /// Two `for N cycles` in one test.
    #[error("two rates (`for N cycles`) in one test")]
    TwoRates,
    /// A word of the test the watchdog has nothing for.
    #[error("`{word}` has no equivalent")]
    NoEquivalent { word: String },
    /// `url` together with `port`, `protocol` or `request`.
    #[error("`url` goes without `port`, `protocol` and `request`")]
    UrlWithPort,
    /// A protocol other than HTTP and HTTPS.
    #[error("protocol {protocol}: only HTTP and HTTPS tests are translated")]
    Protocol { protocol: String },
    /// A bare port test (no `protocol`).
    #[error("a test without `protocol HTTP` only checks that the port accepts a connection; the watchdog checks HTTP")]
    NoProtocol,
    /// The `url` argument does not parse (the `url` crate's `ParseError`, which reqwest
    /// does not re-export by name).
    #[error("not a URL ({0})")]
    NotAUrl(#[source] <reqwest::Url as std::str::FromStr>::Err),
    /// A URL that is not http(s) or has no host.
    #[error("url {scheme}: only http:// and https:// URLs with a host are translated")]
    UrlScheme { scheme: String },
}

/// `[for] N cycle[s]` or `[for] N [times] [within] M cycle[s]` at `k` (monit reads `for`,
/// `times` and `within` as noise words): the rate and where the tokens after it start; None
/// when no rate starts at `k`.
fn rate(t: &[Token], k: usize) -> Result<Option<(Rate, usize)>, Untranslatable> {
    let num = |i: usize| {
        t.get(i)
            .filter(|x| !x.quoted)
            .and_then(|x| x.text.parse::<u32>().ok())
    };
    let cycles = |i: usize| t.get(i).is_some_and(|x| x.is("cycles") || x.is("cycle"));
    let has_for = t.get(k).is_some_and(|x| x.is("for"));
    let mut i = k + usize::from(has_for);
    let Some(n) = num(i) else {
        return match has_for {
            true => Err(Untranslatable::ForWithoutRate),
            false => Ok(None),
        };
    };
    i += 1;
    let r = if cycles(i) {
        i += 1;
        Rate::Cycles(n)
    } else {
        let words = i;
        if t.get(i).is_some_and(|x| x.is("times")) {
            i += 1;
        }
        if t.get(i).is_some_and(|x| x.is("within")) {
            i += 1;
        }
        match num(i) {
            Some(m) if cycles(i + 1) => {
                i += 2;
                Rate::Within(n, m)
            }
            _ if has_for || i > words => return Err(Untranslatable::BadRate),
            _ => return Ok(None),
        }
    };
    match r {
        Rate::Cycles(0) | Rate::Within(0, _) => Err(Untranslatable::ZeroCycles),
        Rate::Within(n, m) if n > m => Err(Untranslatable::MoreTimesThanCycles {
            times: n,
            cycles: m,
        }),
        r => Ok(Some((r, i))),
    }
}

/// The tokens between `if` and `then`: `failed` and a port/protocol or URL connection test.
fn condition(t: &[Token]) -> Result<Test, Untranslatable> {
    let mut c = Test {
        at: At {
            file: PathBuf::new(),
            line: 0,
        },
        text: String::new(),
        host: None,
        port: None,
        https: false,
        url: None,
        url_user: None,
        request: None,
        host_header: None,
        status: None,
        content: None,
        timeout_ms: None,
        retry: None,
        fail_rate: None,
        recover_rate: None,
        dropped: Vec::new(),
        on_fail: Action::Other(String::new()),
        on_recover: None,
    };
    if !t.first().is_some_and(|f| f.is("failed")) {
        return Err(Untranslatable::NotAConnectionTest);
    }
    let number = |k: usize| -> Result<u64, Untranslatable> {
        t.get(k)
            .and_then(|x| x.text.parse().ok())
            .ok_or_else(|| Untranslatable::NumberExpected {
                after: t[k - 1].text.clone(),
            })
    };
    let mut protocol = None;
    let mut k = 1;
    while k < t.len() {
        let w = &t[k];
        // Noise words, as to monit: `retry 3 times`, `with timeout`, `and`.
        if w.is("with") || w.is("ipv4") || w.is("and") || w.is("times") || w.is("within") {
            k += 1;
        } else if w.is("host") && t.get(k + 1).is_some_and(|x| x.is("url")) {
            // `if failed host url ...`: the URL names the host.
            k += 1;
        } else if w.is("host") {
            c.host = t.get(k + 1).map(|x| x.text.clone());
            k += 2;
        } else if w.is("url") {
            let raw = t.get(k + 1).ok_or(Untranslatable::UrlExpected)?;
            let (url, user) = url(&raw.text)?;
            c.https = url.scheme() == "https";
            c.url = Some(url.to_string());
            c.url_user = user;
            k += 2;
        } else if w.is("port") {
            c.port =
                Some(u16::try_from(number(k + 1)?).map_err(|_| Untranslatable::PortOutOfRange)?);
            k += 2;
        } else if w.is("type") {
            if !t.get(k + 1).is_some_and(|x| x.is("tcp")) {
                return Err(Untranslatable::NotTcp);
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
                    return Err(Untranslatable::StatusOperator { op: o.to_owned() })
                }
                _ => ("=", k + 1),
            };
            let n = u16::try_from(number(at)?).map_err(|_| Untranslatable::StatusOutOfRange)?;
            c.status = Some(if op == "<" {
                Status::Below(n)
            } else {
                Status::Equal(n)
            });
            k = at + 1;
        } else if w.is("content") {
            let text = t.get(k + 2).map(|x| x.text.clone());
            match t.get(k + 1).map(|x| x.text.as_str()) {
                Some("=" | "==") => c.content = text,
                Some("!=") => c.dropped.push(format!(
                    "content != {:?} -- no equivalent: the watchdog cannot fail on text that is present; the rest of the test is translated",
                    text.unwrap_or_default()
                )),
                _ => return Err(Untranslatable::BadContent),
            }
            k += 3;
        } else if w.is("timeout") {
            let n = number(k + 1)?;
            k += 2;
            let unit = t.get(k).map(|x| x.text.to_ascii_lowercase());
            c.timeout_ms = Some(match unit.as_deref() {
                Some("seconds" | "second" | "sec" | "s") => {
                    k += 1;
                    n.saturating_mul(1000)
                }
                Some("milliseconds" | "millisecond" | "ms") => {
                    k += 1;
                    n
                }
                _ => n.saturating_mul(1000),
            });
        } else if w.is("retry") {
            c.retry =
                Some(u32::try_from(number(k + 1)?).map_err(|_| Untranslatable::RetryOutOfRange)?);
            k += 2;
        } else if let Some((r, next)) = rate(t, k)? {
            if c.fail_rate.is_some() {
                return Err(Untranslatable::TwoRates);
            }
            c.fail_rate = Some(r);
            k = next;
        } else {
            return Err(Untranslatable::NoEquivalent {
                word: w.text.clone(),
            });
        }
    }
    if c.url.is_some() {
        if c.port.is_some() || protocol.is_some() || c.request.is_some() {
            return Err(Untranslatable::UrlWithPort);
        }
        return Ok(c);
    }
    match protocol.as_deref() {
        Some("http") => {}
        Some("https") => c.https = true,
        Some(p) => {
            return Err(Untranslatable::Protocol {
                protocol: p.to_owned(),
            })
        }
        None => return Err(Untranslatable::NoProtocol),
    }
    Ok(c)
}

/// monit's URL-spec as a URL to request: a password (with its user name) and the fragment
/// taken out (a fragment is never sent). Returns the user name when there was a password.
fn url(text: &str) -> Result<(reqwest::Url, Option<String>), Untranslatable> {
    let mut u = reqwest::Url::parse(text).map_err(Untranslatable::NotAUrl)?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(Untranslatable::UrlScheme {
            scheme: u.scheme().to_owned(),
        });
    }
    // A user name alone is no secret: it stays in the URL.
    let user = u.password().is_some().then(|| u.username().to_owned());
    if user.is_some() {
        // Cannot fail on an http(s) URL with a host.
        let _ = u.set_username("");
        let _ = u.set_password(None);
    }
    u.set_fragment(None);
    Ok((u, user))
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
                t.timeout_ms,
                t.fail_rate
            ),
            (
                Some(80),
                false,
                Some("/"),
                Some(30_000),
                Some(Rate::Cycles(3))
            )
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
        assert_eq!(t.fail_rate, Some(Rate::Within(2, 3)));
        assert_eq!(t.on_fail, Action::Other("alert".into()));
        assert_eq!(t.on_recover, Some(Action::Exec("/usr/local/bin/ok".into())));
    }

    /// The tests of the one host in `text`, and what was not translated.
    fn tests(text: &str) -> (Vec<Test>, Vec<String>) {
        let items = parse(text, Path::new("monitrc"));
        let mut tests = Vec::new();
        let mut others = Vec::new();
        for i in items {
            match i {
                Item::Host(h) => tests.extend(h.tests),
                Item::Other { text, at, why } => others.push(format!("{at}: {text} -- {why}")),
                _ => {}
            }
        }
        (tests, others)
    }

    #[test]
    fn url_form_with_timeout_retry_for_n_cycles_and_else_if_succeeded_for_n_cycles() {
        let (t, others) = tests(
            r#"set daemon 30
check host web.example.com with address 203.0.113.20
  if failed url http://web.example.com/health with timeout 2 seconds and retry 3 for 15 cycles
     then exec "/usr/local/bin/to-backup.sh"
  else if succeeded for 20 cycles then exec "/usr/local/bin/to-main.sh"
"#,
        );
        assert!(others.is_empty(), "{others:?}");
        let t = &t[0];
        assert_eq!(t.url.as_deref(), Some("http://web.example.com/health"));
        assert_eq!(t.url_user, None);
        assert_eq!(t.timeout_ms, Some(2000));
        assert_eq!(t.retry, Some(3));
        assert_eq!(t.fail_rate, Some(Rate::Cycles(15)));
        assert_eq!(t.recover_rate, Some(Rate::Cycles(20)));
        assert_eq!(
            t.on_fail,
            Action::Exec("/usr/local/bin/to-backup.sh".into())
        );
        assert_eq!(
            t.on_recover,
            Some(Action::Exec("/usr/local/bin/to-main.sh".into()))
        );
        assert_eq!(t.at.line, 3);
    }

    #[test]
    fn url_form_variants_https_port_query_content_and_host_keyword() {
        let (t, others) = tests(
            r#"check host a with address 10.0.0.1
  if failed url https://a.example.com:8443/health?full=1#top
     content = "^OK$" timeout 3 seconds then alert
  if failed host url http://a.example.com/ and content == '"status":"UP"' then alert
  if failed url http://a.example.com/x content = "\"up\"" then alert
  if failed url ftp://a.example.com/ then alert
  if failed url http://a.example.com/ port 81 then alert
"#,
        );
        assert_eq!(t.len(), 3, "{others:?}");
        assert_eq!(
            t[0].url.as_deref(),
            Some("https://a.example.com:8443/health?full=1")
        );
        assert!(t[0].https);
        assert_eq!(t[0].content.as_deref(), Some("^OK$"));
        assert_eq!(t[0].timeout_ms, Some(3000));
        assert_eq!(t[1].url.as_deref(), Some("http://a.example.com/"));
        assert_eq!(t[1].content.as_deref(), Some(r#""status":"UP""#));
        assert_eq!(t[2].content.as_deref(), Some(r#"\"up\""#));
        assert_eq!(others.len(), 2, "{others:?}");
        assert!(
            others[0].starts_with("monitrc:6: if failed url ftp:"),
            "{others:?}"
        );
        assert!(
            others[0].contains("only http:// and https://"),
            "{others:?}"
        );
        assert!(
            others[1].contains("`url` goes without `port`"),
            "{others:?}"
        );
    }

    #[test]
    fn rates_in_every_spelling_monit_accepts() {
        for (rate, want) in [
            ("for 3 cycles", Rate::Cycles(3)),
            ("for 1 cycle", Rate::Cycles(1)),
            ("3 cycles", Rate::Cycles(3)),
            ("for 3 times within 5 cycles", Rate::Within(3, 5)),
            ("3 times within 5 cycles", Rate::Within(3, 5)),
            ("3 times 5 cycles", Rate::Within(3, 5)),
            ("3 within 5 cycles", Rate::Within(3, 5)),
            ("3 5 cycles", Rate::Within(3, 5)),
            ("FOR 2 TIMES WITHIN 2 CYCLES", Rate::Within(2, 2)),
        ] {
            let text = format!(
                "check host h with address 10.0.0.1\n if failed url http://h/ {rate} then alert\n else if succeeded {rate} then alert\n"
            );
            let (t, others) = tests(&text);
            assert!(others.is_empty(), "{rate}: {others:?}");
            assert_eq!(
                (t[0].fail_rate, t[0].recover_rate),
                (Some(want), Some(want)),
                "{rate}"
            );
        }
        for bad in [
            "for cycles",
            "for 3",
            "5 times within 3 cycles",
            "for 0 cycles",
        ] {
            let text = format!(
                "check host h with address 10.0.0.1\n if failed url http://h/ {bad} then alert\n"
            );
            let (t, others) = tests(&text);
            assert!(t.is_empty() && others.len() == 1, "{bad}: {others:?}");
        }
        // No rate after `succeeded`: monit acts on the first good cycle.
        let (t, _) = tests("check host h with address 10.0.0.1\n if failed url http://h/ for 2 cycles then alert else if passed then alert\n");
        assert_eq!(
            (t[0].fail_rate, t[0].recover_rate),
            (Some(Rate::Cycles(2)), None)
        );
    }

    #[test]
    fn retry_before_or_after_timeout_keeps_the_port_protocol_test() {
        for cond in [
            "port 80 protocol http retry 3 timeout 2 seconds",
            "port 80 protocol http with timeout 2 seconds and retry 3",
            "port 80 protocol http timeout 2 sec retry 3 times",
            "url http://10.0.0.1/ retry 3 with timeout 2 seconds",
        ] {
            let text = format!(
                "check host h with address 10.0.0.1\n if failed {cond} for 2 cycles then alert\n"
            );
            let (t, others) = tests(&text);
            assert!(others.is_empty(), "{cond}: {others:?}");
            assert_eq!(
                (t[0].retry, t[0].timeout_ms, t[0].fail_rate),
                (Some(3), Some(2000), Some(Rate::Cycles(2))),
                "{cond}"
            );
        }
        // `retry 3 times within 5 cycles` reads, as to monit, as `retry 3` and `5 cycles`.
        let (t, _) = tests("check host h with address 10.0.0.1\n if failed url http://h/ retry 3 times within 5 cycles then alert\n");
        assert_eq!(
            (t[0].retry, t[0].fail_rate),
            (Some(3), Some(Rate::Cycles(5)))
        );
    }

    #[test]
    fn url_credentials_and_other_passwords_are_never_kept_or_reported() {
        let text = r#"set httpd port 2812 allow localhost allow admin:s3cret allow ::1 allow @ops
set mailserver smtp.example.com username "ops" password "mailpw"
set mmonit https://monit:mmpw@mmonit.example.com:8443/collector
check host h with address 10.0.0.1
  if failed url http://admin:hunter2@h.example.com:8080/status then alert
  if failed url http://admin:hunter2@h.example.com/ bogus then alert
"#;
        let (t, others) = tests(text);
        assert_eq!(
            t[0].url.as_deref(),
            Some("http://h.example.com:8080/status")
        );
        assert_eq!(t[0].url_user.as_deref(), Some("admin"));
        assert!(t[0]
            .text
            .contains("http://admin:***@h.example.com:8080/status"));
        let (t, _) =
            tests("check host h with address 10.0.0.1\n if failed url http://ops@h/ then alert\n");
        assert_eq!(
            (t[0].url.as_deref(), t[0].url_user.as_deref()),
            (Some("http://ops@h/"), None)
        );
        let all = format!("{others:?} {t:?}");
        for secret in ["s3cret", "mailpw", "mmpw", "hunter2"] {
            assert!(!all.contains(secret), "{secret}: {all}");
        }
        assert!(
            all.contains("allow admin:*** allow ::1 allow @ops"),
            "{all}"
        );
        assert!(
            all.contains("https://monit:***@mmonit.example.com"),
            "{all}"
        );
    }

    #[test]
    fn content_not_equal_is_listed_and_the_rest_of_the_test_kept() {
        let (t, others) = tests(
            "check host h with address 10.0.0.1\n if failed url http://h/ content != \"error\" for 2 cycles then alert\n",
        );
        assert!(others.is_empty(), "{others:?}");
        assert_eq!(t[0].content, None);
        assert_eq!(t[0].fail_rate, Some(Rate::Cycles(2)));
        assert!(t[0].dropped[0].starts_with("content != \"error\" -- no equivalent"));
    }
}
