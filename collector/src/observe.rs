//! What the collector currently knows about each asset, in memory, for the rules.
//!
//! The register writer hands every batch it is about to commit to [`Observations::absorb`]
//! (ping verdicts, status reports, SNMP snapshots, change records, inventories) and reports
//! agent contact, so rule evaluation reads memory
//! only (5,000 assets × every rule in a few milliseconds). History is bounded per asset: the
//! last [`MAX_STATUS`] status points and [`MAX_SUPPLY`] points per printer supply, the recent
//! boots and changes. On start, [`load`] rebuilds them from the store.

use std::collections::{BTreeMap, HashMap, VecDeque};

use time::OffsetDateTime;

use crate::model::{AssetId, Change, SnmpSnapshot, SupplyLevels};
use crate::store::WriteSet;

/// Status points kept per asset (a week at the default five-minute interval).
pub const MAX_STATUS: usize = 2016;
/// Level points kept per printer supply.
pub const MAX_SUPPLY: usize = 512;
/// How often a series' forecast is refitted as new points arrive.
pub const FORECAST_EVERY: time::Duration = time::Duration::minutes(30);

/// Change records kept per asset for the change rules.
pub const MAX_CHANGES: usize = 256;

/// Ping history of one asset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PingObs {
    pub last_at: Option<OffsetDateTime>,
    pub last_up_at: Option<OffsetDateTime>,
    /// Probes in a row that got no answer (full sweeps and watch probes alike).
    pub consecutive_misses: u32,
    /// When the current run of misses started.
    pub missing_since: Option<OffsetDateTime>,
    /// The last verdict written to the store, and when (to store transitions, not every probe).
    pub stored: Option<(OffsetDateTime, bool)>,
}

/// One status report reduced to what the rules use.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPoint {
    pub at: OffsetDateTime,
    pub cpu_percent: f64,
    /// Memory used, 0–100.
    pub memory_percent: Option<f64>,
    /// `(mount, used percent, total bytes)`.
    pub volumes: Vec<(String, f64, u64)>,
    pub boot_time: Option<OffsetDateTime>,
}

/// The SNMP facts the rules use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnmpObs {
    pub at: Option<OffsetDateTime>,
    pub printer_errors: Vec<String>,
    /// `(on battery, runtime seconds, charge percent)`.
    pub ups: Option<(bool, Option<u64>, Option<f64>)>,
}

#[derive(Debug, Clone, Default)]
pub struct AssetObs {
    pub ping: PingObs,
    pub agent_heard: Option<OffsetDateTime>,
    pub status: VecDeque<StatusPoint>,
    pub snmp: SnmpObs,
    /// Supply description → `(at, percent)` points, oldest first.
    pub supplies: BTreeMap<String, VecDeque<(OffsetDateTime, f64)>>,
    /// Distinct boot times seen, oldest first.
    pub boots: VecDeque<OffsetDateTime>,
    pub changes: VecDeque<Change>,
    /// Trend forecasts per series (`volume:MOUNT`, `supply:DESCRIPTION`), recomputed at most
    /// every [`FORECAST_EVERY`] as data arrives, so rule evaluation never fits a line.
    pub forecasts: BTreeMap<String, (OffsetDateTime, Option<crate::track::Forecast>)>,
    /// The last supply levels written to the store, and when.
    pub levels_stored: Option<(OffsetDateTime, SupplyLevels)>,
    /// Names of the installed software, from the latest complete inventory.
    pub software: Option<std::collections::BTreeSet<String>>,
    /// Installed software by lower-case name → its version (the oldest, if installed twice),
    /// from the latest complete inventory (Release Management's rules).
    pub versions: BTreeMap<String, String>,
}

/// Every asset's observations.
#[derive(Debug, Default)]
pub struct Observations {
    pub assets: HashMap<AssetId, AssetObs>,
    /// Forwarding tables and LLDP neighbours of the switches that have them, for topology.
    pub topology: HashMap<AssetId, SnmpSnapshot>,
    /// When agents' client certificates and the CA expire (from `pki`, refreshed hourly).
    pub certificates: Certificates,
}

/// Certificate lifetimes for the `certificate_expiry` rule.
#[derive(Debug, Default, Clone)]
pub struct Certificates {
    /// Each asset's agent and when its newest valid client certificate expires.
    pub agents: HashMap<AssetId, (String, OffsetDateTime)>,
    /// The CA's subject and expiry (the current and, during a rotation, the previous one).
    pub cas: Vec<(String, OffsetDateTime)>,
    /// How long before expiry to warn.
    pub warn_before: time::Duration,
}

impl AssetObs {
    /// Fits `points` (percent over time) towards 100 % (rising) or 0 % (falling) as of `at`.
    fn refit(
        &mut self,
        key: String,
        points: &[(OffsetDateTime, f64)],
        direction: crate::track::Direction,
        at: OffsetDateTime,
    ) {
        let threshold = match direction {
            crate::track::Direction::Rising => 100.0,
            crate::track::Direction::Falling => 0.0,
        };
        let forecast = crate::track::days_until(
            points,
            threshold,
            direction,
            at,
            &crate::track::ForecastParams::default(),
        );
        self.forecasts.insert(key, (at, forecast));
    }

    /// Days until the series reaches its threshold, as of `now` (the fit was made earlier).
    pub fn days_until(&self, key: &str, now: OffsetDateTime) -> Option<f64> {
        let (at, forecast) = self.forecasts.get(key)?;
        let elapsed = (now - *at).as_seconds_f64() / 86_400.0;
        forecast.as_ref().map(|f| (f.days - elapsed).max(0.0))
    }
}

impl Observations {
    pub fn entry(&mut self, asset: &str) -> &mut AssetObs {
        // Looked up before inserting: every report of a known asset would allocate its id.
        if !self.assets.contains_key(asset) {
            self.assets.insert(asset.to_owned(), AssetObs::default());
        }
        self.assets.get_mut(asset).expect("inserted above")
    }

    /// A ping verdict. Returns whether the store should get a reach sample: on a change of
    /// state, or when the last stored one is older than `refresh`.
    pub fn ping(
        &mut self,
        asset: &str,
        at: OffsetDateTime,
        up: bool,
        refresh: time::Duration,
    ) -> bool {
        let ping = &mut self.entry(asset).ping;
        // A clock stepped back: treat the observation as happening now-ish, never earlier.
        let at = ping.last_at.map_or(at, |last| at.max(last));
        ping.last_at = Some(at);
        if up {
            ping.last_up_at = Some(at);
            ping.consecutive_misses = 0;
            ping.missing_since = None;
        } else {
            ping.consecutive_misses = ping.consecutive_misses.saturating_add(1);
            ping.missing_since.get_or_insert(at);
        }
        let store = match ping.stored {
            Some((when, state)) => state != up || at - when >= refresh,
            None => true,
        };
        if store {
            ping.stored = Some((at, up));
        }
        store
    }

    pub fn agent(&mut self, asset: &str, at: OffsetDateTime) {
        let heard = &mut self.entry(asset).agent_heard;
        *heard = Some(heard.map_or(at, |h| h.max(at)));
    }

    pub fn status(&mut self, asset: &str, point: StatusPoint) {
        let obs = self.entry(asset);
        if let Some(boot) = point.boot_time {
            // Boot times wobble by a second or two between reports; a new boot is a jump.
            let new_boot = obs
                .boots
                .back()
                .is_none_or(|last| (boot - *last).abs() > time::Duration::minutes(2));
            if new_boot {
                obs.boots.push_back(boot);
                while obs.boots.len() > 64 {
                    obs.boots.pop_front();
                }
            }
        }
        let at = point.at;
        // Only the series whose forecast is due are refitted (and need their own key).
        let mut key = String::new();
        let due: Vec<(String, String)> = point
            .volumes
            .iter()
            .filter_map(|(mount, ..)| {
                key.clear();
                key.push_str("volume:");
                key.push_str(mount);
                let fresh = obs
                    .forecasts
                    .get(&key)
                    .is_some_and(|(when, _)| at - *when < FORECAST_EVERY);
                (!fresh).then(|| (mount.clone(), key.clone()))
            })
            .collect();
        obs.status.push_back(point);
        while obs.status.len() > MAX_STATUS {
            obs.status.pop_front();
        }
        for (mount, key) in due {
            let points: Vec<_> = obs
                .status
                .iter()
                .filter_map(|p| p.volumes.iter().find(|v| v.0 == mount).map(|v| (p.at, v.1)))
                .collect();
            obs.refit(key, &points, crate::track::Direction::Rising, at);
        }
    }

    /// The latest SNMP snapshot of a device: printer errors, UPS state, supply levels, and
    /// (for switches) what topology learns parents from.
    pub fn snmp(&mut self, asset: &str, at: OffsetDateTime, snapshot: &SnmpSnapshot) {
        self.device_state(asset, at, snapshot);
        self.supplies(asset, at, &snapshot.supply_levels());
    }

    /// Printer errors, UPS state and forwarding tables from a snapshot (not supply levels).
    pub fn device_state(&mut self, asset: &str, at: OffsetDateTime, snapshot: &SnmpSnapshot) {
        let obs = self.entry(asset);
        obs.snmp.at = Some(at);
        obs.snmp.printer_errors.clone_from(&snapshot.printer_errors);
        obs.snmp.ups = snapshot.ups.as_ref().map(|u| {
            (
                u.on_battery,
                u.runtime_secs,
                u.charge_percent.map(f64::from),
            )
        });
        if snapshot.is_topological() {
            self.topology
                .insert(asset.to_owned(), snapshot.topology_only());
        }
    }

    /// Printer supply levels at one moment, and their forecasts.
    pub fn supplies(&mut self, asset: &str, at: OffsetDateTime, levels: &SupplyLevels) {
        let obs = self.entry(asset);
        for (description, &percent) in levels {
            let points = obs.supplies.entry(description.clone()).or_default();
            points.push_back((at, percent));
            while points.len() > MAX_SUPPLY {
                points.pop_front();
            }
            let key = format!("supply:{description}");
            // A refill is a jump: refit at once rather than at the next period.
            let jumped =
                points.len() >= 2 && points[points.len() - 1].1 > points[points.len() - 2].1 + 10.0;
            let fresh = obs
                .forecasts
                .get(&key)
                .is_some_and(|(when, _)| at - *when < FORECAST_EVERY);
            if jumped || !fresh {
                let series: Vec<_> = points.iter().copied().collect();
                obs.refit(key, &series, crate::track::Direction::Falling, at);
            }
        }
    }

    /// Takes in a change; one already held (the same id, e.g. marked expected since) is
    /// replaced where it stands.
    pub fn change(&mut self, change: &Change) {
        let changes = &mut self.entry(&change.asset_id).changes;
        if let Some(held) = changes.iter_mut().rev().find(|c| c.id == change.id) {
            *held = change.clone();
            return;
        }
        changes.push_back(change.clone());
        while changes.len() > MAX_CHANGES {
            changes.pop_front();
        }
    }
}

impl Observations {
    /// Takes in everything a batch is about to store, and trims what need not be stored:
    /// ping verdicts that repeat the last stored one (kept on a change of state, or once per
    /// `reach_refresh`), and supply levels unchanged within the hour (added to `set.levels`
    /// when they changed).
    pub fn absorb(&mut self, set: &mut WriteSet, reach_refresh: time::Duration) {
        let reach = std::mem::take(&mut set.reach);
        for (asset, sample) in reach {
            if self.ping(&asset, sample.at, sample.up, reach_refresh) {
                set.reach.push((asset, sample));
            }
        }
        for sample in &set.samples {
            self.status(&sample.asset_id, status_point(sample.at, &sample.status));
        }
        for change in &set.changes {
            self.change(change);
        }
        for (asset, record) in &set.inventories {
            if !record.meta.partial.iter().any(|p| p == "software") {
                self.entry(asset).software = Some(
                    record
                        .inventory
                        .software
                        .iter()
                        .map(|s| s.name.clone())
                        .collect(),
                );
                self.entry(asset).versions = versions(&record.inventory.software);
            }
        }
        for (asset, snapshot) in &set.snmp {
            let at = snapshot
                .collected_at
                .unwrap_or_else(OffsetDateTime::now_utc);
            self.snmp(asset, at, snapshot);
            // Supply levels as a time series: when they change, and hourly otherwise.
            let current = snapshot.supply_levels();
            if current.is_empty() {
                continue;
            }
            let entry = self.entry(asset);
            let due = entry.levels_stored.as_ref().is_none_or(|(when, last)| {
                *last != current || at - *when >= time::Duration::hours(1)
            });
            if due {
                entry.levels_stored = Some((at, current.clone()));
                set.levels.push((asset.clone(), at, current));
            }
        }
    }
}

/// Reduces a status report to a point.
pub fn status_point(at: OffsetDateTime, status: &caretaker_proto::v1::Status) -> StatusPoint {
    let memory_percent = (status.memory_total_bytes > 0)
        .then(|| status.memory_used_bytes as f64 * 100.0 / status.memory_total_bytes as f64);
    let volumes = status
        .volumes
        .iter()
        .filter(|v| v.total_bytes > 0)
        .map(|v| {
            let used =
                v.total_bytes.saturating_sub(v.free_bytes) as f64 * 100.0 / v.total_bytes as f64;
            (v.mount.clone(), used, v.total_bytes)
        })
        .collect();
    let boot_time = status
        .boot_time
        .as_ref()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.seconds).ok());
    StatusPoint {
        at,
        cpu_percent: f64::from(status.cpu_percent),
        memory_percent,
        volumes,
        boot_time,
    }
}

/// Rebuilds the rules' observations from the store at start-up.
pub fn load<'a>(
    store: &dyn crate::store::Store,
    assets: impl Iterator<Item = &'a crate::model::Asset>,
) -> Result<Observations, crate::store::StoreError> {
    let mut obs = Observations::default();
    let now = OffsetDateTime::now_utc();
    let seen = store.last_seen()?;
    for asset in assets {
        let id = asset.id.as_str();
        if let Some(reach) = store.latest_reach(id)? {
            let entry = obs.entry(id);
            entry.ping.last_at = Some(reach.at);
            entry.ping.stored = Some((reach.at, reach.up));
            if reach.up {
                entry.ping.last_up_at = Some(reach.at);
            } else {
                entry.ping.consecutive_misses = 1;
                entry.ping.missing_since = Some(reach.at);
            }
        }
        if asset.sources.contains(&crate::model::Source::Agent)
            && let Some(at) = seen.get(id)
        {
            obs.agent(id, *at);
        }
        for sample in store.samples(
            id,
            now - time::Duration::days(3),
            now + time::Duration::days(1),
            crate::observe::MAX_STATUS,
        )? {
            obs.status(id, status_point(sample.at, &sample.status));
        }
        for (at, levels) in store.levels(
            id,
            now - time::Duration::days(30),
            now + time::Duration::days(1),
        )? {
            obs.supplies(id, at, &levels);
            obs.entry(id).levels_stored = Some((at, levels));
        }
        if let Some(snapshot) = store.snmp(id)? {
            // Supply levels came from their own series above.
            obs.device_state(id, snapshot.collected_at.unwrap_or(now), &snapshot);
        }
        for change in store
            .changes(&crate::store::ChangeQuery {
                asset: Some(asset.id.clone()),
                since: Some(now - time::Duration::days(2)),
                limit: crate::observe::MAX_CHANGES,
            })?
            .into_iter()
            .rev()
        {
            obs.change(&change);
        }
        if let Some(record) = store.inventory(id)? {
            obs.entry(id).software = Some(
                record
                    .inventory
                    .software
                    .iter()
                    .map(|s| s.name.clone())
                    .collect(),
            );
            obs.entry(id).versions = versions(&record.inventory.software);
        }
    }
    Ok(obs)
}

/// Lower-case name → version, keeping the oldest of a title installed twice.
pub fn versions(software: &[caretaker_proto::v1::Software]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for program in software {
        let name = program.name.to_lowercase();
        match out.get(&name) {
            Some(old) if crate::release::version::compare(old, &program.version).is_le() => {}
            _ => {
                out.insert(name, program.version.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn reach_samples_are_stored_on_transitions_and_refreshes() {
        let mut obs = Observations::default();
        let t = datetime!(2026-10-05 08:00 UTC);
        let refresh = time::Duration::minutes(15);
        assert!(obs.ping("a", t, true, refresh));
        assert!(!obs.ping("a", t + time::Duration::minutes(1), true, refresh));
        assert!(obs.ping("a", t + time::Duration::minutes(2), false, refresh));
        assert_eq!(obs.assets["a"].ping.consecutive_misses, 1);
        assert!(!obs.ping("a", t + time::Duration::minutes(3), false, refresh));
        assert_eq!(obs.assets["a"].ping.consecutive_misses, 2);
        assert!(
            obs.ping("a", t + time::Duration::minutes(20), false, refresh),
            "refresh"
        );
        assert!(obs.ping("a", t + time::Duration::minutes(21), true, refresh));
        assert_eq!(obs.assets["a"].ping.consecutive_misses, 0);
    }

    #[test]
    fn a_clock_stepping_back_does_not_move_time_backwards() {
        let mut obs = Observations::default();
        let t = datetime!(2026-10-25 01:30 UTC);
        obs.ping("a", t, false, time::Duration::minutes(15));
        obs.ping(
            "a",
            t - time::Duration::hours(1),
            false,
            time::Duration::minutes(15),
        );
        let ping = &obs.assets["a"].ping;
        assert_eq!(ping.last_at, Some(t));
        assert_eq!(ping.missing_since, Some(t));
    }
}
