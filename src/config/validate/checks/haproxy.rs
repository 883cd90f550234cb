//! How to tell that a HAProxy is ready: `type = "haproxy"` checks and the `[haproxy]` section
//! (which is also their fallback), validated alike.

use super::super::super::defaults::{self, limits};
use super::super::super::model::HaproxyProbeSpec;
use super::super::super::raw::RawHaproxy;
use super::super::ctx::{optional, Ctx};

/// `fallback` fills in where the check names no probe of its own (the `[haproxy]` section);
/// None for `[haproxy]` itself, or when it is broken (already reported).
pub(in super::super) fn probe(
    r: &RawHaproxy,
    fallback: Option<&HaproxyProbeSpec>,
    mut cx: Ctx<'_>,
) -> Option<HaproxyProbeSpec> {
    let mut health_url = optional(r.health_url.as_deref(), |s| cx.url(s, "health_url"));
    let timeout = cx.duration(
        r.timeout.as_deref(),
        defaults::HAPROXY_TIMEOUT,
        limits::SHORT_TIMEOUT,
        "timeout",
    );
    if let Some(p) = &r.stats_socket {
        cx.absolute(p, "stats_socket");
    }
    for (name, what) in [(&r.frontend, "frontend"), (&r.backend, "backend")] {
        if let Some(n) = name {
            cx.haproxy_name(n, what);
        }
    }
    let mut stats_socket = r.stats_socket.clone();
    let mut frontend = r.frontend.clone();
    let mut backend = r.backend.clone();
    if r.stats_socket.is_none() && r.health_url.is_none() {
        match fallback {
            Some(f) => {
                stats_socket = f.stats_socket.clone();
                health_url = Some(f.health_url.clone());
                frontend = frontend.or_else(|| f.frontend.clone());
                backend = backend.or_else(|| f.backend.clone());
            }
            None => stats_socket = Some(defaults::HAPROXY_SOCKET.into()),
        }
    }
    if (frontend.is_some() || backend.is_some()) && stats_socket.is_none() {
        cx.err(
            "`frontend` and `backend` are checked through the stats socket: set `stats_socket` too",
        );
    }
    cx.finish(|| {
        Some(HaproxyProbeSpec {
            stats_socket,
            health_url: health_url?,
            frontend,
            backend,
            timeout: timeout?,
        })
    })
}
