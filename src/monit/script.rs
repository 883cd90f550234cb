//! Recognize a failover script of the `failtome.sh` kind: checkip, then
//! `aws opsworks associate-elastic-ip` or `aws ec2 associate-address`, then `aws sns publish`.
//! Such a script becomes a `claim_eip` action (which does all three, with more care); any
//! other script stays an `exec` action.
//!
//! [`moves`] reads the other shape, keepalived's `notify_master` scripts: `aws ec2` calls that
//! move an Elastic IP, a secondary private IP or a route, with shell variables assigned a
//! literal (or the script's own arguments) resolved.

/// A file's text, read also when it is not all UTF-8 (a Latin-1 comment, say): each invalid
/// byte becomes U+FFFD, and the line of the first is returned, for a note.
pub(crate) fn read_text(path: &std::path::Path) -> std::io::Result<(String, Option<usize>)> {
    let bytes = std::fs::read(path)?;
    match String::from_utf8(bytes) {
        Ok(t) => Ok((t, None)),
        Err(e) => {
            let bad = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let line = bytes[..bad].iter().filter(|b| **b == b'\n').count() + 1;
            Ok((String::from_utf8_lossy(&bytes).into_owned(), Some(line)))
        }
    }
}

/// The note on a file [`read_text`] found not all UTF-8, after `file:line: `.
pub(crate) const NOT_UTF8: &str = "not valid UTF-8 from this line on (Latin-1?): read with each invalid byte as U+FFFD, so what those lines say is approximate";

/// `s` with its secrets replaced by `***`, for what an importer echoes (a statement, a script's
/// line): the shared [`crate::monit::parse::redact`], then what it does not know: `--api-key
/// X` (any name ending in `key`), `Bearer X`/`Basic X`, `-pPASSWORD`, `NAME_KEY=`/`SECRET=`/
/// `TOKEN=`/`PASSWORD=` assignments, and `api_key=`/`token=` URL query values.
pub(crate) fn redact(s: &str) -> String {
    let s = crate::monit::parse::redact(s);
    let secret = |name: &str| {
        let n = name
            .trim_start_matches(['-', '"', '\'', '['])
            .trim_end_matches([':', '='])
            .to_ascii_lowercase();
        [
            "key",
            "secret",
            "token",
            "password",
            "passwd",
            "credentials",
            "signature",
            "_pass",
            "-pass",
        ]
        .iter()
        .any(|k| n.ends_with(k))
            || matches!(n.as_str(), "pass" | "pw" | "sig" | "auth")
    };
    let hide = |w: &str| -> String {
        let lead = w.len() - w.trim_start_matches(['"', '\'', '[']).len();
        let body = &w[lead..];
        let trail = body.len() - body.trim_end_matches(['"', '\'', ']', ',']).len();
        if body.len() == trail || body.starts_with("***") {
            w.to_owned()
        } else {
            format!("{}***{}", &w[..lead], &body[body.len() - trail..])
        }
    };
    let words: Vec<&str> = s.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        i += 1;
        let bare = w.trim_start_matches(['"', '\'', '[']);
        let lower = bare.to_ascii_lowercase();
        if matches!(lower.as_str(), "bearer" | "basic")
            || (secret(w) && !w.contains('=') && !w.contains("://"))
        {
            out.push(w.to_owned());
            if let Some(next) = words.get(i) {
                out.push(hide(next));
                i += 1;
            }
            continue;
        }
        if bare.starts_with("-p") && !bare.starts_with("--") && bare.len() > 2 {
            let lead = w.len() - bare.len();
            out.push(format!("{}-p{}", &w[..lead], hide(&bare[2..])));
            continue;
        }
        // `NAME=VALUE`, and each `name=value` of a URL's query (`?a=1&token=X`).
        let mut piece = String::new();
        let mut rest = w;
        loop {
            let cut = rest.find(['?', '&']).map_or(rest.len(), |p| p + 1);
            let (part, next) = rest.split_at(cut);
            match part.split_once('=') {
                Some((name, value))
                    if secret(name) && !value.is_empty() && !name.contains("://") =>
                {
                    let v = value.trim_end_matches(['?', '&']);
                    piece.push_str(name);
                    piece.push('=');
                    piece.push_str(&hide(v));
                    piece.push_str(&value[v.len()..]);
                }
                _ => piece.push_str(part),
            }
            if next.is_empty() {
                break;
            }
            rest = next;
        }
        out.push(piece);
    }
    out.join(" ")
}

/// What a failover script does, as far as its literal arguments tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failover {
    /// "ec2" or "opsworks".
    pub provider: &'static str,
    pub eip: Option<String>,
    pub allocation_id: Option<String>,
    pub private_ip: Option<String>,
    pub opsworks_instance_id: Option<String>,
    /// `--region` of the associate call.
    pub region: Option<String>,
    /// `--region` of the SNS call.
    pub sns_region: Option<String>,
    pub topic_arn: Option<String>,
    pub checkip_url: Option<String>,
    /// Arguments that were shell expressions, so their value is unknown here.
    pub unresolved: Vec<String>,
    /// Why the move is not this node's claim: it gives the address to a named instance or ENI
    /// (`--instance-id i-...`), often the peer.
    pub elsewhere: Option<String>,
}

/// Shell words of one logical line (continuations joined), quotes removed. Good enough for
/// the argument lists of `aws` calls; anything with `$` is kept as written. A word ends at
/// unquoted shell syntax: `;`, `&`, `|`, `<`, `>` (a run of them is one word of its own, such
/// as `;;`, `&&` or `2>&1`'s `>&`), `)` and `` ` `` (each a word of its own), so
/// `$(curl -s https://checkip.amazonaws.com);` gives the URL alone. A backslash outside single
/// quotes keeps the next character as it is.
pub(crate) fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    let mut chars = line.chars().peekable();
    let end = |cur: &mut String, any: &mut bool, out: &mut Vec<String>| {
        if *any || !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
        *any = false;
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '#') if cur.is_empty() && !any => break,
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None | Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    // In double quotes, a backslash escapes only these.
                    if quote.is_some() && !matches!(n, '"' | '\\' | '$' | '`') {
                        cur.push('\\');
                    }
                    cur.push(n);
                }
            }
            (None, c) if c.is_whitespace() => end(&mut cur, &mut any, &mut out),
            (None, ';' | '&' | '|' | '<' | '>') => {
                end(&mut cur, &mut any, &mut out);
                let mut op = String::from(c);
                while let Some(&n) = chars.peek() {
                    if !matches!(n, ';' | '&' | '|' | '<' | '>') {
                        break;
                    }
                    op.push(n);
                    chars.next();
                }
                out.push(op);
            }
            (None, ')' | '`') => {
                end(&mut cur, &mut any, &mut out);
                out.push(c.to_string());
            }
            (_, c) => cur.push(c),
        }
    }
    end(&mut cur, &mut any, &mut out);
    out
}

/// A literal http(s) URL, or why it is not one.
fn url(v: &str) -> Result<String, String> {
    match reqwest::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(v.to_owned())
        }
        _ => Err(format!("checkip URL {v:?} (not a valid http(s) URL)")),
    }
}

/// The word at `i`, with the rest of a command substitution it opens (`$(cat /x)`, whose
/// words [`words`] split), and the index after it.
fn value_at(words: &[String], i: usize, first: &str) -> (String, usize) {
    let mut v = first.to_owned();
    let mut j = i + 1;
    let mut open = first.matches("$(").count();
    while open > 0 {
        let Some(w) = words.get(j) else { break };
        if w == ")" {
            open -= 1;
            v.push(')');
        } else {
            open += w.matches("$(").count();
            v.push(' ');
            v.push_str(w);
        }
        j += 1;
    }
    (v, j)
}

/// `--flag VALUE` or `--flag=VALUE`.
fn flag(words: &[String], name: &str) -> Option<String> {
    words.iter().enumerate().find_map(|(i, w)| {
        if w == name {
            let first = words.get(i + 1)?;
            Some(value_at(words, i + 1, first).0)
        } else {
            w.strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .map(|first| value_at(words, i, first).0)
        }
    })
}

/// `v`, unless it is a shell expression: then its value is unknown here, and it is noted.
fn literal(v: Option<String>, what: &str, unresolved: &mut Vec<String>) -> Option<String> {
    let v = v?;
    if v.contains('$') || v.contains('`') {
        unresolved.push(format!("{what} {v}"));
        None
    } else {
        Some(v)
    }
}

/// [`classify`], unless the script gives the address to a named target
/// ([`Failover::elsewhere`]): such a script is no claim of this node's, and stays what it was.
/// The importers use [`classify`] to list such a script; the tests use this.
#[cfg(test)]
pub fn recognize(text: &str) -> Option<Failover> {
    classify(text).filter(|f| f.elsewhere.is_none())
}

/// What a failover script does. Only commands are read: not comments, here-documents or what
/// `echo`, `printf` and `logger` print.
pub fn classify(text: &str) -> Option<Failover> {
    let lines: Vec<Vec<String>> = logical_lines(text)
        .into_iter()
        .flat_map(|(_, l)| commands(words(&l)))
        .filter(|c| !separator(c))
        .map(|c| body(&c).to_vec())
        // `IP=$(curl -s https://checkip.amazonaws.com)` is read for its URL.
        .filter(|c| !c.is_empty() && (assignment(c).is_some() || !control(c)))
        .collect();
    // Variables assigned a literal (`PEER=i-0...`), for the target of a move.
    let assigned: std::collections::BTreeMap<String, String> = logical_lines(text)
        .into_iter()
        .flat_map(|(_, l)| commands(words(&l)))
        .filter_map(|c| {
            let (n, v) = assignment(&c)?;
            (c.len() == 1 && !v.contains(['$', '`', '('])).then(|| (n.to_owned(), v.to_owned()))
        })
        .collect();
    let has = |w: &str| lines.iter().any(|l| l.iter().any(|x| x == w));
    let provider = if has("associate-elastic-ip") {
        "opsworks"
    } else if has("associate-address") {
        "ec2"
    } else {
        return None;
    };
    let mut f = Failover {
        provider,
        ..Default::default()
    };
    let u = &mut f.unresolved;
    for l in &lines {
        // A later line's literal never replaces an earlier one.
        let set = |slot: &mut Option<String>, name: &str, u: &mut Vec<String>| {
            if let Some(v) = literal(flag(l, name), name, u) {
                slot.get_or_insert(v);
            }
        };
        if l.iter()
            .any(|w| w == "associate-elastic-ip" || w == "associate-address")
        {
            set(&mut f.eip, "--elastic-ip", u);
            set(&mut f.eip, "--public-ip", u);
            set(&mut f.allocation_id, "--allocation-id", u);
            set(&mut f.private_ip, "--private-ip-address", u);
            if provider == "opsworks" {
                set(&mut f.opsworks_instance_id, "--instance-id", u);
            }
            set(&mut f.region, "--region", u);
            // A named instance or ENI (not OpsWorks' own id, which names this node's).
            let targets: &[&str] = if provider == "opsworks" {
                &["--network-interface-id"]
            } else {
                &["--instance-id", "--network-interface-id"]
            };
            for t in targets {
                let v = flag(l, t).map(|v| match reference(&v) {
                    Some(n) => assigned.get(n).cloned().unwrap_or(v),
                    None => v,
                });
                if let Some(v) = v.filter(|v| !v.contains(['$', '`'])) {
                    f.elsewhere.get_or_insert(format!("the script gives the address to {t} {v}, which may be the peer; if it is this node, write the claim by hand"));
                }
            }
        }
        if l.iter().any(|w| w == "publish") && l.iter().any(|w| w == "sns") {
            set(&mut f.topic_arn, "--topic-arn", u);
            set(&mut f.sns_region, "--region", u);
        }
        if f.checkip_url.is_none() && l.iter().any(|w| w.ends_with("curl") || w.ends_with("wget")) {
            let url = l
                .iter()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"));
            f.checkip_url = match literal(url.cloned(), "checkip URL", u).map(|v| self::url(&v)) {
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    u.push(e);
                    None
                }
                None => None,
            };
        }
    }
    Some(f)
}

/// An `aws ec2` call that moves an address, with the arguments a claim needs. `None` is an
/// argument missing or computed by the script (listed in [`Moves::unresolved`]). The instance
/// and ENI ids are left out: a claim finds this node's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// `associate-address`.
    Eip {
        /// `--allocation-id`.
        allocation_id: Option<String>,
        /// `--public-ip`.
        public_ip: Option<String>,
        /// `--private-ip-address`: where on the ENI the address goes.
        private_ip: Option<String>,
    },
    /// `assign-private-ip-addresses`: each of `--private-ip-addresses`.
    PrivateIp {
        /// The literal addresses; empty when none was.
        addresses: Vec<String>,
    },
    /// `replace-route` (or `create-route`) in one table.
    Route {
        /// `--route-table-id`.
        table: Option<String>,
        /// `--destination-cidr-block`.
        destination: Option<String>,
    },
}

/// What [`moves`] found in one script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moves {
    /// Each call, with the script's line it starts on.
    pub moves: Vec<(usize, Move)>,
    /// The first literal `--region` of those calls, else the script's `AWS_REGION` or
    /// `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// The topic of an `aws sns publish`, when literal.
    pub topic_arn: Option<String>,
    /// `line: --flag VALUE` for each needed argument computed by the script.
    pub unresolved: Vec<String>,
    /// The script branches on keepalived's state (`case "$3" in`, `if [ "$3" = MASTER ]`).
    pub branching: bool,
    /// Calls in a branch not taken for MASTER: (line, the states it is taken for, the call).
    pub ignored: Vec<(usize, String, String)>,
    /// Calls of a branching script whose branch is not known: (line, why, the call). Their
    /// claim is not guessed.
    pub unsure: Vec<(usize, String, String)>,
    /// `line: --instance-id $ID` (or `--network-interface-id ...`): computed targets of the
    /// calls translated, which a claim does not use (it moves the address to this node).
    pub targets: Vec<String>,
    /// The calls translated: (line, the call).
    pub seen: Vec<(usize, String)>,
    /// Calls that give the address to a named target (`--instance-id i-...`,
    /// `--network-interface-id eni-...`, a peer's `--private-ip-address`), often the peer:
    /// (line, the target, the call). Not claims.
    pub elsewhere: Vec<(usize, String, String)>,
    /// Every other command the script runs, not translated: (line, the command).
    pub other: Vec<(usize, String)>,
}

/// keepalived's states, as `notify` passes them in its third argument.
const STATES: [&str; 4] = ["MASTER", "BACKUP", "FAULT", "STOP"];
const ALL_STATES: u8 = 0b1111;
const MASTER: u8 = 0b0001;

/// Which states a command runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    /// In no branch on the state.
    Plain,
    /// Only for these states (a bit per [`STATES`]).
    States(u8),
    /// In a branch on the state that could not be read.
    Unknown,
}

impl Branch {
    fn and(self, other: Branch) -> Branch {
        match (self, other) {
            (Branch::Unknown, _) | (_, Branch::Unknown) => Branch::Unknown,
            (Branch::Plain, b) | (b, Branch::Plain) => b,
            (Branch::States(a), Branch::States(b)) => Branch::States(a & b),
        }
    }
}

/// The names of the states in `mask`, `|`-separated ("none" for no state).
fn state_names(mask: u8) -> String {
    let n: Vec<&str> = STATES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| *s)
        .collect();
    if n.is_empty() {
        "no state".into()
    } else {
        n.join("|")
    }
}

/// What a condition says about the state.
enum Cond {
    /// Nothing: it tests something else.
    Other,
    States(u8),
    Unknown,
}

/// An open `if` or `case`, and the branch its current part is taken for.
struct Frame {
    case: bool,
    /// A `case` on the state.
    on_state: bool,
    /// A `case` arm is open (between `PATTERN)` and `;;`).
    in_arm: bool,
    /// An `if` whose condition is still being read (up to `then`).
    in_cond: bool,
    /// Some condition so far was on the state.
    any_state: bool,
    /// The states the parts so far were taken for; None once one was not readable.
    seen: Option<u8>,
    branch: Branch,
}

/// The states a `case` pattern (`MASTER`, `"BACKUP"|FAULT`, `*`) matches, past `seen`.
fn pattern(p: &str, seen: Option<u8>) -> Branch {
    let p = p.trim_start_matches('(');
    let mut mask = 0u8;
    for alt in p.split('|') {
        let alt = alt.trim_matches(['"', '\'']);
        if alt == "*" {
            match seen {
                Some(s) => mask |= ALL_STATES & !s,
                None => return Branch::Unknown,
            }
        } else if let Some(i) = STATES.iter().position(|s| *s == alt) {
            mask |= 1 << i;
        } else if alt.contains(['*', '?', '[', '$', '`']) {
            return Branch::Unknown;
        }
        // Any other literal never matches: keepalived passes one of STATES.
    }
    match seen {
        Some(s) => Branch::States(mask & !s),
        None => Branch::Unknown,
    }
}

/// What the condition words `c` (after `if`/`elif`) say about the state, `is_state` telling a
/// reference to it.
fn condition(c: &[String], is_state: &dyn Fn(&str) -> bool) -> Cond {
    if !c.iter().any(|w| is_state(w)) {
        // A test of a state word on something not known to be the state (`$(cat /run/x)`,
        // a variable read elsewhere): a branch on the state that cannot be read.
        return if c.iter().any(|w| state_word(w)) {
            Cond::Unknown
        } else {
            Cond::Other
        };
    }
    let (neg, c) = match c.split_first() {
        Some((n, rest)) if n == "!" => (true, rest),
        _ => (false, c),
    };
    let inner: &[String] = match c {
        [o, inner @ .., e] if o == "[" && e == "]" => inner,
        [o, inner @ .., e] if o == "[[" && e == "]]" => inner,
        [t, inner @ ..] if t == "test" => inner,
        _ => return Cond::Unknown,
    };
    let [a, op, b] = inner else {
        return Cond::Unknown;
    };
    let lit = if is_state(a) {
        b
    } else if is_state(b) {
        a
    } else {
        return Cond::Unknown;
    };
    if lit.contains(['$', '`', '*', '?', '[']) {
        return Cond::Unknown;
    }
    let mask = STATES.iter().position(|s| s == lit).map_or(0, |i| 1u8 << i);
    let mask = match op.as_str() {
        "=" | "==" => mask,
        "!=" => ALL_STATES & !mask,
        _ => return Cond::Unknown,
    };
    Cond::States(if neg { ALL_STATES & !mask } else { mask })
}

/// The branch each of `lines`' commands is in, and whether any branch is on the state.
/// `is_state` tells a word that is the state (`$3`, `$STATE`).
fn branches(
    lines: &[(usize, Vec<String>)],
    is_state: &dyn Fn(&str) -> bool,
) -> (Vec<Branch>, bool) {
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = Vec::with_capacity(lines.len());
    let mut branching = false;
    let open = |f: &mut Frame, c: Cond| {
        // The part taken when this condition holds and none before did.
        let prev = f.seen;
        f.branch = match c {
            Cond::Other if f.any_state => match prev {
                Some(p) => Branch::States(ALL_STATES & !p),
                None => Branch::Unknown,
            },
            Cond::Other => Branch::Plain,
            Cond::States(m) => {
                f.any_state = true;
                f.seen = prev.map(|p| p | m);
                match prev {
                    Some(p) => Branch::States(m & !p),
                    None => Branch::Unknown,
                }
            }
            Cond::Unknown => {
                f.any_state = true;
                f.seen = None;
                Branch::Unknown
            }
        };
    };
    // `[ "$3" = MASTER ] && ...`: the branch the rest of the line's commands are in.
    let mut pending = Branch::Plain;
    for (i, (n, l)) in lines.iter().enumerate() {
        if i == 0 || lines[i - 1].0 != *n {
            pending = Branch::Plain;
        }
        let next = lines
            .get(i + 1)
            .filter(|(m, _)| m == n)
            .map(|(_, c)| c.as_slice());
        if separator(l) && l[0] != ";;" {
            if l[0] == ";" {
                pending = Branch::Plain;
            }
            out.push(Branch::Plain);
            continue;
        }
        let mut w: &[String] = l;
        // The words of a command may open, switch or close a branch before the command.
        while let Some(first) = w.first().map(String::as_str) {
            let top = stack.last_mut();
            match (first, top) {
                ("case", _) => {
                    let subject = w.get(1).map(String::as_str).unwrap_or("");
                    let on_state = is_state(subject);
                    branching |= on_state;
                    stack.push(Frame {
                        case: true,
                        on_state,
                        in_arm: false,
                        in_cond: false,
                        any_state: on_state,
                        seen: Some(0),
                        branch: Branch::Plain,
                    });
                    let skip = w.iter().position(|x| x == "in").map_or(w.len(), |i| i + 1);
                    w = &w[skip..];
                }
                ("esac", _) => {
                    if stack.last().is_some_and(|f| f.case) {
                        stack.pop();
                    }
                    w = &w[1..];
                }
                (";;" | ";&" | ";;&", Some(f)) if f.case => {
                    f.in_arm = false;
                    f.branch = Branch::Plain;
                    w = &w[1..];
                }
                (p, Some(f)) if f.case && !f.in_arm && p.ends_with(')') => {
                    f.in_arm = true;
                    // A `case` on something not known to be the state, with a state as a
                    // pattern: a branch on the state that cannot be read.
                    let unread = !f.on_state && state_word(p);
                    if unread {
                        f.on_state = true;
                        f.any_state = true;
                        f.seen = None;
                        branching = true;
                    }
                    f.branch = if f.on_state {
                        let b = pattern(p.trim_end_matches(')'), f.seen);
                        f.seen = match (b, f.seen) {
                            (Branch::States(m), Some(s)) => Some(s | m),
                            _ => None,
                        };
                        b
                    } else {
                        Branch::Plain
                    };
                    w = &w[1..];
                }
                ("if", _) => {
                    let mut f = Frame {
                        case: false,
                        on_state: false,
                        in_arm: false,
                        in_cond: true,
                        any_state: false,
                        seen: Some(0),
                        branch: Branch::Plain,
                    };
                    let c = condition(&w[1..], is_state);
                    branching |= !matches!(c, Cond::Other);
                    open(&mut f, c);
                    stack.push(f);
                    w = &[];
                }
                ("elif", Some(f)) if !f.case => {
                    let c = condition(&w[1..], is_state);
                    branching |= !matches!(c, Cond::Other);
                    f.in_cond = true;
                    open(f, c);
                    w = &[];
                }
                ("then", Some(f)) if !f.case => {
                    f.in_cond = false;
                    w = &w[1..];
                }
                ("else", Some(f)) if !f.case => {
                    f.branch = if f.any_state {
                        match f.seen {
                            Some(p) => Branch::States(ALL_STATES & !p),
                            None => Branch::Unknown,
                        }
                    } else {
                        Branch::Plain
                    };
                    w = &w[1..];
                }
                ("fi", _) => {
                    if stack.last().is_some_and(|f| !f.case) {
                        stack.pop();
                    }
                    w = &w[1..];
                }
                (_, Some(f)) if !f.case && f.in_cond => {
                    // `if [ "$3" = MASTER ] && [ -f x ]`: more of the condition.
                    if w.iter().any(|x| is_state(x)) {
                        f.any_state = true;
                        f.seen = None;
                        f.branch = Branch::Unknown;
                        branching = true;
                    }
                    w = &[];
                }
                _ => break,
            }
        }
        let b = stack.iter().fold(pending, |b, f| b.and(f.branch));
        let in_cond = stack.last().is_some_and(|f| !f.case && f.in_cond);
        let op = next.and_then(|c| c.first()).map(String::as_str);
        if !in_cond && test_command(w) {
            // `[ "$3" = MASTER ] && cmd`, `[ "$3" != MASTER ] || cmd`, `test ...`.
            let c = condition(w, is_state);
            branching |= !matches!(c, Cond::Other);
            let holds = match c {
                Cond::Other => Branch::Plain,
                Cond::States(m) => Branch::States(m),
                Cond::Unknown => Branch::Unknown,
            };
            let then = match (op, holds) {
                (Some("&&"), h) => h,
                (Some("||"), Branch::States(m)) => Branch::States(ALL_STATES & !m),
                (Some("||"), h) => h,
                _ => Branch::Plain,
            };
            pending = pending.and(then);
        } else if op == Some("||") && pending != Branch::Plain {
            // `[ ... ] && a || b`: b runs when either failed.
            pending = Branch::Unknown;
        }
        out.push(b);
    }
    (out, branching)
}

/// The script's logical lines (`\` continuations joined), each with the line it starts on.
/// A here-document's body (`<<EOT` ... `EOT`, `<<-'EOT'`, `<<"EOT"`) is text, not commands:
/// it is left out.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    // The delimiters of the here-documents still to skip, and whether tabs lead them (`<<-`).
    let mut heredocs: std::collections::VecDeque<(String, bool)> = Default::default();
    for (i, raw) in text.lines().enumerate() {
        if let Some((delim, dash)) = heredocs.front() {
            let end = if *dash {
                raw.trim_start_matches('\t')
            } else {
                raw
            };
            if end == delim {
                heredocs.pop_front();
            }
            continue;
        }
        let (body, cont) = match raw.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (raw, false),
        };
        match out.last_mut() {
            Some((_, l)) if open => {
                l.push(' ');
                l.push_str(body);
            }
            _ => out.push((i + 1, body.to_owned())),
        }
        open = cont;
        if !open {
            if let Some((_, l)) = out.last() {
                let w = words(l);
                for (j, x) in w.iter().enumerate() {
                    if x == "<<" {
                        if let Some(d) = w.get(j + 1) {
                            let dash = d.starts_with('-');
                            let d = d.trim_start_matches('-');
                            if !d.is_empty() {
                                heredocs.push_back((d.to_owned(), dash));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// `NAME=VALUE` (after `export`/`local`/`readonly`), as (NAME, VALUE).
fn assignment(words: &[String]) -> Option<(&str, &str)> {
    let w = match words.first().map(String::as_str) {
        Some("export" | "local" | "readonly" | "declare") => words.get(1)?,
        _ => words.first()?,
    };
    let (name, value) = w.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some((name, value))
}

/// Every value after `--flag` up to the next option (`--flag A B`, `--flag=A,B`).
fn flag_values(words: &[String], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if w == name {
            let mut j = i + 1;
            while let Some(v) = words.get(j) {
                if v.starts_with("--") || is_op(v) {
                    break;
                }
                let (v, next) = value_at(words, j, v);
                out.push(v);
                j = next;
            }
        } else if let Some(v) = w.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            out.push(value_at(words, i, v).0);
        }
    }
    out.iter()
        .flat_map(|v| {
            if v.contains(['$', '`']) {
                vec![v.as_str()]
            } else {
                v.split(',').collect()
            }
        })
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One line's words split into its commands at `;`, `&&`, `||`, `|` and `&`, each separator a
/// command of its own ([`SEPARATORS`]: `&&`, `||`, and `;` for the others); `;;` (the end
/// of a `case` arm) is a command of its own too, and a `case` arm's pattern (`MASTER | BACKUP )`)
/// is one word (`MASTER|BACKUP)`).
fn commands(words: Vec<String>) -> Vec<Vec<String>> {
    let plain = |w: &str| !w.is_empty() && !w.contains(['$', '`', '(']) && !is_op(w);
    let mut out = vec![Vec::new()];
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let start = out.last().is_some_and(|c| {
            c.is_empty()
                || (c.first().is_some_and(|x| x == "case") && c.last().is_some_and(|x| x == "in"))
        });
        if start && plain(w) {
            // PATTERN ( `|` PATTERN )* `)` at the start of a command.
            let mut j = i;
            let mut alts = vec![w.clone()];
            while words.get(j + 1).is_some_and(|x| x == "|")
                && words.get(j + 2).is_some_and(|x| plain(x))
            {
                alts.push(words[j + 2].clone());
                j += 2;
            }
            if words.get(j + 1).is_some_and(|x| x == ")") {
                if let Some(last) = out.last_mut() {
                    last.push(format!("{})", alts.join("|")));
                }
                i = j + 2;
                continue;
            }
        }
        if matches!(w.as_str(), "&&" | "||") {
            // Kept, as a command of its own: `[ "$3" = MASTER ] && aws ...` runs on a test.
            out.push(vec![w.clone()]);
            out.push(Vec::new());
        } else if matches!(w.as_str(), ";" | "|" | "&" | "|&") {
            out.push(vec![";".to_owned()]);
            out.push(Vec::new());
        } else if matches!(w.as_str(), ";;" | ";&" | ";;&") {
            out.push(vec![";;".to_owned()]);
            out.push(Vec::new());
        } else if let Some(last) = out.last_mut() {
            last.push(w.clone());
        }
        i += 1;
    }
    out.retain(|c| !c.is_empty());
    out
}

/// The separators [`commands`] keeps as commands of their own.
const SEPARATORS: [&str; 4] = ["&&", "||", ";", ";;"];

/// A command that is only a separator.
fn separator(c: &[String]) -> bool {
    matches!(c, [w] if SEPARATORS.contains(&w.as_str()))
}

/// A command that tests something: `[ ... ]`, `[[ ... ]]`, `test ...`, `! ...`.
fn test_command(c: &[String]) -> bool {
    matches!(
        c.first().map(String::as_str),
        Some("[" | "[[" | "test" | "!")
    )
}

/// `w` names one of keepalived's states (`MASTER`, `"BACKUP"`, `FAULT|STOP)`).
fn state_word(w: &str) -> bool {
    w.trim_start_matches('(')
        .trim_end_matches(')')
        .split('|')
        .any(|a| STATES.contains(&a.trim_matches(['"', '\''])))
}

/// A command without what leads into it: `then`, `else`, `do`, `{`, a `case` pattern
/// (`MASTER)`), `if`/`elif`/`while`/`until`/`!` before a command, and `NAME=value`
/// assignments before a command (`AWS_REGION=x aws ...`).
fn body(c: &[String]) -> &[String] {
    let mut c = c;
    // `case WORD in PATTERN) command` on one line: the command.
    if c.first().is_some_and(|w| w == "case") {
        if let Some(i) = c.iter().position(|w| w == "in") {
            c = &c[i + 1..];
        }
    }
    while let Some(first) = c.first() {
        let lead = matches!(
            first.as_str(),
            "then"
                | "else"
                | "do"
                | "{"
                | "}"
                | "("
                | ")"
                | "fi"
                | "done"
                | "esac"
                | "if"
                | "elif"
                | "while"
                | "until"
                | "!"
        ) || (first.ends_with(')') && !first.contains(['$', '`', '(']))
            || (c.len() > 1
                && c[1] != "`"
                && assignment(&c[..1]).is_some_and(|(_, v)| !v.contains(['$', '`', '('])));
        if !lead {
            break;
        }
        c = &c[1..];
    }
    c
}

/// A command that does nothing the watchdog would need to do: an assignment, a test,
/// control syntax, a function's definition, output (`echo`, `printf`, `logger`), `exit`.
fn control(c: &[String]) -> bool {
    let first = c[0].as_str();
    assignment(c).is_some()
        || test_command(c)
        || first.ends_with('(')
        || c.get(1).is_some_and(|w| w == "(" || w == ")" || w == "()")
        || matches!(
            first,
            "case"
                | "for"
                | "select"
                | "function"
                | "echo"
                | "printf"
                | "logger"
                | "exit"
                | "return"
                | "true"
                | "false"
                | ":"
                | "set"
                | "shift"
                | "local"
                | "export"
                | "readonly"
                | "declare"
                | "unset"
                | "sleep"
                | "wait"
                | ";;"
                | "in"
        )
}

/// A command as listed: its words, at most 160 characters.
fn shown(c: &[String]) -> String {
    let call = c.join(" ");
    if call.chars().count() > 160 {
        call.chars().take(160).chain("...".chars()).collect()
    } else {
        call
    }
}

/// A word [`words`] made of shell operators.
fn is_op(w: &str) -> bool {
    !w.is_empty()
        && w.chars()
            .all(|c| matches!(c, ';' | '&' | '|' | '<' | '>' | ')' | '`'))
}

/// `NAME` of a value that is one variable reference: `$NAME`, `${NAME}`, `$1`.
fn reference(v: &str) -> Option<&str> {
    let name = v
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| v.strip_prefix('$'))?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

/// Recognize the `aws ec2` calls of a keepalived notify script. `args` are the arguments the
/// script is called with (`$1`, `$2`, ...); `peers` the peers' addresses (a call that gives
/// the address to one is not this node's claim). A variable counts as a literal when every
/// assignment of it in the script gives the same literal.
///
/// `state_arg` is the position of keepalived's state among `args` (`notify`'s `$3`, after the
/// script's own arguments): in a script that branches on it, only the calls of a branch taken
/// for MASTER count.
pub fn moves(text: &str, args: &[String], state_arg: Option<usize>, peers: &[String]) -> Moves {
    let lines: Vec<(usize, Vec<String>)> = logical_lines(text)
        .into_iter()
        .flat_map(|(n, l)| commands(words(&l)).into_iter().map(move |c| (n, c)))
        .collect();
    // None: assigned something computed, or two different things. A value may be one
    // reference to another variable or an argument (`VIP=$1`), resolved when used.
    let mut vars: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for (_, w) in &lines {
        if let Some((name, value)) = assignment(w) {
            let alone = w.len() == 1
                || (w.len() == 2
                    && matches!(w[0].as_str(), "export" | "local" | "readonly" | "declare"));
            let v = (alone && (!value.contains(['$', '`', '(']) || reference(value).is_some()))
                .then(|| value.to_owned());
            vars.entry(name.to_owned())
                .and_modify(|old| {
                    if *old != v {
                        *old = None
                    }
                })
                .or_insert(v);
        }
    }
    let resolve = |v: &str| -> Option<String> {
        let mut v = v.to_owned();
        // A few hops at most: `A=$B`, `B=$1`; a loop (`A=$A`) ends here too.
        for _ in 0..8 {
            if !v.contains(['$', '`']) {
                return Some(v);
            }
            let name = reference(&v)?;
            v = match name.parse::<usize>() {
                Ok(n) => n.checked_sub(1).and_then(|i| args.get(i)).cloned()?,
                Err(_) => vars.get(name).cloned().flatten()?,
            };
        }
        None
    };
    // `for NAME in A B C`: the literal values a loop variable takes.
    let loops: std::collections::BTreeMap<&str, Vec<String>> = lines
        .iter()
        .filter_map(|(_, w)| match w.as_slice() {
            [f, name, i, values @ ..] if f == "for" && i == "in" => {
                let values: Vec<String> = values
                    .iter()
                    .take_while(|v| !matches!(v.as_str(), "do" | ";"))
                    .cloned()
                    .collect();
                (!values.is_empty() && values.iter().all(|v| !v.contains(['$', '`', '*'])))
                    .then_some((name.as_str(), values))
            }
            _ => None,
        })
        .collect();
    // The state's own reference (`$3`) and the variables assigned it (`STATE=$3`); also an
    // argument the script is given as `MASTER` (`notify_master "/x.sh MASTER"`'s `$1`).
    let is_state = |w: &str| -> bool {
        let mut name = match reference(w) {
            Some(n) => n.to_owned(),
            None => return false,
        };
        for _ in 0..8 {
            if let Ok(pos) = name.parse::<usize>() {
                return state_arg == Some(pos)
                    || (pos > 0 && args.get(pos - 1).is_some_and(|a| a == "MASTER"));
            }
            match vars
                .get(&name)
                .cloned()
                .flatten()
                .as_deref()
                .and_then(reference)
            {
                Some(n) => name = n.to_owned(),
                None => return false,
            }
        }
        false
    };
    let (branch, branching) = branches(&lines, &is_state);
    let mut m = Moves {
        branching,
        ..Default::default()
    };
    for ((n, l), b) in lines.iter().zip(branch) {
        if separator(l) {
            continue;
        }
        let l = body(l);
        let has = |w: &str| l.iter().any(|x| x == w);
        let moving = has("ec2")
            && (has("associate-address")
                || has("assign-private-ip-addresses")
                || has("replace-route")
                || has("create-route"));
        // Output is never a call; an assignment is one only when it runs a move
        // (`ID=$(aws ec2 associate-address ...)`).
        let output = matches!(
            l.first().map(String::as_str),
            Some("echo" | "printf" | "logger")
        );
        if l.is_empty() || output || (control(l) && !moving) {
            continue;
        }
        let call = shown(l);
        let master = match b {
            Branch::States(s) => s == MASTER,
            Branch::Plain => !branching,
            Branch::Unknown => false,
        };
        if moving {
            match b {
                Branch::States(s) if s & MASTER == 0 => {
                    m.ignored.push((*n, state_names(s), call));
                    continue;
                }
                Branch::States(s) if s != MASTER => {
                    // Only a MASTER-only branch is a claim's.
                    m.unsure.push((
                        *n,
                        format!("in a branch run for {}, not MASTER only", state_names(s)),
                        call,
                    ));
                    continue;
                }
                Branch::Unknown => {
                    m.unsure.push((
                        *n,
                        "in a branch on the state that could not be read".into(),
                        call,
                    ));
                    continue;
                }
                Branch::Plain if branching => {
                    m.unsure.push((
                        *n,
                        "outside the script's branches on the state, so run in every state".into(),
                        call,
                    ));
                    continue;
                }
                _ => {}
            }
            // A move aimed at a named instance or ENI (or the peer's private IP) gives the
            // address to that target, often the peer: not this node's claim.
            let mut aimed = None;
            for f in ["--instance-id", "--network-interface-id"] {
                if let Some(v) = flag(l, f) {
                    match resolve(&v) {
                        Some(r) => aimed = aimed.or(Some(format!("{f} {r}"))),
                        None => m.targets.push(format!("{n}: {f} {v}")),
                    }
                }
            }
            if aimed.is_none() {
                if let Some(ip) = flag(l, "--private-ip-address").and_then(|v| resolve(&v)) {
                    if peers.contains(&ip) {
                        aimed = Some(format!("--private-ip-address {ip} (a unicast_peer)"));
                    }
                }
            }
            if let Some(target) = aimed {
                m.elsewhere.push((*n, target, call));
                continue;
            }
            m.seen.push((*n, call.clone()));
        } else if !(has("sns") && has("publish") && master) {
            let when = match b {
                Branch::States(s) if s & MASTER == 0 => format!(" (run for {})", state_names(s)),
                _ => String::new(),
            };
            m.other.push((*n, format!("{call}{when}")));
            continue;
        }
        let get = |flag_name: &str, m: &mut Moves| -> Option<String> {
            let v = flag(l, flag_name)?;
            let r = resolve(&v);
            if r.is_none() {
                m.unresolved.push(format!("{n}: {flag_name} {v}"));
            }
            r
        };
        if has("sns") && has("publish") {
            if let Some(t) = get("--topic-arn", &mut m) {
                m.topic_arn.get_or_insert(t);
            }
            continue;
        }
        if !has("ec2") {
            continue;
        }
        let call = if has("associate-address") {
            Move::Eip {
                allocation_id: get("--allocation-id", &mut m),
                public_ip: get("--public-ip", &mut m),
                private_ip: get("--private-ip-address", &mut m),
            }
        } else if has("assign-private-ip-addresses") {
            let mut addresses = Vec::new();
            for v in flag_values(l, "--private-ip-addresses") {
                match resolve(&v) {
                    Some(a) => addresses.push(a),
                    None => m
                        .unresolved
                        .push(format!("{n}: --private-ip-addresses {v}")),
                }
            }
            Move::PrivateIp { addresses }
        } else if has("replace-route") || has("create-route") {
            let destination = get("--destination-cidr-block", &mut m);
            // `for rt in rtb-1 rtb-2; do aws ec2 replace-route --route-table-id $rt ...`
            let each = flag(l, "--route-table-id")
                .as_deref()
                .and_then(reference)
                .and_then(|v| loops.get(v));
            if let Some(tables) = each {
                for t in tables {
                    m.moves.push((
                        *n,
                        Move::Route {
                            table: Some(t.clone()),
                            destination: destination.clone(),
                        },
                    ));
                }
                if let Some(r) = get("--region", &mut m) {
                    m.region.get_or_insert(r);
                }
                continue;
            }
            Move::Route {
                table: get("--route-table-id", &mut m),
                destination,
            }
        } else {
            continue;
        };
        if let Some(r) = get("--region", &mut m) {
            m.region.get_or_insert(r);
        }
        m.moves.push((*n, call));
    }
    if m.region.is_none() && !m.moves.is_empty() {
        m.region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|v| vars.get(*v).cloned().flatten())
            .filter(|r| !r.contains('$'));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opsworks_failtome_script() {
        let script = r#"#!/bin/sh

# Check current instance IP externally
OUT=$( curl -qSfsw '\n' http://checkip.amazonaws.com ) 2>/dev/null
RET=$?

# Check that current IP isn't target IP and that request didn't fail
if [ "$RET" = '0' -a "$OUT" != '54.173.141.243' ]; then

 # Swap EIP
 aws --region us-west-2 opsworks associate-elastic-ip \
  --elastic-ip 54.173.141.243 \
  --instance-id 4d6d1710-ded9-42a1-b08e-b043ad7af1e2

 # Send notification
 aws --region us-west-2 sns publish \
  --topic-arn arn:aws:sns:us-west-2:123456789012:haproxy-failover \
  --subject "HAProxy failover notification" \
  --message \
  "Instance 4d6d1710-ded9-42a1-b08e-b043ad7af1e2 took over 54.173.141.243"

fi
"#;
        let f = recognize(script).unwrap();
        assert_eq!(f.provider, "opsworks");
        assert_eq!(f.eip.as_deref(), Some("54.173.141.243"));
        assert_eq!(
            f.opsworks_instance_id.as_deref(),
            Some("4d6d1710-ded9-42a1-b08e-b043ad7af1e2")
        );
        assert_eq!(f.region.as_deref(), Some("us-west-2"));
        assert_eq!(
            f.topic_arn.as_deref(),
            Some("arn:aws:sns:us-west-2:123456789012:haproxy-failover")
        );
        assert_eq!(
            f.checkip_url.as_deref(),
            Some("http://checkip.amazonaws.com")
        );
        assert!(f.unresolved.is_empty());
    }

    #[test]
    fn an_ec2_script_with_shell_variables_and_an_ordinary_script() {
        let text = "EIP=eipalloc-1\naws ec2 associate-address --allocation-id $EIP --network-interface-id eni-1 --private-ip-address=10.0.0.6 --allow-reassociation\n";
        // A named ENI: not this node's claim.
        assert_eq!(recognize(text), None);
        let f = classify(text).unwrap();
        assert!(f.elsewhere.is_some(), "{f:?}");
        assert_eq!(f.provider, "ec2");
        assert_eq!(f.allocation_id, None);
        assert_eq!(f.private_ip.as_deref(), Some("10.0.0.6"));
        assert_eq!(f.unresolved, ["--allocation-id $EIP"]);
        assert_eq!(recognize("#!/bin/sh\nsystemctl restart haproxy\n"), None);
    }

    #[test]
    fn keepalived_notify_scripts_with_variables_continuations_and_arguments() {
        let script = r#"#!/bin/bash
# notify_master for EIP failover
EIP_ALLOC=eipalloc-0a1b2c3d4e5f60718
INSTANCE_ID=$(curl -s http://169.254.169.254/latest/meta-data/instance-id)
ENI=`curl -s http://169.254.169.254/latest/meta-data/network/interfaces/macs/$MAC/interface-id`
aws ec2 associate-address --region us-east-1 \
    --allocation-id $EIP_ALLOC --instance-id $INSTANCE_ID \
    --allow-reassociation
aws ec2 assign-private-ip-addresses --network-interface-id $ENI \
    --private-ip-addresses 10.0.1.50 "$2" --allow-reassignment
aws ec2 replace-route --route-table-id ${TABLE} --destination-cidr-block 192.168.100.1/32 --network-interface-id $ENI
for rt in rtb-1 rtb-2; do
  aws ec2 replace-route --route-table-id $rt --destination-cidr-block 192.168.100.1/32 --network-interface-id $ENI
done
aws sns publish --topic-arn "$1" --message "took over"
"#;
        let m = moves(
            script,
            &["arn:aws:sns:us-east-1:123456789012:t".into()],
            None,
            &[],
        );
        assert_eq!(
            m.moves,
            [
                (
                    6,
                    Move::Eip {
                        allocation_id: Some("eipalloc-0a1b2c3d4e5f60718".into()),
                        public_ip: None,
                        private_ip: None
                    }
                ),
                (
                    9,
                    Move::PrivateIp {
                        addresses: vec!["10.0.1.50".into()]
                    }
                ),
                (
                    11,
                    Move::Route {
                        table: None,
                        destination: Some("192.168.100.1/32".into())
                    }
                ),
                (
                    13,
                    Move::Route {
                        table: Some("rtb-1".into()),
                        destination: Some("192.168.100.1/32".into())
                    }
                ),
                (
                    13,
                    Move::Route {
                        table: Some("rtb-2".into()),
                        destination: Some("192.168.100.1/32".into())
                    }
                ),
            ]
        );
        assert_eq!(m.region.as_deref(), Some("us-east-1"));
        assert_eq!(
            m.topic_arn.as_deref(),
            Some("arn:aws:sns:us-east-1:123456789012:t")
        );
        assert_eq!(
            m.unresolved,
            [
                "9: --private-ip-addresses $2",
                "11: --route-table-id ${TABLE}"
            ]
        );
        assert_eq!(
            moves("#!/bin/sh\nsystemctl restart haproxy\n", &[], None, &[]).moves,
            []
        );
        // The shape of many published scripts: the region from the environment, the EIP by
        // its address, the instance id from metadata, a disassociate first (not needed).
        let m = moves(
            "export AWS_DEFAULT_REGION=eu-central-1\nEIP=203.0.113.7\nID=`curl -s http://169.254.169.254/latest/meta-data/instance-id`\naws ec2 disassociate-address --public-ip $EIP\naws ec2 associate-address --public-ip $EIP --instance-id $ID\n",
            &[],
            None,
            &[],
        );
        assert_eq!(m.region.as_deref(), Some("eu-central-1"));
        assert_eq!(
            m.moves,
            [(
                5,
                Move::Eip {
                    allocation_id: None,
                    public_ip: Some("203.0.113.7".into()),
                    private_ip: None
                }
            )]
        );
        assert!(m.unresolved.is_empty());
    }

    #[test]
    fn a_notify_script_branching_on_the_state_counts_only_the_master_branch() {
        let eips = |m: &Moves| -> Vec<String> {
            m.moves
                .iter()
                .filter_map(|(_, mv)| match mv {
                    Move::Eip { allocation_id, .. } => allocation_id.clone(),
                    _ => None,
                })
                .collect()
        };
        let args: Vec<String> = ["INSTANCE", "VI_1", "MASTER"].map(String::from).to_vec();
        // `case` on $3, the peer's instance in the BACKUP arm.
        let m = moves(
            "STATE=$3\ncase \"$3\" in\n  BACKUP)\n    aws ec2 associate-address --allocation-id eipalloc-b --instance-id i-0peer\n    ;;\n  MASTER) aws ec2 associate-address --allocation-id eipalloc-a --instance-id i-0self ;;\n  *) aws ec2 associate-address --allocation-id eipalloc-c ;;\nesac\n",
            &args,
            Some(3),
            &[],
        );
        assert!(m.branching);
        // The MASTER arm's call names an instance: not this node's claim, listed.
        assert!(eips(&m).is_empty());
        assert_eq!(m.elsewhere[0].0, 6);
        assert_eq!(m.elsewhere[0].1, "--instance-id i-0self");
        let ignored: Vec<(usize, &str)> =
            m.ignored.iter().map(|(l, s, _)| (*l, s.as_str())).collect();
        assert_eq!(ignored, [(4, "BACKUP"), (7, "FAULT|STOP")]);
        assert!(m.ignored[0].2.contains("i-0peer"));
        assert!(m.unsure.is_empty());
        // `if`/`elif`/`else` on a variable assigned $3.
        let m = moves(
            "S=$3\nif [ \"$S\" == \"BACKUP\" ]; then\n  aws ec2 associate-address --allocation-id eipalloc-b\nelif [[ $S = MASTER ]]\nthen\n  aws ec2 associate-address --allocation-id eipalloc-a\nelse\n  aws ec2 associate-address --allocation-id eipalloc-c\nfi\nif [ \"$3\" != MASTER ]; then exit 0; fi\naws ec2 associate-address --allocation-id eipalloc-d\n",
            &args,
            Some(3),
            &[],
        );
        assert_eq!(eips(&m), ["eipalloc-a"]);
        assert_eq!(m.ignored.len(), 2);
        // A call after the branches runs in every state: not guessed.
        assert_eq!(m.unsure.len(), 1);
        assert_eq!(m.unsure[0].0, 11);
        // A branch whose states cannot be read is not guessed either.
        let m = moves(
            "case $3 in\n  MAST*) aws ec2 associate-address --allocation-id eipalloc-a ;;\nesac\n",
            &args,
            Some(3),
            &[],
        );
        assert!(m.moves.is_empty() && m.unsure.len() == 1);
        // Not branching on the state: every call counts, as before.
        let m = moves(
            "if [ -f /x ]; then aws ec2 associate-address --allocation-id eipalloc-a; fi\n",
            &args,
            Some(3),
            &[],
        );
        assert!(!m.branching);
        assert_eq!(eips(&m), ["eipalloc-a"]);
        // notify_master's $3 is no state known here, but a test of a state word on it is a
        // branch on the state that cannot be read: not guessed.
        let m = moves(
            "case $3 in BACKUP) aws ec2 associate-address --allocation-id eipalloc-b ;; esac\n",
            &[],
            None,
            &[],
        );
        assert!(m.moves.is_empty() && m.unsure.len() == 1, "{m:?}");
        assert!(m.unsure[0].2.starts_with("aws ec2"), "{m:?}");
    }

    #[test]
    fn a_literal_taken_from_shell_text_ends_at_shell_syntax() {
        for (script, want) in [
            (
                "MYIP=$(curl -s https://checkip.amazonaws.com)\n",
                Some("https://checkip.amazonaws.com"),
            ),
            (
                "MYIP=$(curl -fsS \"https://checkip.amazonaws.com\")\n",
                Some("https://checkip.amazonaws.com"),
            ),
            (
                "MYIP=$(curl -s https://ifconfig.me/ip);\n",
                Some("https://ifconfig.me/ip"),
            ),
            (
                "MYIP=`curl -s http://checkip.amazonaws.com`\n",
                Some("http://checkip.amazonaws.com"),
            ),
            (
                "curl -s http://checkip.amazonaws.com|tr -d x>/tmp/ip\n",
                Some("http://checkip.amazonaws.com"),
            ),
            (
                "curl -s 'https://checkip.amazonaws.com/a;b'&\n",
                Some("https://checkip.amazonaws.com/a;b"),
            ),
            ("curl -s https://\n", None),
        ] {
            let f = recognize(&format!(
                "{script}aws ec2 associate-address --allocation-id eipalloc-1 --region us-east-1; aws sns publish --topic-arn arn:aws:sns:us-east-1:1:t>/dev/null\n"
            ))
            .unwrap();
            assert_eq!(f.checkip_url.as_deref(), want, "{script}");
            assert_eq!(f.region.as_deref(), Some("us-east-1"), "{script}");
            assert_eq!(f.topic_arn.as_deref(), Some("arn:aws:sns:us-east-1:1:t"));
            assert_eq!(f.allocation_id.as_deref(), Some("eipalloc-1"));
            if want.is_none() {
                assert!(
                    f.unresolved
                        .iter()
                        .any(|u| u.contains("not a valid http(s) URL")),
                    "{:?}",
                    f.unresolved
                );
            }
        }
        assert_eq!(
            words("a\\ b \"c\\\"d\" e)f"),
            ["a b", "c\"d", "e", ")", "f"]
        );
        // A `case` arm's pattern on the `case` line, split by `|`.
        let m = moves(
            "case $3 in MASTER | FAULT) aws ec2 associate-address --allocation-id eipalloc-a;; BACKUP)aws ec2 associate-address --allocation-id eipalloc-b;; esac\n",
            &["I".into(), "V".into(), "MASTER".into()],
            Some(3),
            &[],
        );
        // MASTER | FAULT is not a MASTER-only branch: not guessed.
        assert_eq!(m.moves.len(), 0, "{m:?}");
        assert_eq!(m.unsure.len(), 1, "{m:?}");
        assert_eq!(m.ignored.len(), 1);
    }

    #[test]
    fn a_file_that_is_not_all_utf8_is_read_lossily_with_its_first_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"a\nb caf\xe9\nc \xff\n").unwrap();
        let (t, line) = read_text(&p).unwrap();
        assert_eq!(line, Some(2));
        assert_eq!(t, "a\nb caf\u{fffd}\nc \u{fffd}\n");
        std::fs::write(&p, "ok \u{e9}\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), ("ok \u{e9}\n".into(), None));
    }

    #[test]
    fn a_script_testing_a_state_word_in_any_form_branches_on_the_state() {
        let notify = |text: &str| {
            moves(
                text,
                &["I".into(), "V".into(), "MASTER".into()],
                Some(3),
                &[],
            )
        };
        // `[ ] &&`, `[ ] ||`, `test`, on $3.
        let m = notify("[ \"$3\" = \"BACKUP\" ] && aws ec2 associate-address --allocation-id eipalloc-0peer\n[ \"$3\" = \"MASTER\" ] && aws ec2 associate-address --allocation-id eipalloc-0mine\ntest \"$3\" != MASTER || aws ec2 associate-address --allocation-id eipalloc-0also\n");
        assert!(m.branching);
        let ids: Vec<String> = m
            .moves
            .iter()
            .filter_map(|(_, mv)| match mv {
                Move::Eip { allocation_id, .. } => allocation_id.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["eipalloc-0mine", "eipalloc-0also"], "{m:?}");
        assert_eq!(m.ignored.len(), 1, "{m:?}");
        // `notify_master "/x.sh MASTER"`: the script's own $1 is MASTER.
        let text = "STATE=$1\ncase $STATE in\n  MASTER)\n    aws ec2 associate-address --allocation-id eipalloc-0mine\n    ;;\n  BACKUP|FAULT)\n    aws ec2 associate-address --allocation-id eipalloc-0peer\n    ;;\nesac\n";
        let m = moves(text, &["MASTER".into()], None, &[]);
        assert_eq!(m.moves.len(), 1, "{m:?}");
        assert_eq!(m.ignored.len(), 1, "{m:?}");
        // A state word tested on something not known to be the state: nothing is guessed,
        // and the MASTER branch's own call is shown.
        let m = moves(
            "S=$(cat /run/state)\ncase $S in\n  MASTER) aws ec2 associate-address --allocation-id eipalloc-0a ;;\nesac\nif [ \"$S\" = BACKUP ]; then aws ec2 associate-address --allocation-id eipalloc-0b; fi\n",
            &[],
            None,
            &[],
        );
        assert!(m.branching && m.moves.is_empty(), "{m:?}");
        assert_eq!(m.unsure.len(), 2, "{m:?}");
        assert!(m.unsure[0].2.contains("eipalloc-0a"), "{m:?}");
    }

    #[test]
    fn a_move_aimed_at_a_named_target_is_not_this_nodes_claim() {
        let m = moves(
            "PEER=i-0peer\naws ec2 associate-address --allocation-id eipalloc-0a --instance-id $PEER\naws ec2 replace-route --route-table-id rtb-1 --destination-cidr-block 0.0.0.0/0 --instance-id i-0abc\naws ec2 assign-private-ip-addresses --network-interface-id eni-0peer --private-ip-addresses 10.0.1.100\naws ec2 associate-address --allocation-id eipalloc-0b --private-ip-address 10.0.1.12\n",
            &[],
            None,
            &["10.0.1.12".into()],
        );
        assert!(m.moves.is_empty(), "{m:?}");
        let targets: Vec<&str> = m.elsewhere.iter().map(|(_, t, _)| t.as_str()).collect();
        assert_eq!(
            targets,
            [
                "--instance-id i-0peer",
                "--instance-id i-0abc",
                "--network-interface-id eni-0peer",
                "--private-ip-address 10.0.1.12 (a unicast_peer)"
            ]
        );
        // The recognizer both importers use.
        let text = "PEER_INSTANCE=i-0peer1\naws ec2 associate-address --public-ip 54.20.20.20 --instance-id $PEER_INSTANCE\n";
        let f = classify(text).unwrap();
        assert!(
            f.elsewhere
                .as_deref()
                .is_some_and(|e| e.contains("--instance-id i-0peer1, which may be the peer")),
            "{f:?}"
        );
        assert_eq!(recognize(text), None);
        // This node's own id, from instance metadata, is a claim as before.
        let own = "ID=$(curl -s http://169.254.169.254/latest/meta-data/instance-id)\naws ec2 associate-address --public-ip 54.20.20.20 --instance-id $ID\n";
        assert!(recognize(own).is_some());
    }

    #[test]
    fn text_that_is_not_a_command_is_never_read_as_a_call() {
        let text = "# aws ec2 associate-address --allocation-id eipalloc-0comment\necho aws ec2 associate-address --allocation-id eipalloc-0echo\nprintf '%s' aws ec2 associate-address --allocation-id eipalloc-0printf\nlogger aws ec2 associate-address --allocation-id eipalloc-0logger\ncat <<EOT > /tmp/note\naws ec2 associate-address --allocation-id eipalloc-0heredoc\nEOT\ncat <<-'X'\n\taws ec2 associate-address --allocation-id eipalloc-0dash\n\tX\naws ec2 associate-address --allocation-id eipalloc-0real\n";
        let m = moves(text, &[], None, &[]);
        assert_eq!(
            m.moves,
            [(
                11,
                Move::Eip {
                    allocation_id: Some("eipalloc-0real".into()),
                    public_ip: None,
                    private_ip: None
                }
            )],
            "{m:?}"
        );
        let f = classify("cat <<EOT\naws ec2 associate-address --allocation-id eipalloc-0heredoc\nEOT\necho aws opsworks associate-elastic-ip\n");
        assert_eq!(f, None);
    }

    #[test]
    fn every_echoed_line_goes_through_the_shared_redaction() {
        for (secret, line) in [
            ("APITOK3", "/x/backup.sh --api-token APITOK3 --password PW4"),
            ("PW4", "/x/backup.sh --api-token APITOK3 --password PW4"),
            (
                "BEARER5",
                "/usr/bin/curl -H 'Authorization: Bearer BEARER5' https://h/x",
            ),
            (
                "xoxb-1",
                "curl -H Authorization: Bearer xoxb-1 https://hooks/x",
            ),
            ("K1", "tool --api-key K1 run"),
            ("K2", "curl -H 'X-Api-Key: K2' http://x"),
            ("PW5", "mysql -uroot -pPW5 db"),
            ("S1", "AWS_SECRET_ACCESS_KEY=S1 aws ec2 associate-address"),
            ("S2", "MY_TOKEN=S2 x"),
            ("S3", "PASSWORD=S3"),
            ("S4", "curl https://h/x?a=1&api_key=S4&b=2"),
            ("S5", "curl 'https://h/x?token=S5'"),
        ] {
            let r = redact(line);
            assert!(!r.contains(secret), "{line} -> {r}");
            assert!(r.contains("***"), "{line} -> {r}");
        }
        assert_eq!(
            redact("aws ec2 associate-address --allocation-id eipalloc-0a --region us-east-1"),
            "aws ec2 associate-address --allocation-id eipalloc-0a --region us-east-1"
        );
    }
}
