//! The alert outbox. Actions queue alerts and move on; one background task publishes them to
//! SNS, retrying with backoff. An SNS outage never delays or undoes a claim, and an alert is
//! dropped only when the daemon stops before it could be delivered (which is logged). With a
//! state directory, queued alerts are saved and sent after a restart (see `crate::state`).

use crate::providers::aws::sns::Sns;
use crate::state::StateStore;
use crate::telemetry::events;
use crate::telemetry::metrics::Metrics;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Alert {
    pub topic_arn: String,
    pub subject: String,
    pub message: String,
}

/// Cheap to clone; every clone feeds the same outbox.
#[derive(Clone)]
pub struct Alerter {
    tx: mpsc::UnboundedSender<(u64, Alert)>,
    store: StateStore,
    pending: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

/// Backoff between publish attempts: 1 s doubling to at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Alerter {
    /// Start the outbox. Without `sns`, alerts are logged and dropped in a dry run, and kept
    /// in the state directory otherwise (the configuration makes no AWS call).
    pub fn spawn(
        sns: Option<Sns>,
        dry_run: bool,
        shutdown: watch::Receiver<bool>,
        store: StateStore,
        metrics: Arc<Metrics>,
        history: crate::history::History,
    ) -> (Alerter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let alerter = Alerter {
            tx,
            store: store.clone(),
            pending: Arc::new(AtomicUsize::new(0)),
            drained: Arc::new(Notify::new()),
        };
        let task = tokio::spawn(deliver(
            rx,
            shutdown,
            Delivery {
                sns,
                dry_run,
                pending: alerter.pending.clone(),
                drained: alerter.drained.clone(),
                store,
                metrics,
                history,
            },
        ));
        (alerter, task)
    }

    pub fn send(&self, alert: Alert) {
        let id = self
            .store
            .alert_queued(&alert.topic_arn, &alert.subject, &alert.message);
        self.enqueue(id, alert);
    }

    /// Queue an alert already saved in the state file as `id`: by a previous run, or in the
    /// same write that settled the claim it announces.
    pub fn resend(&self, id: u64, alert: Alert) {
        self.enqueue(id, alert);
    }

    fn enqueue(&self, id: u64, alert: Alert) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        tracing::info!(event = events::ALERT_QUEUED, topic = %alert.topic_arn, subject = %alert.subject);
        if self.tx.send((id, alert)).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(event = events::ALERT_DROPPED, "alert outbox is closed");
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Wait until every queued alert is delivered, or `within` has passed. Returns how many
    /// are still undelivered.
    pub async fn flush(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.drained.notified();
            if self.pending() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending();
            }
        }
    }
}

/// What the delivery task works with besides its queue and the stop signal.
struct Delivery {
    sns: Option<Sns>,
    dry_run: bool,
    /// Alerts queued and not yet delivered or given up on, shared with the [`Alerter`].
    pending: Arc<AtomicUsize>,
    /// Notified when `pending` reaches zero.
    drained: Arc<Notify>,
    store: StateStore,
    metrics: Arc<Metrics>,
    /// Stamped when SNS takes a claim's alert (`alert_sent` in `status --history`).
    history: crate::history::History,
}

async fn deliver(
    mut rx: mpsc::UnboundedReceiver<(u64, Alert)>,
    mut shutdown: watch::Receiver<bool>,
    d: Delivery,
) {
    let Delivery {
        sns,
        dry_run,
        pending,
        drained,
        store,
        metrics,
        history,
    } = d;
    loop {
        // Queued alerts go first; an idle outbox stops when the daemon does.
        let (id, alert) = tokio::select! {
            biased;
            a = rx.recv() => match a {
                Some(a) => a,
                None => break,
            },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let mut backoff = Duration::from_secs(1);
        let mut attempt = 1u32;
        loop {
            let Some(sns) = &sns else {
                if dry_run {
                    tracing::info!(event = events::DRY_RUN, call = "sns:Publish", topic = %alert.topic_arn, subject = %alert.subject, message = %alert.message);
                    store.alert_done(id);
                } else {
                    // Saved by an earlier run whose configuration had SNS; this one makes no
                    // AWS call. Kept in the state directory for a start that can send it.
                    tracing::warn!(event = events::ALERT_KEPT, topic = %alert.topic_arn, subject = %alert.subject,
                        "this configuration has no SNS action or claim, so no AWS client: the alert stays saved until one that has");
                }
                break;
            };
            store.alert_sending(id, true);
            match sns
                .publish(&alert.topic_arn, &alert.subject, &alert.message)
                .await
            {
                Ok(message_id) => {
                    store.alert_done(id);
                    history.alert_sent(id);
                    metrics.alert_sent();
                    tracing::info!(event = events::ALERT_SENT, topic = %alert.topic_arn, message_id = %message_id, attempt);
                    break;
                }
                Err(e) => {
                    store.alert_sending(id, false);
                    metrics.alert_failed();
                    tracing::warn!(event = events::ALERT_FAILED, topic = %alert.topic_arn, attempt, error = %e,
                        retry_in = %humantime::format_duration(backoff));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|s| *s) => {
                    undelivered(&alert, &metrics);
                    break;
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
        if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            drained.notify_waiters();
        }
    }
    while let Ok((_, alert)) = rx.try_recv() {
        undelivered(&alert, &metrics);
        pending.fetch_sub(1, Ordering::SeqCst);
    }
    drained.notify_waiters();
}

fn undelivered(alert: &Alert, metrics: &Metrics) {
    metrics.alerts_undelivered(1);
    tracing::error!(event = events::ALERT_UNDELIVERED, topic = %alert.topic_arn, subject = %alert.subject,
        "stopping with an undelivered alert (kept in the state directory, if there is one, for the next start)");
}

#[cfg(test)]
mod kept_tests {
    use super::*;

    /// Breaker: a restart whose configuration has no SNS client (no AWS action) used to log
    /// the saved alerts as a dry run and delete them; they stay saved for a later start.
    #[tokio::test]
    async fn alerts_are_kept_when_this_configuration_cannot_send_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = StateStore::open(dir.path()).unwrap();
            let (stop, stop_rx) = watch::channel(false);
            let (alerter, task) = Alerter::spawn(
                None,
                false,
                stop_rx,
                store,
                Arc::new(Metrics::new().expect("metrics")),
                crate::history::History::in_memory(),
            );
            alerter.send(Alert {
                topic_arn: "arn:aws:sns:us-east-1:123456789012:t".into(),
                subject: "s".into(),
                message: "m".into(),
            });
            assert_eq!(alerter.flush(Duration::from_secs(5)).await, 0);
            let _ = stop.send(true);
            drop(alerter);
            task.await.unwrap();
        }
        let (_, recovered) = StateStore::open(dir.path()).unwrap();
        assert_eq!(
            recovered.alerts.len(),
            1,
            "kept for a start that can send it"
        );
        // A dry run drops them, as before (its store keeps nothing anyway).
        let (stop, stop_rx) = watch::channel(false);
        let (alerter, task) = Alerter::spawn(
            None,
            true,
            stop_rx,
            StateStore::default(),
            Arc::new(Metrics::new().expect("metrics")),
            crate::history::History::in_memory(),
        );
        alerter.send(Alert {
            topic_arn: "t".into(),
            subject: "s".into(),
            message: "m".into(),
        });
        assert_eq!(alerter.flush(Duration::from_secs(5)).await, 0);
        let _ = stop.send(true);
        drop(alerter);
        task.await.unwrap();
    }
}
