//! The asset register (CMDB): turns agent inventories into assets and change records.
//!
//! [`Cmdb`] is owned by the ingest writer (one thread, so no locks): it keeps every asset's
//! identity fingerprint in memory, decides which asset a report belongs to (`identity`),
//! merges partial reports over the previous inventory, and diffs successive inventories
//! (`diff`). It never writes: it returns a [`crate::store::WriteSet`] fragment that the writer
//! commits together with the report's acknowledgement.

pub mod agents;
pub mod diff;
pub mod discovery;
pub mod identity;
pub mod register;

use std::collections::{BTreeSet, HashMap};

use caretaker_proto::v1::{Inventory, NetworkInterface};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::model::{
    AgentId, AgentRecord, Asset, AssetId, AssetKind, Change, IdentityNote, InventoryMeta,
    InventoryRecord, Source,
};
use crate::store::{Store, StoreError, WriteSet};
use identity::{Fingerprint, Score};

/// Inventory sections an agent may report as missing; see `Report.missing` in the proto.
pub const SECTIONS: [&str; 11] = [
    "system",
    "hardware",
    "disks",
    "volumes",
    "interfaces",
    "software",
    "antivirus",
    "firewalls",
    "encryption",
    "hotfixes",
    "batteries",
];

/// What an enrolling agent tells about its hardware besides hostname and MACs.
#[derive(Debug, Clone, Default)]
pub struct EnrolmentHints {
    pub smbios_uuid: String,
    pub serial: String,
    pub machine_id: String,
}

/// An inventory report as the ingest hands it over.
#[derive(Debug, Clone)]
pub struct InventoryReport {
    pub agent_id: String,
    pub seq: u64,
    pub collected_at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    pub clock_suspect: bool,
    pub missing: Vec<String>,
    pub inventory: Inventory,
}

/// How the register judges what arrives.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub clock: agents::ClockBounds,
    /// A device found only by the network and silent this long is recorded as gone.
    pub gone_after: time::Duration,
    /// Sweeps in a row a network-only device must be found without one of its addresses
    /// before that address leaves it (`[rules.host_down] misses`: the same confirmation).
    pub address_misses: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            clock: agents::ClockBounds::default(),
            gone_after: time::Duration::days(7),
            address_misses: 2,
        }
    }
}

pub struct Cmdb {
    assets: HashMap<AssetId, Asset>,
    fingerprints: HashMap<AssetId, Fingerprint>,
    /// Every enrolled agent identity.
    agents: HashMap<AgentId, AgentRecord>,
    /// Highest durable report sequence per agent.
    seqs: HashMap<AgentId, u64>,
    clock: agents::ClockBounds,
    /// When the first sweep finished (devices seen later are new).
    baseline: Option<OffsetDateTime>,
    /// Devices recorded as gone, and since when.
    gone: HashMap<AssetId, OffsetDateTime>,
    gone_after: time::Duration,
    address_misses: u32,
    /// Sweeps in a row that found an asset without one of its addresses (in memory: a
    /// restart only makes an address stay a little longer).
    missed: HashMap<(AssetId, String), u32>,
    /// The routed parts of the last sweep's scope and the way to them, for topology.
    paths: Vec<crate::scan::paths::RoutedPath>,
}

impl Cmdb {
    /// Loads every asset's identity, the agents and their sequences, and the discovery marks
    /// (baseline sweep, devices gone) from the store.
    pub fn load(store: &dyn Store, settings: Settings) -> Result<Self, StoreError> {
        let mut cmdb = Self {
            assets: HashMap::new(),
            fingerprints: HashMap::new(),
            agents: store
                .agents()?
                .into_iter()
                .map(|r| (r.agent_id.clone(), r))
                .collect(),
            seqs: store.agent_seqs()?,
            clock: settings.clock,
            baseline: store
                .meta(discovery::BASELINE_KEY)?
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t as i64).ok()),
            gone: HashMap::new(),
            gone_after: settings.gone_after,
            address_misses: settings.address_misses.max(1),
            missed: HashMap::new(),
            paths: Vec::new(),
        };
        for asset in store.assets()? {
            if let Some(at) = store
                .meta(&discovery::gone_key(&asset.id))?
                .filter(|t| *t > 0)
            {
                cmdb.gone.insert(
                    asset.id.clone(),
                    OffsetDateTime::from_unix_timestamp(at as i64)
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                );
            }
            cmdb.index(asset);
        }
        Ok(cmdb)
    }

    /// The routed parts of the scanned ranges, as the last sweep found them.
    pub fn paths(&self) -> &[crate::scan::paths::RoutedPath] {
        &self.paths
    }

    /// When the first sweep finished; devices first seen later are news.
    pub fn baseline(&self) -> Option<OffsetDateTime> {
        self.baseline
    }

    pub fn assets(&self) -> impl Iterator<Item = &Asset> {
        self.assets.values()
    }

    fn index(&mut self, asset: Asset) {
        self.fingerprints
            .insert(asset.id.clone(), fingerprint_of_asset(&asset));
        self.assets.insert(asset.id.clone(), asset);
    }

    /// Binds a newly enrolled agent to the asset its hardware hints match, or registers a new
    /// asset from those hints (the first inventory fills in the rest).
    fn bind_enrolling(
        &mut self,
        agent: &mut AgentRecord,
        hints: EnrolmentHints,
        out: &mut WriteSet,
    ) {
        let mut fp = Fingerprint {
            uuid: identity::normalise_uuid(&hints.smbios_uuid),
            serial: identity::normalise_serial(&hints.serial),
            hostname: agent.hostname.clone(),
            machine_id: Some(hints.machine_id.clone()).filter(|m| !m.is_empty()),
            ..Default::default()
        };
        add_macs(&mut fp, agent.macs.iter().map(String::as_str));
        let asset = match self.best_match(&fp) {
            Some((id, score)) => {
                tracing::info!(agent_id = %agent.agent_id, asset_id = %id, points = score.points,
                    reasons = ?score.reasons, "Enrolling agent matched to an existing asset");
                let mut asset = self.assets[&id].clone();
                asset.identity_notes.push(IdentityNote {
                    at: agent.enrolled_at,
                    agent_id: agent.agent_id.clone(),
                    score: score.points,
                    reasons: score.reasons,
                });
                asset
            }
            None => {
                let mut asset = blank_asset(new_asset_id(), agent.enrolled_at);
                asset.kind = AssetKind::Pc;
                asset.name.clone_from(&agent.hostname);
                asset.hostname.clone_from(&agent.hostname);
                asset.macs = fp.macs.iter().chain(&fp.local_macs).cloned().collect();
                asset.smbios_uuid = fp.uuid.clone().unwrap_or_default();
                asset.serial = fp.serial.clone().unwrap_or_default();
                asset.machine_id = hints.machine_id;
                asset
            }
        };
        let mut asset = asset;
        asset.sources.insert(Source::Agent);
        if !asset.agent_ids.contains(&agent.agent_id) {
            asset.agent_ids.push(agent.agent_id.clone());
        }
        agent.asset_id = Some(asset.id.clone());
        out.assets.push(asset.clone());
        self.index(asset);
    }

    fn best_match(&self, fp: &Fingerprint) -> Option<(AssetId, Score)> {
        self.fingerprints
            .iter()
            .map(|(id, known)| (id, identity::score(fp, known)))
            .filter(|(_, s)| s.is_match())
            .max_by(|(a, x), (b, y)| x.points.cmp(&y.points).then_with(|| b.cmp(a)))
            .map(|(id, s)| (id.clone(), s))
    }

    /// Applies one inventory report: picks (or creates) the asset, merges, diffs, and adds the
    /// resulting records to `out`. `agent` is updated in place when its binding changes.
    pub fn apply_inventory(
        &mut self,
        store: &dyn Store,
        agent: &mut AgentRecord,
        report: InventoryReport,
        out: &mut WriteSet,
    ) -> Result<AssetId, StoreError> {
        let mut fp = fingerprint_of_inventory(&report.inventory);
        if fp.uuid.is_none() {
            fp.uuid = identity::normalise_uuid(&agent.smbios_uuid);
        }
        fp.agent_ids.insert(report.agent_id.clone());

        // The asset this agent is bound to, unless the hardware now says it is another device
        // (an agent state directory copied onto a cloned PC).
        let bound = agent.asset_id.clone().filter(|id| {
            self.fingerprints.get(id).is_some_and(|known| {
                let s = identity::score(&fp, known);
                if s.points < 0 {
                    tracing::warn!(agent_id = %agent.agent_id, asset_id = %id, reasons = ?s.reasons,
                        "Agent now reports different hardware; treating it as a new device");
                }
                s.points >= 0
            })
        });
        let (asset_id, note) = match bound {
            Some(id) => (id, None),
            None => match self.best_match(&fp) {
                Some((id, score)) => {
                    tracing::info!(agent_id = %agent.agent_id, asset_id = %id, points = score.points,
                        reasons = ?score.reasons, "Agent matched to an existing asset");
                    (id, Some(score))
                }
                None => (new_asset_id(), None),
            },
        };
        agent.asset_id = Some(asset_id.clone());

        let previous = store.inventory(&asset_id)?;
        let merged = merge(
            previous.as_ref().map(|p| &p.inventory),
            report.inventory,
            &report.missing,
        );
        let at = if report.clock_suspect {
            report.received_at
        } else {
            report.collected_at
        };
        let change = |index: usize, kind: &str, field: String, before, after| Change {
            id: change_id(&report.agent_id, report.seq, index),
            asset_id: asset_id.clone(),
            at,
            kind: kind.to_owned(),
            field,
            before,
            after,
            clock_suspect: report.clock_suspect,
            expected_by: None,
            author: None,
        };
        match &previous {
            Some(previous) => {
                for (index, d) in diff::bounded(diff::diff(&previous.inventory, &merged))
                    .into_iter()
                    .enumerate()
                {
                    out.changes
                        .push(change(index, d.kind, d.field, d.before, d.after));
                }
            }
            None => {
                let name = merged
                    .system
                    .as_ref()
                    .map(|s| s.hostname.clone())
                    .unwrap_or_default();
                out.changes
                    .push(change(0, "created", "asset".to_owned(), None, Some(name)));
            }
        }

        let mut asset = self
            .assets
            .get(&asset_id)
            .cloned()
            .unwrap_or_else(|| blank_asset(asset_id.clone(), at));
        describe(&mut asset, &merged);
        asset.sources.insert(Source::Agent);
        if !asset.agent_ids.contains(&report.agent_id) {
            asset.agent_ids.push(report.agent_id.clone());
        }
        if let Some(score) = note {
            asset.identity_notes.push(IdentityNote {
                at: report.received_at,
                agent_id: report.agent_id.clone(),
                score: score.points,
                reasons: score.reasons,
            });
        }
        asset.partial = report.missing.clone();
        asset.clock_suspect = report.clock_suspect;

        out.inventories.push((
            asset_id.clone(),
            InventoryRecord {
                meta: InventoryMeta {
                    agent_id: report.agent_id.clone(),
                    seq: report.seq,
                    collected_at: report.collected_at,
                    received_at: report.received_at,
                    partial: report.missing,
                },
                inventory: merged,
            },
        ));
        out.assets.push(asset.clone());
        self.index(asset);
        Ok(asset_id)
    }
}

pub(crate) fn blank_asset(id: AssetId, first_seen: OffsetDateTime) -> Asset {
    Asset {
        id,
        kind: AssetKind::Unknown,
        name: String::new(),
        hostname: String::new(),
        ips: Vec::new(),
        macs: Vec::new(),
        vendor: String::new(),
        model: String::new(),
        serial: String::new(),
        smbios_uuid: String::new(),
        machine_id: String::new(),
        os: String::new(),
        sources: BTreeSet::new(),
        first_seen,
        agent_ids: Vec::new(),
        identity_notes: Vec::new(),
        partial: Vec::new(),
        clock_suspect: false,
        classification: String::new(),
        register: Default::default(),
        register_rev: 0,
    }
}

/// The new inventory with every section the report could not collect taken from `previous`.
fn merge(previous: Option<&Inventory>, mut new: Inventory, missing: &[String]) -> Inventory {
    let Some(previous) = previous else { return new };
    for section in missing {
        match section.as_str() {
            "system" => new.system.clone_from(&previous.system),
            "hardware" => new.hardware.clone_from(&previous.hardware),
            "disks" => new.disks.clone_from(&previous.disks),
            "volumes" => new.volumes.clone_from(&previous.volumes),
            "interfaces" => new.interfaces.clone_from(&previous.interfaces),
            "software" => new.software.clone_from(&previous.software),
            "antivirus" => new.antivirus.clone_from(&previous.antivirus),
            "firewalls" => new.firewalls.clone_from(&previous.firewalls),
            "encryption" => new.encryption.clone_from(&previous.encryption),
            "hotfixes" => new.hotfixes.clone_from(&previous.hotfixes),
            "batteries" => new.batteries.clone_from(&previous.batteries),
            _ => {}
        }
    }
    new
}

/// Fills the register's summary fields from a merged inventory.
fn describe(asset: &mut Asset, inventory: &Inventory) {
    if let Some(system) = &inventory.system {
        asset.hostname.clone_from(&system.hostname);
        asset.name.clone_from(&system.hostname);
        asset.machine_id.clone_from(&system.machine_id);
        asset.os = [system.os_name.as_str(), system.os_version.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
    }
    if let Some(hw) = &inventory.hardware {
        asset.vendor.clone_from(&hw.vendor);
        asset.model.clone_from(&hw.model);
        asset.serial = identity::normalise_serial(&hw.serial).unwrap_or_default();
        asset.smbios_uuid = identity::normalise_uuid(&hw.smbios_uuid).unwrap_or_default();
    }
    let physical = identity_interfaces(inventory);
    asset.macs = physical
        .iter()
        .filter_map(|n| identity::normalise_mac(&n.mac))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    asset.ips = physical
        .iter()
        .flat_map(|n| n.ipv4.iter().chain(&n.ipv6))
        .map(|ip| ip.split('/').next().unwrap_or(ip).to_owned())
        .filter(|ip| !ip.starts_with("fe80:") && !ip.starts_with("127.") && ip != "::1")
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    asset.kind = kind_of(inventory);
}

fn kind_of(inventory: &Inventory) -> AssetKind {
    let chassis = inventory
        .hardware
        .as_ref()
        .map(|h| h.chassis.to_ascii_lowercase())
        .unwrap_or_default();
    let os = inventory
        .system
        .as_ref()
        .map(|s| s.os_name.to_ascii_lowercase())
        .unwrap_or_default();
    const PORTABLE: [&str; 8] = [
        "laptop",
        "notebook",
        "portable",
        "convertible",
        "detachable",
        "tablet",
        "hand held",
        "sub notebook",
    ];
    if PORTABLE.iter().any(|p| chassis.contains(p)) {
        AssetKind::Laptop
    } else if chassis.contains("server")
        || chassis.contains("rack")
        || chassis.contains("blade")
        || os.contains("server")
    {
        AssetKind::Server
    } else {
        AssetKind::Pc
    }
}

/// The interfaces that identify the device: the physical ones, or, on a machine that has
/// none (a container, a lab namespace), the virtual ones that are up with an IPv4 address.
fn identity_interfaces(inventory: &Inventory) -> Vec<&NetworkInterface> {
    let physical: Vec<_> = inventory
        .interfaces
        .iter()
        .filter(|n| !n.r#virtual && identity::normalise_mac(&n.mac).is_some())
        .collect();
    if !physical.is_empty() {
        return physical;
    }
    inventory
        .interfaces
        .iter()
        .filter(|n| n.up && !n.ipv4.is_empty() && identity::normalise_mac(&n.mac).is_some())
        .filter(|n| !n.ipv4.iter().all(|ip| ip.starts_with("127.")))
        .collect()
}

fn add_macs<'a>(fp: &mut Fingerprint, macs: impl Iterator<Item = &'a str>) {
    for mac in macs.filter_map(identity::normalise_mac) {
        if identity::is_locally_administered(&mac) {
            fp.local_macs.insert(mac);
        } else {
            fp.macs.insert(mac);
        }
    }
}

fn fingerprint_of_inventory(inventory: &Inventory) -> Fingerprint {
    let hw = inventory.hardware.clone().unwrap_or_default();
    let system = inventory.system.clone().unwrap_or_default();
    let mut fp = Fingerprint {
        uuid: identity::normalise_uuid(&hw.smbios_uuid),
        serial: identity::normalise_serial(&hw.serial)
            .or_else(|| identity::normalise_serial(&hw.board_serial)),
        hostname: system.hostname,
        machine_id: Some(system.machine_id).filter(|m| !m.is_empty()),
        ..Default::default()
    };
    add_macs(
        &mut fp,
        identity_interfaces(inventory)
            .into_iter()
            .map(|n| n.mac.as_str()),
    );
    fp
}

fn fingerprint_of_asset(asset: &Asset) -> Fingerprint {
    let mut fp = Fingerprint {
        uuid: identity::normalise_uuid(&asset.smbios_uuid),
        serial: identity::normalise_serial(&asset.serial),
        hostname: asset.hostname.clone(),
        machine_id: Some(asset.machine_id.clone()).filter(|m| !m.is_empty()),
        agent_ids: asset.agent_ids.iter().cloned().collect(),
        ..Default::default()
    };
    add_macs(&mut fp, asset.macs.iter().map(String::as_str));
    fp
}

fn new_asset_id() -> AssetId {
    format!("{:016x}", rand::random::<u64>())
}

/// Deterministic, so a batch replayed after a crash overwrites its own change records.
fn change_id(agent_id: &str, seq: u64, index: usize) -> String {
    let digest = Sha256::new()
        .chain_update(agent_id.as_bytes())
        .chain_update(seq.to_be_bytes())
        .chain_update((index as u64).to_be_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChangeQuery, MemoryStore};
    use caretaker_proto::v1;
    use time::macros::datetime;

    fn agent(id: &str) -> AgentRecord {
        AgentRecord {
            agent_id: id.to_owned(),
            secret_sha256: String::new(),
            enrolled_at: datetime!(2026-09-01 08:00 UTC),
            hostname: "R12-PC03".to_owned(),
            smbios_uuid: String::new(),
            macs: vec!["00:16:3e:00:00:01".to_owned()],
            peer: String::new(),
            asset_id: None,
            epoch: 0,
        }
    }

    fn inventory(software: &[(&str, &str)]) -> Inventory {
        Inventory {
            system: Some(v1::System {
                hostname: "R12-PC03".to_owned(),
                ..Default::default()
            }),
            hardware: Some(v1::Hardware {
                smbios_uuid: "4C4C4544-0042-3910-8036-B4C04F4B3732".to_owned(),
                ram_bytes: 8 << 30,
                ..Default::default()
            }),
            interfaces: vec![v1::NetworkInterface {
                name: "eth0".to_owned(),
                mac: "00:16:3e:00:00:01".to_owned(),
                ..Default::default()
            }],
            software: software
                .iter()
                .map(|(n, v)| v1::Software {
                    name: (*n).to_owned(),
                    version: (*v).to_owned(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn report(agent: &str, seq: u64, missing: &[&str], inventory: Inventory) -> InventoryReport {
        InventoryReport {
            agent_id: agent.to_owned(),
            seq,
            collected_at: datetime!(2026-09-01 08:00 UTC) + time::Duration::minutes(seq as i64),
            received_at: datetime!(2026-09-01 09:00 UTC),
            clock_suspect: false,
            missing: missing.iter().map(|m| (*m).to_owned()).collect(),
            inventory,
        }
    }

    fn apply(
        cmdb: &mut Cmdb,
        store: &MemoryStore,
        agent: &mut AgentRecord,
        r: InventoryReport,
    ) -> AssetId {
        let mut set = WriteSet::default();
        let id = cmdb
            .apply_inventory(store, agent, r, &mut set)
            .expect("apply");
        store.commit(set).expect("commit");
        id
    }

    fn changes(store: &MemoryStore) -> Vec<(String, String)> {
        let mut all: Vec<_> = store
            .changes(&ChangeQuery {
                limit: 1000,
                ..Default::default()
            })
            .expect("changes")
            .into_iter()
            .map(|c| (c.kind, c.field))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_partial_report_makes_no_phantom_changes_and_keeps_what_it_missed() {
        let store = MemoryStore::default();
        let mut cmdb = Cmdb::load(&store, Settings::default()).expect("load");
        let mut a = agent("ag1");
        let id = apply(
            &mut cmdb,
            &store,
            &mut a,
            report(
                "ag1",
                1,
                &[],
                inventory(&[("vlc", "3.0"), ("gimp", "2.10")]),
            ),
        );
        // Software collection timed out: the report's list is empty, but nothing was removed.
        apply(
            &mut cmdb,
            &store,
            &mut a,
            report("ag1", 2, &["software"], inventory(&[])),
        );
        assert_eq!(
            changes(&store),
            [("created".to_owned(), "asset".to_owned())]
        );
        let kept = store.inventory(&id).expect("read").expect("inventory");
        assert_eq!(kept.inventory.software.len(), 2);
        assert_eq!(kept.meta.partial, ["software"]);
        assert_eq!(
            store.asset(&id).expect("read").expect("asset").partial,
            ["software"]
        );
        // The next complete report is compared with what we knew, not with the gap.
        apply(
            &mut cmdb,
            &store,
            &mut a,
            report("ag1", 3, &[], inventory(&[("vlc", "3.0.1")])),
        );
        assert_eq!(
            changes(&store),
            [
                ("created".to_owned(), "asset".to_owned()),
                ("removed".to_owned(), "software:gimp".to_owned()),
                ("upgraded".to_owned(), "software:vlc".to_owned()),
            ]
        );
    }

    #[test]
    fn a_new_agent_on_known_hardware_joins_the_asset_and_says_why() {
        let store = MemoryStore::default();
        let mut cmdb = Cmdb::load(&store, Settings::default()).expect("load");
        let first = apply(
            &mut cmdb,
            &store,
            &mut agent("ag1"),
            report("ag1", 1, &[], inventory(&[])),
        );
        let second = apply(
            &mut cmdb,
            &store,
            &mut agent("ag2"),
            report("ag2", 1, &[], inventory(&[])),
        );
        assert_eq!(first, second);
        let asset = store.asset(&first).expect("read").expect("asset");
        assert_eq!(asset.agent_ids, ["ag1", "ag2"]);
        assert!(
            asset.identity_notes[0]
                .reasons
                .iter()
                .any(|r| r.contains("SMBIOS UUID"))
        );
        // A reloaded register recognises it too.
        let mut reloaded = Cmdb::load(&store, Settings::default()).expect("load");
        let third = apply(
            &mut reloaded,
            &store,
            &mut agent("ag3"),
            report("ag3", 1, &[], inventory(&[])),
        );
        assert_eq!(third, first);
    }

    #[test]
    fn an_agent_state_copied_onto_other_hardware_becomes_a_new_asset() {
        let store = MemoryStore::default();
        let mut cmdb = Cmdb::load(&store, Settings::default()).expect("load");
        let mut a = agent("ag1");
        let first = apply(
            &mut cmdb,
            &store,
            &mut a,
            report("ag1", 1, &[], inventory(&[])),
        );
        let mut other = inventory(&[]);
        other.hardware = Some(v1::Hardware {
            smbios_uuid: "4C4C4544-0051-3710-8048-C7C04F4B3732".to_owned(),
            ..Default::default()
        });
        other.interfaces[0].mac = "00:16:3e:00:00:02".to_owned();
        let second = apply(&mut cmdb, &store, &mut a, report("ag1", 2, &[], other));
        assert_ne!(first, second);
    }

    #[test]
    fn replaying_a_report_writes_the_same_change_ids() {
        let store = MemoryStore::default();
        let mut cmdb = Cmdb::load(&store, Settings::default()).expect("load");
        let mut a = agent("ag1");
        apply(
            &mut cmdb,
            &store,
            &mut a,
            report("ag1", 1, &[], inventory(&[("vlc", "3.0")])),
        );
        let r = report("ag1", 2, &[], inventory(&[("vlc", "3.1")]));
        let mut once = WriteSet::default();
        cmdb.apply_inventory(&store, &mut a.clone(), r.clone(), &mut once)
            .expect("apply");
        let mut twice = WriteSet::default();
        cmdb.apply_inventory(&store, &mut a, r, &mut twice)
            .expect("apply");
        assert_eq!(once.changes, twice.changes);
    }
}
