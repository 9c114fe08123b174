//! Bounded store growth: raw status samples older than `[retention] raw_status` become hourly
//! summaries (min / mean / max of CPU, memory and every volume's use), ping verdicts older
//! than `[retention] reach` are dropped, hourly summaries older than `summaries` are dropped,
//! and outbox entries that were sent (or failed for good) longer than `outbox` ago are removed
//! unless an incident they mail about is still open (its thread and escalation use them). Runs every `[retention] every` on its own task,
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
    /// Hourly summaries kept this long (13 months: a year-on-year comparison).
    #[serde(with = "humantime_serde")]
    pub summaries: Duration,
    /// Sent or failed emails kept this long in the outbox.
    #[serde(with = "humantime_serde")]
    pub outbox: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            raw_status: Duration::from_secs(7 * 86_400),
            reach: Duration::from_secs(90 * 86_400),
            every: Duration::from_secs(3600),
            summaries: Duration::from_secs(400 * 86_400),
            outbox: Duration::from_secs(30 * 86_400),
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
        removed += store.prune_rollups(&asset.id, cutoff(now, config.summaries))?;
    }
    removed += prune_outbox(store, cutoff(now, config.outbox))?;
    Ok(removed)
}

fn cutoff(now: OffsetDateTime, keep: Duration) -> OffsetDateTime {
    now - time::Duration::try_from(keep).unwrap_or(time::Duration::MAX)
}

/// Removes finished outbox entries older than `before` whose incidents are all resolved.
fn prune_outbox(store: &dyn Store, before: OffsetDateTime) -> Result<usize, StoreError> {
    let open: std::collections::HashSet<String> = store
        .incidents()?
        .into_iter()
        .filter(|i| i.resolved_at.is_none())
        .map(|i| i.id)
        .collect();
    let old: Vec<String> = store
        .outbox()?
        .into_iter()
        .filter(|e| e.status == "sent" || e.status == "failed")
        .filter(|e| e.sent_at.unwrap_or(e.created_at) < before)
        .filter(|e| !e.incident_ids.iter().any(|id| open.contains(id)))
        .map(|e| e.id)
        .collect();
    if old.is_empty() {
        return Ok(0);
    }
    store.remove_outbox(&old)
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
            register: Default::default(),
            register_rev: 0,
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

    #[test]
    fn old_summaries_and_finished_mail_go_unless_an_incident_is_still_open() {
        use crate::store::Store as _;
        let store = MemoryStore::default();
        let now = datetime!(2026-10-20 12:30 UTC);
        let asset: crate::model::Asset = serde_json::from_value(serde_json::json!({
            "id": "pc", "kind": "pc", "name": "PC", "hostname": "", "ips": [], "macs": [],
            "vendor": "", "model": "", "serial": "", "smbios_uuid": "", "machine_id": "",
            "os": "", "sources": [], "first_seen": "2025-01-01T00:00:00Z", "agent_ids": [],
            "identity_notes": [], "partial": [], "clock_suspect": false, "classification": ""
        }))
        .expect("asset");
        let mail = |id: &str, status: &str, days_ago: i64, incident: &str| {
            let at = now - time::Duration::days(days_ago);
            let rfc = at
                .format(&time::format_description::well_known::Rfc3339)
                .expect("rfc");
            serde_json::from_value::<crate::model::OutboxEntry>(serde_json::json!({
                "id": id, "created_at": rfc, "due_at": rfc, "to": ["t@school.example"],
                "subject": "s", "text": "t", "message_id": format!("<{id}>"),
                "incident_ids": [incident], "attempts": 1, "status": status,
                "sent_at": if status == "pending" { None } else { Some(rfc.clone()) }
            }))
            .expect("outbox entry")
        };
        let open: crate::model::Incident = serde_json::from_value(serde_json::json!({
            "id": "open", "number": "INC0000001", "asset_id": "pc", "asset_name": "PC",
            "rule": "disk_full", "title": "t", "description": "", "impact": 2, "urgency": 2,
            "priority": 3, "state": "new", "opened_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "occurrences": 1, "notes": []
        }))
        .expect("incident");
        store
            .commit(WriteSet {
                assets: vec![asset],
                incidents: vec![open],
                outbox: vec![
                    mail("old-sent", "sent", 40, "gone"),
                    mail("old-failed", "failed", 40, "gone"),
                    mail("old-open", "sent", 40, "open"),
                    mail("old-pending", "pending", 40, "gone"),
                    mail("new-sent", "sent", 5, "gone"),
                ],
                ..WriteSet::default()
            })
            .expect("commit");
        let hour = |days: i64| {
            (
                now - time::Duration::days(days),
                serde_json::json!({"n": days}),
            )
        };
        store
            .compact(
                "pc",
                OffsetDateTime::UNIX_EPOCH,
                vec![hour(500), hour(401), hour(399), hour(10)],
                OffsetDateTime::UNIX_EPOCH,
            )
            .expect("rollups");
        compact_all(&store, &RetentionConfig::default(), now).expect("retention");
        let left: Vec<String> = store
            .outbox()
            .expect("outbox")
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, ["old-open", "old-pending", "new-sent"]);
        let kept = store
            .rollups("pc", OffsetDateTime::UNIX_EPOCH, now)
            .expect("rollups");
        assert_eq!(kept.len(), 2, "400 days of summaries: {kept:?}");
    }
}
