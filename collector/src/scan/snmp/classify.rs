//! What kind of device this is, who made it, and its model, serial and firmware.
//!
//! Pure functions of what the device said: sysObjectID (its enterprise number and subtree),
//! sysDescr, which MIBs answered, ENTITY-MIB chassis rows and a few vendor scalars fetched
//! with single GETs. Vendor-specific rules come first (an Aruba Instant AP also answers
//! Q-BRIDGE; a UniFi AP and a Synology NAS both say only "net-snmp Linux"), then MIB
//! presence, then sysDescr keywords.

use crate::model::AssetKind;

use super::Entity;

/// Which MIBs / subtrees answered a GETNEXT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mibs {
    pub printer: bool,
    /// Anything under BRIDGE-MIB (1.3.6.1.2.1.17), Q-BRIDGE included.
    pub bridge: bool,
    pub ups_mib: bool,
    pub powernet: bool,
    pub host_resources: bool,
    pub entity: bool,
    pub lldp: bool,
    pub synology: bool,
    pub unifi: bool,
}

/// Roots probed with one GETNEXT each, in the order of the [`Mibs`] fields.
pub const PROBE_ROOTS: [&[u64]; 9] = [
    &[1, 3, 6, 1, 2, 1, 43],
    &[1, 3, 6, 1, 2, 1, 17],
    &[1, 3, 6, 1, 2, 1, 33],
    &[1, 3, 6, 1, 4, 1, 318, 1, 1, 1],
    &[1, 3, 6, 1, 2, 1, 25],
    &[1, 3, 6, 1, 2, 1, 47, 1, 1, 1],
    &[1, 0, 8802, 1, 1, 2, 1, 4],
    &[1, 3, 6, 1, 4, 1, 6574],
    &[1, 3, 6, 1, 4, 1, 41112],
];

impl Mibs {
    /// From "does the agent have anything under root i" answers, in [`PROBE_ROOTS`] order.
    pub fn from_presence(present: &[bool]) -> Mibs {
        let p = |i: usize| present.get(i).copied().unwrap_or(false);
        Mibs {
            printer: p(0),
            bridge: p(1),
            ups_mib: p(2),
            powernet: p(3),
            host_resources: p(4),
            entity: p(5),
            lldp: p(6),
            synology: p(7),
            unifi: p(8),
        }
    }
}

/// The private enterprise number in a sysObjectID, and the arcs after it.
fn enterprise(object_id: &str) -> Option<(u64, Vec<u64>)> {
    let arcs = super::value::parse_dotted(object_id)?;
    match arcs.as_slice() {
        [1, 3, 6, 1, 4, 1, ent, rest @ ..] => Some((*ent, rest.to_vec())),
        _ => None,
    }
}

/// Printer makers (enterprise numbers).
const PRINTER_VENDORS: &[u64] = &[
    2435, 1602, 367, 253, 2385, 1347, 641, 2001, 18334, 1129, 236, 10642,
];
/// Switch makers.
const SWITCH_VENDORS: &[u64] = &[
    171, 4526, 11863, 890, 6486, 43, 45, 1916, 47196, 25506, 30065, 4413, 6527, 207,
];
/// Access-point / wireless makers.
const AP_VENDORS: &[u64] = &[14823, 25053, 41112, 29671, 14179, 26928];
/// Routers and firewalls.
const ROUTER_VENDORS: &[u64] = &[14988, 12356, 25461, 2620, 8741, 3224, 2636];
const UPS_VENDORS: &[u64] = &[318, 534, 705, 476, 935];
const NAS_VENDORS: &[u64] = &[6574, 24681, 55062];
const PHONE_VENDORS: &[u64] = &[13885, 37459, 1027, 1526, 6889, 8744];

/// The vendor's name for an enterprise number ("" when unknown).
pub fn vendor_name(ent: u64) -> &'static str {
    match ent {
        9 => "Cisco",
        11 => "HP",
        43 => "3Com",
        171 => "D-Link",
        207 => "Allied Telesis",
        236 => "Samsung",
        253 => "Xerox",
        311 => "Microsoft",
        318 => "APC",
        367 => "Ricoh",
        534 => "Eaton",
        641 => "Lexmark",
        890 => "Zyxel",
        1248 => "Epson",
        1347 => "Kyocera",
        1602 => "Canon",
        1916 => "Extreme Networks",
        2001 => "OKI",
        2385 => "Sharp",
        2435 => "Brother",
        2636 => "Juniper",
        4526 => "Netgear",
        6486 => "Alcatel-Lucent",
        6574 => "Synology",
        11863 => "TP-Link",
        12356 => "Fortinet",
        13885 => "Polycom",
        14823 => "Aruba",
        14988 => "MikroTik",
        18334 => "Konica Minolta",
        24681 => "QNAP",
        25053 => "Ruckus",
        25461 => "Palo Alto Networks",
        29671 => "Cisco Meraki",
        37459 => "Yealink",
        41112 => "Ubiquiti",
        47196 => "Aruba",
        _ => "",
    }
}

/// The device kind.
pub fn classify(object_id: &str, descr: &str, mibs: &Mibs) -> AssetKind {
    let d = descr.to_lowercase();
    if let Some((ent, rest)) = enterprise(object_id) {
        let sub = |prefix: &[u64]| rest.starts_with(prefix);
        let by_vendor = match ent {
            11 if sub(&[2, 3, 9]) => Some(AssetKind::Printer),
            11 if sub(&[2, 3, 7]) || sub(&[2, 14]) => Some(AssetKind::Switch),
            9 if sub(&[6, 1]) => Some(AssetKind::Switch),
            9 if d.contains("aironet") || d.contains("wireless") => Some(AssetKind::AccessPoint),
            9 if mibs.bridge || d.contains("switch") => Some(AssetKind::Switch),
            9 => Some(AssetKind::Router),
            1248 if mibs.printer => Some(AssetKind::Printer),
            1248 => Some(AssetKind::Projector),
            311 => Some(match rest.as_slice() {
                [1, 1, 3, 1, 1, ..] => AssetKind::Pc,
                [1, 1, 3, 1, 2 | 3, ..] => AssetKind::Server,
                _ if d.contains("server") => AssetKind::Server,
                _ => AssetKind::Pc,
            }),
            e if PRINTER_VENDORS.contains(&e) => Some(AssetKind::Printer),
            e if SWITCH_VENDORS.contains(&e) => Some(AssetKind::Switch),
            e if AP_VENDORS.contains(&e) => Some(AssetKind::AccessPoint),
            e if ROUTER_VENDORS.contains(&e) => Some(AssetKind::Router),
            e if UPS_VENDORS.contains(&e) => Some(AssetKind::Ups),
            e if NAS_VENDORS.contains(&e) => Some(AssetKind::Nas),
            e if PHONE_VENDORS.contains(&e) => Some(AssetKind::Phone),
            _ => None,
        };
        if let Some(kind) = by_vendor {
            return kind;
        }
    }
    // Generic agents (net-snmp 8072 and unknown enterprises): vendor subtrees, then MIBs.
    if mibs.synology {
        AssetKind::Nas
    } else if mibs.unifi {
        AssetKind::AccessPoint
    } else if mibs.printer {
        AssetKind::Printer
    } else if mibs.ups_mib || mibs.powernet {
        AssetKind::Ups
    } else if d.contains("projector") {
        AssetKind::Projector
    } else if mibs.bridge && !mibs.host_resources {
        AssetKind::Switch
    } else if d.contains("windows") {
        if d.contains("server") {
            AssetKind::Server
        } else {
            AssetKind::Pc
        }
    } else if d.starts_with("linux")
        || d.contains("freebsd")
        || d.contains("sunos")
        || mibs.host_resources
    {
        AssetKind::Server
    } else if d.contains("printer") {
        AssetKind::Printer
    } else if d.contains("switch") {
        AssetKind::Switch
    } else if d.contains("router") {
        AssetKind::Router
    } else {
        AssetKind::Unknown
    }
}

/// Vendor scalars fetched with one GET; see [`SCALAR_OIDS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scalars {
    pub kyocera_model: String,
    pub unifi_model: String,
    pub unifi_version: String,
    pub synology_model: String,
    pub synology_serial: String,
    pub synology_version: String,
    pub ruckus_model: String,
    pub ruckus_serial: String,
    pub ruckus_version: String,
    pub apc_model: String,
    pub apc_firmware: String,
    pub apc_serial: String,
    pub printer_serial: String,
}

/// The OIDs behind [`Scalars`], in field order.
pub const SCALAR_OIDS: [&str; 13] = [
    "1.3.6.1.4.1.1347.43.5.1.1.1.1",
    "1.3.6.1.4.1.41112.1.6.3.3.0",
    "1.3.6.1.4.1.41112.1.6.3.6.0",
    "1.3.6.1.4.1.6574.1.5.1.0",
    "1.3.6.1.4.1.6574.1.5.2.0",
    "1.3.6.1.4.1.6574.1.5.3.0",
    "1.3.6.1.4.1.25053.1.15.1.1.1.1.9.0",
    "1.3.6.1.4.1.25053.1.15.1.1.1.1.15.0",
    "1.3.6.1.4.1.25053.1.15.1.1.1.1.18.0",
    "1.3.6.1.4.1.318.1.1.1.1.1.1.0",
    "1.3.6.1.4.1.318.1.1.1.1.2.1.0",
    "1.3.6.1.4.1.318.1.1.1.1.2.3.0",
    "1.3.6.1.2.1.43.5.1.1.17.1",
];

impl Scalars {
    /// From texts in [`SCALAR_OIDS`] order ("" for absent).
    pub fn from_texts(t: &[String]) -> Scalars {
        let g = |i: usize| t.get(i).cloned().unwrap_or_default();
        Scalars {
            kyocera_model: g(0),
            unifi_model: g(1),
            unifi_version: g(2),
            synology_model: g(3),
            synology_serial: g(4),
            synology_version: g(5),
            ruckus_model: g(6),
            ruckus_serial: g(7),
            ruckus_version: g(8),
            apc_model: g(9),
            apc_firmware: g(10),
            apc_serial: g(11),
            printer_serial: g(12),
        }
    }
}

/// Vendor, model, serial and firmware.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub vendor: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
}

/// The value after `key` in a `KEY:value,KEY:value` sysDescr (HP JetDirect style).
fn descr_field<'a>(descr: &'a str, key: &str) -> Option<&'a str> {
    descr
        .split(',')
        .find_map(|part| part.trim().strip_prefix(key))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Drops a leading vendor word and a trailing " series".
fn strip_vendor(model: &str, vendor: &str) -> String {
    let mut m = model.trim();
    if !vendor.is_empty()
        && m.len() > vendor.len()
        && m[..vendor.len()].eq_ignore_ascii_case(vendor)
    {
        m = m[vendor.len()..].trim_start();
    }
    m.trim_end_matches(" series").trim().to_owned()
}

fn looks_like_model(word: &str) -> bool {
    word.len() >= 3
        && word.chars().any(|c| c.is_ascii_digit())
        && word.chars().any(|c| c.is_ascii_alphabetic())
}

fn looks_like_version(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Vendor, model, serial and firmware from everything collected.
pub fn identify(
    object_id: &str,
    descr: &str,
    kind: AssetKind,
    mibs: &Mibs,
    scalars: &Scalars,
    entities: &[Entity],
    printer_descr: Option<&str>,
) -> Identity {
    let ent = enterprise(object_id).map(|(e, _)| e);
    let mut vendor = ent.map(vendor_name).unwrap_or_default().to_owned();
    if mibs.synology || !scalars.synology_model.is_empty() {
        vendor = "Synology".into();
    } else if mibs.unifi || !scalars.unifi_model.is_empty() {
        vendor = "Ubiquiti".into();
    } else if ent == Some(11)
        && (descr.starts_with("Aruba") || entities.iter().any(|e| e.descr.starts_with("Aruba")))
    {
        vendor = "HP".into();
    }
    let mut id = Identity {
        vendor,
        ..Identity::default()
    };
    let first_word_model = || {
        descr
            .split_whitespace()
            .next()
            .filter(|w| looks_like_model(w))
            .unwrap_or("")
            .to_owned()
    };

    // Vendor scalars first: they are exact.
    if !scalars.synology_model.is_empty() {
        id.model = scalars.synology_model.clone();
        id.serial = scalars.synology_serial.clone();
        id.firmware = scalars.synology_version.clone();
    } else if !scalars.unifi_model.is_empty() {
        id.model = scalars.unifi_model.clone();
        id.firmware = scalars.unifi_version.clone();
    } else if !scalars.ruckus_model.is_empty() {
        id.model = scalars.ruckus_model.clone();
        id.serial = scalars.ruckus_serial.clone();
        id.firmware = scalars.ruckus_version.clone();
    } else if !scalars.apc_model.is_empty() {
        id.model = scalars.apc_model.clone();
        id.serial = scalars.apc_serial.clone();
        id.firmware = scalars.apc_firmware.clone();
    } else if !scalars.kyocera_model.is_empty() {
        id.model = scalars.kyocera_model.clone();
    }

    // ENTITY-MIB: the first chassis (else any row) with a model name.
    let chassis = entities
        .iter()
        .find(|e| e.class == "chassis" && !e.model.is_empty())
        .or_else(|| entities.iter().find(|e| !e.model.is_empty()));
    if let Some(c) = chassis {
        if id.model.is_empty() {
            id.model = c.model.clone();
        }
        if id.serial.is_empty() {
            id.serial = c.serial.clone();
        }
        if id.firmware.is_empty() {
            id.firmware = if c.software_rev.is_empty() {
                c.firmware_rev.clone()
            } else {
                c.software_rev.clone()
            };
        }
    }

    match kind {
        AssetKind::Printer => {
            if id.model.is_empty() {
                let from = descr_field(descr, "PID:")
                    .map(str::to_owned)
                    .or(printer_descr.map(str::to_owned))
                    .unwrap_or_else(|| {
                        // "Xerox AltaLink C8045; SS ..." / "Lexmark T640 version NS..." / "Canon LBP6670 /P"
                        let head = descr.split([';', ',', '/']).next().unwrap_or("");
                        head.split(" version").next().unwrap_or("").to_owned()
                    });
                id.model = strip_vendor(&from, &id.vendor);
            }
            if id.serial.is_empty() {
                id.serial = if scalars.printer_serial.is_empty() {
                    descr_field(descr, "SN:").unwrap_or("").to_owned()
                } else {
                    scalars.printer_serial.clone()
                };
            }
        }
        AssetKind::Switch | AssetKind::Router if id.model.is_empty() => {
            id.model = first_word_model();
            if id.firmware.is_empty() {
                id.firmware = descr
                    .split(", ")
                    .map(str::trim)
                    .find(|p| looks_like_version(p))
                    .unwrap_or("")
                    .to_owned();
            }
        }
        AssetKind::AccessPoint if id.model.is_empty() => {
            // "ArubaOS (MODEL: 225), Version 8.4.0.0-8.4.0.0"
            if let Some(rest) = descr.split("MODEL:").nth(1) {
                id.model = rest.split(')').next().unwrap_or("").trim().to_owned();
            } else {
                id.model = first_word_model();
            }
            if let Some(v) = descr.split("Version ").nth(1) {
                id.firmware = v.split_whitespace().next().unwrap_or("").to_owned();
            }
        }
        _ => {}
    }
    if id.firmware.is_empty() {
        if let Some(sw) = descr.split("Software: ").nth(1) {
            id.firmware = sw.trim().to_owned();
        } else if descr.starts_with("Linux ") {
            id.firmware = descr.split_whitespace().nth(2).unwrap_or("").to_owned();
        }
    }
    id
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Recordings live in the shared folder beside the repository.
    pub(crate) fn recordings_dir() -> std::path::PathBuf {
        let dir = std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/snmp-recordings"
        ));
        assert!(
            dir.join("README.md").is_file(),
            "SNMP recordings missing at {} (../shared beside the repo)",
            dir.display()
        );
        dir
    }

    /// `(sysObjectID, sysDescr, Mibs)` read from a recording.
    pub(crate) fn evidence(name: &str) -> (String, String, Mibs) {
        let path = recordings_dir().join(format!("{name}.snmprec"));
        let body =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut oid = String::new();
        let mut descr = String::new();
        let mut present = [false; PROBE_ROOTS.len()];
        for line in body.lines() {
            let mut parts = line.splitn(3, '|');
            let (Some(o), Some(_t), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            match o {
                "1.3.6.1.2.1.1.1.0" => descr = v.to_owned(),
                "1.3.6.1.2.1.1.2.0" => oid = v.to_owned(),
                _ => {}
            }
            let arcs: Vec<&str> = o.split('.').collect();
            for (i, root) in PROBE_ROOTS.iter().enumerate() {
                if arcs.len() > root.len()
                    && root.iter().zip(&arcs).all(|(r, a)| r.to_string() == *a)
                {
                    present[i] = true;
                }
            }
        }
        (oid, descr, Mibs::from_presence(&present))
    }

    #[test]
    fn all_twenty_recordings_classify() {
        use AssetKind::*;
        let expected = [
            ("hp_laserjet-mfp-m130nw", Printer, "HP"),
            ("brother_hl-5370dw", Printer, "Brother"),
            ("canon_lbp6670", Printer, "Canon"),
            ("ricoh_aficio-mp-c3002", Printer, "Ricoh"),
            ("xerox_altalink-c8045", Printer, "Xerox"),
            ("sharp_mx-m266nv", Printer, "Sharp"),
            ("kyocera_fs-1028mfp", Printer, "Kyocera"),
            ("lexmark_t640", Printer, "Lexmark"),
            ("hp_procurve-stack-5406r-3810m", Switch, "HP"),
            ("cisco_cbs250-24p-4x", Switch, "Cisco"),
            ("dlink_dgs-1510-28", Switch, "D-Link"),
            ("netgear_gs724tv4", Switch, "Netgear"),
            ("ubiquiti_unifi-uap-nanohd", AccessPoint, "Ubiquiti"),
            ("ruckus_r850-unleashed", AccessPoint, "Ruckus"),
            ("aruba_iap-225-instant", AccessPoint, "Aruba"),
            ("apc_smart-ups-1500-rm", Ups, "APC"),
            ("synology_rs2212rp", Nas, "Synology"),
            ("microsoft_windows-server-2019", Server, "Microsoft"),
            ("epson_eb-4770w-projector", Projector, "Epson"),
            ("linux_el8-server", Server, ""),
        ];
        for (name, kind, vendor) in expected {
            let (oid, descr, mibs) = evidence(name);
            assert!(!oid.is_empty(), "{name}: no sysObjectID");
            assert_eq!(classify(&oid, &descr, &mibs), kind, "{name}");
            let id = identify(&oid, &descr, kind, &mibs, &Scalars::default(), &[], None);
            assert_eq!(id.vendor, vendor, "{name}");
        }
    }

    #[test]
    fn identity_from_descr_and_scalars() {
        let (oid, descr, mibs) = evidence("hp_laserjet-mfp-m130nw");
        let id = identify(
            &oid,
            &descr,
            AssetKind::Printer,
            &mibs,
            &Scalars::default(),
            &[],
            None,
        );
        assert_eq!(
            (id.model.as_str(), id.serial.as_str()),
            ("LaserJet MFP M130nw", "VNCRC48198")
        );

        let (oid, descr, mibs) = evidence("lexmark_t640");
        assert_eq!(
            identify(
                &oid,
                &descr,
                AssetKind::Printer,
                &mibs,
                &Scalars::default(),
                &[],
                None
            )
            .model,
            "T640"
        );

        let (oid, descr, mibs) = evidence("xerox_altalink-c8045");
        assert_eq!(
            identify(
                &oid,
                &descr,
                AssetKind::Printer,
                &mibs,
                &Scalars::default(),
                &[],
                None
            )
            .model,
            "AltaLink C8045"
        );

        let (oid, descr, mibs) = evidence("brother_hl-5370dw");
        let id = identify(
            &oid,
            &descr,
            AssetKind::Printer,
            &mibs,
            &Scalars::default(),
            &[],
            Some("Brother HL-5370DW series"),
        );
        assert_eq!(id.model, "HL-5370DW");

        let (oid, descr, mibs) = evidence("cisco_cbs250-24p-4x");
        assert_eq!(
            identify(
                &oid,
                &descr,
                AssetKind::Switch,
                &mibs,
                &Scalars::default(),
                &[],
                None
            )
            .model,
            "CBS250-24P-4X"
        );

        let (oid, descr, mibs) = evidence("netgear_gs724tv4");
        let id = identify(
            &oid,
            &descr,
            AssetKind::Switch,
            &mibs,
            &Scalars::default(),
            &[],
            None,
        );
        assert_eq!(
            (id.model.as_str(), id.firmware.as_str()),
            ("GS724Tv4", "6.3.1.11")
        );

        let (oid, descr, mibs) = evidence("aruba_iap-225-instant");
        let id = identify(
            &oid,
            &descr,
            AssetKind::AccessPoint,
            &mibs,
            &Scalars::default(),
            &[],
            None,
        );
        assert_eq!(
            (id.model.as_str(), id.firmware.as_str()),
            ("225", "8.4.0.0-8.4.0.0")
        );

        let (oid, descr, mibs) = evidence("kyocera_fs-1028mfp");
        let s = Scalars {
            kyocera_model: "FS-1028MFP".into(),
            ..Scalars::default()
        };
        assert_eq!(
            identify(&oid, &descr, AssetKind::Printer, &mibs, &s, &[], None).model,
            "FS-1028MFP"
        );

        let (oid, descr, mibs) = evidence("linux_el8-server");
        assert_eq!(
            identify(
                &oid,
                &descr,
                AssetKind::Server,
                &mibs,
                &Scalars::default(),
                &[],
                None
            )
            .firmware,
            "4.18.0-259.el8.x86_64"
        );
    }

    #[test]
    fn windows_workstation_vs_server_and_hp_subtrees() {
        let m = Mibs::default();
        assert_eq!(
            classify("1.3.6.1.4.1.311.1.1.3.1.1", "Windows", &m),
            AssetKind::Pc
        );
        assert_eq!(
            classify("1.3.6.1.4.1.311.1.1.3.1.3", "Windows", &m),
            AssetKind::Server
        );
        assert_eq!(
            classify("1.3.6.1.4.1.11.2.3.9.4", "", &m),
            AssetKind::Printer
        );
        assert_eq!(
            classify("1.3.6.1.4.1.11.2.3.7.11", "", &m),
            AssetKind::Switch
        );
        assert_eq!(
            classify("1.3.6.1.4.1.1248.1.1", "", &Mibs { printer: true, ..m }),
            AssetKind::Printer
        );
        assert_eq!(classify("1.3.6.1.4.1.13885.1", "", &m), AssetKind::Phone);
        assert_eq!(classify("", "", &m), AssetKind::Unknown);
        assert_eq!(classify("garbage", "some printer", &m), AssetKind::Printer);
    }
}
