//! N-cycle thresholds: a small pure type that counts consecutive results and says when a
//! rule's health flips (monit's `for N cycles`). It knows nothing about time or I/O.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Down => "down",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    /// `fail_after` consecutive failures while up.
    Failed,
    /// `recover_after` consecutive successes while down.
    Recovered,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Failed => "failed",
            Transition::Recovered => "recovered",
        }
    }
}

/// A rule starts `Up`: a target that is already down when the daemon starts fails after
/// `fail_after` cycles like any other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threshold {
    fail_after: u32,
    recover_after: u32,
    health: Health,
    consecutive_failures: u32,
    consecutive_successes: u32,
}

impl Threshold {
    pub fn new(fail_after: u32, recover_after: u32) -> Self {
        Threshold {
            fail_after: fail_after.max(1),
            recover_after: recover_after.max(1),
            health: Health::Up,
            consecutive_failures: 0,
            consecutive_successes: 0,
        }
    }

    /// The same state under new limits (a reloaded configuration): health and streaks are
    /// kept, the new limits apply from the next result.
    pub fn with_limits(&self, fail_after: u32, recover_after: u32) -> Self {
        Threshold {
            fail_after: fail_after.max(1),
            recover_after: recover_after.max(1),
            ..self.clone()
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Changing state: up with a failed check counted, or down with a good one counted.
    pub fn transitioning(&self) -> bool {
        match self.health {
            Health::Up => self.consecutive_failures > 0,
            Health::Down => self.consecutive_successes > 0,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn consecutive_successes(&self) -> u32 {
        self.consecutive_successes
    }

    /// Count one result; returns the transition it completes, if any.
    pub fn observe(&mut self, ok: bool) -> Option<Transition> {
        if ok {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            if self.health == Health::Down && self.consecutive_successes >= self.recover_after {
                self.health = Health::Up;
                return Some(Transition::Recovered);
            }
        } else {
            self.consecutive_successes = 0;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            if self.health == Health::Up && self.consecutive_failures >= self.fail_after {
                self.health = Health::Down;
                return Some(Transition::Failed);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut Threshold, results: &str) -> Vec<Option<Transition>> {
        results.chars().map(|c| t.observe(c == '+')).collect()
    }

    #[test]
    fn fails_after_n_consecutive_failures_only() {
        let mut t = Threshold::new(3, 2);
        assert_eq!(feed(&mut t, "--+--+"), vec![None; 6]);
        assert_eq!(t.health(), Health::Up);
        assert_eq!(
            feed(&mut t, "---"),
            vec![None, None, Some(Transition::Failed)]
        );
        assert_eq!(t.health(), Health::Down);
    }

    #[test]
    fn transitions_fire_once_per_flip() {
        let mut t = Threshold::new(2, 2);
        let out = feed(&mut t, "------");
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 1);
        assert_eq!(t.consecutive_failures(), 6);
    }

    #[test]
    fn recovers_after_m_consecutive_successes() {
        let mut t = Threshold::new(1, 3);
        assert_eq!(t.observe(false), Some(Transition::Failed));
        assert_eq!(feed(&mut t, "++-++"), vec![None; 5]);
        assert_eq!(t.observe(true), Some(Transition::Recovered));
        assert_eq!(t.health(), Health::Up);
    }

    #[test]
    fn fail_after_one_flips_immediately() {
        let mut t = Threshold::new(1, 1);
        assert_eq!(t.observe(false), Some(Transition::Failed));
        assert_eq!(t.observe(true), Some(Transition::Recovered));
    }
}
