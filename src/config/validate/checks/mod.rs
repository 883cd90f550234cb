//! A rule's `check`, one file per kind, dispatched on [`RawCheck`].

mod backend_sync;
mod egress;
pub(super) mod haproxy;
mod http;

use super::super::model::CheckSpec;
use super::super::raw::RawCheck;
use super::ctx::Ctx;
use super::rule::Env;

/// The check's own errors go to `cx`; None when there were any.
pub(super) fn check(raw: &RawCheck, env: &Env<'_>, cx: Ctx<'_>) -> Option<CheckSpec> {
    match raw {
        RawCheck::Http(h) => http::check(h, cx).map(CheckSpec::Http),
        RawCheck::Haproxy(h) => haproxy::probe(h, env.haproxy, cx).map(CheckSpec::Haproxy),
        RawCheck::Egress(e) => egress::check(e, env.egress, cx).map(CheckSpec::Egress),
        RawCheck::BackendSync(b) => {
            backend_sync::check(b, env.haproxy, cx).map(|b| CheckSpec::BackendSync(Box::new(b)))
        }
    }
}
