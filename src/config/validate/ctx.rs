//! [`Ctx`]: where a value being validated sits (file and item) and where its errors go, with
//! the parsers of the value kinds that many sections share (durations, URLs, addresses, ids).

use super::super::defaults::limits::{self, Durations};
use super::super::Errors;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// The file and item (`rule "web"`, `[aws]`) being validated, and the error list.
///
/// The one idiom of this module: every parser reports its own error and returns `None`, every
/// check of a section runs, and the section ends with [`Ctx::finish`], which builds the model
/// value only if nothing was reported since the `Ctx` (or its [`Ctx::scope`]) began. So no
/// error hides another, and `?` inside `finish` only unwraps values already known good.
pub(crate) struct Ctx<'a> {
    file: &'a Path,
    item: &'a str,
    errs: &'a mut Errors,
    start: usize,
    /// Keys written but not parsed (reported already): not to be reported missing.
    unparsed: &'a [String],
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a Path, item: &'a str, errs: &'a mut Errors) -> Self {
        let start = errs.0.len();
        Ctx {
            file,
            item,
            errs,
            start,
            unparsed: &[],
        }
    }

    /// Knowing which of the item's keys did not parse (see [`Ctx::unparsed`]).
    pub fn with_unparsed(mut self, unparsed: &'a [String]) -> Self {
        self.unparsed = unparsed;
        self
    }

    /// Was `key` written but reported as unparsable? Then it is not missing: a check for it
    /// says nothing more, so the item gets that key's one error only.
    pub fn unparsed(&self, key: &str) -> bool {
        self.unparsed.iter().any(|k| k == key)
    }

    /// The same file and item, counting errors from here on: for a part of a section (the
    /// `check` of a rule) that is built or not on its own.
    pub fn scope(&mut self) -> Ctx<'_> {
        Ctx::new(self.file, self.item, self.errs).with_unparsed(self.unparsed)
    }

    pub fn err(&mut self, message: impl Into<String>) {
        self.errs.push(self.file, Some(self.item), message);
    }

    /// Report `message`; nothing to build from this value.
    pub fn fail<T>(&mut self, message: impl Into<String>) -> Option<T> {
        self.err(message);
        None
    }

    /// Was anything reported since this `Ctx` began?
    pub fn failed(&self) -> bool {
        self.errs.0.len() > self.start
    }

    /// End a section: `build` it if nothing in it was reported.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Option<T> {
        if self.failed() {
            None
        } else {
            build()
        }
    }

    /// A human duration (`"10s"`, `"2m"`) within `range`; `default` when unset.
    pub fn duration(
        &mut self,
        text: Option<&str>,
        default: Duration,
        range: Durations,
        what: &str,
    ) -> Option<Duration> {
        let Some(text) = text else {
            return Some(default);
        };
        let fmt = |d: &Duration| humantime::format_duration(*d).to_string();
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => self.fail(format!("`{what}` must be greater than zero")),
            Ok(d) if !range.contains(&d) => self.fail(format!(
                "`{what}` = {text:?}: must be between {} and {}",
                fmt(range.start()),
                fmt(range.end())
            )),
            Ok(d) => Some(d),
            Err(e) => self.fail(format!(
                "`{what}` = {text:?}: not a duration ({e}); write it like \"10s\", \"2m\" or \"1h30m\""
            )),
        }
    }

    /// An `http://` or `https://` URL with a host.
    pub fn url(&mut self, s: &str, what: &str) -> Option<reqwest::Url> {
        match reqwest::Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => self.fail(format!(
                "`{what}` = {:?}: must be an http:// or https:// URL with a host",
                redact(s)
            )),
            Err(e) => self.fail(format!("`{what}` = {:?}: not a URL ({e})", redact(s))),
        }
    }

    /// An IPv4 CIDR block (`10.0.1.0/24`), with no host bits set.
    pub fn cidr(&mut self, s: &str, what: &str) -> Option<ipnet::Ipv4Net> {
        match s.parse::<ipnet::Ipv4Net>() {
            Ok(n) if n.trunc() == n => Some(n),
            Ok(n) => self.fail(format!(
                "`{what}` = {s:?}: host bits set; the block is {}",
                n.trunc()
            )),
            Err(_) => self.fail(format!(
                "`{what}` = {s:?}: not an IPv4 CIDR block (write it like \"10.0.1.0/24\")"
            )),
        }
    }

    pub fn ipv4(&mut self, s: &str, what: &str) -> Option<Ipv4Addr> {
        match s.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => self.fail(format!("`{what}` = {s:?}: not an IPv4 address")),
        }
    }

    /// An SNS topic ARN: `arn:PARTITION:sns:REGION:ACCOUNT:NAME`, every field present and
    /// well-formed, since SNS needs each of them to find the topic.
    pub fn arn(&mut self, s: &str, what: &str) -> Option<String> {
        let parts: Vec<&str> = s.split(':').collect();
        let shape =
            || format!("`{what}` = {s:?}: not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)");
        if !(parts.len() >= 6 && parts[0] == "arn" && parts[2] == "sns") {
            return self.fail(shape());
        }
        let (partition, region, account, name) = (parts[1], parts[3], parts[4], &parts[5..]);
        let problem = if !is_partition(partition) {
            Some("the partition is \"aws\" (or \"aws-cn\", \"aws-us-gov\", ...)")
        } else if !is_region(region) {
            Some("the region looks like \"us-east-1\"")
        } else if !(account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())) {
            Some("the account is 12 digits")
        } else if !(name.len() == 1 && is_topic_name(name[0])) {
            Some("the topic name is one field, not empty, without blanks")
        } else {
            None
        };
        match problem {
            None => Some(s.to_owned()),
            Some(p) => self.fail(format!("{}: {p}", shape())),
        }
    }

    /// An AWS id such as `i-0123...` or `eipalloc-0123...`.
    pub fn prefixed_id(&mut self, s: &str, prefix: &str, what: &str) -> Option<String> {
        let rest = s.strip_prefix(prefix).unwrap_or("");
        if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()) {
            Some(s.to_owned())
        } else {
            self.fail(format!(
                "`{what}` = {s:?}: expected an id like {prefix}0123456789abcdef0"
            ))
        }
    }

    /// An AWS region name (`us-east-1`): a typo here would only show as failing calls.
    pub fn region(&mut self, s: &str) -> Option<String> {
        if is_region(s) {
            Some(s.to_owned())
        } else {
            self.fail(format!(
                "`region` = {s:?}: not a region name like \"us-east-1\""
            ))
        }
    }

    /// A path the daemon opens whatever its working directory: absolute, like every path
    /// in the configuration.
    pub fn absolute(&mut self, p: &Path, what: &str) -> Option<std::path::PathBuf> {
        if p.is_absolute() {
            Some(p.to_path_buf())
        } else {
            self.fail(format!(
                "`{what}` = {:?}: use an absolute path",
                p.display().to_string()
            ))
        }
    }

    /// A program and its arguments, run without a shell (`exec` actions, `program` checks):
    /// not empty, an absolute program, no NUL byte. `example` shows the shape in the error.
    pub fn command(&mut self, c: Option<&[String]>, example: &str) -> Option<Vec<String>> {
        match c {
            None if self.unparsed("command") => None,
            None | Some([]) => self.fail(format!(
                "missing `command`: the program and its arguments, like {example}"
            )),
            Some([program, ..]) if !program.starts_with('/') => self.fail(format!(
                "`command`: the program {program:?} must be an absolute path (the daemon does not search PATH, and runs no shell)")),
            Some(c) if c.iter().any(|a| a.contains('\0')) => {
                self.fail("`command`: an argument contains a NUL byte")
            }
            Some(c) => Some(c.to_vec()),
        }
    }

    /// A HAProxy proxy name as `[haproxy]` and `type = "haproxy"` name it. "Names may contain
    /// upper and lower case letters, digits, '-', '_', '.' and ':'" (HAProxy configuration
    /// manual); what is refused here is what can never be in one and would split the name in
    /// `show stat`: blanks and control characters. Quotes and backslashes are let through, as
    /// the Chef cookbook's escaping test writes them (scripts/test-chef.sh).
    pub fn haproxy_name(&mut self, s: &str, what: &str) -> Option<String> {
        if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some(s.to_owned())
        } else {
            self.fail(format!(
                "`{what}` = {s:?}: not a HAProxy proxy name (letters, digits, - _ . :, no spaces)"
            ))
        }
    }

    /// An Elastic IP's address: one that can be public. Private and reserved addresses never
    /// are; the documentation ranges (RFC 5737) are let through for examples and tests.
    pub fn eip(&mut self, s: &str, what: &str) -> Option<Ipv4Addr> {
        let ip = self.ipv4(s, what)?;
        match not_public(ip) {
            None => Some(ip),
            Some(kind) => self.fail(format!(
                "`{what}` = {s:?}: {kind}, which can never be an Elastic IP"
            )),
        }
    }
}

/// HAProxy's name set: letters, digits, `-_.:`, 1 to 100 of them.
pub(crate) fn is_haproxy_name(s: &str) -> bool {
    limits::HAPROXY_IDENT_LEN.contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// `us-east-1`, `us-gov-west-1`, `ap-southeast-2`: two letters, words, then a number.
pub(crate) fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let word = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase());
    parts.len() >= 3
        && parts[0].len() == 2
        && word(&parts[0])
        && parts[1..parts.len() - 1].iter().all(word)
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// `aws`, `aws-cn`, `aws-us-gov`, `aws-iso-b`.
fn is_partition(s: &str) -> bool {
    s == "aws"
        || s.strip_prefix("aws-").is_some_and(|rest| {
            rest.split('-')
                .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()))
        })
}

/// A topic name as the ARN's last field: not empty, no blanks or control characters. SNS
/// itself takes only `A-Z a-z 0-9 - _` (and `.fifo`), but a stricter check here would refuse
/// what the Chef cookbook's escaping test writes (scripts/test-chef.sh).
fn is_topic_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Why `ip` can never be a public address, if it cannot.
fn not_public(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_private() {
        Some("a private address (RFC 1918)")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || ip.octets()[0] == 0 {
        Some("an unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.octets()[0] >= 240 {
        Some("a reserved address")
    } else if ip.octets()[0] == 100 && (64..128).contains(&ip.octets()[1]) {
        Some("a shared (carrier-grade NAT) address")
    } else {
        None
    }
}

/// A URL as it may appear in an error message: without a password in it.
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &s[..scheme], &s[at + 1..])
        }
        _ => s.to_owned(),
    }
}

/// An optional value, parsed when present: `Some(None)` when absent, `None` when it was bad.
pub(crate) fn optional<T>(
    v: Option<&str>,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Option<Option<T>> {
    match v {
        None => Some(None),
        Some(s) => parse(s).map(Some),
    }
}
