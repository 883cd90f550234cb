//! Turns a validated [`Config`] into a running daemon: builds the clients once, hands them to
//! the actions, and gives the engine its [`Effects`]. `--once` and `run` share all of this.

use crate::actions::alerts::Alerter;
use crate::actions::claim_eip::{ClaimEip, ClaimEnv};
use crate::actions::notify::SnsNotify;
use crate::actions::{Action, ActionContext, ActionOutcome};
use crate::checks::{self, Outcome};
use crate::config::{ActionSpec, Config, Rule};
use crate::engine::Effects;
use crate::providers::aws::{self, ec2::Ec2, imds::IdentitySource, sns::Sns};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The live world: real probes and real actions.
pub struct Live {
    http: reqwest::Client,
    actions: BTreeMap<String, Action>,
}

impl Effects for Live {
    async fn check(&self, rule: &Rule) -> Outcome {
        checks::run(&rule.check, &self.http).await
    }

    async fn act(&self, action: &str, ctx: &ActionContext) -> ActionOutcome {
        match self.actions.get(action) {
            Some(a) => a.run(ctx).await,
            // Config validation guarantees every reference resolves.
            None => ActionOutcome::Error(format!("no action named {action}")),
        }
    }
}

/// A built daemon: its effects, its alert outbox, and the switch that stops it.
pub struct Daemon {
    pub live: Arc<Live>,
    pub alerter: Alerter,
    pub alert_task: tokio::task::JoinHandle<()>,
    pub shutdown: watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("no AWS region: set [aws] region or AWS_REGION (or run on EC2, where instance metadata gives it)")]
    NoRegion,
}

pub async fn build(config: &Config, dry_run: bool) -> Result<Daemon, BuildError> {
    let http = checks::http_client()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let needs_aws = config
        .actions
        .values()
        .any(|a| matches!(a, ActionSpec::ClaimEip(_) | ActionSpec::Sns(_)));
    let (ec2, sns) = if dry_run || !needs_aws {
        (None, None)
    } else {
        let sdk = aws::sdk_config(&config.aws).await;
        if sdk.region().is_none() {
            return Err(BuildError::NoRegion);
        }
        (Some(Ec2::new(&sdk)), Some(Sns::new(&sdk)))
    };
    let (alerter, alert_task) = Alerter::spawn(sns, shutdown_rx);
    let claim_env = Arc::new(ClaimEnv {
        ec2,
        http: http.clone(),
        egress: config.egress.clone(),
        haproxy: config.haproxy.clone(),
        identity: Arc::new(IdentitySource::new(config.node.clone())),
        alerter: alerter.clone(),
        subject_prefix: config.alerts.subject_prefix.clone(),
        verify_for: Duration::from_secs(10),
    });
    let actions = config
        .actions
        .iter()
        .map(|(name, spec)| {
            let action = match spec {
                ActionSpec::ClaimEip(c) => {
                    Action::ClaimEip(ClaimEip::new(c.clone(), claim_env.clone()))
                }
                ActionSpec::Sns(s) => Action::Sns(SnsNotify::new(
                    s.clone(),
                    alerter.clone(),
                    config.alerts.subject_prefix.clone(),
                )),
            };
            (name.clone(), action)
        })
        .collect();
    Ok(Daemon {
        live: Arc::new(Live { http, actions }),
        alerter,
        alert_task,
        shutdown,
    })
}
