//! A rule's `check`, one file per kind, dispatched on [`RawCheck`].

mod backend_sync;
mod egress;
mod file;
pub(super) mod haproxy;
mod http;
mod process;
mod program;
mod tcp;

use super::super::model::CheckSpec;
use super::super::raw::RawCheck;
use super::ctx::Ctx;
use super::rule::Env;
use std::time::Duration;

/// The check's own errors go to `cx`; None when there were any. `rule`: the rule's name, which
/// a program is told; `timeout`: the rule's, which the kinds that end themselves (`tcp`,
/// `program`) keep; `interval`: the rule's, which an `http` check's `keep_alive` must exceed;
/// None when broken (reported).
pub(super) fn check(
    raw: &RawCheck,
    env: &Env<'_>,
    rule: &str,
    (interval, timeout): (Option<Duration>, Option<Duration>),
    cx: Ctx<'_>,
) -> Option<CheckSpec> {
    match raw {
        RawCheck::Http(h) => http::check(h, interval, timeout, cx).map(CheckSpec::Http),
        RawCheck::Haproxy(h) => haproxy::probe(h, env.haproxy, cx).map(CheckSpec::Haproxy),
        RawCheck::Egress(e) => egress::check(e, env.egress, cx).map(CheckSpec::Egress),
        RawCheck::Tcp(t) => tcp::check(t, timeout, cx).map(CheckSpec::Tcp),
        RawCheck::Program(p) => program::check(p, rule, timeout, cx).map(CheckSpec::Program),
        RawCheck::Process(p) => process::check(p, cx).map(CheckSpec::Process),
        RawCheck::File(f) => file::check(f, cx).map(CheckSpec::File),
        RawCheck::BackendSync(b) => {
            backend_sync::check(b, env.haproxy, cx).map(|b| CheckSpec::BackendSync(Box::new(b)))
        }
    }
}
