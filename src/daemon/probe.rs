//! One probe per rule, built once with its configuration: a check, which has no side effects
//! and runs once per `interval`, or a backend sync, a stateful job that changes HAProxy and
//! paces itself. Each owns its [`Pacing`]; the engine only runs probes and counts results.

use crate::checks::{self, Outcome};
use crate::config::{CheckSpec, EgressCheckSpec, HaproxyProbeSpec, HttpCheckSpec, Rule};
use crate::engine::Pacing;
use crate::sync::{self, Syncer};

/// What one rule runs each cycle.
pub enum Probe {
    /// `type = "http"`, with its kept connection when it has a `keep_alive`.
    Http(HttpCheckSpec, Option<Box<checks::http::KeptConnection>>),
    /// `type = "haproxy"`: the local HAProxy ready to serve.
    Haproxy(HaproxyProbeSpec),
    /// `type = "egress"`: this node's traffic leaves from the expected address.
    Egress(EgressCheckSpec),
    /// `type = "tcp"`, `"program"`, `"process"` and `"file"`: no state between runs.
    Plain(CheckSpec),
    /// `type = "backend_sync"`: one round of the rule's syncer. Only its own rule's task uses
    /// it; the mutex only makes that visible to the compiler.
    Sync {
        syncer: Box<tokio::sync::Mutex<Syncer>>,
        pacing: Pacing,
    },
}

impl Probe {
    /// The probe of an `http` rule with this `recover_after`.
    pub fn http(spec: HttpCheckSpec, recover_after: u32) -> Probe {
        let kept = spec
            .keep_alive
            .map(|_| Box::new(checks::http::KeptConnection::new(recover_after)));
        Probe::Http(spec, kept)
    }

    /// The probe of a backend-sync rule.
    pub fn sync(rule: &Rule, spec: &crate::config::BackendSyncSpec, syncer: Syncer) -> Probe {
        Probe::Sync {
            syncer: Box::new(tokio::sync::Mutex::new(syncer)),
            pacing: sync::pacing(rule, spec),
        }
    }

    /// One run. `http`: the configuration's HTTP client.
    ///
    /// Every probe's future is boxed, one allocation per run: each rule's task is as large as
    /// the largest future it may await, and kept inline, even the `http` check's (hyper's
    /// connection and request, 1.7 kB) would be held by every rule between its checks too,
    /// 1.7 MB at 1,000 rules (memory per rule, docs/benchmarks.md). A backend sync's round or
    /// a check through the AWS SDK would make it several times larger.
    pub async fn run(&self, http: &reqwest::Client) -> Outcome {
        match self {
            Probe::Http(h, kept) => Box::pin(checks::http::probe(http, h, kept.as_deref())).await,
            Probe::Haproxy(h) => Box::pin(checks::haproxy::probe(h, http)).await,
            Probe::Egress(e) => Box::pin(checks::egress(http, e)).await,
            Probe::Plain(c) => Box::pin(checks::run(c, http)).await,
            Probe::Sync { syncer, .. } => {
                Box::pin(async { syncer.lock().await.round().await }).await
            }
        }
    }

    /// How often it runs and how long a run may take.
    pub fn pacing(&self, rule: &Rule) -> Pacing {
        match self {
            Probe::Sync { pacing, .. } => *pacing,
            _ => Pacing::every_interval(rule),
        }
    }
}
