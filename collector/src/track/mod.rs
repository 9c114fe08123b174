//! Availability and capacity: pure maths, no I/O, no tasks.
//!
//! Everything here is a function of its arguments, so the rules engine, the HTTP API and the
//! tests can call it with any clock. Times cross this boundary as UTC `time::OffsetDateTime`;
//! `jiff` is used inside [`timetable`] only, for time zones and DST.
//!
//! - [`timetable`] — school hours: a weekly timetable, term dates and closure days, validated
//!   from the `[school_hours]` config and turned into UTC intervals across DST changes.
//! - [`availability`] — the per-asset state machine (ping misses, agent heartbeats), outages
//!   from a timeline of states, availability % (around the clock or within school hours),
//!   MTBF and MTTR.
//! - [`forecast`] — days until a series reaches a threshold (disk full, toner empty), only
//!   when the recent trend supports it.
//! - [`rollup`] — min / mean / max / count per time bucket, for coarser retention.

pub mod availability;
pub mod forecast;
pub mod rollup;
pub mod timetable;

pub use availability::{
    Availability, HostParams, HostState, Outage, VERDICT_MAX_GAP, availability, mtbf_mttr, outages,
    verdict_timeline,
};
pub use forecast::{Direction, Forecast, ForecastParams, days_until};
pub use rollup::{Rollup, rollup, rollup_rollups};
pub use timetable::{SchoolHours, SchoolHoursConfig};

use time::OffsetDateTime;

/// Nanoseconds since the Unix epoch; the one integer time scale used inside this module.
pub(crate) fn nanos(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos()
}

/// The inverse of [`nanos`]; out-of-range values (never produced from real times) saturate to
/// the epoch rather than panic.
pub(crate) fn from_nanos(nanos: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A `std` duration as nanoseconds, saturating.
pub(crate) fn duration_nanos(duration: std::time::Duration) -> i128 {
    i128::try_from(duration.as_nanos()).unwrap_or(i128::MAX)
}

/// Non-negative nanoseconds as a `std` duration, saturating; negatives become zero.
pub(crate) fn nanos_duration(nanos: i128) -> std::time::Duration {
    std::time::Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}
