//! Forecasts: days until a volume is full or a toner is empty, from the recent trend.
//!
//! A least-squares line through the recent points, and a forecast only when that line is
//! believable: enough points over enough time, a slope in the expected direction that is not
//! negligible, and a good fit (R²). A refill or a clean-up (a big jump against the direction)
//! starts a new trend: only the points after the last one are used. Otherwise the answer is
//! `None` — "no forecast" is better than a wrong date in an incident.

use std::time::Duration;

use time::OffsetDateTime;

use super::{duration_nanos, nanos};

const DAY_NANOS: f64 = 86_400e9;

/// Which way the series moves towards its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Rising towards a maximum (disk used % → 100).
    Rising,
    /// Falling towards a minimum (toner % → 0).
    Falling,
}

/// When a trend is good enough to forecast from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastParams {
    /// Only points within this long before `now` are used.
    pub window: Duration,
    /// At least this many points (after any reset).
    pub min_points: usize,
    /// The points must span at least this long.
    pub min_span: Duration,
    /// The fit must explain at least this much of the variance (0–1).
    pub min_r2: f64,
    /// The slope must be at least this steep, in units per day, in the expected direction.
    pub min_slope_per_day: f64,
    /// A step of more than this (in units) against the direction between consecutive points is
    /// a refill / clean-up and restarts the trend.
    pub reset_jump: f64,
}

impl Default for ForecastParams {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(14 * 86_400),
            min_points: 6,
            min_span: Duration::from_secs(6 * 3600),
            min_r2: 0.5,
            min_slope_per_day: 0.05,
            reset_jump: 10.0,
        }
    }
}

/// A forecast and the trend behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Days from `now` until the trend reaches the threshold; 0 when it already has.
    pub days: f64,
    /// The trend's slope in units per day (negative when falling).
    pub slope_per_day: f64,
    /// Coefficient of determination of the fit, 0–1.
    pub r2: f64,
    /// The trend's value at `now`.
    pub level: f64,
    /// Points the fit used.
    pub points: usize,
}

/// Days until `points` reach `threshold` moving in `direction`, or `None` when the recent
/// trend does not support a forecast (see [`ForecastParams`]). Points may come in any order;
/// points after `now` and non-finite values are ignored.
pub fn days_until(
    points: &[(OffsetDateTime, f64)],
    threshold: f64,
    direction: Direction,
    now: OffsetDateTime,
    params: &ForecastParams,
) -> Option<Forecast> {
    let now = nanos(now);
    let oldest = now.saturating_sub(duration_nanos(params.window));
    let mut recent: Vec<(i128, f64)> = points
        .iter()
        .map(|&(at, value)| (nanos(at), value))
        .filter(|&(at, value)| value.is_finite() && (oldest..=now).contains(&at))
        .collect();
    recent.sort_by_key(|&(at, _)| at);

    let reversal = |before: f64, after: f64| match direction {
        Direction::Falling => after - before > params.reset_jump,
        Direction::Rising => before - after > params.reset_jump,
    };
    let start = recent
        .windows(2)
        .rposition(|pair| reversal(pair[0].1, pair[1].1))
        .map_or(0, |i| i + 1);
    let trend = &recent[start..];

    let (first, last) = (trend.first()?.0, trend.last()?.0);
    if trend.len() < params.min_points.max(2) || last - first < duration_nanos(params.min_span) {
        return None;
    }

    // x in days relative to now (≤ 0), so the intercept is the level now.
    let n = trend.len() as f64;
    let xs = trend.iter().map(|&(at, _)| (at - now) as f64 / DAY_NANOS);
    let mean_x = xs.clone().sum::<f64>() / n;
    let mean_y = trend.iter().map(|&(_, y)| y).sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, &(_, y)) in xs.zip(trend) {
        let (dx, dy) = (x - mean_x, y - mean_y);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0);
    let steep_enough = match direction {
        Direction::Rising => slope >= params.min_slope_per_day,
        Direction::Falling => slope <= -params.min_slope_per_day,
    };
    if !steep_enough || r2 < params.min_r2 {
        return None;
    }
    let level = mean_y - slope * mean_x;
    let days = ((threshold - level) / slope).max(0.0);
    days.is_finite().then_some(Forecast {
        days,
        slope_per_day: slope,
        r2,
        level,
        points: trend.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    /// Hourly points over the `days` before NOW, `value(days_ago)` each.
    fn series(days: i64, value: impl Fn(f64) -> f64) -> Vec<(OffsetDateTime, f64)> {
        (0..=days * 24)
            .rev()
            .map(|h| (NOW - time::Duration::hours(h), value(h as f64 / 24.0)))
            .collect()
    }

    fn toner(points: &[(OffsetDateTime, f64)]) -> Option<Forecast> {
        days_until(
            points,
            0.0,
            Direction::Falling,
            NOW,
            &ForecastParams::default(),
        )
    }

    #[test]
    fn toner_falling_two_percent_a_day_from_sixty_is_empty_in_thirty_days() {
        let forecast = toner(&series(5, |ago| 60.0 + 2.0 * ago)).expect("a clean trend");
        assert!((forecast.days - 30.0).abs() < 1e-6, "{forecast:?}");
        assert!((forecast.slope_per_day + 2.0).abs() < 1e-9);
        assert!((forecast.r2 - 1.0).abs() < 1e-9);
        assert_eq!(forecast.points, 121);
    }

    #[test]
    fn disk_rising_to_full() {
        let points = series(4, |ago| 70.0 - 3.0 * ago);
        let forecast = days_until(
            &points,
            100.0,
            Direction::Rising,
            NOW,
            &ForecastParams::default(),
        )
        .unwrap();
        assert!((forecast.days - 10.0).abs() < 1e-6, "{forecast:?}");
        // Already past the threshold: zero days, not negative.
        let full = days_until(
            &points,
            60.0,
            Direction::Rising,
            NOW,
            &ForecastParams::default(),
        )
        .unwrap();
        assert_eq!(full.days, 0.0);
    }

    #[test]
    fn no_forecast_without_a_trend() {
        assert!(toner(&series(5, |_| 40.0)).is_none(), "flat");
        assert!(
            toner(&series(5, |ago| 40.0 - 2.0 * ago)).is_none(),
            "rising toner"
        );
        assert!(
            toner(&series(5, |ago| 40.0 + 0.01 * ago)).is_none(),
            "negligible slope"
        );
        // Alternating noise around a barely-falling line: R² too low.
        let noisy = series(5, |ago| {
            40.0 + 0.2 * ago
                + if (ago * 24.0) as i64 % 2 == 0 {
                    3.0
                } else {
                    -3.0
                }
        });
        assert!(toner(&noisy).is_none(), "noise");
        assert!(
            toner(&series(5, |ago| 60.0 + 2.0 * ago)[..5]).is_none(),
            "too few points"
        );
        assert!(
            toner(&series(5, |ago| 60.0 + 2.0 * ago)[115..]).is_none(),
            "span too short"
        );
        assert!(toner(&[]).is_none());
    }

    #[test]
    fn a_refill_restarts_the_trend() {
        // Falling 5 %/day to 12 % three days ago, replaced (→ 100 %), then falling 1 %/day.
        let points = series(10, |ago| {
            if ago > 3.0 {
                12.0 + 5.0 * (ago - 3.0)
            } else {
                97.0 + ago
            }
        });
        let forecast = toner(&points).unwrap();
        assert!((forecast.slope_per_day + 1.0).abs() < 1e-9, "{forecast:?}");
        assert!((forecast.days - 97.0).abs() < 1e-6, "{forecast:?}");
        assert_eq!(
            forecast.points, 73,
            "the refill point and the 72 hourly points after it"
        );
        // Just after the refill there are too few points to say anything.
        let early: Vec<_> = points
            .iter()
            .copied()
            .filter(|(at, _)| *at <= NOW - time::Duration::hours(69))
            .collect();
        let now = NOW - time::Duration::hours(69);
        assert!(
            days_until(
                &early,
                0.0,
                Direction::Falling,
                now,
                &ForecastParams::default()
            )
            .is_none()
        );
    }

    #[test]
    fn only_the_window_counts() {
        // A steep fall long ago, flat since: the window sees only the flat part.
        let points = series(40, |ago| {
            if ago > 20.0 {
                40.0 + 5.0 * (ago - 20.0)
            } else {
                40.0
            }
        });
        assert!(toner(&points).is_none());
    }

    proptest! {
        #[test]
        fn linear_decline_with_bounded_noise_still_forecasts(
            level in 20.0f64..90.0,
            slope in 1.0f64..5.0,
            days in 5i64..10,
            noise in prop::collection::vec(-1.0f64..1.0, 241),
        ) {
            let points: Vec<_> = series(days, |ago| level + slope * ago)
                .into_iter()
                .zip(&noise)
                .map(|((at, value), n)| (at, value + n))
                .collect();
            let forecast = toner(&points);
            prop_assert!(forecast.is_some(), "{points:?}");
            let forecast = forecast.unwrap();
            let truth = level / slope;
            prop_assert!((forecast.days - truth).abs() <= 0.25 * truth + 1.0, "{forecast:?} vs {truth}");
            prop_assert!(forecast.r2 >= 0.5 && forecast.r2 <= 1.0);
        }

        #[test]
        fn flat_or_rising_toner_never_forecasts(
            level in 0.0f64..100.0,
            rise in 0.0f64..5.0,
            noise in prop::collection::vec(-1.0f64..1.0, 121),
        ) {
            let points: Vec<_> = series(5, |ago| level - rise * ago)
                .into_iter()
                .zip(&noise)
                .map(|((at, value), n)| (at, value + n))
                .collect();
            prop_assert!(toner(&points).is_none());
        }

        #[test]
        fn any_input_is_safe(
            points in prop::collection::vec((-864_000i64..864_000, prop::num::f64::ANY), 0..60),
            threshold in -100.0f64..200.0,
            rising in any::<bool>(),
        ) {
            let points: Vec<_> = points
                .into_iter()
                .map(|(offset, value)| (NOW + time::Duration::seconds(offset), value))
                .collect();
            let direction = if rising { Direction::Rising } else { Direction::Falling };
            if let Some(f) = days_until(&points, threshold, direction, NOW, &ForecastParams::default()) {
                prop_assert!(f.days >= 0.0 && f.days.is_finite());
                prop_assert!(f.points >= 6);
            }
        }
    }
}
