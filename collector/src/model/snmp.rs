//! What SNMP told us about one device: the typed snapshot that discovery produces, the store
//! keeps, the rules observe, topology reads and the API shows.
//!
//! Serialised as JSON in the store; every field has a default so snapshots written by earlier
//! releases (which lacked `gaps` and `stale`) still load. Which parts of a snapshot are
//! incomplete is said by [`SnmpSnapshot::gaps`], typed, never by the text of a note.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::AssetKind;

/// The SNMP system group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemInfo {
    pub descr: String,
    /// Dotted, e.g. `1.3.6.1.4.1.11.2.3.9.1`; empty when the agent did not say.
    pub object_id: String,
    pub uptime_ticks: Option<u64>,
    pub contact: String,
    pub name: String,
    pub location: String,
    /// sysServices: the OSI layers the device offers (bit 0 = layer 1 … bit 6 = layer 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<u32>,
}

/// Everything one SNMP inventory learned about one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnmpSnapshot {
    /// When the inventory was read (Unix seconds in the store).
    #[serde(with = "time::serde::timestamp::option")]
    pub collected_at: Option<OffsetDateTime>,
    pub system: SystemInfo,
    pub kind: AssetKind,
    pub vendor: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub interfaces: Vec<Interface>,
    pub entities: Vec<Entity>,
    pub storage: Vec<Storage>,
    pub processor_loads: Vec<u32>,
    pub software: Vec<String>,
    pub supplies: Vec<Supply>,
    pub page_count: Option<u64>,
    pub printer_errors: Vec<String>,
    pub fdb: Vec<FdbEntry>,
    pub lldp: Vec<LldpNeighbor>,
    pub ups: Option<Ups>,
    /// Parts that could not be read completely, and why.
    pub gaps: Vec<SnmpGap>,
    /// Parts whose values are carried over from an earlier snapshot because this read of
    /// them timed out.
    pub stale: Vec<SnmpSection>,
    /// Human-readable remarks ("sysName missing", "lldp: timeout"), for the technician.
    pub notes: Vec<String>,
}

impl Default for SnmpSnapshot {
    fn default() -> Self {
        Self {
            collected_at: None,
            system: SystemInfo::default(),
            kind: AssetKind::Unknown,
            vendor: String::new(),
            model: String::new(),
            serial: String::new(),
            firmware: String::new(),
            interfaces: Vec::new(),
            entities: Vec::new(),
            storage: Vec::new(),
            processor_loads: Vec::new(),
            software: Vec::new(),
            supplies: Vec::new(),
            page_count: None,
            printer_errors: Vec::new(),
            fdb: Vec::new(),
            lldp: Vec::new(),
            ups: None,
            gaps: Vec::new(),
            stale: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// A part of an SNMP inventory that is read as one unit (one table walk or one GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnmpSection {
    /// Which MIBs the device implements (decides the tables read).
    Mibs,
    Interfaces,
    Entities,
    /// HOST-RESOURCES: storage, processor loads, printer error state.
    HostResources,
    Software,
    /// Printer-MIB: supplies and the page counter.
    Printer,
    Fdb,
    Lldp,
    Ups,
}

/// Why a section is incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GapReason {
    /// The device stopped answering (or answered too slowly) mid-read.
    Timeout,
    /// The per-device deadline ran out before this section was read.
    Deadline,
    /// A row or byte bound stopped the walk.
    Limit,
    /// The device answered with an error or something malformed.
    Error,
}

impl GapReason {
    /// Whether an earlier snapshot's values are a better guess than this read's.
    pub fn keeps_previous(self) -> bool {
        matches!(self, Self::Timeout | Self::Deadline)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnmpGap {
    pub section: SnmpSection,
    pub reason: GapReason,
}

impl SnmpSnapshot {
    /// Fills the sections this read lost to a timeout or the deadline from `previous`, when
    /// this read has nothing for them and `previous` had something; marks them `stale`.
    pub fn keep_missing_from(&mut self, previous: &SnmpSnapshot) {
        let lost: Vec<SnmpSection> = self
            .gaps
            .iter()
            .filter(|g| g.reason.keeps_previous())
            .map(|g| g.section)
            .collect();
        for section in lost {
            let kept = match section {
                SnmpSection::Mibs => false,
                SnmpSection::Interfaces => {
                    take_if_empty(&mut self.interfaces, &previous.interfaces)
                }
                SnmpSection::Entities => take_if_empty(&mut self.entities, &previous.entities),
                SnmpSection::HostResources => {
                    let a = take_if_empty(&mut self.storage, &previous.storage);
                    let b = take_if_empty(&mut self.processor_loads, &previous.processor_loads);
                    let c = take_if_empty(&mut self.printer_errors, &previous.printer_errors);
                    a || b || c
                }
                SnmpSection::Software => take_if_empty(&mut self.software, &previous.software),
                SnmpSection::Printer => {
                    let a = take_if_empty(&mut self.supplies, &previous.supplies);
                    let b = self.page_count.is_none() && previous.page_count.is_some();
                    if b {
                        self.page_count = previous.page_count;
                    }
                    a || b
                }
                SnmpSection::Fdb => take_if_empty(&mut self.fdb, &previous.fdb),
                SnmpSection::Lldp => take_if_empty(&mut self.lldp, &previous.lldp),
                SnmpSection::Ups => {
                    let kept = self.ups.is_none() && previous.ups.is_some();
                    if kept {
                        self.ups.clone_from(&previous.ups);
                    }
                    kept
                }
            };
            if kept && !self.stale.contains(&section) {
                self.stale.push(section);
            }
        }
    }

    /// Supply levels by description, for the supply time series.
    pub fn supply_levels(&self) -> SupplyLevels {
        self.supplies
            .iter()
            .filter_map(|s| Some((s.description.clone(), f64::from(s.percent?))))
            .collect()
    }

    /// Whether the snapshot holds anything topology learns parents from.
    pub fn is_topological(&self) -> bool {
        !self.fdb.is_empty() || !self.lldp.is_empty()
    }

    /// Only what topology needs (forwarding table and LLDP neighbours).
    pub fn topology_only(&self) -> SnmpSnapshot {
        SnmpSnapshot {
            collected_at: self.collected_at,
            fdb: self.fdb.clone(),
            lldp: self.lldp.clone(),
            ..SnmpSnapshot::default()
        }
    }
}

fn take_if_empty<T: Clone>(current: &mut Vec<T>, previous: &[T]) -> bool {
    let take = current.is_empty() && !previous.is_empty();
    if take {
        *current = previous.to_vec();
    }
    take
}

/// Printer supply levels at one moment: description → percent.
pub type SupplyLevels = std::collections::BTreeMap<String, f64>;

/// One IF-MIB interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    pub index: u32,
    /// ifName, else ifDescr.
    pub name: String,
    pub descr: String,
    pub alias: String,
    /// `aa:bb:cc:dd:ee:ff`, `None` when the interface has no (or an all-zero) address.
    pub mac: Option<String>,
    /// ifHighSpeed, else ifSpeed / 10⁶.
    pub speed_mbps: Option<u64>,
    pub admin_up: Option<bool>,
    pub oper_up: Option<bool>,
    /// 64-bit HC counters when present, else the 32-bit ones.
    pub in_octets: Option<u64>,
    pub out_octets: Option<u64>,
    pub in_errors: Option<u64>,
    pub out_errors: Option<u64>,
}

/// One ENTITY-MIB physical entity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entity {
    pub index: u32,
    /// chassis, module, port, powerSupply, fan, sensor, stack, container, backplane, cpu, other, unknown.
    pub class: String,
    pub descr: String,
    pub name: String,
    pub model: String,
    pub serial: String,
    pub hardware_rev: String,
    pub firmware_rev: String,
    pub software_rev: String,
}

/// One HOST-RESOURCES storage area.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Storage {
    pub descr: String,
    /// ram, virtual, disk, removable or other.
    pub kind: String,
    pub size_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
}

/// What a supply level means (RFC 3805 prtMarkerSuppliesLevel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SupplyState {
    /// A real level (≥ 0).
    Ok,
    /// -3: at least one unit remains, amount unknown.
    SomeRemaining,
    /// -2, or no level reported.
    #[default]
    Unknown,
    /// -1, or any other negative value.
    Other,
}

/// One printer supply (toner, drum, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Supply {
    pub description: String,
    /// toner, drum, waste-toner, fuser, developer, transfer-belt, ink or other.
    pub kind: String,
    /// black, cyan, magenta, yellow or "".
    pub colour: String,
    pub level: i64,
    pub max: i64,
    /// level / max × 100, only when level ≥ 0 and max > 0 (clamped to 100).
    pub percent: Option<f32>,
    pub state: SupplyState,
    /// prtMarkerSuppliesSupplyUnit, e.g. "percent", "impressions"; "" when not reported.
    pub unit: String,
}

/// One learned MAC address on a bridge port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FdbEntry {
    pub mac: String,
    /// Bridge port number.
    pub port: u32,
    /// ifIndex of the port, from dot1dBasePortIfIndex.
    pub if_index: Option<u32>,
    /// Q-BRIDGE filtering database id (the VLAN id on most switches).
    pub vlan: Option<u32>,
}

/// One LLDP neighbour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LldpNeighbor {
    /// lldpRemLocalPortNum (usually a bridge port or ifIndex).
    pub local_port: u32,
    pub chassis_id: String,
    pub port_id: String,
    pub port_descr: String,
    pub sys_name: String,
    pub sys_descr: String,
    /// The first IPv4 management address, dotted.
    pub mgmt_addr: Option<String>,
}

/// UPS status from UPS-MIB or APC PowerNet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ups {
    /// True only when the UPS says it runs on battery.
    pub on_battery: bool,
    pub runtime_secs: Option<u64>,
    pub charge_percent: Option<f32>,
    /// True only when the UPS says the battery needs replacing.
    pub replace_battery: bool,
    pub load_percent: Option<f32>,
    pub input_voltage: Option<f32>,
    pub output_voltage: Option<f32>,
    pub temperature_c: Option<f32>,
    pub model: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_stored_by_the_previous_release_still_loads() {
        // Wave 1 stored the device as JSON with `collected_at` in Unix seconds and no gaps.
        let old = r#"{"system":{"descr":"HP","object_id":"1.3.6.1.4.1.11","uptime_ticks":5,
            "contact":"","name":"PRN-1","location":""},"kind":"printer","vendor":"HP",
            "model":"M130","serial":"X1","firmware":"","interfaces":[],"entities":[],
            "storage":[],"processor_loads":[],"software":[],
            "supplies":[{"description":"Black","kind":"toner","colour":"black","level":40,
            "max":100,"percent":40.0,"state":"ok","unit":"percent"}],"page_count":1200,
            "printer_errors":[],"fdb":[],"lldp":[],"ups":null,"notes":["lldp: timeout"],
            "collected_at":1764662400}"#;
        let snapshot: SnmpSnapshot = serde_json::from_str(old).expect("old snapshot loads");
        assert_eq!(snapshot.kind, AssetKind::Printer);
        assert_eq!(snapshot.supplies[0].state, SupplyState::Ok);
        assert_eq!(
            snapshot.collected_at.map(OffsetDateTime::unix_timestamp),
            Some(1_764_662_400)
        );
        assert_eq!(snapshot.supply_levels()["Black"], 40.0);
    }

    #[test]
    fn only_sections_lost_to_a_timeout_are_carried_over() {
        let previous = SnmpSnapshot {
            lldp: vec![LldpNeighbor {
                sys_name: "core".into(),
                ..LldpNeighbor::default()
            }],
            fdb: vec![FdbEntry {
                mac: "aa:bb:cc:00:00:01".into(),
                ..FdbEntry::default()
            }],
            ..SnmpSnapshot::default()
        };
        let mut now = SnmpSnapshot {
            gaps: vec![
                SnmpGap {
                    section: SnmpSection::Lldp,
                    reason: GapReason::Timeout,
                },
                SnmpGap {
                    section: SnmpSection::Fdb,
                    reason: GapReason::Error,
                },
            ],
            ..SnmpSnapshot::default()
        };
        now.keep_missing_from(&previous);
        assert_eq!(now.lldp, previous.lldp, "timed out: kept");
        assert!(now.fdb.is_empty(), "an error is an answer: not kept");
        assert_eq!(now.stale, vec![SnmpSection::Lldp]);
    }
}
