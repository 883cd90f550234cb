//! SIGTERM, SIGINT and SIGHUP for `run`, and what the daemon tells systemd (`Type=notify`,
//! sd_notify(3)): READY once it runs, RELOADING/READY around a SIGHUP, STOPPING at exit
//! (and WATCHDOG=1, which `watchdog.rs` decides).

use crate::telemetry::events;

/// SIGTERM, SIGINT and SIGHUP handlers; none when they could not be installed.
pub struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    /// Install the handlers (inside a tokio runtime). Do it before anything that waits: a
    /// SIGHUP or SIGTERM during start-up (which may wait for instance metadata) must find its
    /// handler, not kill the process with the default action. A failure is logged; the
    /// daemon then stops only with SIGKILL.
    pub fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(i), Ok(h)) => Signals(Some((t, i, h))),
            _ => {
                tracing::error!(
                    event = events::SIGNALS_UNAVAILABLE,
                    "cannot install SIGTERM/SIGINT/SIGHUP handlers; stop with SIGKILL"
                );
                Signals(None)
            }
        }
    }

    /// Until SIGTERM or SIGINT (returned); each SIGHUP meanwhile is passed on to `hup`.
    pub async fn wait(self, hup: tokio::sync::mpsc::UnboundedSender<()>) -> &'static str {
        let Some((mut term, mut int, mut hangup)) = self.0 else {
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return "SIGTERM",
                _ = int.recv() => return "SIGINT",
                _ = hangup.recv() => {
                    tracing::info!(event = events::RELOAD_REQUESTED, signal = "SIGHUP");
                    let _ = hup.send(());
                }
            }
        }
    }
}

/// Tell systemd (when it started us with `NOTIFY_SOCKET`; otherwise nothing happens).
pub(super) fn notify_systemd(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(event = events::NOTIFY_FAILED, error = %e, "cannot tell systemd the daemon's state");
    }
}
