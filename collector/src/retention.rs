//! Bounded store growth: raw status samples older than `[retention] raw_status` become hourly
//! summaries (min / mean / max of CPU, memory and every volume's use), and ping verdicts older
//! than `[retention] reach` are dropped. Runs every `[retention] every` on its own task,
//! straight on the store (old records only; the register writer only adds new ones).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::model::StatusSample;
use crate::store::{Store, StoreError};
use crate::track::{Rollup, rollup};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Raw status reports kept this long, then summarised hourly.
    #[serde(with = "humantime_serde")]
    pub raw_status: Duration,
    /// Ping verdicts (transitions and 15-minute refreshes) kept this long.
    #[serde(with = "humantime_serde")]
    pub reach: Duration,
    #[serde(with = "humantime_serde")]
    pub every: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            raw_status: Duration::from_secs(7 * 86_400),
            reach: Duration::from_secs(90 * 86_400),
            every: Duration::from_secs(3600),
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Summarises and drops what is past retention for every asset; returns records removed.
pub fn compact_all(
    store: &dyn Store,
    config: &RetentionConfig,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let raw_cutoff = floor_hour(
        now - time::Duration::try_from(config.raw_status).unwrap_or(time::Duration::MAX),
    );
    let reach_cutoff = now - time::Duration::try_from(config.reach).unwrap_or(time::Duration::MAX);
    let mut removed = 0;
    for asset in store.assets()? {
        let old = store.samples(
            &asset.id,
            OffsetDateTime::UNIX_EPOCH,
            raw_cutoff,
            usize::MAX,
        )?;
        let rollups = summarise(&old);
        removed += store.compact(&asset.id, raw_cutoff, rollups, reach_cutoff)?;
    }
    Ok(removed)
}

fn floor_hour(at: OffsetDateTime) -> OffsetDateTime {
    let secs = at.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(3600)).unwrap_or(at)
}

/// Hourly min/mean/max of each metric.
pub fn summarise(samples: &[StatusSample]) -> Vec<(OffsetDateTime, serde_json::Value)> {
    let mut series: BTreeMap<String, Vec<(OffsetDateTime, f64)>> = BTreeMap::new();
    for sample in samples {
        let point = crate::observe::status_point(sample.at, &sample.status);
        series
            .entry("cpu_percent".to_owned())
            .or_default()
            .push((point.at, point.cpu_percent));
        if let Some(memory) = point.memory_percent {
            series
                .entry("memory_percent".to_owned())
                .or_default()
                .push((point.at, memory));
        }
        for (mount, used, _) in &point.volumes {
            series
                .entry(format!("volume:{mount}"))
                .or_default()
                .push((point.at, *used));
        }
    }
    let mut hours: BTreeMap<OffsetDateTime, serde_json::Map<String, serde_json::Value>> =
        BTreeMap::new();
    for (metric, points) in series {
        for Rollup {
            start,
            min,
            mean,
            max,
            count,
        } in rollup(&points, HOUR)
        {
            hours.entry(start).or_default().insert(
                metric.clone(),
                json!({"min": min, "mean": mean, "max": max, "count": count}),
            );
        }
    }
    hours
        .into_iter()
        .map(|(start, metrics)| (start, serde_json::Value::Object(metrics)))
        .collect()
}

/// The retention task.
pub async fn run(store: Arc<dyn Store>, config: RetentionConfig, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(config.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let (store, config) = (store.clone(), config.clone());
        match tokio::task::spawn_blocking(move || {
            compact_all(store.as_ref(), &config, OffsetDateTime::now_utc())
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "Old samples summarised and removed"),
            Ok(Err(error)) => tracing::error!(%error, "Retention pass failed"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, WriteSet};
    use caretaker_proto::v1;
    use time::macros::datetime;

    #[test]
    fn old_status_becomes_hourly_summaries_and_recent_stays_raw() {
        let store = MemoryStore::default();
        let now = datetime!(2026-10-20 12:30 UTC);
        let asset = crate::model::Asset {
            id: "pc".to_owned(),
            kind: crate::model::AssetKind::Pc,
            name: "PC".to_owned(),
            hostname: String::new(),
            ips: vec![],
            macs: vec![],
            vendor: String::new(),
            model: String::new(),
            serial: String::new(),
            smbios_uuid: String::new(),
            machine_id: String::new(),
            os: String::new(),
            sources: Default::default(),
            first_seen: now,
            agent_ids: vec![],
            identity_notes: vec![],
            partial: vec![],
            clock_suspect: false,
            classification: String::new(),
        };
        // Ten days of five-minute reports.
        let samples: Vec<StatusSample> = (0..10 * 288)
            .map(|i| StatusSample {
                asset_id: "pc".to_owned(),
                at: now - time::Duration::minutes(5 * (10 * 288 - i)),
                seq: i as u64 + 1,
                clock_suspect: false,
                status: v1::Status {
                    cpu_percent: (i % 100) as f32,
                    memory_total_bytes: 100,
                    memory_used_bytes: 50,
                    volumes: vec![v1::VolumeUsage {
                        mount: "C:".to_owned(),
                        total_bytes: 100,
                        free_bytes: 25,
                    }],
                    ..Default::default()
                },
            })
            .collect();
        store
            .commit(WriteSet {
                assets: vec![asset],
                samples,
                ..Default::default()
            })
            .expect("commit");
        let removed = compact_all(&store, &RetentionConfig::default(), now).expect("compact");
        let far = datetime!(2100-01-01 00:00 UTC);
        let raw = store
            .samples("pc", OffsetDateTime::UNIX_EPOCH, far, usize::MAX)
            .expect("samples");
        assert_eq!(removed + raw.len(), 10 * 288);
        assert!(
            raw.iter()
                .all(|s| now - s.at <= time::Duration::days(7) + time::Duration::hours(1))
        );
        let rollups = store
            .rollups("pc", OffsetDateTime::UNIX_EPOCH, far)
            .expect("rollups");
        assert!(
            (70..=73).contains(&rollups.len()),
            "three days of hours: {}",
            rollups.len()
        );
        let first = &rollups[0].1;
        assert_eq!(first["volume:C:"]["mean"], 75.0);
        assert_eq!(first["memory_percent"]["max"], 50.0);
        assert_eq!(
            first["cpu_percent"]["count"], 6,
            "the series starts at half past"
        );
        assert_eq!(rollups[1].1["cpu_percent"]["count"], 12);
    }
}
