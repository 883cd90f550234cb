//! `type = "egress"`: this node's traffic leaves from `expect`, as checkip sees it.

use super::super::super::model::{EgressCheckSpec, EgressSettings};
use super::super::super::raw::RawEgressCheck;
use super::super::ctx::Ctx;

/// `egress` is `[egress]`, whose `checkip_url` is the default; None when it is broken.
pub(super) fn check(
    e: &RawEgressCheck,
    egress: Option<&EgressSettings>,
    mut cx: Ctx<'_>,
) -> Option<EgressCheckSpec> {
    let expect = cx.eip(&e.expect, "check.expect");
    let checkip_url = match &e.checkip_url {
        Some(u) => cx.url(u, "check.checkip_url"),
        None => egress.map(|g| g.checkip_url.clone()),
    };
    cx.finish(|| {
        Some(EgressCheckSpec {
            expect: expect?,
            checkip_url: checkip_url?,
        })
    })
}
