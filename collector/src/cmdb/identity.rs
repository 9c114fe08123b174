//! Scored device identity: is this report from a device we already know?
//!
//! Schools reimage suites, rename PCs and swap NICs, so no single signal is trusted. Each
//! signal adds (or, when both sides have it and they disagree, subtracts) points; a candidate
//! at or above [`MATCH_THRESHOLD`] is the same device. Hardware ids dominate: two clones of one
//! image share hostname and OS installation id but differ in SMBIOS UUID, serial and MACs, so
//! they stay two assets; a PC whose agent state was wiped keeps its hardware and stays one.

use std::collections::BTreeSet;

/// Points needed to call two fingerprints the same device.
pub const MATCH_THRESHOLD: i32 = 50;

/// The identity signals of one device, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Canonical lower-case dashed SMBIOS UUID, junk values removed.
    pub uuid: Option<String>,
    /// System (or board) serial, junk values removed.
    pub serial: Option<String>,
    /// Universally administered MACs of physical NICs.
    pub macs: BTreeSet<String>,
    /// Locally administered MACs: stable on VMs, random on privacy Wi-Fi; weaker evidence.
    pub local_macs: BTreeSet<String>,
    pub hostname: String,
    pub machine_id: Option<String>,
    pub agent_ids: BTreeSet<String>,
}

/// How well two fingerprints match, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    pub points: i32,
    pub reasons: Vec<String>,
}

impl Score {
    pub fn is_match(&self) -> bool {
        self.points >= MATCH_THRESHOLD
    }
}

pub fn score(new: &Fingerprint, known: &Fingerprint) -> Score {
    let mut points = 0;
    let mut reasons = Vec::new();
    let mut add = |delta: i32, reason: String| {
        points += delta;
        reasons.push(format!("{reason} ({delta:+})"));
    };
    if let (Some(a), Some(b)) = (&new.uuid, &known.uuid) {
        if uuids_equal(a, b) {
            add(100, format!("SMBIOS UUID {a} matches"));
        } else {
            add(-100, format!("SMBIOS UUID {a} differs from {b}"));
        }
    }
    if let (Some(a), Some(b)) = (&new.serial, &known.serial) {
        if a.eq_ignore_ascii_case(b) {
            add(60, format!("serial {a} matches"));
        } else {
            add(-60, format!("serial {a} differs from {b}"));
        }
    }
    let shared: Vec<_> = new.macs.intersection(&known.macs).collect();
    if let Some(first) = shared.first() {
        let extra = (shared.len() as i32 - 1).min(2) * 10;
        add(
            40 + extra,
            format!("MAC {first} matches ({} shared)", shared.len()),
        );
    }
    let shared_local: Vec<_> = new.local_macs.intersection(&known.local_macs).collect();
    if let Some(first) = shared_local.first() {
        add(30, format!("locally administered MAC {first} matches"));
    }
    if !new.hostname.is_empty() && new.hostname.eq_ignore_ascii_case(&known.hostname) {
        add(10, format!("hostname {} matches", new.hostname));
    }
    if let (Some(a), Some(b)) = (&new.machine_id, &known.machine_id)
        && a == b
    {
        add(20, "OS installation id matches".to_owned());
    }
    if let Some(agent) = new.agent_ids.intersection(&known.agent_ids).next() {
        add(50, format!("agent {agent} already reports for it"));
    }
    Score { points, reasons }
}

/// Canonical form of an SMBIOS UUID, or `None` for missing and well-known junk values.
pub fn normalise_uuid(raw: &str) -> Option<String> {
    let hex: String = raw
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let junk = hex.chars().all(|c| c == '0')
        || hex.chars().all(|c| c == 'f')
        || hex == "03000200040005000006000700080009";
    if junk {
        return None;
    }
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// Equal as UUIDs, allowing for the little-endian first three fields that some firmware and
/// tools (SMBIOS before 2.6, some Windows APIs) report.
pub fn uuids_equal(a: &str, b: &str) -> bool {
    a == b || swap_first_fields(a).as_deref() == Some(b)
}

fn swap_first_fields(uuid: &str) -> Option<String> {
    let parts: Vec<&str> = uuid.split('-').collect();
    if parts.len() != 5 {
        return None;
    }
    let swap = |s: &str| -> String {
        s.as_bytes()
            .chunks(2)
            .rev()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    };
    Some(format!(
        "{}-{}-{}-{}-{}",
        swap(parts[0]),
        swap(parts[1]),
        swap(parts[2]),
        parts[3],
        parts[4]
    ))
}

/// A serial number, or `None` for the placeholders firmware ships with.
pub fn normalise_serial(raw: &str) -> Option<String> {
    let serial = raw.trim();
    let lower = serial.to_ascii_lowercase();
    const JUNK: &[&str] = &[
        "",
        "0",
        "none",
        "n/a",
        "na",
        "null",
        "default string",
        "to be filled by o.e.m.",
        "to be filled by oem",
        "system serial number",
        "chassis serial number",
        "base board serial number",
        "not specified",
        "not applicable",
        "0123456789",
        "1234567890",
        "serial",
        "xxxxxxxx",
        "unknown",
    ];
    if JUNK.contains(&lower.as_str()) || lower.chars().all(|c| c == '0' || c == ' ') {
        None
    } else {
        Some(serial.to_owned())
    }
}

pub use crate::model::mac::{is_locally_administered, normalise_mac};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pc(uuid: &str, serial: &str, mac: &str, hostname: &str) -> Fingerprint {
        Fingerprint {
            uuid: normalise_uuid(uuid),
            serial: normalise_serial(serial),
            macs: normalise_mac(mac).into_iter().collect(),
            hostname: hostname.to_owned(),
            machine_id: Some("image-2026".to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn a_wiped_agent_on_the_same_hardware_matches() {
        let before = Fingerprint {
            agent_ids: ["old".to_owned()].into(),
            ..pc(
                "4C4C4544-0042-3910-8036-B4C04F4B3732",
                "B4K2",
                "00:1A:2B:3C:4D:5E",
                "R12-PC03",
            )
        };
        let after = pc(
            "4c4c4544-0042-3910-8036-b4c04f4b3732",
            "B4K2",
            "00-1a-2b-3c-4d-5e",
            "R12-PC03",
        );
        assert!(score(&after, &before).is_match());
    }

    #[test]
    fn two_clones_of_one_image_stay_two_devices() {
        let a = pc(
            "4C4C4544-0042-3910-8036-B4C04F4B3732",
            "B4K2",
            "00:1A:2B:3C:4D:5E",
            "MINWINPC",
        );
        let b = pc(
            "4C4C4544-0051-3710-8048-C7C04F4B3732",
            "C7K9",
            "00:1A:2B:3C:4D:99",
            "MINWINPC",
        );
        let s = score(&b, &a);
        assert!(!s.is_match(), "{s:?}");
    }

    #[test]
    fn a_renamed_pc_with_a_new_nic_is_still_recognised_by_its_board() {
        let a = pc(
            "4C4C4544-0042-3910-8036-B4C04F4B3732",
            "B4K2",
            "00:1A:2B:3C:4D:5E",
            "R12-PC03",
        );
        let b = pc(
            "4C4C4544-0042-3910-8036-B4C04F4B3732",
            "B4K2",
            "00:1A:2B:FF:4D:01",
            "LIB-PC01",
        );
        assert!(score(&b, &a).is_match());
    }

    #[test]
    fn a_vm_without_firmware_ids_matches_on_its_mac_and_name() {
        let a = Fingerprint {
            local_macs: ["02:fc:00:00:00:01".to_owned()].into(),
            hostname: "builder".to_owned(),
            machine_id: Some("m1".to_owned()),
            ..Default::default()
        };
        assert!(score(&a.clone(), &a).is_match());
        // The same image on another VM shares only the name and installation id.
        let clone = Fingerprint {
            local_macs: ["02:fc:00:00:00:02".to_owned()].into(),
            ..a.clone()
        };
        assert!(!score(&clone, &a).is_match());
    }

    #[test]
    fn junk_firmware_values_are_ignored() {
        assert_eq!(normalise_uuid("03000200-0400-0500-0006-000700080009"), None);
        assert_eq!(normalise_uuid("00000000-0000-0000-0000-000000000000"), None);
        assert_eq!(normalise_serial("To Be Filled By O.E.M."), None);
        assert_eq!(normalise_serial("  Default string "), None);
        assert_eq!(
            normalise_serial("5CG1234XYZ").as_deref(),
            Some("5CG1234XYZ")
        );
        assert_eq!(normalise_mac("ff:ff:ff:ff:ff:ff"), None);
        assert_eq!(normalise_mac("01:00:5e:00:00:01"), None);
        assert!(is_locally_administered("02:fc:00:00:00:01"));
        assert!(!is_locally_administered("00:1a:2b:3c:4d:5e"));
    }

    #[test]
    fn byte_swapped_uuids_are_the_same_uuid() {
        let linux = normalise_uuid("4C4C4544-0042-3910-8036-B4C04F4B3732").expect("uuid");
        let swapped = normalise_uuid("44454C4C-4200-1039-8036-B4C04F4B3732").expect("uuid");
        assert!(uuids_equal(&swapped, &linux));
        assert!(uuids_equal(&linux, &swapped));
    }

    proptest! {
        #[test]
        fn swapping_twice_is_identity(bytes in proptest::array::uniform16(any::<u8>())) {
            let uuid = normalise_uuid(&hex::encode(bytes));
            if let Some(uuid) = uuid {
                let twice = swap_first_fields(&swap_first_fields(&uuid).expect("5 parts"));
                prop_assert_eq!(twice, Some(uuid));
            }
        }

        #[test]
        fn score_is_symmetric(a in "[0-9a-f]{32}", b in "[0-9a-f]{32}", same_serial in any::<bool>()) {
            let x = pc(&a, "S1", "00:11:22:33:44:55", "h");
            let y = pc(&b, if same_serial { "S1" } else { "S2" }, "00:11:22:33:44:66", "h");
            prop_assert_eq!(score(&x, &y).points, score(&y, &x).points);
        }
    }
}
