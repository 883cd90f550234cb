//! The events queues' receivers, kept across configuration reloads.
//!
//! A receiver long-polls its SQS queue (`ReceiveMessage`, 20 s) on a task of its own. SQS
//! hides every message it hands out for the queue's visibility timeout (30 s by default)
//! until it is deleted ("Amazon SQS visibility timeout"). Had a reload ended the receiver with
//! its generation, a message the abandoned poll had been given, or one received and not yet
//! applied, would have come back only after that timeout: a launch or a termination reaching
//! HAProxy 30 s late. So the receivers live in [`EventQueues`], which the daemon keeps for its
//! whole life: the next generation's rule reading the same queue takes the same receiver,
//! with whatever it received meanwhile and whatever the last reader took and had not applied
//! ([`QueueReceiver`]'s drop gives those back). A receiver no rule reads any more (its rule
//! removed, or the daemon stopping) ends with its last reader.
//!
//! What an Auto Scaling source knows goes across a reload too, by group ([`Handed`]): what
//! the events taught its membership (an event outweighs a resync for 60 s, the APIs being
//! eventually consistent, `membership.rs`) and when its next resync is due, so a reload
//! neither brings back a server an event took out nor costs a resync of its own.

use super::asg::AsgError;
use super::membership::Membership;
use crate::providers::aws::sqs::{self, Message, Sqs};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// What one receive gave: messages, or the receive's error (the receiver retries by itself).
pub type Batch = Result<Vec<Message>, AsgError>;

/// Every events queue's receiver, by queue URL (see the module documentation). Cloning
/// shares them.
#[derive(Clone, Default)]
pub struct EventQueues {
    receivers: Arc<Mutex<HashMap<String, Weak<Pooled>>>>,
    /// What Auto Scaling sources handed on as their configuration ended, by group.
    handed: Arc<Mutex<Vec<Handed>>>,
}

/// What an Auto Scaling source hands to its successor after a reload.
pub struct Handed {
    /// The rule it belonged to, and the group it followed.
    pub rule: String,
    pub group: String,
    pub membership: Membership,
    /// When its next resync was due, and the port its servers had (a new port resyncs now).
    pub next_resync: Option<tokio::time::Instant>,
    pub port: u16,
    /// What its last resync left out, and why, for the note.
    pub left_out: Vec<String>,
    /// When it was handed on: what nobody took within [`HANDED_FOR`] is dropped.
    pub at: tokio::time::Instant,
}

/// How long a source's knowledge waits for a successor at most: a reload builds the new rules
/// before it ends the old ones, so it is taken at once or never, and the next configuration
/// built forgets it ([`EventQueues::new_generation`]); an event outweighs a resync for no
/// longer than this anyway.
pub const HANDED_FOR: Duration = Duration::from_secs(60);

/// One queue's receiver and what it holds for its reader.
pub struct Pooled {
    rx: tokio::sync::Mutex<mpsc::Receiver<Batch>>,
    /// Messages a reader took and did not apply before it was dropped, first in line for the
    /// next reader.
    returned: Mutex<Vec<Message>>,
    /// Wakes a reader waiting on the channel when messages are given back.
    given_back: Notify,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pooled {
    /// The last reader is gone: the long poll stops (a message it had been given comes back
    /// after the visibility timeout, to whoever reads the queue next).
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventQueues {
    /// The receiver of `queue`: the one running if a rule reads it already (a reload's new
    /// generation takes its predecessor's), else a new one started now on `sqs`.
    pub fn subscribe(&self, queue: &str, sqs: &Sqs) -> QueueReceiver {
        let mut all = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, w| w.strong_count() > 0);
        if let Some(p) = all.get(queue).and_then(Weak::upgrade) {
            if !p.task.is_finished() {
                return QueueReceiver(p);
            }
        }
        let (tx, rx) = mpsc::channel(16);
        let pooled = Arc::new(Pooled {
            rx: tokio::sync::Mutex::new(rx),
            returned: Mutex::new(Vec::new()),
            given_back: Notify::new(),
            task: tokio::spawn(receive(sqs.clone(), queue.to_owned(), tx)),
        });
        all.insert(queue.to_owned(), Arc::downgrade(&pooled));
        QueueReceiver(pooled)
    }

    /// How many receivers run (for tests).
    pub fn running(&self) -> usize {
        let all = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
        all.values()
            .filter_map(Weak::upgrade)
            .filter(|p| !p.task.is_finished())
            .count()
    }

    /// A configuration is being built: what the last one's successors did not take is stale
    /// (a rule that goes back to a group or name it left must not find what it knew then).
    pub fn new_generation(&self) {
        self.handed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Keeps what a source knew for its successor (see [`Handed`]).
    pub fn hand_on(&self, h: Handed) {
        let mut all = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|o| o.at.elapsed() < HANDED_FOR && !(o.rule == h.rule && o.group == h.group));
        all.push(h);
    }

    /// What the source of `rule` following `group` was handed: its own rule's (same name), or
    /// else the one source of that group there is (a renamed rule). None when nothing is
    /// there, or several rules followed the group and none had this name.
    pub fn take_handed(&self, rule: &str, group: &str) -> Option<Handed> {
        let mut all = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|o| o.at.elapsed() < HANDED_FOR);
        let of_group = || all.iter().enumerate().filter(|(_, o)| o.group == group);
        let i = match of_group().find(|(_, o)| o.rule == rule) {
            Some((i, _)) => i,
            None if of_group().count() == 1 => of_group().next()?.0,
            None => return None,
        };
        Some(all.remove(i))
    }
}

/// Long-polls `queue` until aborted, handing each non-empty batch (or error) to `tx`; after an
/// error it waits 1 s, doubling to at most 60 s.
async fn receive(sqs: Sqs, queue: String, tx: mpsc::Sender<Batch>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match sqs.receive(&queue, sqs::LONG_POLL).await {
            Ok(m) => {
                backoff = Duration::from_secs(1);
                if !m.is_empty() && tx.send(Ok(m)).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                let msg = AsgError::Queue {
                    err,
                    retry_in: backoff,
                };
                if tx.send(Err(msg)).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// A rule's hold on its queue's receiver (one per Auto Scaling source with `events_queue`).
pub struct QueueReceiver(Arc<Pooled>);

impl QueueReceiver {
    /// The next batch: messages given back first, then what the receiver received. None
    /// only if the receiver ended.
    pub async fn recv(&self) -> Option<Batch> {
        loop {
            if let Some(m) = self.take_returned() {
                return Some(Ok(m));
            }
            let woken = self.0.given_back.notified();
            tokio::pin!(woken);
            tokio::select! {
                mut rx = self.0.rx.lock() => tokio::select! {
                    m = rx.recv() => return m,
                    _ = &mut woken => continue,
                },
                _ = &mut woken => continue,
            }
        }
    }

    /// A batch already there, without waiting.
    pub fn try_recv(&self) -> Option<Batch> {
        if let Some(m) = self.take_returned() {
            return Some(Ok(m));
        }
        self.0.rx.try_lock().ok()?.try_recv().ok()
    }

    /// Hands messages taken and not applied to the queue's next reader (this rule's
    /// successor after a reload).
    pub fn give_back(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        self.0
            .returned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(messages);
        self.0.given_back.notify_one();
    }

    /// Whether the receiver's task ended (it only does when aborted or its channel closed).
    pub fn is_finished(&self) -> bool {
        self.0.task.is_finished()
    }

    fn take_returned(&self) -> Option<Vec<Message>> {
        let mut r = self.0.returned.lock().unwrap_or_else(|p| p.into_inner());
        (!r.is_empty()).then(|| std::mem::take(&mut *r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AwsSettings, NodeSettings};
    use crate::telemetry::metrics::Metrics;

    /// An SQS client whose every call fails at once (a closed loopback port): the receiver
    /// runs, and hands on its errors.
    async fn sqs() -> Sqs {
        let aws = AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            max_attempts: 1,
            connect_timeout: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(2),
        };
        let sdk = crate::providers::aws::sdk_config_for(&aws, &NodeSettings::default()).await;
        Sqs::new(&sdk, Arc::new(Metrics::new().expect("metrics")))
    }

    fn message(id: &str) -> Message {
        Message {
            id: id.into(),
            receipt_handle: format!("handle-{id}"),
            body: "{}".into(),
        }
    }

    #[tokio::test]
    async fn a_reloads_new_reader_takes_the_running_receiver_and_what_the_old_one_left() {
        let queues = EventQueues::default();
        let sqs = sqs().await;
        let q = "http://127.0.0.1:9/000000000000/events";
        let old = queues.subscribe(q, &sqs);
        // The reload builds the new generation before it drops the old one.
        let new = queues.subscribe(q, &sqs);
        assert!(Arc::ptr_eq(&old.0, &new.0), "one receiver for one queue");
        assert_eq!(queues.running(), 1);
        old.give_back(vec![message("a"), message("b")]);
        drop(old);
        assert_eq!(queues.running(), 1, "the receiver outlives the old reader");
        let got = tokio::time::timeout(Duration::from_secs(1), new.recv())
            .await
            .expect("what was given back comes first, without waiting for SQS")
            .expect("the receiver runs");
        let ids: Vec<String> = got.expect("messages").into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["a", "b"]);
        // Then the receiver's own: here the closed port's error, retried by the receiver.
        let next = tokio::time::timeout(Duration::from_secs(5), new.recv())
            .await
            .expect("the receiver's error comes through")
            .expect("the receiver runs");
        assert!(
            matches!(next, Err(AsgError::Queue { .. })),
            "{:?}",
            next.map(|m| m.len())
        );
        // Another queue gets its own receiver.
        let other = queues.subscribe("http://127.0.0.1:9/000000000000/other", &sqs);
        assert_eq!(queues.running(), 2);
        drop(other);
        drop(new);
        tokio::task::yield_now().await;
        assert_eq!(queues.running(), 0, "no reader left: the long polls end");
    }

    /// Breaker 8: a rule that went back to a group (or name) it had left found what it had
    /// known then, and skipped the resync.
    #[tokio::test]
    async fn what_no_successor_took_is_forgotten_when_the_next_configuration_is_built() {
        let queues = EventQueues::default();
        let handed = |rule: &str| Handed {
            rule: rule.into(),
            group: "web".into(),
            membership: Membership::new("web", None),
            next_resync: None,
            port: 80,
            left_out: Vec::new(),
            at: tokio::time::Instant::now(),
        };
        queues.hand_on(handed("app"));
        assert!(
            queues.take_handed("app", "web").is_some(),
            "its successor takes it"
        );
        queues.hand_on(handed("app"));
        queues.new_generation();
        assert!(
            queues.take_handed("app", "web").is_none(),
            "stale after the next build"
        );
        // Of two rules on one group, a renamed one takes neither.
        queues.hand_on(handed("app"));
        queues.hand_on(handed("peers"));
        assert!(queues.take_handed("renamed", "web").is_none());
        assert_eq!(
            queues
                .take_handed("peers", "web")
                .map(|h| h.rule)
                .as_deref(),
            Some("peers")
        );
        // The only one left is taken by a renamed rule.
        assert_eq!(
            queues
                .take_handed("renamed", "web")
                .map(|h| h.rule)
                .as_deref(),
            Some("app")
        );
    }

    #[tokio::test]
    async fn a_reader_waiting_on_the_receiver_is_woken_by_messages_given_back() {
        let queues = EventQueues::default();
        let sqs = sqs().await;
        let q = "http://127.0.0.1:9/000000000000/events";
        let waiting = queues.subscribe(q, &sqs);
        let giving = queues.subscribe(q, &sqs);
        // Drain the receiver's first error, so the next recv waits on the channel.
        let _ = tokio::time::timeout(Duration::from_secs(5), waiting.recv()).await;
        let (got, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_millis(500), waiting.recv()),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                giving.give_back(vec![message("c")]);
            }
        );
        let got = got
            .expect("woken at once")
            .expect("runs")
            .expect("messages");
        assert_eq!(got[0].id, "c");
    }
}
