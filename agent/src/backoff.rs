//! The one retry backoff: exponential (base × factorⁿ, capped) with full jitter, so a school's
//! agents coming back after an outage do not all knock at the same moment.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub struct Backoff {
    base: Duration,
    cap: Duration,
    factor: f64,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    /// Base 1 s, factor 2, cap 5 min.
    pub fn new() -> Self {
        Self::with_params(Duration::from_secs(1), Duration::from_secs(300), 2.0)
    }

    pub fn with_params(base: Duration, cap: Duration, factor: f64) -> Self {
        Self::with_rng(base, cap, factor, StdRng::from_os_rng())
    }

    pub fn with_rng(base: Duration, cap: Duration, factor: f64, rng: StdRng) -> Self {
        Self {
            base,
            cap,
            factor: factor.max(1.0),
            attempt: 0,
            rng,
        }
    }

    /// The upper bound for the next delay: `min(cap, base × factor^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let exp = self.factor.powi(self.attempt.min(64) as i32);
        let secs = (self.base.as_secs_f64() * exp).min(self.cap.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// Next delay, uniformly drawn from `[0, ceiling]` (full jitter); raises the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling().as_secs_f64();
        self.attempt = self.attempt.saturating_add(1);
        let secs = if ceiling > 0.0 {
            self.rng.random_range(0.0..=ceiling)
        } else {
            0.0
        };
        Duration::from_secs_f64(secs).min(self.cap)
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Call after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seeded(seed: u64, base_ms: u64, cap_ms: u64) -> Backoff {
        Backoff::with_rng(
            Duration::from_millis(base_ms),
            Duration::from_millis(cap_ms),
            2.0,
            StdRng::seed_from_u64(seed),
        )
    }

    proptest! {
        #[test]
        fn delays_stay_within_zero_and_cap(seed: u64, base_ms in 1u64..5_000, cap_ms in 1u64..600_000, n in 1usize..200) {
            let mut b = seeded(seed, base_ms, cap_ms);
            let cap = Duration::from_millis(cap_ms);
            for _ in 0..n {
                let c = b.ceiling();
                let d = b.next_delay();
                prop_assert!(d <= cap);
                prop_assert!(d <= c + Duration::from_micros(1));
            }
        }

        #[test]
        fn delays_grow_on_average(seed: u64) {
            // Mean of attempt 1 vs attempt 6 over many independent runs (cap far away).
            let runs = 200;
            let (mut early, mut late) = (0.0, 0.0);
            for i in 0..runs {
                let mut b = seeded(seed.wrapping_add(i), 1_000, 300_000);
                let mut delays = Vec::new();
                for _ in 0..7 { delays.push(b.next_delay().as_secs_f64()); }
                early += delays[1];
                late += delays[6];
            }
            prop_assert!(late > early * 4.0, "early {early} late {late}");
        }

        #[test]
        fn reset_starts_over(seed: u64, n in 1u32..30) {
            let mut b = seeded(seed, 1_000, 300_000);
            for _ in 0..n { b.next_delay(); }
            b.reset();
            prop_assert_eq!(b.attempts(), 0);
            prop_assert!(b.next_delay() <= Duration::from_secs(1));
        }
    }

    #[test]
    fn ceiling_is_capped() {
        let mut b = Backoff::new();
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(300));
    }
}
