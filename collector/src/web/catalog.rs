//! The read side's cache of the register: one entry per asset (record, latest ping verdict,
//! latest status figures, supplies, a search text and its software titles) and every
//! incident, kept in memory so that the dashboard's and the API's lists answer in
//! milliseconds at 3,000 assets and 100,000 incidents.
//!
//! It is filled from the store on first use and then follows the register writer's
//! [`Touched`] sets: each query first reloads only the assets and incidents that commits
//! touched since the last one (a few store reads), so it is never staler than the last
//! durable commit. Readers share one `RwLock`; the refresh takes the write lock briefly.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use crate::model::{Asset, AssetId, Incident, ReachSample, Status, SupplyLevels};
use crate::register::Touched;
use crate::store::{Store, StoreError};

/// What the lists need about one asset.
#[derive(Debug, Clone)]
pub struct Entry {
    pub asset: Asset,
    /// The name in lower case (the list's default order).
    pub name_lower: String,
    pub reach: Option<ReachSample>,
    pub last_seen: Option<OffsetDateTime>,
    /// Lower-case text the search box matches: names, addresses, serial, users, room, and the
    /// register's asset tag, location, assigned user and department.
    pub haystack: String,
    /// Title ids (into [`Data::titles`]) of the installed software.
    pub software: Vec<u32>,
    /// Users logged on at the latest status report.
    pub users: Vec<String>,
    /// SNMP sysLocation (the room, on most devices).
    pub location: String,
    /// Latest use per volume: `(mount, used percent)`.
    pub volumes: Vec<(String, f64)>,
    /// Latest supply levels: `(description, percent)`.
    pub supplies: Vec<(String, f64)>,
    /// UPS: `(on battery, charge percent, replace battery)`.
    pub ups: Option<(bool, Option<f32>, bool)>,
}

/// An incident's place in the list order, with what the list filters on.
#[derive(Debug, Clone)]
pub struct IncidentKey {
    pub priority: u8,
    pub opened_at: OffsetDateTime,
    pub id: String,
    pub state: crate::model::IncidentState,
    pub asset_id: String,
    /// Lower case: number, title, asset name, assignee.
    pub text: String,
}

impl IncidentKey {
    fn of(i: &Incident) -> Self {
        Self {
            priority: i.priority,
            opened_at: i.opened_at,
            id: i.id.clone(),
            state: i.state,
            asset_id: i.asset_id.clone(),
            text: format!(
                "{} {} {} {}",
                i.number,
                i.title,
                i.asset_name,
                i.desk.assigned_to.as_deref().unwrap_or_default()
            )
            .to_lowercase(),
        }
    }

    /// Most urgent first, then newest.
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.opened_at.cmp(&self.opened_at))
            .then_with(|| self.id.cmp(&other.id))
    }
}

#[derive(Default)]
pub struct Data {
    pub assets: HashMap<AssetId, Entry>,
    pub incidents: HashMap<String, Incident>,
    /// Every incident in list order (priority, then newest), kept sorted as they change.
    pub order: Vec<IncidentKey>,
    /// Interned software titles (lower case), and their ids.
    pub titles: Vec<String>,
    title_ids: HashMap<String, u32>,
    /// The newest ping verdict of any asset: when the last sweep or watch ran.
    pub last_reach: Option<OffsetDateTime>,
}

pub struct Catalog {
    store: Arc<dyn Store>,
    touched: Arc<Touched>,
    data: RwLock<Option<Data>>,
    /// Serialises refreshes (readers keep reading the old data meanwhile).
    refresh: std::sync::Mutex<u64>,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>, touched: Arc<Touched>) -> Self {
        Self {
            store,
            touched,
            data: RwLock::new(None),
            refresh: std::sync::Mutex::new(u64::MAX),
        }
    }

    /// Runs `read` over data that includes every commit made before the call. Blocking:
    /// call it inside `spawn_blocking`.
    pub fn read<T>(&self, read: impl FnOnce(&Data) -> T) -> Result<T, StoreError> {
        self.refresh()?;
        let guard = self.data.read().unwrap_or_else(|p| p.into_inner());
        Ok(read(guard.as_ref().expect("filled by refresh")))
    }

    fn refresh(&self) -> Result<(), StoreError> {
        let mut seen = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.touched.generation();
        let loaded = self
            .data
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if loaded && *seen == generation {
            return Ok(());
        }
        let touched = self.touched.take();
        if !loaded {
            let data = self.load()?;
            *self.data.write().unwrap_or_else(|p| p.into_inner()) = Some(data);
            *seen = generation;
            return Ok(());
        }
        // Read the touched records outside the write lock, then swap them in.
        let store = self.store.as_ref();
        let last_seen = if touched.assets.is_empty() {
            HashMap::new()
        } else {
            store.last_seen()?
        };
        let mut assets = Vec::new();
        for id in &touched.assets {
            if let Some(asset) = store.asset(id)? {
                assets.push(asset);
            }
        }
        let mut incidents = Vec::new();
        for id in &touched.incidents {
            if let Some(incident) = store.incident(id)? {
                incidents.push(incident);
            }
        }
        let mut guard = self.data.write().unwrap_or_else(|p| p.into_inner());
        let data = guard.as_mut().expect("loaded above");
        for asset in assets {
            // Status reports and pings leave the software list as it was: no decode.
            let keep = (!touched.inventories.contains(&asset.id))
                .then(|| data.assets.get(&asset.id).map(|e| e.software.clone()))
                .flatten();
            let entry = entry(store, data, asset, &last_seen, keep)?;
            data.last_reach = data.last_reach.max(entry.reach.map(|r| r.at));
            data.assets.insert(entry.asset.id.clone(), entry);
        }
        for incident in incidents {
            if let Some(old) = data.incidents.get(&incident.id) {
                let old = IncidentKey::of(old);
                if let Ok(at) = data.order.binary_search_by(|k| k.order(&old)) {
                    data.order.remove(at);
                }
            }
            let key = IncidentKey::of(&incident);
            let at = data
                .order
                .binary_search_by(|k| k.order(&key))
                .unwrap_or_else(|at| at);
            data.order.insert(at, key);
            data.incidents.insert(incident.id.clone(), incident);
        }
        *seen = generation;
        Ok(())
    }

    fn load(&self) -> Result<Data, StoreError> {
        let store = self.store.as_ref();
        let mut data = Data::default();
        let last_seen = store.last_seen()?;
        for asset in store.assets()? {
            let entry = entry(store, &mut data, asset, &last_seen, None)?;
            data.last_reach = data.last_reach.max(entry.reach.map(|r| r.at));
            data.assets.insert(entry.asset.id.clone(), entry);
        }
        data.incidents = store
            .incidents()?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        data.order = data.incidents.values().map(IncidentKey::of).collect();
        data.order.sort_unstable_by(IncidentKey::order);
        Ok(data)
    }
}

impl Data {
    fn title(&mut self, name: &str) -> u32 {
        let lower = name.to_lowercase();
        if let Some(id) = self.title_ids.get(&lower) {
            return *id;
        }
        let id = u32::try_from(self.titles.len()).unwrap_or(u32::MAX);
        self.titles.push(lower.clone());
        self.title_ids.insert(lower, id);
        id
    }

    /// The title ids whose text contains `needle` (lower case).
    pub fn titles_matching(&self, needle: &str) -> HashSet<u32> {
        self.titles
            .iter()
            .enumerate()
            .filter(|(_, t)| t.contains(needle))
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect()
    }

    /// Looks an incident up by id or `INC…` number.
    pub fn incident(&self, key: &str) -> Option<&Incident> {
        self.incidents.get(key).or_else(|| {
            self.incidents
                .values()
                .find(|i| i.number.eq_ignore_ascii_case(key))
        })
    }
}

fn entry(
    store: &dyn Store,
    data: &mut Data,
    asset: Asset,
    last_seen: &HashMap<AssetId, OffsetDateTime>,
    software: Option<Vec<u32>>,
) -> Result<Entry, StoreError> {
    let reach = store.latest_reach(&asset.id)?;
    let inventory = match software {
        Some(_) => None,
        None => store.inventory(&asset.id)?,
    };
    let snmp = store.snmp(&asset.id)?;
    let now = OffsetDateTime::now_utc();
    // The latest status report within the last half hour: volumes and who is logged on.
    let recent = store.samples(
        &asset.id,
        now - time::Duration::minutes(30),
        now + time::Duration::days(3650),
        1_000,
    )?;
    let latest = recent.last();
    let users = latest
        .map(|s| s.status.logged_on_users.clone())
        .unwrap_or_default();
    let volumes = latest
        .map(|s| {
            crate::observe::status_point(s.at, &s.status)
                .volumes
                .into_iter()
                .map(|(mount, used, _)| (mount, used))
                .collect()
        })
        .unwrap_or_default();
    let location = snmp
        .as_ref()
        .map(|s| s.system.location.clone())
        .unwrap_or_default();
    let supplies: Vec<(String, f64)> = snmp
        .as_ref()
        .map(|s| {
            s.supplies
                .iter()
                .filter_map(|x| x.percent.map(|p| (x.description.clone(), f64::from(p))))
                .collect()
        })
        .unwrap_or_default();
    let ups = snmp
        .as_ref()
        .and_then(|s| s.ups.as_ref())
        .map(|u| (u.on_battery, u.charge_percent, u.replace_battery));
    let kept = software.is_some();
    let mut software = software.unwrap_or_default();
    if let Some(record) = &inventory {
        for program in &record.inventory.software {
            software.push(data.title(&program.name));
        }
    }
    if let Some(snmp) = snmp.as_ref().filter(|_| !kept) {
        for program in &snmp.software {
            software.push(data.title(program));
        }
    }
    software.sort_unstable();
    software.dedup();
    let mut haystack = String::new();
    for part in [
        &asset.name,
        &asset.hostname,
        &asset.serial,
        &asset.vendor,
        &asset.model,
        &asset.os,
        &asset.id,
        &location,
        &asset.register.asset_tag,
        &asset.register.site,
        &asset.register.building,
        &asset.register.room,
        &asset.register.assigned_user,
        &asset.register.department,
    ] {
        haystack.push_str(&part.to_lowercase());
        haystack.push('\n');
    }
    for part in asset.ips.iter().chain(&asset.macs).chain(&users) {
        haystack.push_str(&part.to_lowercase());
        haystack.push('\n');
    }
    // MACs also without separators, as they are often typed.
    for mac in &asset.macs {
        haystack.push_str(&mac.to_lowercase().replace([':', '-'], ""));
        haystack.push('\n');
    }
    let seen = last_seen.get(&asset.id).copied();
    Ok(Entry {
        name_lower: asset.name.to_lowercase(),
        asset,
        reach,
        last_seen: seen,
        haystack,
        software,
        users,
        location,
        volumes,
        supplies,
        ups,
    })
}

/// Supply levels as `(description, percent)` (for charts).
pub fn supply_points(
    levels: &[(OffsetDateTime, SupplyLevels)],
) -> Vec<(String, Vec<(OffsetDateTime, f64)>)> {
    let mut series: std::collections::BTreeMap<String, Vec<(OffsetDateTime, f64)>> =
        Default::default();
    for (at, values) in levels {
        for (description, percent) in values {
            series
                .entry(description.clone())
                .or_default()
                .push((*at, *percent));
        }
    }
    series.into_iter().collect()
}

/// An asset's status now: up while its agent reports within `stale_after` or its latest
/// ping verdict (within `reach_stale_after`) says so, down on a failed ping, else unknown.
/// Also returns when it was last seen. `heard`: agents heard since this collector started.
pub fn status_of(
    asset: &Asset,
    seen: Option<OffsetDateTime>,
    heard: &HashMap<String, OffsetDateTime>,
    reach: Option<ReachSample>,
    stale_after: std::time::Duration,
    reach_stale_after: std::time::Duration,
    now: OffsetDateTime,
) -> (Status, Option<OffsetDateTime>) {
    let last_seen = asset
        .agent_ids
        .iter()
        .filter_map(|a| heard.get(a))
        .copied()
        .chain(seen)
        .max();
    let within = |at: OffsetDateTime, window: std::time::Duration| {
        now - at <= time::Duration::try_from(window).unwrap_or(time::Duration::MAX)
    };
    let agent_fresh = asset
        .agent_ids
        .iter()
        .filter_map(|a| heard.get(a).copied().or(seen))
        .any(|at| within(at, stale_after));
    let status = match reach {
        _ if agent_fresh => Status::Up,
        // The latest sweep decides for devices that answer ping.
        Some(r) if within(r.at, reach_stale_after) => {
            if r.up {
                Status::Up
            } else {
                Status::Down
            }
        }
        // An agent gone quiet does not prove the host is down; only a failed ping does.
        _ => Status::Unknown,
    };
    (status, last_seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InventoryMeta, InventoryRecord};
    use crate::store::{MemoryStore, WriteSet};

    fn asset(id: &str) -> Asset {
        Asset {
            id: id.to_owned(),
            kind: crate::model::AssetKind::Pc,
            name: format!("PC-{id}"),
            hostname: format!("pc-{id}"),
            ips: vec!["10.0.0.5".to_owned()],
            macs: vec!["aa:bb:cc:dd:ee:ff".to_owned()],
            vendor: String::new(),
            model: String::new(),
            serial: "SER123".to_owned(),
            smbios_uuid: String::new(),
            machine_id: String::new(),
            os: String::new(),
            sources: Default::default(),
            first_seen: OffsetDateTime::UNIX_EPOCH,
            agent_ids: Vec::new(),
            identity_notes: Vec::new(),
            partial: Vec::new(),
            clock_suspect: false,
            classification: String::new(),
            register: Default::default(),
            register_rev: 0,
        }
    }

    fn inventory(programs: &[&str]) -> InventoryRecord {
        InventoryRecord {
            meta: InventoryMeta {
                agent_id: "ag".to_owned(),
                seq: 1,
                collected_at: OffsetDateTime::UNIX_EPOCH,
                received_at: OffsetDateTime::UNIX_EPOCH,
                partial: Vec::new(),
            },
            inventory: caretaker_proto::v1::Inventory {
                software: programs
                    .iter()
                    .map(|p| caretaker_proto::v1::Software {
                        name: (*p).to_owned(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }

    fn has_program(catalog: &Catalog, id: &str, program: &str) -> bool {
        catalog
            .read(|data| {
                let titles = data.titles_matching(&program.to_lowercase());
                data.assets[id].software.iter().any(|t| titles.contains(t))
            })
            .expect("read")
    }

    #[test]
    fn the_cache_follows_what_commits_touched() {
        let store = Arc::new(MemoryStore::default());
        let touched = Arc::new(Touched::default());
        let mut set = WriteSet::default();
        set.assets.push(asset("a1"));
        set.inventories
            .push(("a1".to_owned(), inventory(&["Firefox ESR"])));
        store.commit(set).expect("commit");
        let catalog = Catalog::new(store.clone(), touched.clone());
        assert!(has_program(&catalog, "a1", "firefox"));
        assert!(
            catalog
                .read(|d| d.assets["a1"].haystack.contains("aabbccddeeff"))
                .expect("read"),
            "MACs are searchable without separators"
        );

        // A new inventory replaces the software; the cache sees it once the commit is noted.
        let mut set = WriteSet::default();
        set.inventories
            .push(("a1".to_owned(), inventory(&["LibreOffice"])));
        touched.add(&set);
        store.commit(set).expect("commit");
        assert!(has_program(&catalog, "a1", "libreoffice"));
        assert!(!has_program(&catalog, "a1", "firefox"));

        // A ping verdict alone keeps the software list.
        let mut set = WriteSet::default();
        set.reach.push((
            "a1".to_owned(),
            ReachSample {
                at: OffsetDateTime::now_utc(),
                up: false,
                rtt_us: 0,
            },
        ));
        touched.add(&set);
        store.commit(set).expect("commit");
        assert!(has_program(&catalog, "a1", "libreoffice"));
        assert_eq!(
            catalog
                .read(|d| d.assets["a1"].reach.map(|r| r.up))
                .expect("read"),
            Some(false)
        );
    }

    #[test]
    fn the_incident_order_stays_sorted_as_incidents_change() {
        let store = Arc::new(MemoryStore::default());
        let touched = Arc::new(Touched::default());
        let incident = |n: u8, priority: u8| {
            let mut i: Incident = serde_json::from_value(serde_json::json!({
                "id": format!("i{n}"), "number": format!("INC000000{n}"), "asset_id": "a",
                "asset_name": "PC", "rule": "r", "title": "t", "description": "",
                "impact": 1, "urgency": 1, "priority": priority, "state": "new",
                "opened_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
                "occurrences": 1, "notes": []
            }))
            .expect("incident");
            i.opened_at += time::Duration::minutes(i64::from(n));
            i
        };
        let set = WriteSet {
            incidents: vec![incident(1, 3), incident(2, 1), incident(3, 3)],
            ..Default::default()
        };
        store.commit(set).expect("commit");
        let catalog = Catalog::new(store.clone(), touched.clone());
        let order = |c: &Catalog| {
            c.read(|d| d.order.iter().map(|k| k.id.clone()).collect::<Vec<_>>())
                .expect("read")
        };
        assert_eq!(order(&catalog), ["i2", "i3", "i1"]);
        let set = WriteSet {
            incidents: vec![incident(1, 1)],
            ..Default::default()
        };
        touched.add(&set);
        store.commit(set).expect("commit");
        assert_eq!(
            order(&catalog),
            ["i2", "i1", "i3"],
            "i1 moved up with its priority"
        );
    }
}
