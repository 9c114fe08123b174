//! Roll-ups: min / mean / max / count per time bucket, so old capacity samples can be kept
//! coarsely (e.g. 5-minute raw → hourly → daily) and the store stays bounded.
//!
//! Buckets are aligned to the Unix epoch (an hourly bucket starts on the hour UTC), so rolling
//! up the same points twice gives the same buckets, and [`rollup_rollups`] can coarsen further
//! without going back to raw points.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::{duration_nanos, from_nanos, nanos};

/// One bucket's summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rollup {
    /// Start of the bucket (inclusive); the bucket is `[start, start + bucket)`.
    pub start: OffsetDateTime,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub count: u64,
}

#[derive(Default)]
struct Acc {
    min: f64,
    max: f64,
    sum: f64,
    count: u64,
}

impl Acc {
    fn add(&mut self, min: f64, max: f64, sum: f64, count: u64) {
        if self.count == 0 {
            (self.min, self.max) = (min, max);
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.sum += sum;
        self.count += count;
    }
}

fn finish(buckets: BTreeMap<i128, Acc>) -> Vec<Rollup> {
    buckets
        .into_iter()
        .map(|(start, acc)| Rollup {
            start: from_nanos(start),
            min: acc.min,
            mean: acc.sum / acc.count as f64,
            max: acc.max,
            count: acc.count,
        })
        .collect()
}

/// The start (in nanoseconds) of the epoch-aligned bucket holding `at`.
fn bucket_of(at: OffsetDateTime, width: i128) -> i128 {
    nanos(at).div_euclid(width) * width
}

/// Summarises `points` (any order) into epoch-aligned buckets of `bucket`, sorted by start.
/// Non-finite values are skipped; a zero `bucket` yields nothing.
pub fn rollup(points: &[(OffsetDateTime, f64)], bucket: Duration) -> Vec<Rollup> {
    let width = duration_nanos(bucket);
    if width == 0 {
        return Vec::new();
    }
    let mut buckets: BTreeMap<i128, Acc> = BTreeMap::new();
    for &(at, value) in points.iter().filter(|(_, value)| value.is_finite()) {
        buckets
            .entry(bucket_of(at, width))
            .or_default()
            .add(value, value, value, 1);
    }
    finish(buckets)
}

/// Coarsens existing roll-ups into buckets of `bucket` (a multiple of theirs), weighting each
/// mean by its count; the result equals rolling up the raw points directly.
pub fn rollup_rollups(rollups: &[Rollup], bucket: Duration) -> Vec<Rollup> {
    let width = duration_nanos(bucket);
    if width == 0 {
        return Vec::new();
    }
    let mut buckets: BTreeMap<i128, Acc> = BTreeMap::new();
    for r in rollups.iter().filter(|r| r.count > 0) {
        buckets.entry(bucket_of(r.start, width)).or_default().add(
            r.min,
            r.max,
            r.mean * r.count as f64,
            r.count,
        );
    }
    finish(buckets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn hourly_buckets_are_aligned_and_summarised() {
        let t = datetime!(2026-05-04 9:50 UTC);
        let points = [
            (t, 10.0),
            (t + time::Duration::minutes(5), 30.0),
            (t + time::Duration::minutes(15), 50.0),
            (t - time::Duration::minutes(55), f64::NAN),
        ];
        let buckets = rollup(&points, HOUR);
        assert_eq!(
            buckets,
            vec![
                Rollup {
                    start: datetime!(2026-05-04 9:00 UTC),
                    min: 10.0,
                    mean: 20.0,
                    max: 30.0,
                    count: 2
                },
                Rollup {
                    start: datetime!(2026-05-04 10:00 UTC),
                    min: 50.0,
                    mean: 50.0,
                    max: 50.0,
                    count: 1
                },
            ]
        );
        assert!(rollup(&points, Duration::ZERO).is_empty());
    }

    proptest! {
        #[test]
        fn rollups_bound_their_points_and_coarsen_exactly(
            points in prop::collection::vec((-200_000i64..200_000, -1000.0f64..1000.0), 0..200),
        ) {
            let base = datetime!(2026-05-04 0:00 UTC);
            let points: Vec<_> = points
                .into_iter()
                .map(|(s, v)| (base + time::Duration::seconds(s), v))
                .collect();
            let hourly = rollup(&points, HOUR);
            prop_assert_eq!(hourly.iter().map(|r| r.count).sum::<u64>(), points.len() as u64);
            for pair in hourly.windows(2) {
                prop_assert!(pair[0].start < pair[1].start);
            }
            for r in &hourly {
                prop_assert!(r.min <= r.mean + 1e-9 && r.mean <= r.max + 1e-9);
                prop_assert_eq!(r.start.unix_timestamp() % 3600, 0);
            }
            let direct = rollup(&points, 24 * HOUR);
            let coarse = rollup_rollups(&hourly, 24 * HOUR);
            prop_assert_eq!(direct.len(), coarse.len());
            for (d, c) in direct.iter().zip(&coarse) {
                prop_assert_eq!((d.start, d.min, d.max, d.count), (c.start, c.min, c.max, c.count));
                prop_assert!((d.mean - c.mean).abs() < 1e-6);
            }
        }
    }
}
