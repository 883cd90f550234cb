//! [`Ctx`]: where a value being validated sits (file and item) and where its errors go, with
//! the parsers of the value kinds that many sections share (durations, URLs, addresses, ids).

use super::super::defaults::limits::Durations;
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
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a Path, item: &'a str, errs: &'a mut Errors) -> Self {
        let start = errs.0.len();
        Ctx {
            file,
            item,
            errs,
            start,
        }
    }

    /// The same file and item, counting errors from here on: for a part of a section (the
    /// `check` of a rule) that is built or not on its own.
    pub fn scope(&mut self) -> Ctx<'_> {
        Ctx::new(self.file, self.item, self.errs)
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

    pub fn ipv4(&mut self, s: &str, what: &str) -> Option<Ipv4Addr> {
        match s.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => self.fail(format!("`{what}` = {s:?}: not an IPv4 address")),
        }
    }

    /// An SNS topic ARN.
    pub fn arn(&mut self, s: &str, what: &str) -> Option<String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() >= 6 && parts[0] == "arn" && parts[2] == "sns" {
            Some(s.to_owned())
        } else {
            self.fail(format!(
                "`{what}` = {s:?}: not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
            ))
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
        let ok = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Some(s.to_owned())
        } else {
            self.fail(format!(
                "`region` = {s:?}: not a region name like \"us-east-1\""
            ))
        }
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
