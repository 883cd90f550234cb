//! `type = "http"`: a URL answers with an expected status (and body).

use super::super::super::defaults::{self, limits};
use super::super::super::model::{HttpCheckSpec, StatusSet};
use super::super::super::raw::{RawHttpCheck, StatusPattern};
use super::super::ctx::Ctx;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// The methods a check may use, written in any case (`method = "head"`).
///
/// Parsed from the raw string here rather than by serde: serde's unknown-variant error would
/// be reported with the TOML errors, before this rule's other errors, and in other words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Post,
    Options,
}

#[derive(Debug, thiserror::Error)]
#[error("`method` = {0:?}: use GET, HEAD, POST or OPTIONS")]
struct UnknownMethod(String);

impl FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, UnknownMethod> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Ok(Method::Get),
            "HEAD" => Ok(Method::Head),
            "POST" => Ok(Method::Post),
            "OPTIONS" => Ok(Method::Options),
            other => Err(UnknownMethod(other.to_owned())),
        }
    }
}

impl From<Method> for reqwest::Method {
    fn from(m: Method) -> Self {
        match m {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Options => reqwest::Method::OPTIONS,
        }
    }
}

pub(super) fn check(
    h: &RawHttpCheck,
    interval: Option<std::time::Duration>,
    timeout: Option<std::time::Duration>,
    mut cx: Ctx<'_>,
) -> Option<HttpCheckSpec> {
    let url = cx.url(&h.url, "url");
    let keep_alive = match h.keep_alive.as_deref() {
        None => Some(None),
        Some(text) => keep_alive(text, url.as_ref(), interval, &mut cx).map(Some),
    };
    let method = match h.method.as_deref().map(Method::from_str) {
        None => Some(defaults::HTTP_METHOD),
        Some(Ok(m)) => Some(m.into()),
        Some(Err(e)) => cx.fail(e.to_string()),
    };
    let expect_status = match &h.expect_status {
        None => Some(StatusSet::default_ok()),
        Some(list) if list.is_empty() => {
            cx.fail("`expect_status` is empty: list codes like 200 or classes like \"2xx\"")
        }
        Some(list) => {
            let ranges: Vec<_> = list.iter().map(|p| status_pattern(p, &mut cx)).collect();
            ranges
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(StatusSet)
        }
    };
    if let Some(host) = &h.host {
        if host.is_empty()
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            cx.err(format!("`host` = {host:?}: not a host name"));
        }
    }
    if h.body_contains.as_deref() == Some("") {
        cx.err("`body_contains` is empty: remove it or give the text to look for");
    } else if let Some(b) = h
        .body_contains
        .as_deref()
        .filter(|b| b.len() > crate::checks::http::BODY_LIMIT)
    {
        cx.err(format!(
            "`body_contains` is {} bytes: only the body's first {} bytes are looked at, so it could never be found",
            b.len(),
            crate::checks::http::BODY_LIMIT
        ));
    } else if h.body_contains.is_some() && method == Some(reqwest::Method::HEAD) {
        cx.err("`body_contains` cannot be checked with method HEAD (no body)");
    }
    cx.finish(|| {
        Some(HttpCheckSpec {
            url: url?,
            method: method?,
            expect_status: expect_status?,
            body_contains: h.body_contains.clone(),
            host: h.host.clone(),
            timeout: timeout?,
            keep_alive: keep_alive?,
        })
    })
}

/// `keep_alive`: a duration longer than `interval` (else no connection would serve a second
/// check), on a plain `http` URL without credentials (the checks hyper's connection API
/// makes; https and Basic authentication go through reqwest, which opens one each time).
fn keep_alive(
    text: &str,
    url: Option<&reqwest::Url>,
    interval: Option<std::time::Duration>,
    cx: &mut Ctx<'_>,
) -> Option<std::time::Duration> {
    let d = cx.duration(
        Some(text),
        std::time::Duration::ZERO,
        limits::KEEP_ALIVE,
        "keep_alive",
    )?;
    if let Some(i) = interval.filter(|i| d <= *i) {
        return cx.fail(format!(
            "`keep_alive` ({}) must be longer than `interval` ({}): a connection is kept for the checks that follow within it",
            humantime::format_duration(d),
            humantime::format_duration(i)
        ));
    }
    match url {
        Some(u) if u.scheme() != "http" => cx.fail(
            "`keep_alive` is for plain http URLs: an https check opens a connection each time",
        ),
        Some(u) if !u.username().is_empty() || u.password().is_some() => cx.fail(
            "`keep_alive` is for URLs without credentials: a check with Basic authentication opens a connection each time",
        ),
        _ => Some(d),
    }
}

/// `200` or `"2xx"`, as the statuses it stands for.
fn status_pattern(p: &StatusPattern, cx: &mut Ctx<'_>) -> Option<RangeInclusive<u16>> {
    match p {
        StatusPattern::Code(c) if limits::HTTP_STATUS.contains(c) => Some(*c as u16..=*c as u16),
        StatusPattern::Code(c) => cx.fail(format!(
            "`expect_status`: {c} is not an HTTP status ({}-{})",
            limits::HTTP_STATUS.start(),
            limits::HTTP_STATUS.end()
        )),
        StatusPattern::Class(s) => {
            let b = s.as_bytes();
            if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && s[1..].eq_ignore_ascii_case("xx") {
                let base = u16::from(b[0] - b'0') * 100;
                Some(base..=base + 99)
            } else {
                cx.fail(format!(
                    "`expect_status`: {s:?} is neither a status code nor a class like \"2xx\""
                ))
            }
        }
    }
}
