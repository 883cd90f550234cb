//! HTTP load with `wrk` (Debian's package), bounded in time, and its counts of failures.

use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    /// Answers other than 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
    pub text: String,
}

impl WrkResult {
    pub fn failed(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

/// Run `wrk -t2 -cCONNS -dSECS url` in the background; await the handle for the result.
pub fn start(url: &str, conns: u32, duration: Duration) -> tokio::task::JoinHandle<WrkResult> {
    let url = url.to_owned();
    tokio::spawn(async move {
        let out = tokio::process::Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{conns}"),
                &format!("-d{}s", duration.as_secs()),
                "--timeout",
                "5s",
                &url,
            ])
            .output()
            .await
            .expect("wrk is not installed: run scripts/test-deps.sh");
        parse(&String::from_utf8_lossy(&out.stdout))
    })
}

pub fn parse(text: &str) -> WrkResult {
    let mut r = WrkResult {
        text: text.to_owned(),
        ..Default::default()
    };
    for line in text.lines().map(str::trim) {
        if let Some(n) = line
            .split(" requests in ")
            .next()
            .filter(|_| line.contains(" requests in "))
        {
            r.requests = n.trim().parse().unwrap_or(0);
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = n.trim().parse().unwrap_or(0);
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            r.socket_errors = rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum();
        }
    }
    r
}
