//! Pure assembly of walked SNMP columns into records: interfaces, entities, storage,
//! printer supplies and errors, forwarding tables, LLDP neighbours and UPS status.
//!
//! Input is a [`Walked`] map (column root → rows of `(index suffix, value)`), output the
//! public record types. No I/O; every function copes with missing columns, rows present in one
//! column only, wrong value types and absurd indices (property-tested below).

use std::collections::{BTreeMap, BTreeSet};

use super::value::{OidVec, Val, display, int, mac, mac_from_bytes, nonempty_text, text, uint};
use super::{Entity, FdbEntry, Interface, LldpNeighbor, Storage, Supply, SupplyState, Ups};

/// Column roots, as numeric OIDs.
pub mod oids {
    pub const IF_TABLE_ENTRY: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
    pub const IF_X_ENTRY: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
    pub const ENT_PHYSICAL_ENTRY: &[u64] = &[1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1];
    pub const HR_STORAGE_ENTRY: &[u64] = &[1, 3, 6, 1, 2, 1, 25, 2, 3, 1];
    pub const HR_STORAGE_TYPES: &[u64] = &[1, 3, 6, 1, 2, 1, 25, 2, 1];
    pub const HR_DEVICE_ENTRY: &[u64] = &[1, 3, 6, 1, 2, 1, 25, 3, 2, 1];
    pub const HR_DEVICE_PRINTER: &[u64] = &[1, 3, 6, 1, 2, 1, 25, 3, 1, 5];
    pub const HR_PROCESSOR_LOAD: &[u64] = &[1, 3, 6, 1, 2, 1, 25, 3, 3, 1, 2];
    pub const HR_PRINTER_ERROR_STATE: &[u64] = &[1, 3, 6, 1, 2, 1, 25, 3, 5, 1, 2];
    pub const HR_SW_INSTALLED_NAME: &[u64] = &[1, 3, 6, 1, 2, 1, 25, 6, 3, 1, 2];
    pub const PRT_SUPPLIES_ENTRY: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 11, 1, 1];
    pub const PRT_COLORANT_VALUE: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 12, 1, 1, 4];
    pub const PRT_MARKER_LIFE_COUNT: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4];
    pub const DOT1D_BASE_PORT_IFINDEX: &[u64] = &[1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2];
    pub const DOT1D_TP_FDB_PORT: &[u64] = &[1, 3, 6, 1, 2, 1, 17, 4, 3, 1, 2];
    pub const DOT1Q_TP_FDB_PORT: &[u64] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1, 2];
    pub const LLDP_REM_ENTRY: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1];
    pub const LLDP_REM_MAN_ADDR_IF_SUBTYPE: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 4, 2, 1, 3];
    pub const UPS_MIB: &[u64] = &[1, 3, 6, 1, 2, 1, 33, 1];
    pub const APC_UPS: &[u64] = &[1, 3, 6, 1, 4, 1, 318, 1, 1, 1];
}

/// Walked columns: column root → `(index suffix, value)` rows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Walked(pub BTreeMap<OidVec, Vec<(OidVec, Val)>>);

impl Walked {
    pub fn insert(&mut self, root: OidVec, rows: Vec<(OidVec, Val)>) {
        self.0.insert(root, rows);
    }

    /// Rows of one column (empty when it was not walked or had no rows).
    pub fn rows(&self, root: &[u64]) -> &[(OidVec, Val)] {
        self.0.get(root).map_or(&[], Vec::as_slice)
    }

    /// Rows of `entry.column`.
    pub fn col(&self, entry: &[u64], column: u64) -> &[(OidVec, Val)] {
        let mut root = entry.to_vec();
        root.push(column);
        self.0.get(&root).map_or(&[], Vec::as_slice)
    }

    /// `index → value` for `entry.column` (first value wins on duplicate indices).
    fn map(&self, entry: &[u64], column: u64) -> BTreeMap<&[u64], &Val> {
        let mut out = BTreeMap::new();
        for (idx, v) in self.col(entry, column) {
            out.entry(idx.as_slice()).or_insert(v);
        }
        out
    }

    /// Every index seen in any of the given columns, sorted.
    fn indices(&self, entry: &[u64], columns: &[u64]) -> BTreeSet<OidVec> {
        columns
            .iter()
            .flat_map(|&c| self.col(entry, c).iter().map(|(idx, _)| idx.clone()))
            .collect()
    }
}

fn single_u32(idx: &[u64]) -> Option<u32> {
    match idx {
        [one] => u32::try_from(*one).ok(),
        _ => None,
    }
}

fn get_text(map: &BTreeMap<&[u64], &Val>, idx: &[u64]) -> String {
    map.get(idx).and_then(|v| text(v)).unwrap_or_default()
}

/// Interfaces from ifTable + ifXTable, ordered by ifIndex.
pub fn interfaces(w: &Walked) -> Vec<Interface> {
    use oids::{IF_TABLE_ENTRY as IF, IF_X_ENTRY as IFX};
    let mut idx = w.indices(IF, &[1, 2, 3, 5, 6, 7, 8, 10, 14, 16, 20]);
    idx.extend(w.indices(IFX, &[1, 6, 10, 15, 18]));
    let (descr, speed, phys, admin, oper) = (
        w.map(IF, 2),
        w.map(IF, 5),
        w.map(IF, 6),
        w.map(IF, 7),
        w.map(IF, 8),
    );
    let (in_oct, in_err, out_oct, out_err) =
        (w.map(IF, 10), w.map(IF, 14), w.map(IF, 16), w.map(IF, 20));
    let (name, hc_in, hc_out, high, alias) = (
        w.map(IFX, 1),
        w.map(IFX, 6),
        w.map(IFX, 10),
        w.map(IFX, 15),
        w.map(IFX, 18),
    );
    let num = |m: &BTreeMap<&[u64], &Val>, i: &[u64]| m.get(i).and_then(|v| uint(v));
    let status =
        |m: &BTreeMap<&[u64], &Val>, i: &[u64]| m.get(i).and_then(|v| int(v)).map(|s| s == 1);
    idx.iter()
        .filter_map(|i| {
            let index = single_u32(i)?;
            let descr = get_text(&descr, i);
            let name = name
                .get(i.as_slice())
                .and_then(|v| nonempty_text(v))
                .unwrap_or_else(|| descr.clone());
            let speed_mbps = num(&high, i)
                .filter(|&s| s > 0)
                .or_else(|| num(&speed, i).map(|s| s / 1_000_000));
            Some(Interface {
                index,
                name,
                descr,
                alias: get_text(&alias, i),
                mac: phys.get(i.as_slice()).and_then(|v| mac(v)),
                speed_mbps,
                admin_up: status(&admin, i),
                oper_up: status(&oper, i),
                in_octets: num(&hc_in, i).or_else(|| num(&in_oct, i)),
                out_octets: num(&hc_out, i).or_else(|| num(&out_oct, i)),
                in_errors: num(&in_err, i),
                out_errors: num(&out_err, i),
            })
        })
        .collect()
}

fn entity_class(code: Option<i64>) -> &'static str {
    match code {
        Some(1) => "other",
        Some(3) => "chassis",
        Some(4) => "backplane",
        Some(5) => "container",
        Some(6) => "powerSupply",
        Some(7) => "fan",
        Some(8) => "sensor",
        Some(9) => "module",
        Some(10) => "port",
        Some(11) => "stack",
        Some(12) => "cpu",
        _ => "unknown",
    }
}

/// entPhysicalTable rows, ordered by index.
pub fn entities(w: &Walked) -> Vec<Entity> {
    use oids::ENT_PHYSICAL_ENTRY as E;
    let idx = w.indices(E, &[2, 5, 7, 8, 9, 10, 11, 13]);
    let (descr, class, name, hw, fw, sw, serial, model) = (
        w.map(E, 2),
        w.map(E, 5),
        w.map(E, 7),
        w.map(E, 8),
        w.map(E, 9),
        w.map(E, 10),
        w.map(E, 11),
        w.map(E, 13),
    );
    idx.iter()
        .filter_map(|i| {
            Some(Entity {
                index: single_u32(i)?,
                class: entity_class(class.get(i.as_slice()).and_then(|v| int(v))).to_owned(),
                descr: get_text(&descr, i),
                name: get_text(&name, i),
                model: get_text(&model, i),
                serial: get_text(&serial, i),
                hardware_rev: get_text(&hw, i),
                firmware_rev: get_text(&fw, i),
                software_rev: get_text(&sw, i),
            })
        })
        .collect()
}

/// hrStorageTable rows, ordered by index.
pub fn storage(w: &Walked) -> Vec<Storage> {
    use oids::HR_STORAGE_ENTRY as S;
    let idx = w.indices(S, &[2, 3, 4, 5, 6]);
    let (kind, descr, units, size, used) = (
        w.map(S, 2),
        w.map(S, 3),
        w.map(S, 4),
        w.map(S, 5),
        w.map(S, 6),
    );
    idx.iter()
        .map(|i| {
            let unit = units
                .get(i.as_slice())
                .and_then(|v| uint(v))
                .filter(|&u| u > 0);
            let bytes = |m: &BTreeMap<&[u64], &Val>| {
                let n = m.get(i.as_slice()).and_then(|v| uint(v))?;
                n.checked_mul(unit?)
            };
            let kind = match kind.get(i.as_slice()) {
                Some(Val::Oid(o)) if o.starts_with(oids::HR_STORAGE_TYPES) && o.len() == 10 => {
                    match o[9] {
                        2 | 8 => "ram",
                        3 => "virtual",
                        4 | 9 => "disk",
                        5..=7 => "removable",
                        _ => "other",
                    }
                }
                _ => "other",
            };
            Storage {
                descr: get_text(&descr, i),
                kind: kind.to_owned(),
                size_bytes: bytes(&size),
                used_bytes: bytes(&used),
            }
        })
        .collect()
}

/// hrProcessorLoad values (percent), ordered by index; out-of-range values dropped.
pub fn processor_loads(w: &Walked) -> Vec<u32> {
    w.rows(oids::HR_PROCESSOR_LOAD)
        .iter()
        .filter_map(|(_, v)| {
            uint(v)
                .filter(|&l| l <= 100)
                .and_then(|l| u32::try_from(l).ok())
        })
        .collect()
}

/// hrSWInstalledName values.
pub fn software(w: &Walked) -> Vec<String> {
    w.rows(oids::HR_SW_INSTALLED_NAME)
        .iter()
        .filter_map(|(_, v)| nonempty_text(v))
        .collect()
}

/// The description of the first hrDevice of type printer (the printer's model on most MFPs).
pub fn printer_device_descr(w: &Walked) -> Option<String> {
    let types = w.map(oids::HR_DEVICE_ENTRY, 2);
    let descrs = w.map(oids::HR_DEVICE_ENTRY, 3);
    types
        .iter()
        .find(|(_, v)| matches!(v, Val::Oid(o) if o.as_slice() == oids::HR_DEVICE_PRINTER))
        .and_then(|(i, _)| descrs.get(i))
        .and_then(|v| nonempty_text(v))
}

fn supply_kind(type_code: Option<i64>, description: &str) -> &'static str {
    let by_type = match type_code {
        Some(3 | 21) => Some("toner"),
        Some(4) => Some("waste-toner"),
        Some(5..=7) => Some("ink"),
        Some(9) => Some("drum"),
        Some(10) => Some("developer"),
        Some(11 | 15 | 17 | 19 | 22) => Some("fuser"),
        Some(20) => Some("transfer-belt"),
        Some(8 | 12..=14 | 16 | 18 | 23..=34) => Some("other"),
        _ => None,
    };
    if let Some(kind) = by_type {
        return kind;
    }
    let d = description.to_lowercase();
    if d.contains("waste") {
        "waste-toner"
    } else if d.contains("drum") || d.contains("photoconductor") || d.contains("opc") {
        "drum"
    } else if d.contains("developer") {
        "developer"
    } else if d.contains("fuser") || d.contains("fusing") {
        "fuser"
    } else if d.contains("transfer") || d.contains("belt") {
        "transfer-belt"
    } else if d.contains("toner") || d.contains("cartridge") {
        "toner"
    } else if d.contains("ink") {
        "ink"
    } else {
        "other"
    }
}

fn colour_of(text: &str) -> &'static str {
    let t = text.to_lowercase();
    ["black", "cyan", "magenta", "yellow"]
        .into_iter()
        .find(|c| t.contains(c))
        .unwrap_or("")
}

fn supply_unit(code: Option<i64>) -> &'static str {
    match code {
        Some(1) => "other",
        Some(2) => "unknown",
        Some(3) => "tenThousandthsOfInches",
        Some(4) => "micrometers",
        Some(7) => "impressions",
        Some(8) => "sheets",
        Some(11) => "hours",
        Some(12) => "thousandthsOfOunces",
        Some(13) => "tenthsOfGrams",
        Some(14) => "hundrethsOfFluidOunces",
        Some(15) => "tenthsOfMilliliters",
        Some(16) => "feet",
        Some(17) => "meters",
        Some(18) => "items",
        Some(19) => "percent",
        _ => "",
    }
}

/// The RFC 3805 percent rule: `(state, percent, clamped)`.
pub fn supply_percent(level: i64, max: i64) -> (SupplyState, Option<f32>, bool) {
    match level {
        -3 => (SupplyState::SomeRemaining, None, false),
        -2 => (SupplyState::Unknown, None, false),
        l if l < 0 => (SupplyState::Other, None, false),
        l if max > 0 => {
            let clamped = l > max;
            let pct = if clamped {
                100.0
            } else {
                (l as f64 / max as f64 * 100.0) as f32
            };
            (SupplyState::Ok, Some(pct), clamped)
        }
        _ => (SupplyState::Ok, None, false),
    }
}

/// prtMarkerSuppliesTable rows plus notes (levels above max).
pub fn supplies(w: &Walked) -> (Vec<Supply>, Vec<String>) {
    use oids::PRT_SUPPLIES_ENTRY as P;
    let idx = w.indices(P, &[3, 5, 6, 7, 8, 9]);
    let (colorant_idx, kind, descr, unit, max, level) = (
        w.map(P, 3),
        w.map(P, 5),
        w.map(P, 6),
        w.map(P, 7),
        w.map(P, 8),
        w.map(P, 9),
    );
    let colorant_values: BTreeMap<&[u64], &Val> = w
        .rows(oids::PRT_COLORANT_VALUE)
        .iter()
        .map(|(i, v)| (i.as_slice(), v))
        .collect();
    let mut notes = Vec::new();
    let supplies = idx
        .iter()
        .map(|i| {
            let description = get_text(&descr, i);
            let level_v = level.get(i.as_slice()).and_then(|v| int(v)).unwrap_or(-2);
            let max_v = max.get(i.as_slice()).and_then(|v| int(v)).unwrap_or(-2);
            let (state, percent, clamped) = supply_percent(level_v, max_v);
            if clamped {
                notes.push(format!(
                    "supply {description:?}: level {level_v} above max {max_v}; shown as 100%"
                ));
            }
            // The colorant table is indexed by (hrDeviceIndex, prtMarkerColorantIndex).
            let colour_from_table = colorant_idx
                .get(i.as_slice())
                .and_then(|v| uint(v))
                .and_then(|c| colorant_values.get([i.first().copied().unwrap_or(1), c].as_slice()))
                .and_then(|v| text(v))
                .map(|t| colour_of(&t))
                .unwrap_or("");
            let colour = if colour_from_table.is_empty() {
                colour_of(&description)
            } else {
                colour_from_table
            };
            Supply {
                kind: supply_kind(kind.get(i.as_slice()).and_then(|v| int(v)), &description)
                    .to_owned(),
                colour: colour.to_owned(),
                description,
                level: level_v,
                max: max_v,
                percent,
                state,
                unit: supply_unit(unit.get(i.as_slice()).and_then(|v| int(v))).to_owned(),
            }
        })
        .collect();
    (supplies, notes)
}

/// prtMarkerLifeCount of the first marker.
pub fn page_count(w: &Walked) -> Option<u64> {
    w.rows(oids::PRT_MARKER_LIFE_COUNT)
        .iter()
        .find_map(|(_, v)| uint(v))
}

/// hrPrinterDetectedErrorState bit names, most significant bit of the first octet first.
pub const PRINTER_ERROR_BITS: [&str; 15] = [
    "lowPaper",
    "noPaper",
    "lowToner",
    "noToner",
    "doorOpen",
    "jammed",
    "offline",
    "serviceRequested",
    "inputTrayMissing",
    "outputTrayMissing",
    "markerSupplyMissing",
    "outputNearFull",
    "outputFull",
    "inputTrayEmpty",
    "overduePreventMaint",
];

/// Decodes hrPrinterDetectedErrorState (bit 0 = most significant bit of the first octet).
pub fn printer_error_bits(bytes: &[u8]) -> Vec<String> {
    PRINTER_ERROR_BITS
        .iter()
        .enumerate()
        .filter(|(bit, _)| {
            bytes
                .get(bit / 8)
                .is_some_and(|b| b & (0x80 >> (bit % 8)) != 0)
        })
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

/// Errors of every printer hrDevice, without repeats.
pub fn printer_errors(w: &Walked) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, v) in w.rows(oids::HR_PRINTER_ERROR_STATE) {
        if let Val::Str(b) = v {
            for e in printer_error_bits(b) {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
    }
    out
}

fn mac_from_arcs(arcs: &[u64]) -> Option<String> {
    let bytes: Vec<u8> = arcs
        .iter()
        .map(|&a| u8::try_from(a).ok())
        .collect::<Option<_>>()?;
    if bytes.len() != 6 {
        return None;
    }
    mac_from_bytes(&bytes)
}

/// dot1qTpFdbPort and dot1dTpFdbPort rows, ports mapped to ifIndex where known.
pub fn fdb(w: &Walked) -> Vec<FdbEntry> {
    let port_if: BTreeMap<u32, u32> = w
        .rows(oids::DOT1D_BASE_PORT_IFINDEX)
        .iter()
        .filter_map(|(i, v)| Some((single_u32(i)?, u32::try_from(uint(v)?).ok()?)))
        .collect();
    let mut out = Vec::new();
    for (i, v) in w.rows(oids::DOT1Q_TP_FDB_PORT) {
        let (Some((&fdb_id, mac_arcs)), Some(port)) =
            (i.split_first(), uint(v).and_then(|p| u32::try_from(p).ok()))
        else {
            continue;
        };
        let Some(mac) = mac_from_arcs(mac_arcs) else {
            continue;
        };
        out.push(FdbEntry {
            mac,
            port,
            if_index: port_if.get(&port).copied(),
            vlan: u32::try_from(fdb_id).ok(),
        });
    }
    for (i, v) in w.rows(oids::DOT1D_TP_FDB_PORT) {
        let (Some(mac), Some(port)) = (
            mac_from_arcs(i),
            uint(v).and_then(|p| u32::try_from(p).ok()),
        ) else {
            continue;
        };
        if out.iter().any(|e| e.mac == mac && e.port == port) {
            continue;
        }
        out.push(FdbEntry {
            mac,
            port,
            if_index: port_if.get(&port).copied(),
            vlan: None,
        });
    }
    out
}

/// lldpRemTable rows joined with lldpRemManAddrTable, ordered by (timeMark, port, index).
pub fn lldp(w: &Walked) -> Vec<LldpNeighbor> {
    use oids::LLDP_REM_ENTRY as L;
    let mut keys = w.indices(L, &[4, 5, 6, 7, 8, 9, 10]);
    let mut addrs: BTreeMap<OidVec, String> = BTreeMap::new();
    for (i, _) in w.rows(oids::LLDP_REM_MAN_ADDR_IF_SUBTYPE) {
        // index: timeMark.localPort.remIndex.addrSubtype.addrLen.addr...
        if let [tm, port, rem, 1, 4, a, b, c, d] = i.as_slice() {
            let octets: Option<Vec<u8>> = [a, b, c, d]
                .iter()
                .map(|&&x| u8::try_from(x).ok())
                .collect();
            if let Some(o) = octets {
                let key = vec![*tm, *port, *rem];
                addrs
                    .entry(key.clone())
                    .or_insert_with(|| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]));
                keys.insert(key);
            }
        }
    }
    let (chassis_sub, chassis, port_sub, port_id, port_descr, sys_name, sys_descr) = (
        w.map(L, 4),
        w.map(L, 5),
        w.map(L, 6),
        w.map(L, 7),
        w.map(L, 8),
        w.map(L, 9),
        w.map(L, 10),
    );
    keys.iter()
        .filter_map(|k| {
            let [_, port, _] = k.as_slice() else {
                return None;
            };
            let id =
                |sub: &BTreeMap<&[u64], &Val>, val: &BTreeMap<&[u64], &Val>, mac_subtype: i64| {
                    let v = val.get(k.as_slice())?;
                    if sub.get(k.as_slice()).and_then(|s| int(s)) == Some(mac_subtype) {
                        mac(v).or_else(|| display(v))
                    } else {
                        display(v)
                    }
                };
            Some(LldpNeighbor {
                local_port: u32::try_from(*port).ok()?,
                chassis_id: id(&chassis_sub, &chassis, 4).unwrap_or_default(),
                port_id: id(&port_sub, &port_id, 3).unwrap_or_default(),
                port_descr: get_text(&port_descr, k),
                sys_name: get_text(&sys_name, k),
                sys_descr: get_text(&sys_descr, k),
                mgmt_addr: addrs.get(k).cloned(),
            })
        })
        .collect()
}

/// Scalars fetched for [`ups_from`]: `(oid, meaning)`.
pub fn ups_scalar_oids() -> Vec<OidVec> {
    let apc = |s: &[u64]| [oids::APC_UPS, s].concat();
    let mib = |s: &[u64]| [oids::UPS_MIB, s].concat();
    vec![
        apc(&[1, 1, 1, 0]),    // 0 upsBasicIdentModel
        apc(&[4, 1, 1, 0]),    // 1 upsBasicOutputStatus (3 = onBattery)
        apc(&[2, 2, 3, 0]),    // 2 upsAdvBatteryRunTimeRemaining (ticks)
        apc(&[2, 3, 1, 0]),    // 3 upsHighPrecBatteryCapacity (tenths)
        apc(&[2, 2, 1, 0]),    // 4 upsAdvBatteryCapacity
        apc(&[2, 2, 4, 0]),    // 5 upsAdvBatteryReplaceIndicator (2 = replace)
        apc(&[4, 3, 3, 0]),    // 6 upsHighPrecOutputLoad (tenths)
        apc(&[4, 2, 3, 0]),    // 7 upsAdvOutputLoad
        apc(&[3, 3, 1, 0]),    // 8 upsHighPrecInputLineVoltage (tenths)
        apc(&[3, 2, 1, 0]),    // 9 upsAdvInputLineVoltage
        apc(&[4, 3, 1, 0]),    // 10 upsHighPrecOutputVoltage (tenths)
        apc(&[4, 2, 1, 0]),    // 11 upsAdvOutputVoltage
        apc(&[2, 3, 2, 0]),    // 12 upsHighPrecBatteryTemperature (tenths)
        apc(&[2, 2, 2, 0]),    // 13 upsAdvBatteryTemperature
        mib(&[1, 2, 0]),       // 14 upsIdentModel
        mib(&[4, 1, 0]),       // 15 upsOutputSource (5 = battery)
        mib(&[2, 3, 0]),       // 16 upsEstimatedMinutesRemaining
        mib(&[2, 4, 0]),       // 17 upsEstimatedChargeRemaining
        mib(&[2, 7, 0]),       // 18 upsBatteryTemperature
        mib(&[3, 3, 1, 3, 1]), // 19 upsInputVoltage.1
        mib(&[4, 4, 1, 2, 1]), // 20 upsOutputVoltage.1
        mib(&[4, 4, 1, 5, 1]), // 21 upsOutputPercentLoad.1
        mib(&[2, 1, 0]),       // 22 upsBatteryStatus
    ]
}

/// Builds the UPS record from the values of [`ups_scalar_oids`] (same order). `None` when
/// neither MIB answered.
pub fn ups_from(values: &[Val]) -> Option<Ups> {
    let v = |i: usize| values.get(i).filter(|v| !v.is_absent());
    let n = |i: usize| v(i).and_then(int);
    let tenths = |i: usize| n(i).map(|x| x as f32 / 10.0);
    let whole = |i: usize| n(i).map(|x| x as f32);
    let apc = (0..14).any(|i| v(i).is_some());
    let mib = (14..23).any(|i| v(i).is_some());
    if apc {
        Some(Ups {
            on_battery: n(1) == Some(3),
            runtime_secs: v(2).and_then(uint).map(|t| t / 100),
            charge_percent: tenths(3).or_else(|| whole(4)),
            replace_battery: n(5) == Some(2),
            load_percent: tenths(6).or_else(|| whole(7)),
            input_voltage: tenths(8).or_else(|| whole(9)),
            output_voltage: tenths(10).or_else(|| whole(11)),
            temperature_c: tenths(12).or_else(|| whole(13)),
            model: v(0).and_then(text).unwrap_or_default(),
        })
    } else if mib {
        Some(Ups {
            on_battery: n(15) == Some(5),
            runtime_secs: v(16).and_then(uint).map(|m| m.saturating_mul(60)),
            charge_percent: whole(17),
            replace_battery: false,
            load_percent: whole(21),
            input_voltage: whole(19),
            output_voltage: whole(20),
            temperature_c: whole(18),
            model: v(14).and_then(text).unwrap_or_default(),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::snmp::value::tests::any_val;
    use proptest::prelude::*;

    fn walked(rows: &[(&[u64], u64, &[u64], Val)]) -> Walked {
        let mut w = Walked::default();
        for (entry, col, idx, v) in rows {
            let mut root = entry.to_vec();
            root.push(*col);
            w.0.entry(root).or_default().push((idx.to_vec(), v.clone()));
        }
        w
    }

    #[test]
    fn percent_rules() {
        assert_eq!(
            supply_percent(28, 100),
            (SupplyState::Ok, Some(28.0), false)
        );
        assert_eq!(
            supply_percent(1060, 5300),
            (SupplyState::Ok, Some(20.0), false)
        );
        assert_eq!(supply_percent(0, -2), (SupplyState::Ok, None, false)); // Brother
        assert_eq!(
            supply_percent(-3, -2),
            (SupplyState::SomeRemaining, None, false)
        );
        assert_eq!(supply_percent(-2, 100), (SupplyState::Unknown, None, false));
        assert_eq!(supply_percent(-1, 100), (SupplyState::Other, None, false));
        assert_eq!(supply_percent(-7, 100), (SupplyState::Other, None, false));
        assert_eq!(
            supply_percent(150, 100),
            (SupplyState::Ok, Some(100.0), true)
        );
        assert_eq!(supply_percent(100, -2), (SupplyState::Ok, None, false)); // Sharp waste toner
        assert_eq!(supply_percent(5, 0), (SupplyState::Ok, None, false));
        assert_eq!(supply_percent(0, 100), (SupplyState::Ok, Some(0.0), false));
    }

    #[test]
    fn supplies_kind_colour_and_notes() {
        use oids::PRT_SUPPLIES_ENTRY as P;
        let w = walked(&[
            (P, 5, &[1, 1], Val::Int(3)),
            (P, 6, &[1, 1], Val::Str(b"Cyan Toner".to_vec())),
            (P, 7, &[1, 1], Val::Int(19)),
            (P, 8, &[1, 1], Val::Int(100)),
            (P, 9, &[1, 1], Val::Int(20)),
            (
                P,
                6,
                &[1, 2],
                Val::Str(b"Drum Cartridge (R1), PN 013R00662".to_vec()),
            ),
            (P, 8, &[1, 2], Val::Int(100)),
            (P, 9, &[1, 2], Val::Int(120)),
            (P, 5, &[1, 3], Val::Int(4)),
            (P, 6, &[1, 3], Val::Str(b"Waste Toner".to_vec())),
            (P, 9, &[1, 3], Val::Str(b"garbage".to_vec())),
        ]);
        let (s, notes) = supplies(&w);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (
                s[0].kind.as_str(),
                s[0].colour.as_str(),
                s[0].percent,
                s[0].unit.as_str()
            ),
            ("toner", "cyan", Some(20.0), "percent")
        );
        assert_eq!((s[1].kind.as_str(), s[1].percent), ("drum", Some(100.0)));
        assert_eq!(notes.len(), 1);
        assert_eq!(
            (s[2].kind.as_str(), s[2].state, s[2].percent),
            ("waste-toner", SupplyState::Unknown, None)
        );
    }

    #[test]
    fn supply_kind_from_description() {
        for (d, k) in [
            ("Black Photoconductive Drum", "drum"),
            ("Black Developer", "developer"),
            ("Fusing Unit", "fuser"),
            ("Transfer Belt Cleaner", "transfer-belt"),
            ("Waste Toner Container", "waste-toner"),
            ("Black Cartridge HP CF217A", "toner"),
            ("Second Bias Transfer Roll", "transfer-belt"),
            ("Staples", "other"),
        ] {
            assert_eq!(supply_kind(None, d), k, "{d}");
        }
        assert_eq!(supply_kind(Some(9), "Imaging Drum HP CF219A"), "drum");
        assert_eq!(supply_kind(Some(2), "Black Toner"), "toner");
    }

    #[test]
    fn printer_error_bits_decode() {
        assert_eq!(printer_error_bits(&[0x00]), Vec::<String>::new());
        assert_eq!(printer_error_bits(&[0x80]), vec!["lowPaper"]);
        assert_eq!(
            printer_error_bits(&[0x05, 0x00]),
            vec!["jammed", "serviceRequested"]
        );
        assert_eq!(printer_error_bits(&[0x18]), vec!["noToner", "doorOpen"]);
        assert_eq!(printer_error_bits(&[0x00, 0x80]), vec!["inputTrayMissing"]);
        assert_eq!(
            printer_error_bits(&[0x00, 0x06]),
            vec!["inputTrayEmpty", "overduePreventMaint"]
        );
        assert_eq!(printer_error_bits(&[0xff, 0xff, 0xff]).len(), 15);
        assert!(printer_error_bits(&[]).is_empty());
    }

    #[test]
    fn interfaces_join_if_and_ifx() {
        use oids::{IF_TABLE_ENTRY as IF, IF_X_ENTRY as IFX};
        let w = walked(&[
            (IF, 2, &[1], Val::Str(b"eth0".to_vec())),
            (IF, 5, &[1], Val::Unsigned32(100_000_000)),
            (IF, 6, &[1], Val::Str(vec![0, 0x1b, 0x21, 1, 2, 3])),
            (IF, 7, &[1], Val::Int(1)),
            (IF, 8, &[1], Val::Int(2)),
            (IF, 10, &[1], Val::Counter32(5)),
            (IFX, 1, &[1], Val::Str(b"1/1".to_vec())),
            (IFX, 6, &[1], Val::Counter64(1 << 40)),
            (IFX, 15, &[1], Val::Unsigned32(1000)),
            (IFX, 18, &[2], Val::Str(b"uplink".to_vec())),
            (IF, 2, &[1, 2], Val::Str(b"bad index".to_vec())),
        ]);
        let ifs = interfaces(&w);
        assert_eq!(ifs.len(), 2);
        assert_eq!(ifs[0].name, "1/1");
        assert_eq!(ifs[0].descr, "eth0");
        assert_eq!(ifs[0].mac.as_deref(), Some("00:1b:21:01:02:03"));
        assert_eq!(ifs[0].speed_mbps, Some(1000));
        assert_eq!((ifs[0].admin_up, ifs[0].oper_up), (Some(true), Some(false)));
        assert_eq!(ifs[0].in_octets, Some(1 << 40));
        assert_eq!(
            (ifs[1].index, ifs[1].alias.as_str(), ifs[1].mac.clone()),
            (2, "uplink", None)
        );
    }

    #[test]
    fn fdb_maps_ports_and_vlans() {
        let mut w = Walked::default();
        w.insert(
            oids::DOT1D_BASE_PORT_IFINDEX.to_vec(),
            vec![(vec![5], Val::Int(105))],
        );
        w.insert(
            oids::DOT1Q_TP_FDB_PORT.to_vec(),
            vec![
                (vec![10, 0, 0x1b, 0x21, 1, 2, 3], Val::Int(5)),
                (vec![10, 0, 0x1b, 0x21, 1, 2, 999], Val::Int(5)),
                (vec![10, 0, 0x1b], Val::Int(5)),
            ],
        );
        let f = fdb(&w);
        assert_eq!(
            f,
            vec![FdbEntry {
                mac: "00:1b:21:01:02:03".into(),
                port: 5,
                if_index: Some(105),
                vlan: Some(10)
            }]
        );
    }

    #[test]
    fn lldp_joins_management_addresses() {
        use oids::LLDP_REM_ENTRY as L;
        let mut w = walked(&[
            (L, 4, &[0, 27, 1], Val::Int(4)),
            (L, 5, &[0, 27, 1], Val::Str(vec![0, 0x40, 0x8c, 1, 2, 3])),
            (L, 7, &[0, 27, 1], Val::Str(b"eth0".to_vec())),
            (L, 9, &[0, 27, 1], Val::Str(b"axis".to_vec())),
        ]);
        w.insert(
            oids::LLDP_REM_MAN_ADDR_IF_SUBTYPE.to_vec(),
            vec![(vec![0, 27, 1, 1, 4, 10, 0, 0, 7], Val::Int(2))],
        );
        let n = lldp(&w);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].local_port, 27);
        assert_eq!(n[0].chassis_id, "00:40:8c:01:02:03");
        assert_eq!(n[0].sys_name, "axis");
        assert_eq!(n[0].mgmt_addr.as_deref(), Some("10.0.0.7"));
    }

    #[test]
    fn ups_from_apc_and_ups_mib() {
        let mut vals = vec![Val::NoSuchObject; ups_scalar_oids().len()];
        assert_eq!(ups_from(&vals), None);
        vals[0] = Val::Str(b"Smart-UPS 1500 RM".to_vec());
        vals[1] = Val::Int(2);
        vals[2] = Val::Ticks(396_000);
        vals[3] = Val::Unsigned32(1000);
        vals[5] = Val::Int(1);
        vals[12] = Val::Unsigned32(261);
        let u = ups_from(&vals).unwrap();
        assert!(!u.on_battery && !u.replace_battery);
        assert_eq!(
            (u.runtime_secs, u.charge_percent, u.temperature_c),
            (Some(3960), Some(100.0), Some(26.1))
        );
        let mut vals = vec![Val::NoSuchObject; ups_scalar_oids().len()];
        vals[15] = Val::Int(5);
        vals[16] = Val::Int(12);
        let u = ups_from(&vals).unwrap();
        assert!(u.on_battery);
        assert_eq!(u.runtime_secs, Some(720));
    }

    fn any_walked() -> impl Strategy<Value = Walked> {
        let roots: Vec<OidVec> = vec![
            [oids::IF_TABLE_ENTRY, &[2]].concat(),
            [oids::IF_TABLE_ENTRY, &[6]].concat(),
            [oids::IF_X_ENTRY, &[1]].concat(),
            [oids::IF_X_ENTRY, &[15]].concat(),
            [oids::ENT_PHYSICAL_ENTRY, &[5]].concat(),
            [oids::ENT_PHYSICAL_ENTRY, &[13]].concat(),
            [oids::HR_STORAGE_ENTRY, &[2]].concat(),
            [oids::HR_STORAGE_ENTRY, &[4]].concat(),
            [oids::HR_STORAGE_ENTRY, &[5]].concat(),
            oids::HR_PROCESSOR_LOAD.to_vec(),
            oids::HR_PRINTER_ERROR_STATE.to_vec(),
            [oids::HR_DEVICE_ENTRY, &[2]].concat(),
            [oids::HR_DEVICE_ENTRY, &[3]].concat(),
            [oids::PRT_SUPPLIES_ENTRY, &[3]].concat(),
            [oids::PRT_SUPPLIES_ENTRY, &[5]].concat(),
            [oids::PRT_SUPPLIES_ENTRY, &[8]].concat(),
            [oids::PRT_SUPPLIES_ENTRY, &[9]].concat(),
            oids::PRT_COLORANT_VALUE.to_vec(),
            oids::PRT_MARKER_LIFE_COUNT.to_vec(),
            oids::DOT1D_BASE_PORT_IFINDEX.to_vec(),
            oids::DOT1Q_TP_FDB_PORT.to_vec(),
            oids::DOT1D_TP_FDB_PORT.to_vec(),
            [oids::LLDP_REM_ENTRY, &[5]].concat(),
            [oids::LLDP_REM_ENTRY, &[4]].concat(),
            oids::LLDP_REM_MAN_ADDR_IF_SUBTYPE.to_vec(),
        ];
        let n = roots.len();
        proptest::collection::vec(
            (
                0..n,
                proptest::collection::vec(prop_oneof![0u64..8, any::<u64>()], 0..10),
                any_val(),
            ),
            0..60,
        )
        .prop_map(move |rows| {
            let mut w = Walked::default();
            for (r, idx, v) in rows {
                w.0.entry(roots[r].clone()).or_default().push((idx, v));
            }
            w
        })
    }

    proptest! {
        #[test]
        fn assembly_never_panics(w in any_walked(), vals in proptest::collection::vec(any_val(), 0..30)) {
            let _ = interfaces(&w);
            let _ = entities(&w);
            let _ = storage(&w);
            let _ = processor_loads(&w);
            let _ = software(&w);
            let _ = printer_device_descr(&w);
            let (s, _) = supplies(&w);
            for x in s {
                if let Some(p) = x.percent { prop_assert!((0.0..=100.0).contains(&p)); }
            }
            let _ = page_count(&w);
            let _ = printer_errors(&w);
            let _ = fdb(&w);
            let _ = lldp(&w);
            let _ = ups_from(vals.as_slice());
        }

        #[test]
        fn percent_is_bounded(level in any::<i64>(), max in any::<i64>()) {
            let (_, p, _) = supply_percent(level, max);
            if let Some(p) = p { prop_assert!((0.0..=100.0).contains(&p)); }
        }
    }
}
