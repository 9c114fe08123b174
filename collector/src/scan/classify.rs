//! What a device is when its MIBs say little: every clue together, with the reasons kept.
//!
//! Clues, strongest first: a full SNMP inventory's classification (`snmp::classify`, from
//! which MIBs answer), the sysObjectID's enterprise number (the maker, from a subset of the
//! IANA registry in `data/enterprise-numbers.tsv`, with a kind hint), sysDescr words,
//! sysServices layers, open TCP ports and the MAC's vendor. Each clue adds weight to a kind;
//! the heaviest kind wins, and its supporting clues become the reasons stored on the asset
//! ("router: enterprise 9 Cisco, sysServices layer 3, port 23"). `unknown` only when nothing
//! tells. Pure functions.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::model::AssetKind;

/// One line of the enterprise-number file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enterprise {
    pub number: u64,
    /// The short vendor name ("Cisco").
    pub vendor: &'static str,
    /// What this maker's devices usually are.
    pub hint: Hint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Kind(AssetKind),
    /// Switches, routers and access points.
    Network,
    /// SNMP agent software (net-snmp): says nothing about the maker.
    Agent,
    Any,
}

const ENTERPRISES: &str = include_str!("../../data/enterprise-numbers.tsv");

/// The enterprise table, parsed once.
pub fn enterprises() -> &'static HashMap<u64, Enterprise> {
    static TABLE: OnceLock<HashMap<u64, Enterprise>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ENTERPRISES
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|line| {
                let mut cols = line.split('\t');
                let number = cols.next()?.trim().parse().ok()?;
                let vendor = cols.next()?.trim();
                let hint = match cols.next()?.trim() {
                    "network" => Hint::Network,
                    "agent" => Hint::Agent,
                    "any" => Hint::Any,
                    kind => Hint::Kind(parse_kind(kind)?),
                };
                Some((
                    number,
                    Enterprise {
                        number,
                        vendor,
                        hint,
                    },
                ))
            })
            .collect()
    })
}

fn parse_kind(text: &str) -> Option<AssetKind> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

/// The kind's name as the API spells it.
pub fn kind_name(kind: AssetKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The private enterprise number in a sysObjectID.
pub fn enterprise_number(object_id: &str) -> Option<u64> {
    let rest = object_id
        .trim()
        .trim_start_matches('.')
        .strip_prefix("1.3.6.1.4.1.")?;
    rest.split('.').next()?.parse().ok()
}

/// Everything known about one host.
#[derive(Debug, Clone, Default)]
pub struct Clues<'a> {
    /// The full SNMP inventory's kind, when there was one.
    pub snmp_kind: Option<AssetKind>,
    pub object_id: &'a str,
    pub descr: &'a str,
    pub services: Option<u32>,
    pub open_ports: &'a [u16],
    pub mac_vendor: &'a str,
}

/// The verdict: the kind, the maker when the enterprise number tells, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub kind: AssetKind,
    pub vendor: Option<&'static str>,
    /// "router: enterprise 9 Cisco, sysServices layer 3, port 23"; empty for unknown.
    pub reasons: Vec<String>,
}

impl Verdict {
    /// The reasons as one line.
    pub fn summary(&self) -> String {
        if self.reasons.is_empty() {
            return String::new();
        }
        format!("{}: {}", kind_name(self.kind), self.reasons.join(", "))
    }
}

/// Words in sysDescr (lower case) and the kind they point to.
const DESCR_WORDS: &[(&str, AssetKind)] = &[
    ("printer", AssetKind::Printer),
    ("laserjet", AssetKind::Printer),
    ("jetdirect", AssetKind::Printer),
    ("mfp", AssetKind::Printer),
    ("print server", AssetKind::Printer),
    ("switch", AssetKind::Switch),
    ("procurve", AssetKind::Switch),
    ("routeros", AssetKind::Router),
    ("router", AssetKind::Router),
    ("firewall", AssetKind::Router),
    ("fortigate", AssetKind::Router),
    ("pfsense", AssetKind::Router),
    ("access point", AssetKind::AccessPoint),
    ("aironet", AssetKind::AccessPoint),
    ("unifi", AssetKind::AccessPoint),
    ("wireless", AssetKind::AccessPoint),
    ("smart-ups", AssetKind::Ups),
    ("ups", AssetKind::Ups),
    ("diskstation", AssetKind::Nas),
    ("rackstation", AssetKind::Nas),
    ("nas", AssetKind::Nas),
    ("projector", AssetKind::Projector),
    ("voip", AssetKind::Phone),
    ("sip phone", AssetKind::Phone),
    ("windows server", AssetKind::Server),
    ("windows", AssetKind::Pc),
    ("linux", AssetKind::Server),
    ("freebsd", AssetKind::Server),
];

/// MAC vendors (lower case, a part of the registered name) and what they make.
const MAC_VENDORS: &[(&str, AssetKind)] = &[
    ("ubiquiti", AssetKind::AccessPoint),
    ("ruckus", AssetKind::AccessPoint),
    ("aruba", AssetKind::AccessPoint),
    ("meraki", AssetKind::AccessPoint),
    ("synology", AssetKind::Nas),
    ("qnap", AssetKind::Nas),
    ("american power conversion", AssetKind::Ups),
    ("polycom", AssetKind::Phone),
    ("yealink", AssetKind::Phone),
    ("snom", AssetKind::Phone),
    ("brother", AssetKind::Printer),
    ("kyocera", AssetKind::Printer),
    ("ricoh", AssetKind::Printer),
    ("lexmark", AssetKind::Printer),
    ("xerox", AssetKind::Printer),
    ("seiko epson", AssetKind::Projector),
    ("mikrotik", AssetKind::Router),
    ("fortinet", AssetKind::Router),
];

/// Weighs every clue; see the module docs.
pub fn classify(clues: &Clues<'_>) -> Verdict {
    let mut score: HashMap<AssetKind, (u32, Vec<(u32, String)>)> = HashMap::new();
    let mut add = |kind: AssetKind, weight: u32, reason: String| {
        let entry = score.entry(kind).or_default();
        entry.0 += weight;
        if !entry.1.iter().any(|(_, r)| *r == reason) {
            entry.1.push((weight, reason));
        }
    };
    if let Some(kind) = clues.snmp_kind.filter(|k| *k != AssetKind::Unknown) {
        add(kind, 8, "SNMP MIBs".to_owned());
    }
    let mut vendor = None;
    if let Some(number) = enterprise_number(clues.object_id) {
        match enterprises().get(&number) {
            Some(e) if e.hint != Hint::Agent => {
                vendor = Some(e.vendor);
                let reason = format!("enterprise {number} {}", e.vendor);
                match e.hint {
                    Hint::Kind(kind) => add(kind, 4, reason),
                    Hint::Network => {
                        for kind in [AssetKind::Router, AssetKind::Switch, AssetKind::AccessPoint] {
                            add(kind, 2, reason.clone());
                        }
                    }
                    Hint::Any | Hint::Agent => {}
                }
            }
            _ => {}
        }
    }
    let descr = clues.descr.to_lowercase();
    let words: Vec<&str> = descr
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .collect();
    for (word, kind) in DESCR_WORDS {
        let hit = if word.contains(' ') {
            descr.contains(word)
        } else {
            words.contains(word)
        };
        if hit {
            add(*kind, 3, format!("sysDescr \"{word}\""));
            break;
        }
    }
    if let Some(services) = clues.services {
        // Bit n-1 set: the device offers layer n.
        let layer = |n: u32| services & (1 << (n - 1)) != 0;
        let hosts = layer(4) || layer(7);
        if layer(3) && !hosts {
            add(AssetKind::Router, 2, "sysServices layer 3".to_owned());
            if layer(2) {
                add(
                    AssetKind::Switch,
                    2,
                    "sysServices layers 2 and 3".to_owned(),
                );
            }
        } else if layer(2) && !hosts {
            add(AssetKind::Switch, 2, "sysServices layer 2".to_owned());
        } else if hosts && !layer(2) && !layer(3) {
            add(
                AssetKind::Server,
                1,
                "sysServices layers 4/7 (a host)".to_owned(),
            );
        }
    }
    let has = |p: u16| clues.open_ports.contains(&p);
    for port in [9100, 515, 631] {
        if has(port) && !(port == 631 && has(22)) {
            add(AssetKind::Printer, 3, format!("port {port}"));
        }
    }
    if has(3389) {
        add(AssetKind::Pc, 2, "port 3389".to_owned());
    }
    if has(445) {
        add(AssetKind::Pc, 1, "port 445".to_owned());
        add(AssetKind::Server, 1, "port 445".to_owned());
    }
    if has(22) {
        add(AssetKind::Server, 1, "port 22".to_owned());
    }
    if has(23) {
        add(AssetKind::Router, 1, "port 23".to_owned());
        add(AssetKind::Switch, 1, "port 23".to_owned());
    }
    let mac_vendor = clues.mac_vendor.to_lowercase();
    if let Some((_, kind)) = MAC_VENDORS.iter().find(|(v, _)| mac_vendor.contains(v)) {
        add(
            *kind,
            2,
            format!("MAC vendor {}", short_vendor(clues.mac_vendor)),
        );
    }
    // The heaviest kind; ties go to the more specific kind (this order).
    const ORDER: [AssetKind; 11] = [
        AssetKind::Printer,
        AssetKind::Ups,
        AssetKind::Nas,
        AssetKind::Projector,
        AssetKind::Phone,
        AssetKind::AccessPoint,
        AssetKind::Switch,
        AssetKind::Router,
        AssetKind::Server,
        AssetKind::Pc,
        AssetKind::Laptop,
    ];
    let best = ORDER
        .iter()
        .filter_map(|k| score.get(k).map(|(s, _)| (*k, *s)))
        .fold(None::<(AssetKind, u32)>, |best, (k, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((k, s)),
        });
    match best {
        Some((kind, _)) => {
            let mut reasons = score.remove(&kind).map(|(_, r)| r).unwrap_or_default();
            reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
            Verdict {
                kind,
                vendor,
                reasons: reasons.into_iter().map(|(_, r)| r).collect(),
            }
        }
        None => Verdict {
            kind: AssetKind::Unknown,
            vendor,
            reasons: Vec::new(),
        },
    }
}

/// The first word or two of a registered vendor name ("Ubiquiti Inc" → "Ubiquiti").
fn short_vendor(vendor: &str) -> String {
    vendor
        .split([',', '('])
        .next()
        .unwrap_or(vendor)
        .trim()
        .trim_end_matches(" Inc")
        .trim_end_matches(" Inc.")
        .trim_end_matches(" Ltd")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enterprise_file_parses_and_names_the_recordings_makers() {
        let table = enterprises();
        assert!(table.len() > 50, "{}", table.len());
        for (number, vendor) in [
            (9, "Cisco"),
            (11, "HP"),
            (171, "D-Link"),
            (253, "Xerox"),
            (318, "APC"),
            (367, "Ricoh"),
            (641, "Lexmark"),
            (1248, "Epson"),
            (1347, "Kyocera"),
            (1602, "Canon"),
            (2385, "Sharp"),
            (2435, "Brother"),
            (4526, "Netgear"),
            (14823, "Aruba"),
            (25053, "Ruckus"),
            (41112, "Ubiquiti"),
        ] {
            assert_eq!(table[&number].vendor, vendor, "{number}");
        }
        assert_eq!(table[&8072].hint, Hint::Agent);
    }

    #[test]
    fn a_thin_cisco_router_is_a_router_with_its_reasons() {
        let v = classify(&Clues {
            object_id: "1.3.6.1.4.1.9.1.1208",
            descr: "",
            services: Some(4),
            open_ports: &[23],
            ..Clues::default()
        });
        assert_eq!(v.kind, AssetKind::Router);
        assert_eq!(v.vendor, Some("Cisco"));
        assert_eq!(
            v.summary(),
            "router: enterprise 9 Cisco, sysServices layer 3, port 23"
        );
    }

    #[test]
    fn each_clue_alone_tells_something_and_nothing_tells_nothing() {
        let kind = |c: Clues<'_>| classify(&c).kind;
        assert_eq!(
            kind(Clues {
                open_ports: &[80, 9100],
                ..Clues::default()
            }),
            AssetKind::Printer
        );
        assert_eq!(
            kind(Clues {
                services: Some(2),
                ..Clues::default()
            }),
            AssetKind::Switch
        );
        assert_eq!(
            kind(Clues {
                mac_vendor: "Ubiquiti Inc",
                ..Clues::default()
            }),
            AssetKind::AccessPoint
        );
        assert_eq!(
            kind(Clues {
                descr: "RouterOS CCR1009",
                ..Clues::default()
            }),
            AssetKind::Router
        );
        assert_eq!(
            kind(Clues {
                object_id: "1.3.6.1.4.1.8072.3.2.10",
                descr: "Linux web01 4.4",
                services: Some(72),
                ..Clues::default()
            }),
            AssetKind::Server
        );
        let nothing = classify(&Clues::default());
        assert_eq!(
            (nothing.kind, nothing.summary()),
            (AssetKind::Unknown, String::new())
        );
        // A full SNMP inventory outweighs the rest.
        assert_eq!(
            kind(Clues {
                snmp_kind: Some(AssetKind::Printer),
                open_ports: &[22, 3389],
                ..Clues::default()
            }),
            AssetKind::Printer
        );
    }
}
