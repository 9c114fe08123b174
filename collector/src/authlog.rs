//! Failed authentications, logged so a technician sees who is probing, without letting a
//! flood of them flood the log.
//!
//! Per one-minute window: the first failure from each source address gets a WARN line naming
//! it (at most [`MAX_SOURCES_LOGGED`] sources per window); every other failure is only
//! counted, and the first failure after the window says how many were counted. A burst of any
//! size therefore costs at most `MAX_SOURCES_LOGGED + 1` lines a minute, and the memory of
//! at most `MAX_SOURCES_LOGGED` addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one window lasts.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Sources named per window.
pub const MAX_SOURCES_LOGGED: usize = 10;

/// What to log for one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The first failure from this source in this window.
    First(Option<IpAddr>),
    /// The previous window counted `failures` more failures from `sources` addresses.
    Counted { failures: u64, sources: usize },
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    /// Failures per source named in this window.
    named: HashMap<Option<IpAddr>, u64>,
    /// Failures from sources past the cap.
    unnamed: u64,
}

/// The failures of one kind of credential (API token, agent credential, enrolment token).
#[derive(Debug, Default)]
pub struct FailedAuth {
    window: Mutex<Window>,
}

impl FailedAuth {
    /// Records one failure from `source` at `now`; returns the lines to log (zero to two).
    pub fn note(&self, source: Option<IpAddr>, now: Instant) -> Vec<Line> {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = Vec::new();
        let expired = window
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= WINDOW);
        if expired {
            let repeats: u64 = window.named.values().map(|n| n - 1).sum::<u64>() + window.unnamed;
            if repeats > 0 {
                lines.push(Line::Counted {
                    failures: repeats,
                    sources: window.named.len() + usize::from(window.unnamed > 0),
                });
            }
            *window = Window {
                started: Some(now),
                ..Window::default()
            };
        }
        let sources = window.named.len();
        match window.named.get_mut(&source) {
            Some(count) => *count += 1,
            None if sources < MAX_SOURCES_LOGGED => {
                window.named.insert(source, 1);
                lines.push(Line::First(source));
            }
            None => window.unnamed += 1,
        }
        lines
    }

    /// [`note`](Self::note) now, and logs the lines at WARN; `what` names the credential.
    pub fn log(&self, source: Option<IpAddr>, what: &str) {
        for line in self.note(source, Instant::now()) {
            match line {
                Line::First(Some(ip)) => tracing::warn!(peer = %ip, what,
                    "Rejected a request with a wrong or missing credential; further failures from this address are counted for a minute"),
                Line::First(None) => tracing::warn!(
                    peer = "unknown",
                    what,
                    "Rejected a request with a wrong or missing credential; further failures are counted for a minute"
                ),
                Line::Counted { failures, sources } => tracing::warn!(
                    failures,
                    sources,
                    what,
                    "More requests with a wrong or missing credential were rejected in the last minute"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn a_burst_from_one_source_is_one_line_then_one_count() {
        let failures = FailedAuth::default();
        let start = Instant::now();
        let lines: Vec<Line> = (0..1000)
            .flat_map(|i| failures.note(ip(1), start + Duration::from_millis(i)))
            .collect();
        assert_eq!(lines, vec![Line::First(ip(1))]);
        let later = failures.note(ip(1), start + WINDOW + Duration::from_secs(1));
        assert_eq!(
            later,
            vec![
                Line::Counted {
                    failures: 999,
                    sources: 1
                },
                Line::First(ip(1))
            ]
        );
    }

    #[test]
    fn many_sources_are_named_up_to_the_cap_and_the_rest_counted() {
        let failures = FailedAuth::default();
        let start = Instant::now();
        let named = (0..=255)
            .flat_map(|n| failures.note(ip(n), start))
            .filter(|l| matches!(l, Line::First(_)))
            .count();
        assert_eq!(named, MAX_SOURCES_LOGGED);
        let later = failures.note(None, start + WINDOW);
        assert_eq!(
            later[0],
            Line::Counted {
                failures: 256 - MAX_SOURCES_LOGGED as u64,
                sources: MAX_SOURCES_LOGGED + 1
            }
        );
    }
}
