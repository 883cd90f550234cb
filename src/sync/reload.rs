//! Hitless reloads of HAProxy, at most one per window for each HAProxy (rules that share a
//! reload method share its window).

use crate::config::{ReloadMethod, ReloadSpec};
use crate::telemetry;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

pub struct Reloader {
    method: ReloadMethod,
    last: Mutex<Option<Instant>>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

/// The reloader of one HAProxy, shared by every rule that reloads it the same way.
pub fn for_method(method: &ReloadMethod) -> Arc<Reloader> {
    static ALL: LazyLock<Mutex<HashMap<ReloadMethod, Arc<Reloader>>>> =
        LazyLock::new(Default::default);
    let mut m = ALL.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(method.clone())
        .or_insert_with(|| {
            Arc::new(Reloader {
                method: method.clone(),
                last: Mutex::new(None),
                running: tokio::sync::Mutex::new(()),
            })
        })
        .clone()
}

impl Reloader {
    /// How long until a reload is allowed again (zero: now).
    pub fn wait_needed(&self, window: Duration) -> Duration {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last {
            Some(t) => (t + window).saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// Reload now (the caller has waited out the window).
    pub async fn reload(&self, spec: &ReloadSpec) -> Result<(), String> {
        let _one = self.running.lock().await;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        telemetry::incr("haproxy_reloads_total", &[]);
        let r = match tokio::time::timeout(spec.timeout, self.run()).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "HAProxy reload did not finish within {}",
                humantime::format_duration(spec.timeout)
            )),
        };
        match &r {
            Ok(()) => tracing::info!(event = "haproxy_reloaded", method = %self.describe()),
            Err(e) => {
                telemetry::incr("haproxy_reload_failures_total", &[]);
                tracing::error!(event = "haproxy_reload_failed", method = %self.describe(), error = %e)
            }
        }
        r
    }

    fn describe(&self) -> String {
        match &self.method {
            ReloadMethod::MasterSocket(p) => format!("master socket {}", p.display()),
            ReloadMethod::Command(c) => format!("command {}", c.join(" ")),
        }
    }

    async fn run(&self) -> Result<(), String> {
        match &self.method {
            ReloadMethod::MasterSocket(path) => {
                let mut s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| format!("HAProxy master socket {}: {e}", path.display()))?;
                s.write_all(b"reload\n")
                    .await
                    .map_err(|e| format!("HAProxy master socket {}: {e}", path.display()))?;
                // HAProxy 2.6 closes without a word once the master re-executes; 2.7 and
                // later answer `Success=1` or `Success=0` with the reason.
                let mut reply = String::new();
                let _ = s.take(64 * 1024).read_to_string(&mut reply).await;
                if reply.contains("Success=0") {
                    return Err(format!(
                        "HAProxy refused the reload: {}",
                        reply.trim().chars().take(300).collect::<String>()
                    ));
                }
                Ok(())
            }
            ReloadMethod::Command(argv) => {
                let out = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await
                    .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "`{}` failed ({}): {}",
                        argv.join(" "),
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                            .trim()
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ))
                }
            }
        }
    }
}
