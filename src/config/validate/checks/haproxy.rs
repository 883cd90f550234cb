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
    let mut min_up = match r.min_up {
        None => None,
        Some(n) if (1..=limits::SERVERS_MAX).contains(&n) => Some(n as u32),
        Some(n) => cx.fail(format!(
            "`min_up` = {n}: must be between 1 and {} servers",
            limits::SERVERS_MAX
        )),
    };
    let mut min_up_ratio = match r.min_up_ratio {
        None => None,
        Some(x) if x > 0.0 && x <= 1.0 => Some(x),
        Some(x) => cx.fail(format!(
            "`min_up_ratio` = {x}: must be more than 0 and at most 1 (0.5 is half the servers)"
        )),
    };
    let mut stats_socket = r.stats_socket.clone();
    let mut frontend = r.frontend.clone();
    let mut backend = r.backend.clone();
    if r.stats_socket.is_none() && r.health_url.is_none() {
        match fallback {
            Some(f) => {
                stats_socket = f.stats_socket.clone();
                health_url = Some(f.health_url.clone());
                frontend = frontend.or_else(|| f.frontend.clone());
                // `[haproxy]`'s minimums belong to its backend: they come along only with it,
                // and only when the check sets none of its own.
                if backend.is_none() {
                    backend = f.backend.clone();
                    if min_up.is_none() && min_up_ratio.is_none() {
                        min_up = f.min_up;
                        min_up_ratio = f.min_up_ratio;
                    }
                }
            }
            None => stats_socket = Some(defaults::HAPROXY_SOCKET.into()),
        }
    }
    // A `backend` set but unparsable has had its one error already.
    let backend_unparsed = cx.unparsed("backend") || cx.unparsed("check.backend");
    if (r.min_up.is_some() || r.min_up_ratio.is_some()) && backend.is_none() && !backend_unparsed {
        cx.err("`min_up` and `min_up_ratio` count the servers of a backend: set `backend` too");
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
            min_up,
            min_up_ratio,
        })
    })
}
