//! monit's control file, the shapes operators have: `set daemon N`, `include GLOB`, and
//! `check host|process|program|file NAME ...` blocks of `if ... then ACTION [else if succeeded
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
    Service(Service),
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

/// One `check KIND NAME ...` block and its tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub kind: Kind,
    pub at: At,
    /// `check ...` up to its first test or statement, as written.
    pub text: String,
    pub tests: Vec<Test>,
    /// `every N cycles`: monit tests the block on every Nth cycle only; where it was written.
    pub every: Option<(u32, At)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `check host NAME with address ADDR`.
    Host { address: String },
    /// `check process NAME with pidfile PATH` (or `path PATH`), or `matching "REGEX"`.
    Process {
        pidfile: Option<String>,
        matching: Option<String>,
    },
    /// `check program NAME with path "PROGRAM ARGS" [with timeout N seconds]`.
    Program {
        /// As written: monit splits it on blanks and runs it without a shell.
        path: String,
        timeout_ms: Option<u64>,
    },
    /// `check file NAME with path PATH`.
    File { path: String },
}

impl Kind {
    /// Where the block's connection tests connect when they name no `host`.
    pub fn address(&self) -> &str {
        match self {
            Kind::Host { address } => address,
            // monit connects to localhost for a process's port tests.
            _ => "localhost",
        }
    }
}

/// What a test looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// `if failed port|url ...`: the connection fields of the [`Test`].
    Connection,
    /// `if does not exist` (process, file), and a process's or file's own test.
    Missing,
    /// `if exist` (file).
    Present,
    /// `if status OP N` (program): the exit statuses, 0 to 255, that pass.
    ExitCodes(Vec<u8>),
    /// `if [modification] timestamp > N UNIT` (file): the oldest the file may be.
    OlderThan {
        seconds: u64,
        /// Plain `timestamp`: monit takes the later of the change and modification times.
        either_time: bool,
    },
}

/// One `if ... then ...` of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    pub at: At,
    /// The statement as written, passwords replaced by `***`.
    pub text: String,
    pub cond: Cond,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub https: bool,
    /// No `protocol`: the port only has to accept a connection (and answer `expect`).
    pub tcp: bool,
    /// `send "..."`, monit's escapes (`\r`, `\n`, `\0xHH`, ...) read.
    pub send: Option<String>,
    /// `expect "REGEX"`, monit's escapes read.
    pub expect: Option<String>,
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
    /// A process's or file's own test, which has no `then`: monit restarts the service (its
    /// `start program`) or alerts.
    Implicit,
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
/// word after `password`, and `allow USER:PASSWORD` of `set httpd`), and so do the other
/// secrets [`redact`] finds.
fn join(tokens: &[Token]) -> String {
    let text = tokens
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
        .join(" ");
    redact(&text)
}

/// A bare word whose next word is a secret: `password`, `passwd`, `secret`, `client_secret`,
/// `token`, `auth_pass`, `api_key`, `apikey`, `credentials`. Stricter than [`secret_name`]:
/// a bare word is as likely to be a name (`token-refresh`) or a keyword (`passed`).
fn secret_key(k: &str) -> bool {
    let k = k.trim_start_matches('-').to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "_pass",
        "-pass",
        "_key",
        "-key",
        "apikey",
        "credential",
        "credentials",
    ]
    .iter()
    .any(|s| k.ends_with(s))
}

/// An option (`--api-key`, `-password`), an assignment's name (`AWS_SECRET_ACCESS_KEY=`,
/// `api_key=` in a URL's query) or a `Name:` whose value is a secret: the name contains
/// `key`, `secret`, `token`, `pass`, `auth` or `credential`, in any case.
fn secret_name(n: &str) -> bool {
    let n = n.to_ascii_lowercase();
    ["key", "secret", "token", "pass", "auth", "credential"]
        .iter()
        .any(|s| n.contains(s))
}

/// What closes a value: a list's `]` or `,`, a quote.
const ENDS: [char; 4] = [']', ',', '"', '\''];

/// `prefix` and `***`, with what closed `value` (a quote, a bracket) kept.
fn hide_after(prefix: &str, value: &str) -> String {
    let trail = value.len() - value.trim_end_matches(ENDS).len();
    format!("{prefix}***{}", &value[value.len() - trail..])
}

/// `w` as `***`, with the quote or bracket that opened it and what closed it kept.
fn hide_word(w: &str) -> String {
    let lead = w.len() - w.trim_start_matches(['[', '"', '\'']).len();
    let trail = w.len() - w.trim_end_matches(ENDS).len();
    format!(
        "{}***{}",
        &w[..lead.min(w.len() - trail)],
        &w[w.len() - trail..]
    )
}

/// One word (no blank), its secrets replaced: a URL's password and the values of its query's
/// secret names (`?api_key=***&page=2`), `NAME=***` and `NAME:***` for a secret name (the
/// value of an option that is not a secret is looked into: `--header=X-Api-Key:***`), and
/// mysql's `-p***`.
fn redact_word(w: &str) -> String {
    let lead = w.len() - w.trim_start_matches(['[', ',', '"', '\'']).len();
    let (head, bare) = w.split_at(lead);
    let trail = bare.len() - bare.trim_end_matches(ENDS).len();
    let (core, tail) = bare.split_at(bare.len() - trail);
    if core.is_empty() {
        return w.to_owned();
    }
    let core = redact_url(core);
    // A URL, or a request path, with a query.
    if let Some((path, query)) = core
        .split_once('?')
        .filter(|(p, _)| p.contains("://") || p.starts_with('/'))
    {
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if secret_name(k) && !v.is_empty() => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        return format!("{head}{path}?{}{tail}", query.join("&"));
    }
    // mysql's `-pPASSWORD` (its password joined to the option).
    if core.len() > 2 && core.starts_with("-p") && !core.starts_with("--") {
        return format!("{head}-p***{tail}");
    }
    format!("{head}{}{tail}", redact_assignment(&core))
}

/// `NAME=VALUE` or `NAME:VALUE`: the value hidden when NAME is a secret's, else looked into.
fn redact_assignment(s: &str) -> String {
    let Some(sep) = s.find(['=', ':']) else {
        return s.to_owned();
    };
    let (name, value) = (&s[..sep], &s[sep + 1..]);
    // A name as an environment variable, an option or a header has it, not a host or path.
    let identifier = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if value.is_empty() {
        s.to_owned()
    } else if identifier && secret_name(name) {
        format!("{}***", &s[..=sep])
    } else {
        format!("{}{}", &s[..=sep], redact_assignment(value))
    }
}

/// `s` with its secrets replaced by `***`, for any text an importer echoes (the report, the
/// output's comments); `import-monit` and `import-keepalived` both call it. What a translation
/// runs (a `command`, a `url`) is never passed through it: it has to work as written.
///
/// Hidden, quotes and brackets around a value kept:
/// - the value of an `Authorization` (`Basic ...`, `Bearer ...`), `Proxy-Authorization`,
///   `Cookie` or `Set-Cookie` header (monit's `http headers [...]`, a `curl -H`);
/// - `NAME=VALUE` and `NAME: VALUE` whose NAME contains `key`, `secret`, `token`, `pass`,
///   `auth` or `credential`, any case: environment assignments (`AWS_SECRET_ACCESS_KEY=...`),
///   `--api-key=...`, `X-Api-Key: ...`, the query of a URL or request path (`?api_key=...`);
/// - the word after an option so named (`--api-key X`, `--key X`, `--auth-token X`,
///   `-password X`), unless it is another `--option`;
/// - the word after a bare `password`, `passwd`, `secret`, `token`, `auth_pass`, `api_key`,
///   `credentials` (see [`secret_key`]);
/// - mysql's `-pPASSWORD`, and a URL's password (`scheme://user:***@host`).
pub(crate) fn redact(s: &str) -> String {
    let words: Vec<&str> = s.split(' ').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        i += 1;
        let bare_at = w.len() - w.trim_start_matches(['[', ',', '"', '\'']).len();
        let bare = &w[bare_at..];
        let lower = bare.to_ascii_lowercase();
        let name = bare.trim_end_matches(ENDS);
        // `password secret X`: `secret` names the value that follows it.
        let next_key = |n: &str| {
            let n = n
                .trim_start_matches(['[', ',', '"', '\''])
                .trim_end_matches([':', '='])
                .to_ascii_lowercase();
            [
                "password",
                "passwd",
                "secret",
                "token",
                "auth_pass",
                "api_key",
            ]
            .contains(&n.as_str())
        };
        let option = name.starts_with('-') && !name.contains('=') && secret_name(name);
        let keyword = !name.starts_with('-')
            && (secret_key(name.trim_end_matches([':', '=']))
                || (name.ends_with(':') && secret_name(name)));
        if let Some(h) = [
            "proxy-authorization:",
            "authorization:",
            "set-cookie:",
            "cookie:",
        ]
        .iter()
        .find(|h| lower.starts_with(**h))
        {
            // The header's value runs to a `]`, `,` or closing quote, else to the end.
            let head = &w[..bare_at + h.len()];
            let rest = &w[head.len()..];
            let mut last = rest;
            if rest.is_empty() || !rest.ends_with(ENDS) {
                while i < words.len() {
                    last = words[i];
                    i += 1;
                    if last.ends_with(ENDS) {
                        break;
                    }
                }
            }
            let value = hide_after("", last);
            if rest.is_empty() && last.is_empty() {
                out.push(head.to_owned());
            } else if rest.is_empty() {
                out.push(head.to_owned());
                out.push(value);
            } else {
                out.push(format!("{head}{value}"));
            }
        } else if i < words.len()
            && name.len() == bare.len()
            && !words[i].is_empty()
            && !words[i].starts_with("--")
            && (option || (keyword && !next_key(words[i])))
        {
            // `--api-key X`, `-password X`, `password X`, `X-Api-Key: X`: the name as written.
            out.push(w.to_owned());
            out.push(hide_word(words[i]));
            i += 1;
        } else {
            out.push(redact_word(w));
        }
    }
    out.join(" ")
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
    // A UTF-8 byte order mark, which some Windows editors write first.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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
        } else if first.is("check")
            && stmt
                .get(1)
                .is_some_and(|t| t.is("host") || t.is("process") || t.is("program") || t.is("file"))
        {
            service(stmt, file, &mut items);
        } else if first.is("check") {
            items.push(other(
                "only `check host`, `check process`, `check program` and `check file` are translated; the watchdog does not check filesystems, directories, fifos, networks or the system",
            ));
        } else {
            items.push(other("not a monit statement this importer knows"));
        }
    }
    items
}

/// Why a statement of a block that is not an `if` has no equivalent.
const RESTART_WHY: &str = "no equivalent: monit starts, stops and restarts services, the watchdog does not; let systemd restart the service (Restart=on-failure in its unit)";

/// Statements of a block other than `if`, each up to the next `if` or the next of these.
fn block_statement(t: &Token) -> bool {
    [
        "start", "stop", "restart", "group", "depends", "every", "mode", "alert", "noalert",
        "onreboot",
    ]
    .iter()
    .any(|w| t.is(w))
}

/// `check KIND NAME with ...`: the kind and where the block's tests start.
fn header(stmt: &[Token]) -> Result<(Kind, usize), &'static str> {
    let word = |i: usize| stmt.get(i).filter(|t| !t.quoted);
    let kind = &stmt[1];
    let expected = if kind.is("host") {
        "expected `check host NAME with address ADDRESS`"
    } else if kind.is("process") {
        "expected `check process NAME with pidfile PATH` or `check process NAME matching \"REGEX\"`"
    } else if kind.is("program") {
        "expected `check program NAME with path \"PROGRAM ARGS\" [with timeout N seconds]`"
    } else {
        "expected `check file NAME with path PATH`"
    };
    if stmt.get(2).is_none() {
        return Err(expected);
    }
    let mut i = 3;
    if word(i).is_some_and(|t| t.is("with")) {
        i += 1;
    }
    let (Some(key), Some(value)) = (word(i), stmt.get(i + 1)) else {
        return Err(expected);
    };
    let value = value.text.clone();
    let kind = if kind.is("host") && (key.is("address") || key.is("addr")) {
        Kind::Host { address: value }
    } else if kind.is("process") && (key.is("pidfile") || key.is("path")) {
        Kind::Process {
            pidfile: Some(value),
            matching: None,
        }
    } else if kind.is("process") && key.is("matching") {
        Kind::Process {
            pidfile: None,
            matching: Some(value),
        }
    } else if kind.is("file") && key.is("path") {
        Kind::File { path: value }
    } else if kind.is("program") && key.is("path") {
        i += 2;
        // [with] timeout N second[s]
        let with = usize::from(word(i).is_some_and(|t| t.is("with")));
        let mut timeout_ms = None;
        if word(i + with).is_some_and(|t| t.is("timeout")) {
            let n: u64 = word(i + with + 1)
                .and_then(|t| t.text.parse().ok())
                .ok_or(expected)?;
            i += with + 2;
            if word(i).is_some_and(|t| t.is("seconds") || t.is("second")) {
                i += 1;
            }
            timeout_ms = Some(n.saturating_mul(1000));
        }
        return Ok((
            Kind::Program {
                path: value,
                timeout_ms,
            },
            i,
        ));
    } else {
        return Err(expected);
    };
    Ok((kind, i + 2))
}

/// `check host|process|program|file NAME ...` and the tests that follow it.
fn service(stmt: &[Token], file: &Path, items: &mut Vec<Item>) {
    let at = |line: usize| At {
        file: file.to_path_buf(),
        line,
    };
    let (kind, body_start) = match header(stmt) {
        Ok(h) => h,
        Err(why) => {
            items.push(Item::Other {
                text: join(stmt),
                at: at(stmt[0].line),
                why: why.into(),
            });
            return;
        }
    };
    let mut s = Service {
        name: stmt[2].text.clone(),
        kind,
        at: at(stmt[0].line),
        text: join(&stmt[..body_start]),
        tests: Vec::new(),
        every: None,
    };
    let body = &stmt[body_start..];
    let mut i = 0;
    while i < body.len() {
        let start = i;
        if !body[i].is("if") {
            // `start program`, `group`, `depends on`, `every`, `mode`, ...
            i += 1;
            while i < body.len() && !body[i].is("if") && !block_statement(&body[i]) {
                i += 1;
            }
            let first = &body[start];
            if first.is("every") {
                // `every N cycles`: the block's rules check every N cycles.
                let n = match &body[start + 1..i] {
                    [n, c] if !n.quoted && (c.is("cycles") || c.is("cycle")) => {
                        n.text.parse::<u32>().ok().filter(|&n| n > 0)
                    }
                    _ => None,
                };
                if let (Some(n), None) = (n, &s.every) {
                    s.every = Some((n, at(first.line)));
                    continue;
                }
            }
            let why = if first.is("start") || first.is("stop") || first.is("restart") {
                RESTART_WHY
            } else if first.is("every") && s.every.is_some() {
                "a second `every` in the block; the first counts"
            } else if first.is("every") && body.get(start + 1).is_some_and(|t| t.quoted) {
                "no equivalent: the watchdog checks at a fixed interval, not on a schedule (a cron spec); the block's rules are written to check every cycle: set `enabled = false` on them, or a longer `interval`, by hand"
            } else if first.is("every") {
                "expected `every N cycles` or `every \"CRON SPEC\"`"
            } else {
                "no equivalent in a watchdog rule"
            };
            items.push(Item::Other {
                text: join(&body[start..i]),
                at: at(first.line),
                why: why.into(),
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
            break;
        };
        let (on_fail, mut next, mut tails) = action(body, then + 1);
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
                let (a, n, more) = action(body, then + 1);
                on_recover = Some(a);
                next = n;
                tails.extend(more);
            }
        }
        let stmt_tokens = &body[start..next];
        match condition(&body[start + 1..then], &s.kind).and_then(|c| Ok((c, recover_rate?))) {
            Ok((mut c, recover_rate)) => {
                c.dropped.extend(tails);
                s.tests.push(Test {
                    at: at(body[start].line),
                    text: join(stmt_tokens),
                    on_fail,
                    on_recover,
                    recover_rate,
                    ..c
                });
            }
            Err(why) => items.push(Item::Other {
                text: join(stmt_tokens),
                at: at(body[start].line),
                why: why.to_string(),
            }),
        }
        i = next;
    }
    let has = |f: fn(&Cond) -> bool| s.tests.iter().any(|t| f(&t.cond));
    let implicit = match s.kind {
        Kind::Process { .. } => !has(|c| *c == Cond::Missing),
        Kind::File { .. } => {
            !has(|c| matches!(c, Cond::Missing | Cond::Present | Cond::OlderThan { .. }))
        }
        Kind::Host { .. } | Kind::Program { .. } => false,
    };
    if implicit {
        s.tests.insert(
            0,
            Test {
                at: s.at.clone(),
                text: format!("{} (monit's own test: does it exist)", s.text),
                cond: Cond::Missing,
                on_fail: Action::Implicit,
                ..blank()
            },
        );
    }
    // The existence test first: it is the one named after the block.
    s.tests.sort_by_key(|t| t.cond != Cond::Missing);
    if matches!(s.kind, Kind::Program { .. }) && s.tests.is_empty() {
        items.push(Item::Other {
            text: s.text.clone(),
            at: s.at.clone(),
            why: "no `if status` test that translates: monit only ran the program, so no rule is written".into(),
        });
        return;
    }
    items.push(Item::Service(s));
}

/// Why an exec action's `as uid U [and gid G]` has no equivalent.
const AS_USER_WHY: &str = "no equivalent: an `exec` action runs as the daemon's user (haproxy-watchdog under the packaged unit), not as another user; the action is written without it: give that user what the program needs";

/// Why an exec action's `repeat every N cycles` has no equivalent.
const REPEAT_WHY: &str = "no equivalent: the watchdog runs an action once per transition (the rule failing, or recovering), retried on the following cycles only while it fails (a non-zero exit); monit ran it again every N cycles while the test kept failing. The action is written to run once";

/// The action starting at `i`, where the tokens after it start, and the parts of an `exec`
/// with no equivalent (`as uid U [and gid G]`, `repeat every N cycles`), each with why.
fn action(t: &[Token], i: usize) -> (Action, usize, Vec<String>) {
    let Some(first) = t.get(i) else {
        return (Action::Other("nothing".into()), i, Vec::new());
    };
    if first.is("exec") {
        let Some(cmd) = t.get(i + 1) else {
            return (Action::Other("exec".into()), i + 1, Vec::new());
        };
        let mut n = i + 2;
        // `as uid U [and gid G]`, `repeat every N cycles`: the watchdog runs as its own user
        // and runs an action once per transition. What follows them is the block's next
        // statement (`group`, `start program`, ...), not part of the action.
        let is = |k: usize, word: &str| t.get(k).is_some_and(|x| x.is(word));
        let (mut user, mut repeat) = (Vec::new(), Vec::new());
        loop {
            let from = n;
            let part = if is(n, "as") || (is(n, "and") && (is(n + 1, "uid") || is(n + 1, "gid"))) {
                n += 1;
                &mut user
            } else if is(n, "uid") || is(n, "gid") {
                n += 2;
                &mut user
            } else if is(n, "repeat") && is(n + 1, "every") {
                // `repeat every cycle`, `repeat every N cycles`.
                n += 2;
                if is(n, "cycle") {
                    n += 1;
                } else if is(n + 1, "cycles") || is(n + 1, "cycle") {
                    n += 2;
                }
                &mut repeat
            } else {
                break;
            };
            part.extend_from_slice(&t[from.min(t.len())..n.min(t.len())]);
        }
        let exec = join(&t[i..i + 2]);
        let mut tails = Vec::new();
        if !user.is_empty() {
            tails.push(format!("{exec} {} -- {AS_USER_WHY}", join(&user)));
        }
        if !repeat.is_empty() {
            tails.push(format!("{exec} {} -- {REPEAT_WHY}", join(&repeat)));
        }
        (Action::Exec(cmd.text.clone()), n.min(t.len()), tails)
    } else {
        (Action::Other(first.text.clone()), i + 1, Vec::new())
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
    /// A resource test (`if cpu ...`, `if memory ...`) or another test with no equivalent.
    #[error("only connection (`if failed ...`), existence, `status` and `timestamp` tests are translated (resource tests such as cpu or memory have no equivalent)")]
    NotATest,
    /// A test monit allows in another kind of block only.
    #[error("not a test of a `check {kind}`")]
    NotForKind { kind: &'static str },
    /// `if changed ...`.
    #[error("no equivalent: the watchdog does not compare one cycle's result with the last one's")]
    Changed,
    /// `status OP N` that every exit status, or none, fails.
    #[error("`status {op} {n}` fails {which} exit status (0 to 255): no rule to write")]
    StatusAll {
        op: String,
        n: i64,
        which: &'static str,
    },
    /// An operator that is not one of monit's.
    #[error("expected an operator (<, >, <=, >=, =, !=) or a number, not `{op}`")]
    Operator { op: String },
    /// `if access|change timestamp ...`.
    #[error("the {what} time has no equivalent: max_age looks at the modification time")]
    TimestampKind { what: String },
    /// `timestamp < N` and the like: only an upper bound on the age maps onto `max_age`.
    #[error("`timestamp {op}` has no equivalent: max_age only fails a file older than a limit (`timestamp > N`)")]
    TimestampOperator { op: String },
    /// `send`/`expect` other than one `send`, one `expect`, or `send` then `expect`.
    #[error("only one `send` followed by one `expect` is translated (the watchdog sends once and reads one answer)")]
    Dialog,
    /// `send`/`expect` with `protocol` or `url`.
    #[error("`send` and `expect` go without `protocol` and `url`")]
    DialogWithProtocol,
    /// A `\0xHH` escape above 0x7f.
    #[error("a byte above 0x7f (`\\0x{hex}`) cannot be written in the watchdog's text")]
    Byte { hex: String },
    /// `request`, `status`, `content` or `hostheader` without `protocol HTTP`.
    #[error("`{word}` goes with `protocol HTTP`")]
    HttpOnly { word: &'static str },
    /// A connection test with neither `port` nor `url`.
    #[error("expected `port N` or `url URL`")]
    NoPort,
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
    /// `with http headers [...]`.
    #[error("`http headers [...]`: the watchdog's http check sends a Host header only (`hostheader` translates, as its `host`); test an endpoint that answers without the others, or write a `program` rule that sends them (curl -H)")]
    HttpHeaders,
    /// `url` together with `port`, `protocol` or `request`.
    #[error("`url` goes without `port`, `protocol` and `request`")]
    UrlWithPort,
    /// A protocol other than HTTP and HTTPS.
    #[error("protocol {protocol}: only HTTP and HTTPS tests are translated")]
    Protocol { protocol: String },
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

/// A [`Test`] with nothing set, to be filled in.
fn blank() -> Test {
    Test {
        at: At {
            file: PathBuf::new(),
            line: 0,
        },
        text: String::new(),
        cond: Cond::Connection,
        host: None,
        port: None,
        https: false,
        tcp: false,
        send: None,
        expect: None,
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
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Host { .. } => "host",
        Kind::Process { .. } => "process",
        Kind::Program { .. } => "program",
        Kind::File { .. } => "file",
    }
}

/// The tokens between `if` and `then`, in a block of `kind`.
fn condition(t: &[Token], kind: &Kind) -> Result<Test, Untranslatable> {
    let first = t.first().ok_or(Untranslatable::NotATest)?;
    let not_here = || Untranslatable::NotForKind {
        kind: kind_name(kind),
    };
    let timestamp = [
        "timestamp",
        "mtime",
        "ctime",
        "atime",
        "modification",
        "modify",
        "change",
        "access",
    ];
    if first.is("failed") {
        match kind {
            Kind::Host { .. } | Kind::Process { .. } => connection(t),
            _ => Err(not_here()),
        }
    } else if first.is("does") || first.is("not") || first.is("exist") || first.is("exists") {
        existence(t, kind)
    } else if first.is("status") {
        match kind {
            Kind::Program { .. } => status(t),
            _ => Err(not_here()),
        }
    } else if first.is("changed") {
        Err(Untranslatable::Changed)
    } else if timestamp.iter().any(|w| first.is(w)) {
        match kind {
            Kind::File { .. } => older_than(t),
            _ => Err(not_here()),
        }
    } else {
        Err(Untranslatable::NotATest)
    }
}

/// What may follow a test's condition: noise words and one rate.
fn tail(t: &[Token], mut k: usize, c: &mut Test) -> Result<(), Untranslatable> {
    while k < t.len() {
        if t[k].is("with") || t[k].is("and") {
            k += 1;
        } else if let Some((r, next)) = rate(t, k)? {
            if c.fail_rate.is_some() {
                return Err(Untranslatable::TwoRates);
            }
            c.fail_rate = Some(r);
            k = next;
        } else {
            return Err(Untranslatable::NoEquivalent {
                word: t[k].text.clone(),
            });
        }
    }
    Ok(())
}

/// `[does] not exist` or `exist`.
fn existence(t: &[Token], kind: &Kind) -> Result<Test, Untranslatable> {
    let mut c = blank();
    let mut k = usize::from(t[0].is("does"));
    let missing = t.get(k).is_some_and(|x| x.is("not"));
    k += usize::from(missing);
    if !t.get(k).is_some_and(|x| x.is("exist") || x.is("exists")) {
        return Err(Untranslatable::NotATest);
    }
    c.cond = if missing {
        Cond::Missing
    } else {
        Cond::Present
    };
    match (kind, missing) {
        (Kind::File { .. }, _) | (Kind::Process { .. }, true) => {}
        _ => {
            return Err(Untranslatable::NotForKind {
                kind: kind_name(kind),
            })
        }
    }
    tail(t, k + 1, &mut c)?;
    Ok(c)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

/// monit's operator at `k`, in any of its spellings, and where the number starts; `=` when
/// there is none (monit's default).
fn operator(t: &[Token], k: usize) -> Result<(Op, usize), Untranslatable> {
    let Some(w) = t.get(k) else {
        return Ok((Op::Eq, k));
    };
    let op = match w.text.to_ascii_lowercase().as_str() {
        ">" | "gt" | "greater" => Op::Gt,
        ">=" | "ge" => Op::Ge,
        "<" | "lt" | "less" => Op::Lt,
        "<=" | "le" => Op::Le,
        "=" | "==" | "eq" | "equal" => Op::Eq,
        "!=" | "<>" | "ne" | "notequal" => Op::Ne,
        x if x.parse::<i64>().is_ok() => return Ok((Op::Eq, k)),
        x => return Err(Untranslatable::Operator { op: x.to_owned() }),
    };
    Ok((op, k + 1))
}

/// The number at `k`.
fn number_at(t: &[Token], k: usize) -> Result<i64, Untranslatable> {
    t.get(k)
        .and_then(|x| x.text.parse().ok())
        .ok_or_else(|| Untranslatable::NumberExpected {
            after: t[k - 1].text.clone(),
        })
}

/// `status [OP] N`: the exit statuses that do not fail it pass.
fn status(t: &[Token]) -> Result<Test, Untranslatable> {
    let mut c = blank();
    let (op, k) = operator(t, 1)?;
    let n = number_at(t, k)?;
    let fails = |code: i64| match op {
        Op::Gt => code > n,
        Op::Ge => code >= n,
        Op::Lt => code < n,
        Op::Le => code <= n,
        Op::Eq => code == n,
        Op::Ne => code != n,
    };
    let pass: Vec<u8> = (0..=255u8).filter(|&code| !fails(code.into())).collect();
    let op_text = t[k - 1].text.clone();
    let op_text = if k == 1 { "=".to_owned() } else { op_text };
    match pass.len() {
        0 => Err(Untranslatable::StatusAll {
            op: op_text,
            n,
            which: "every",
        }),
        256 => Err(Untranslatable::StatusAll {
            op: op_text,
            n,
            which: "no",
        }),
        _ => {
            c.cond = Cond::ExitCodes(pass);
            tail(t, k + 1, &mut c)?;
            Ok(c)
        }
    }
}

/// `[modification] timestamp [OP] N [UNIT]`: only `>` (and `>=`) map onto `max_age`.
fn older_than(t: &[Token]) -> Result<Test, Untranslatable> {
    let mut c = blank();
    let first = &t[0];
    let (either_time, mut k) = if first.is("timestamp") {
        (true, 1)
    } else if first.is("mtime") {
        (false, 1)
    } else if (first.is("modification") || first.is("modify"))
        && t.get(1).is_some_and(|x| x.is("timestamp") || x.is("time"))
    {
        (false, 2)
    } else {
        return Err(Untranslatable::TimestampKind {
            what: first.text.clone(),
        });
    };
    let (op, at) = operator(t, k)?;
    if !matches!(op, Op::Gt | Op::Ge) {
        return Err(Untranslatable::TimestampOperator {
            op: if at == k {
                "=".to_owned()
            } else {
                t[k].text.clone()
            },
        });
    }
    k = at;
    let n = u64::try_from(number_at(t, k)?).map_err(|_| Untranslatable::NumberExpected {
        after: t[k - 1].text.clone(),
    })?;
    k += 1;
    let unit = match t.get(k).map(|u| u.text.to_ascii_lowercase()) {
        Some(u) if matches!(u.as_str(), "second" | "seconds" | "sec" | "s") => 1,
        Some(u) if matches!(u.as_str(), "minute" | "minutes" | "min" | "m") => 60,
        Some(u) if matches!(u.as_str(), "hour" | "hours" | "h") => 3600,
        Some(u) if matches!(u.as_str(), "day" | "days" | "d") => 86400,
        // monit's default unit is the second.
        _ => {
            k -= 1;
            1
        }
    };
    k += 1;
    c.cond = Cond::OlderThan {
        seconds: n.saturating_mul(unit),
        either_time,
    };
    tail(t, k, &mut c)?;
    Ok(c)
}

/// A command string (`check program ... with path "..."`, `exec "..."`, `start program = "..."`)
/// split as monit splits it (its lexer's argument state): on blanks, a word that starts with
/// `'` running to the next `'` is one argument, quotes removed and monit's escapes read. The
/// program is run without a shell. Err (why) where the string cannot be split unambiguously: a
/// quote inside a word (`a'b c'`, `'a'b`), which monit and a shell read differently, an
/// unbalanced quote, or nothing to run.
pub(crate) fn argv(cmd: &str) -> Result<Vec<String>, String> {
    const QUOTE_IN_WORD: &str =
        "a quote inside a word of the command: monit and a shell split it differently";
    let blank = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let mut out = Vec::new();
    let mut rest = cmd;
    loop {
        rest = rest.trim_start_matches(blank);
        if rest.is_empty() {
            break;
        }
        let end = rest.find(blank).unwrap_or(rest.len());
        if let Some(inner) = rest.strip_prefix('\'') {
            let Some(close) = inner.find('\'') else {
                return Err("an unbalanced quote in the command".into());
            };
            let after = &inner[close + 1..];
            if after.starts_with(|c: char| !blank(c)) {
                return Err(QUOTE_IN_WORD.into());
            }
            out.push(unescape(&inner[..close]).map_err(|e| e.to_string())?);
            rest = after;
        } else {
            let word = &rest[..end];
            if word.contains(['\'', '"']) {
                return Err(QUOTE_IN_WORD.into());
            }
            out.push(word.to_owned());
            rest = &rest[end..];
        }
    }
    if out.is_empty() {
        return Err("an empty command".into());
    }
    Ok(out)
}

/// monit's escapes in `send` and `expect` (its `Util_handleEscapes`): `\n`, `\r`, `\t`,
/// `\ ` (a blank), `\\` and `\0xHH`; a backslash before anything else stays.
fn unescape(s: &str) -> Result<String, Untranslatable> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(' ') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('0') => {
                // `0xHH`, after the `0` peeked at.
                let rest: String = chars.clone().skip(1).take(3).collect();
                let byte = rest
                    .strip_prefix('x')
                    .filter(|h| h.len() == 2)
                    .and_then(|h| Some((h, u8::from_str_radix(h, 16).ok()?)));
                match byte {
                    Some((h, b)) if b > 0x7f => {
                        return Err(Untranslatable::Byte { hex: h.to_owned() })
                    }
                    Some((_, b)) => {
                        out.push(char::from(b));
                        chars.nth(2);
                    }
                    None => {
                        out.push('\\');
                        continue;
                    }
                }
            }
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    Ok(out)
}

/// `failed` and a port/protocol or URL connection test, or a port with `send`/`expect`.
fn connection(t: &[Token]) -> Result<Test, Untranslatable> {
    let mut c = blank();
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
        } else if w.is("http") && t.get(k + 1).is_some_and(|x| x.is("headers")) {
            return Err(Untranslatable::HttpHeaders);
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
                    redact(&text.unwrap_or_default())
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
        } else if w.is("send") || w.is("expect") {
            // One `send`, one `expect`, or `send` then `expect`: what the watchdog's one
            // write and one read can do.
            let text = unescape(&t.get(k + 1).ok_or(Untranslatable::Dialog)?.text)?;
            if c.expect.is_some() || (w.is("send") && c.send.is_some()) {
                return Err(Untranslatable::Dialog);
            }
            if w.is("send") {
                c.send = Some(text);
            } else {
                c.expect = Some(text);
            }
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
    let dialog = c.send.is_some() || c.expect.is_some();
    if c.url.is_some() {
        if c.port.is_some() || protocol.is_some() || c.request.is_some() {
            return Err(Untranslatable::UrlWithPort);
        }
        if dialog {
            return Err(Untranslatable::DialogWithProtocol);
        }
        return Ok(c);
    }
    if c.port.is_none() {
        return Err(Untranslatable::NoPort);
    }
    match protocol.as_deref() {
        Some("http") => {}
        Some("https") => c.https = true,
        Some(p) => {
            return Err(Untranslatable::Protocol {
                protocol: p.to_owned(),
            })
        }
        None => {
            // A bare port test: the port accepts a connection (and answers `expect`).
            let http_only = [
                ("request", c.request.is_some()),
                ("status", c.status.is_some()),
                ("content", c.content.is_some()),
                ("hostheader", c.host_header.is_some()),
            ];
            if let Some((word, _)) = http_only.iter().find(|(_, set)| *set) {
                return Err(Untranslatable::HttpOnly { word });
            }
            c.tcp = true;
            return Ok(c);
        }
    }
    if dialog {
        return Err(Untranslatable::DialogWithProtocol);
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
        let Some(Item::Service(h)) = items.iter().find(|i| matches!(i, Item::Service(_))) else {
            panic!("{items:?}")
        };
        assert_eq!(h.kind.address(), "54.173.141.243");
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
                (7, "start program = \"/etc/init.d/haproxy start\""),
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
        let Some(Item::Service(h)) = items
            .iter()
            .find(|i| matches!(i, Item::Service(s) if matches!(s.kind, Kind::Host { .. })))
        else {
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
                Item::Service(h) => tests.extend(h.tests),
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

    #[test]
    fn command_strings_are_split_on_blanks_with_quoted_words_whole() {
        let ok = |s: &str| argv(s).unwrap();
        assert_eq!(ok("/bin/x  a\tb"), ["/bin/x", "a", "b"]);
        assert_eq!(
            ok("/bin/sh -c 'curl -sf http://h/ | grep -q \"ok\"'"),
            ["/bin/sh", "-c", "curl -sf http://h/ | grep -q \"ok\""]
        );
        assert_eq!(ok("/bin/x '' 'two words'"), ["/bin/x", "", "two words"]);
        assert_eq!(ok("/bin/x 'a\\tb'"), ["/bin/x", "a\tb"]);
        for bad in [
            "",
            "  ",
            "/bin/x 'open",
            "/bin/x it's",
            "/bin/x 'a'b",
            "/bin/x a'b c'",
        ] {
            assert!(argv(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_in_echoed_statements_are_redacted() {
        for (text, want) in [
            (
                "with http headers [Authorization: Basic YWRtaW4=]",
                "with http headers [Authorization: ***]",
            ),
            (
                "[authorization:Basic x, Cookie: a=b c=d, Accept: */*]",
                "[authorization:***, Cookie: ***, Accept: */*]",
            ),
            (
                "\"/bin/x -H 'Authorization: Bearer t' -q\"",
                "\"/bin/x -H 'Authorization: ***' -q\"",
            ),
            ("\"/bin/x --password hunter2\"", "\"/bin/x --password ***\""),
            (
                "/bin/x --api-token=t secret: s auth_pass \"p\"",
                "/bin/x --api-token=*** secret: *** auth_pass \"***\"",
            ),
            (
                "auth_type PASS auth_pass s3cr3t",
                "auth_type PASS auth_pass ***",
            ),
            ("password secret hunter2", "password secret ***"),
            (
                "check program token-refresh with path /x",
                "check program token-refresh with path /x",
            ),
            ("password", "password"),
        ] {
            assert_eq!(redact(text), want, "{text}");
        }
    }

    /// A tester's find: `AWS_SECRET_ACCESS_KEY=...`, `--api-key X`, `-pPASSWORD` and
    /// `?api_key=...` were echoed in clear while `--passwd` and `--auth-token` were hidden. Every
    /// shape of secret, by its name: an environment assignment, an option (`--opt X`,
    /// `--opt=X`), mysql's `-p`, a URL's query, an Authorization header.
    #[test]
    fn redaction_covers_secret_env_assignments_options_mysql_passwords_queries_and_auth_headers() {
        for (text, want) in [
            (
                "\"/usr/bin/env AWS_SECRET_ACCESS_KEY=AWSSK16 /usr/local/bin/page.sh\"",
                "\"/usr/bin/env AWS_SECRET_ACCESS_KEY=*** /usr/local/bin/page.sh\"",
            ),
            (
                "env GITHUB_TOKEN=a DB_PASS=b MY_CREDENTIALS=c X_AUTH=d HOME=/root /x",
                "env GITHUB_TOKEN=*** DB_PASS=*** MY_CREDENTIALS=*** X_AUTH=*** HOME=/root /x",
            ),
            (
                "\"/x --api-key APIKEY17 --passwd P18 --auth-token AT19 --key K20 -v\"",
                "\"/x --api-key *** --passwd *** --auth-token *** --key *** -v\"",
            ),
            (
                "/x -password MyPassword --password PASSWORD password secret hunter2",
                "/x -password *** --password *** password secret ***",
            ),
            (
                "/x --api-key=K1 --client-secret=S2 --Credentials=C3 --timeout=5",
                "/x --api-key=*** --client-secret=*** --Credentials=*** --timeout=5",
            ),
            ("/x --api-key --verbose", "/x --api-key --verbose"),
            (
                "\"/usr/bin/mysql -uroot -pMYSQLPW15 -e 'select 1'\"",
                "\"/usr/bin/mysql -uroot -p*** -e 'select 1'\"",
            ),
            (
                "request \"/health?api_key=APIKEY13\" then alert",
                "request \"/health?api_key=***\" then alert",
            ),
            (
                "url http://h:8080/x?page=2&Token=T1&auth=A2 then alert",
                "url http://h:8080/x?page=2&Token=***&auth=*** then alert",
            ),
            (
                "\"/x -H 'Authorization: Basic QVVUSA==' -H 'X-Api-Key: K3' -H 'Accept: */*'\"",
                "\"/x -H 'Authorization: ***' -H 'X-Api-Key: ***' -H 'Accept: */*'\"",
            ),
            (
                "/x --header=X-Auth-Token:T4 http://auth.example.com:8443/",
                "/x --header=X-Auth-Token:*** http://auth.example.com:8443/",
            ),
            (
                "if failed port 80 for 2 cycles then alert else if passed then exec \"/x\"",
                "if failed port 80 for 2 cycles then alert else if passed then exec \"/x\"",
            ),
        ] {
            assert_eq!(redact(text), want, "{text}");
        }
    }

    /// A tester's find: a file starting with a UTF-8 byte order mark had its first block
    /// listed as not understood.
    #[test]
    fn a_utf8_bom_at_the_start_of_a_file_is_stripped() {
        let (s, others) = services(
            "\u{feff}check process haproxy with pidfile /run/haproxy.pid\n  if failed port 80 protocol http then alert\n",
        );
        assert!(others.is_empty(), "{others:?}");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "haproxy");
        assert_eq!(s[0].tests.len(), 2);
    }

    /// The blocks of `text` and what was not translated, as `file:line: text -- why`.
    fn services(text: &str) -> (Vec<Service>, Vec<String>) {
        let mut services = Vec::new();
        let mut others = Vec::new();
        for i in parse(text, Path::new("monitrc")) {
            match i {
                Item::Service(s) => services.push(s),
                Item::Other { text, at, why } => others.push(format!("{at}: {text} -- {why}")),
                _ => {}
            }
        }
        (services, others)
    }

    #[test]
    fn a_process_block_has_its_existence_test_first_and_its_port_tests() {
        let (s, others) = services(
            r#"check process haproxy with pidfile /var/run/haproxy.pid
  start program = "/etc/init.d/haproxy start" with timeout 60 seconds
  stop program = "/etc/init.d/haproxy stop"
  if failed port 443 type tcp for 2 cycles then exec "/etc/failtome.sh"
  if failed host 127.0.0.1 port 6379 send "PING\r\n" expect "PONG" then exec "/usr/local/bin/page" as uid nobody
  group lb
  if does not exist for 3 cycles then exec "/etc/failtome.sh"
     else if succeeded 2 cycles then exec "/usr/local/bin/page up"
  if 5 restarts within 5 cycles then unmonitor
"#,
        );
        let p = &s[0];
        assert_eq!(
            p.kind,
            Kind::Process {
                pidfile: Some("/var/run/haproxy.pid".into()),
                matching: None
            }
        );
        let t = &p.tests;
        assert_eq!(t.len(), 3, "{t:?}");
        assert_eq!(
            (&t[0].cond, t[0].at.line, t[0].fail_rate, t[0].recover_rate),
            (
                &Cond::Missing,
                7,
                Some(Rate::Cycles(3)),
                Some(Rate::Cycles(2))
            )
        );
        assert_eq!(t[0].on_fail, Action::Exec("/etc/failtome.sh".into()));
        assert_eq!(
            (t[1].tcp, t[1].port, t[1].host.as_deref(), t[1].fail_rate),
            (true, Some(443), None, Some(Rate::Cycles(2)))
        );
        assert_eq!(
            (t[2].host.as_deref(), t[2].port),
            (Some("127.0.0.1"), Some(6379))
        );
        assert_eq!(
            (t[2].send.as_deref(), t[2].expect.as_deref()),
            (Some("PING\r\n"), Some("PONG"))
        );
        assert_eq!(t[2].on_fail, Action::Exec("/usr/local/bin/page".into()));
        // `as uid nobody` belongs to the action; `group lb` is the next statement.
        assert_eq!(others.len(), 4, "{others:?}");
        assert!(others[0].starts_with("monitrc:2: start program = \"/etc/init.d/haproxy start\" with timeout 60 seconds -- no equivalent: monit starts, stops and restarts services"), "{others:?}");
        assert!(others[0].contains("Restart=on-failure"), "{others:?}");
        assert!(
            others[1].starts_with("monitrc:3: stop program"),
            "{others:?}"
        );
        assert!(
            others[2].starts_with("monitrc:6: group lb -- "),
            "{others:?}"
        );
        assert!(
            others[3].starts_with(
                "monitrc:9: if 5 restarts within 5 cycles then unmonitor -- only connection"
            ),
            "{others:?}"
        );
    }

    #[test]
    fn a_process_without_a_does_not_exist_test_gets_monits_own_test() {
        let (s, others) = services(
            "check process nginx matching \"nginx\"\n  if failed port 80 protocol http then restart\n",
        );
        assert!(others.is_empty(), "{others:?}");
        let t = &s[0].tests;
        assert_eq!(
            (&t[0].cond, &t[0].on_fail, t[0].at.line),
            (&Cond::Missing, &Action::Implicit, 1)
        );
        assert!(
            t[0].text
                .starts_with("check process nginx matching \"nginx\""),
            "{}",
            t[0].text
        );
        assert_eq!(
            (&t[1].cond, t[1].tcp, t[1].port),
            (&Cond::Connection, false, Some(80))
        );
        assert_eq!(t[1].on_fail, Action::Other("restart".into()));
        assert_eq!(s[0].kind.address(), "localhost");
    }

    #[test]
    fn program_status_tests_become_the_exit_statuses_that_pass() {
        let pass = |cond: &str| {
            let (s, others) = services(&format!(
                "check program p with path \"/usr/local/bin/check -q\" with timeout 10 seconds\n  if {cond} then alert\n"
            ));
            match s.first().map(|s| (&s.kind, &s.tests[0].cond)) {
                Some((Kind::Program { path, timeout_ms }, Cond::ExitCodes(c))) => {
                    assert_eq!(
                        (path.as_str(), *timeout_ms),
                        ("/usr/local/bin/check -q", Some(10_000))
                    );
                    Ok(c.clone())
                }
                _ => Err(others),
            }
        };
        assert_eq!(pass("status != 0"), Ok(vec![0]));
        assert_eq!(pass("status ne 0"), Ok(vec![0]));
        assert_eq!(pass("status > 1"), Ok(vec![0, 1]));
        assert_eq!(pass("status greater 1"), Ok(vec![0, 1]));
        assert_eq!(pass("status >= 2"), Ok(vec![0, 1]));
        assert_eq!(
            pass("status = 2"),
            Ok((0..=255).filter(|&c| c != 2).collect())
        );
        assert_eq!(
            pass("status 2"),
            Ok((0..=255).filter(|&c| c != 2).collect())
        );
        assert_eq!(pass("status < 3"), Ok((3..=255).collect()));
        assert_eq!(pass("status <= 3"), Ok((4..=255).collect()));
        assert_eq!(pass("status != 0 for 3 cycles"), Ok(vec![0]));
        for bad in [
            "status >= 0",
            "status > 255",
            "status ~ 1",
            "changed status",
            "status",
        ] {
            let others = pass(bad).unwrap_err();
            assert!(
                others.len() == 2 && others[0].starts_with("monitrc:2: "),
                "{bad}: {others:?}"
            );
            assert!(
                others[1].contains("no `if status` test"),
                "{bad}: {others:?}"
            );
        }
        let (s, _) = services("check program p with path /bin/true\n if status != 0 then alert\n");
        assert_eq!(
            s[0].kind,
            Kind::Program {
                path: "/bin/true".into(),
                timeout_ms: None
            }
        );
    }

    #[test]
    fn file_tests_existence_and_age() {
        let (s, others) = services(
            r#"check file maintenance with path /etc/haproxy/maintenance
  if exist then exec "/usr/local/bin/standby"
check file heartbeat with path /var/run/app.heartbeat
  if timestamp > 5 minutes for 2 cycles then exec "/etc/failtome.sh"
  if does not exist then alert
  if modification timestamp > 90 seconds then alert
  if changed timestamp then alert
  if access time > 1 hour then alert
  if timestamp < 1 hour then alert
check file cfg with path /etc/haproxy/haproxy.cfg
  if changed checksum then alert
"#,
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].tests.len(), 1);
        assert_eq!(s[0].tests[0].cond, Cond::Present);
        let t = &s[1].tests;
        assert_eq!(
            t.iter().map(|t| (&t.cond, t.at.line)).collect::<Vec<_>>(),
            [
                (&Cond::Missing, 5),
                (
                    &Cond::OlderThan {
                        seconds: 300,
                        either_time: true
                    },
                    4
                ),
                (
                    &Cond::OlderThan {
                        seconds: 90,
                        either_time: false
                    },
                    6
                ),
            ]
        );
        assert_eq!(t[1].fail_rate, Some(Rate::Cycles(2)));
        // No test of its own that translates: monit's own existence test.
        assert_eq!(
            (&s[2].tests[0].cond, &s[2].tests[0].on_fail),
            (&Cond::Missing, &Action::Implicit)
        );
        let lines: Vec<&str> = others
            .iter()
            .map(|o| o.split(" -- ").next().unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "monitrc:7: if changed timestamp then alert",
                "monitrc:8: if access time > 1 hour then alert",
                "monitrc:9: if timestamp < 1 hour then alert",
                "monitrc:11: if changed checksum then alert",
            ]
        );
        assert!(
            others[0].contains("does not compare one cycle's result"),
            "{others:?}"
        );
        assert!(
            others[2].contains("`timestamp <` has no equivalent"),
            "{others:?}"
        );
    }

    #[test]
    fn port_tests_without_protocol_are_tcp_and_what_tcp_cannot_do_is_listed() {
        let (s, others) = services(
            r#"check host redis with address 10.0.0.7
  if failed port 6379 then alert
  if failed port 25 expect "^220" send "QUIT\r\n" then alert
  if failed port 53 type udp then alert
  if failed port 80 request "/x" then alert
  if failed port 80 protocol http send "x" then alert
  if failed port 9 send "\0xff" then alert
  if failed port 9 send "a\0x41\ b\q\\" expect "\0x00" then alert
  if does not exist then alert
"#,
        );
        let t = &s[0].tests;
        assert_eq!(t.len(), 2, "{others:?}");
        assert!(t[0].tcp && t[0].send.is_none() && t[0].expect.is_none());
        assert_eq!(t[1].send.as_deref(), Some("aA b\\q\\"));
        assert_eq!(t[1].expect.as_deref(), Some("\0"));
        let why: Vec<&str> = others
            .iter()
            .map(|o| o.split(" -- ").nth(1).unwrap())
            .collect();
        assert_eq!(
            why,
            [
                "only one `send` followed by one `expect` is translated (the watchdog sends once and reads one answer)",
                "only TCP connection tests are translated",
                "`request` goes with `protocol HTTP`",
                "`send` and `expect` go without `protocol` and `url`",
                "a byte above 0x7f (`\\0xff`) cannot be written in the watchdog's text",
                "not a test of a `check host`",
            ]
        );
    }

    #[test]
    fn block_headers_that_do_not_parse_are_listed() {
        for (text, why) in [
            (
                "check process",
                "expected `check process NAME with pidfile PATH`",
            ),
            (
                "check process x with",
                "expected `check process NAME with pidfile PATH`",
            ),
            (
                "check file x with address /a",
                "expected `check file NAME with path PATH`",
            ),
            ("check program x path", "expected `check program NAME"),
            (
                "check program x path /bin/x timeout",
                "expected `check program NAME",
            ),
            (
                "check host h",
                "expected `check host NAME with address ADDRESS`",
            ),
            ("check system web", "only `check host`, `check process`"),
            (
                "check filesystem rootfs with path /",
                "only `check host`, `check process`",
            ),
        ] {
            let (s, others) = services(text);
            assert!(s.is_empty(), "{text}");
            assert!(
                others.len() == 1 && others[0].contains(why),
                "{text}: {others:?}"
            );
        }
        // `with` is a noise word.
        let (s, _) = services(
            "check process haproxy pidfile /run/haproxy.pid\ncheck host h address 10.0.0.1\n",
        );
        assert_eq!(s.len(), 2);
    }

    /// Every prefix of every shape above, and some nonsense: parsed without a panic.
    #[test]
    fn no_input_panics_the_parser() {
        let text = r#"set daemon 30 with start delay 10
check process haproxy with pidfile /var/run/haproxy.pid
  start program = "/etc/init.d/haproxy start" as uid root and gid root with timeout 60 seconds
  if failed host 127.0.0.1 port 6379 send "PING\r\n\0x4" expect "PONG" with timeout 2 seconds 3 times within 5 cycles then exec "/bin/x" as uid a repeat every 2 cycles else if succeeded for 2 cycles then exec "/bin/y"
  if does not exist for 3 cycles then restart
check program p with path "/bin/check a" with timeout 70 seconds
  if status >= 3 then alert
check file f with path /f
  if timestamp > 2 days then alert
  if exist then alert
check host h with address 10.0.0.1
  if failed url http://u:p@h/ content = "x" then alert
"#;
        for end in (0..=text.len()).filter(|&e| text.is_char_boundary(e)) {
            let _ = parse(&text[..end], Path::new("monitrc"));
        }
        for odd in [
            "if",
            "then",
            "else if succeeded then",
            "check",
            "check process p matching",
            "check file f with path /f if",
            "check program p with path /x if status",
            "check program p with path /x if status > then alert",
            "check host h with address a if failed port then",
            "check process p with pidfile /p if failed send",
            "\"",
            "check file f path /f if timestamp > 99999999999999999999 days then alert",
            "check program p with path /x with timeout 99999999999999999999 seconds",
            "check host h with address a if failed port 1 send \"\\0x\" then alert",
            "check host h with address a if failed port 1 send \"\\0xé\" then alert",
        ] {
            let _ = parse(odd, Path::new("monitrc"));
        }
    }

    #[test]
    fn an_exec_tail_stops_at_the_next_statement_and_an_if_without_then_keeps_the_block() {
        let (s, others) = services(
            r#"check host h with address 10.0.0.1
  if failed port 80 protocol http then exec "/bin/x" as uid www and gid www repeat every 3 cycles
  group www
  if failed port 81 protocol http then exec "/bin/y" every 2 cycles
  depends on db
  if failed port 82
"#,
        );
        assert_eq!(s[0].tests.len(), 2, "{others:?}");
        assert_eq!(s[0].tests[0].on_fail, Action::Exec("/bin/x".into()));
        assert!(
            s[0].tests[0].text.ends_with("repeat every 3 cycles"),
            "{}",
            s[0].tests[0].text
        );
        assert_eq!(
            s[0].tests[0].dropped,
            [
                format!("exec \"/bin/x\" as uid www and gid www -- {AS_USER_WHY}"),
                format!("exec \"/bin/x\" repeat every 3 cycles -- {REPEAT_WHY}"),
            ]
        );
        // `every 2 cycles` is the block's, not the action's.
        assert_eq!(
            s[0].every.as_ref().map(|(n, at)| (*n, at.line)),
            Some((2, 4))
        );
        let lines: Vec<&str> = others
            .iter()
            .map(|o| o.split(" -- ").next().unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "monitrc:3: group www",
                "monitrc:5: depends on db",
                "monitrc:6: if failed port 82"
            ]
        );
    }
}
