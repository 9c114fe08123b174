//! Periodic ticks whose period follows the agent's identity: an interval given explicitly in
//! the config wins; otherwise the one the collector asked for at enrolment (kept in
//! `identity.json`, so restarts keep it); otherwise the built-in default. When the identity
//! changes (first enrolment, re-enrolment) the tick is re-armed with the new period.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::config::effective_interval;
use crate::identity::Identity;

/// Which of the identity's intervals a tick follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Status,
    Heartbeat,
}

impl Which {
    fn asked_by(self, id: &Identity) -> Option<Duration> {
        match self {
            Self::Status => id.status_interval(),
            Self::Heartbeat => id.heartbeat_interval(),
        }
    }
}

pub struct FollowingTick {
    which: Which,
    explicit: Option<Duration>,
    default: Duration,
    identity: watch::Receiver<Option<Identity>>,
    watching: bool,
    period: Duration,
    interval: Interval,
}

impl FollowingTick {
    /// A tick at the effective period; the first one fires at once if `immediate`.
    pub fn new(
        which: Which,
        explicit: Option<Duration>,
        default: Duration,
        mut identity: watch::Receiver<Option<Identity>>,
        immediate: bool,
    ) -> Self {
        let collector = identity
            .borrow_and_update()
            .as_ref()
            .and_then(|id| which.asked_by(id));
        let period = effective_interval(explicit, collector, default);
        let start = if immediate {
            Instant::now()
        } else {
            Instant::now() + period
        };
        Self {
            which,
            explicit,
            default,
            identity,
            watching: true,
            period,
            interval: interval_at(start, period),
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// Waits for the next tick, re-arming when a new identity changes the period.
    /// Cancel-safe: may be used as a `select!` branch.
    pub async fn tick(&mut self) {
        loop {
            tokio::select! {
                _ = self.interval.tick() => return,
                changed = self.identity.changed(), if self.watching => {
                    if changed.is_err() {
                        // The client is gone (shutting down); keep the current period.
                        self.watching = false;
                        continue;
                    }
                    let collector = self
                        .identity
                        .borrow_and_update()
                        .as_ref()
                        .and_then(|id| self.which.asked_by(id));
                    if let (Some(explicit), Some(asked)) = (self.explicit, collector)
                        && explicit != asked
                    {
                        tracing::info!(
                            which = ?self.which,
                            configured = %humantime::format_duration(explicit),
                            collector = %humantime::format_duration(asked),
                            "The collector asks for another interval; the configured one wins"
                        );
                    }
                    let period = effective_interval(self.explicit, collector, self.default);
                    if period != self.period {
                        tracing::info!(
                            which = ?self.which,
                            period = %humantime::format_duration(period),
                            "Interval set by the collector"
                        );
                        self.period = period;
                        self.interval = interval_at(Instant::now() + period, period);
                    }
                }
            }
        }
    }
}

fn interval_at(start: Instant, period: Duration) -> Interval {
    let mut i = tokio::time::interval_at(start, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(status: u32, heartbeat: u32) -> Identity {
        Identity {
            agent_id: "a".into(),
            agent_secret: "s".into(),
            collector: "http://c:1".into(),
            smbios_uuid: String::new(),
            macs: Vec::new(),
            status_interval_secs: status,
            heartbeat_interval_secs: heartbeat,
            ..Default::default()
        }
    }

    const DEFAULT: Duration = Duration::from_secs(300);

    #[tokio::test(start_paused = true)]
    async fn follows_the_collector_once_enrolled() {
        let (tx, rx) = watch::channel(None);
        let mut tick = FollowingTick::new(Which::Status, None, DEFAULT, rx, true);
        assert_eq!(tick.period(), DEFAULT);
        tick.tick().await; // the immediate first tick
        let start = Instant::now();
        tx.send_replace(Some(identity(30, 0)));
        tick.tick().await;
        assert_eq!(tick.period(), Duration::from_secs(30));
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        tick.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn explicit_setting_wins_over_the_collector() {
        let (tx, rx) = watch::channel(None);
        let explicit = Some(Duration::from_secs(7));
        let mut tick = FollowingTick::new(Which::Heartbeat, explicit, DEFAULT, rx, false);
        tx.send_replace(Some(identity(30, 45)));
        let start = Instant::now();
        tick.tick().await;
        assert_eq!(tick.period(), Duration::from_secs(7));
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn stored_identity_applies_from_the_start() {
        let (_tx, rx) = watch::channel(Some(identity(0, 20)));
        let mut hb = FollowingTick::new(Which::Heartbeat, None, DEFAULT, rx.clone(), false);
        let st = FollowingTick::new(Which::Status, None, DEFAULT, rx, false);
        assert_eq!(hb.period(), Duration::from_secs(20));
        assert_eq!(
            st.period(),
            DEFAULT,
            "zero: the collector asked for nothing"
        );
        let start = Instant::now();
        hb.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_watch_keeps_ticking() {
        let (tx, rx) = watch::channel(Some(identity(10, 0)));
        let mut tick = FollowingTick::new(Which::Status, None, DEFAULT, rx, false);
        drop(tx);
        let start = Instant::now();
        tick.tick().await;
        tick.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }
}
