//! Differences between two inventories of one device, as change records.
//!
//! Pure: takes the previous and new *merged* inventories (sections the new report could not
//! collect were already filled from the previous one, so they show no difference) and returns
//! `(kind, field, before, after)` tuples in a stable order. Interface addresses and free space
//! are state, not configuration, and are not compared; virtual NICs come and go with
//! containers and VPNs and are ignored.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use caretaker_proto::v1::{Disk, Hardware, Inventory, NetworkInterface, Software, System, Volume};

/// One difference; the CMDB turns it into a [`crate::model::Change`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub kind: &'static str,
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Difference {
    fn new(
        kind: &'static str,
        field: String,
        before: Option<String>,
        after: Option<String>,
    ) -> Self {
        Self {
            kind,
            field,
            before,
            after,
        }
    }
}

/// Change records one report may write one by one; past this, software changes are summed up.
pub const MAX_LISTED: usize = 1000;

/// At most [`MAX_LISTED`] differences listed one by one: everything that is not software
/// first, then software additions and removals, then version changes; what does not fit is
/// summed up per kind in one `software:*` record, so a reimage or an `apt upgrade` of
/// thousands of packages costs a bounded number of records.
pub fn bounded(mut all: Vec<Difference>) -> Vec<Difference> {
    if all.len() <= MAX_LISTED {
        return all;
    }
    let rank = |d: &Difference| match (d.field.starts_with("software:"), d.kind) {
        (false, _) => 0,
        (true, "added" | "removed") => 1,
        (true, _) => 2,
    };
    // Stable: the original order holds within each rank.
    all.sort_by_key(rank);
    let rest = all.split_off(MAX_LISTED - 1);
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for d in &rest {
        *counts.entry(d.kind).or_default() += 1;
    }
    let detail = counts
        .iter()
        .rev()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ");
    all.push(Difference::new(
        "changed",
        "software:*".to_owned(),
        None,
        Some(format!(
            "{} more changes not listed one by one: {detail}",
            rest.len()
        )),
    ));
    all
}

pub fn diff(before: &Inventory, after: &Inventory) -> Vec<Difference> {
    let mut out = Vec::new();
    diff_system(
        before.system.as_ref().cloned().unwrap_or_default(),
        after.system.as_ref().cloned().unwrap_or_default(),
        &mut out,
    );
    diff_hardware(
        before.hardware.as_ref().cloned().unwrap_or_default(),
        after.hardware.as_ref().cloned().unwrap_or_default(),
        &mut out,
    );
    diff_keyed(
        &before.disks,
        &after.disks,
        "disk",
        disk_key,
        disk_fields,
        &mut out,
    );
    diff_keyed(
        &before.volumes,
        &after.volumes,
        "volume",
        |v: &Volume| v.mount.clone(),
        volume_fields,
        &mut out,
    );
    let physical = |nics: &[NetworkInterface]| -> Vec<NetworkInterface> {
        nics.iter()
            .filter(|n| !n.r#virtual && !n.mac.is_empty())
            .cloned()
            .collect()
    };
    diff_keyed(
        &physical(&before.interfaces),
        &physical(&after.interfaces),
        "nic",
        |n: &NetworkInterface| n.mac.to_ascii_lowercase(),
        nic_fields,
        &mut out,
    );
    diff_software(&before.software, &after.software, &mut out);
    out
}

fn push_field(out: &mut Vec<Difference>, field: String, before: String, after: String) {
    if before != after {
        out.push(Difference::new(
            "changed",
            field,
            Some(before).filter(|s| !s.is_empty()),
            Some(after).filter(|s| !s.is_empty()),
        ));
    }
}

fn diff_system(a: System, b: System, out: &mut Vec<Difference>) {
    for (name, x, y) in [
        ("hostname", a.hostname, b.hostname),
        ("domain", a.domain, b.domain),
        ("os_name", a.os_name, b.os_name),
        ("os_version", a.os_version, b.os_version),
        ("os_build", a.os_build, b.os_build),
        ("kernel", a.kernel, b.kernel),
        ("arch", a.arch, b.arch),
    ] {
        push_field(out, format!("system.{name}"), x, y);
    }
}

fn diff_hardware(a: Hardware, b: Hardware, out: &mut Vec<Difference>) {
    for (name, x, y) in [
        ("vendor", a.vendor, b.vendor),
        ("model", a.model, b.model),
        ("serial", a.serial, b.serial),
        ("smbios_uuid", a.smbios_uuid, b.smbios_uuid),
        ("bios_version", a.bios_version, b.bios_version),
        ("board_serial", a.board_serial, b.board_serial),
        ("cpu_model", a.cpu_model, b.cpu_model),
        (
            "cpu_cores",
            a.cpu_cores.to_string(),
            b.cpu_cores.to_string(),
        ),
        (
            "cpu_threads",
            a.cpu_threads.to_string(),
            b.cpu_threads.to_string(),
        ),
        (
            "ram_bytes",
            a.ram_bytes.to_string(),
            b.ram_bytes.to_string(),
        ),
    ] {
        push_field(out, format!("hardware.{name}"), x, y);
    }
}

fn disk_key(d: &Disk) -> String {
    if d.serial.trim().is_empty() {
        d.name.clone()
    } else {
        d.serial.trim().to_owned()
    }
}

fn disk_fields(d: &Disk) -> Vec<(&'static str, String)> {
    vec![
        ("size_bytes", d.size_bytes.to_string()),
        ("model", d.model.clone()),
        ("kind", d.kind.clone()),
    ]
}

fn volume_fields(v: &Volume) -> Vec<(&'static str, String)> {
    vec![
        ("total_bytes", v.total_bytes.to_string()),
        ("file_system", v.file_system.clone()),
    ]
}

fn nic_fields(n: &NetworkInterface) -> Vec<(&'static str, String)> {
    vec![
        ("name", n.name.clone()),
        ("speed_mbps", n.speed_mbps.to_string()),
    ]
}

/// Added / removed by key, and per-field changes for items present in both.
fn diff_keyed<T>(
    before: &[T],
    after: &[T],
    prefix: &str,
    key: impl Fn(&T) -> String,
    fields: impl Fn(&T) -> Vec<(&'static str, String)>,
    out: &mut Vec<Difference>,
) {
    let a: BTreeMap<String, &T> = before.iter().map(|x| (key(x), x)).collect();
    let b: BTreeMap<String, &T> = after.iter().map(|x| (key(x), x)).collect();
    let summary = |x: &T| {
        fields(x)
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (k, x) in &a {
        match b.get(k) {
            None => out.push(Difference::new(
                "removed",
                format!("{prefix}:{k}"),
                Some(summary(x)),
                None,
            )),
            Some(y) => {
                for ((name, vx), (_, vy)) in fields(x).into_iter().zip(fields(y)) {
                    push_field(out, format!("{prefix}:{k}.{name}"), vx, vy);
                }
            }
        }
    }
    for (k, y) in &b {
        if !a.contains_key(k) {
            out.push(Difference::new(
                "added",
                format!("{prefix}:{k}"),
                None,
                Some(summary(y)),
            ));
        }
    }
}

fn software_key(s: &Software) -> String {
    if s.arch.is_empty() {
        s.name.clone()
    } else {
        format!("{}:{}", s.name, s.arch)
    }
}

fn diff_software(before: &[Software], after: &[Software], out: &mut Vec<Difference>) {
    let a: BTreeMap<String, &Software> = before.iter().map(|s| (software_key(s), s)).collect();
    let b: BTreeMap<String, &Software> = after.iter().map(|s| (software_key(s), s)).collect();
    for (k, x) in &a {
        match b.get(k) {
            None => out.push(Difference::new(
                "removed",
                format!("software:{k}"),
                Some(x.version.clone()),
                None,
            )),
            Some(y) if x.version != y.version => {
                let kind = match compare_versions(&x.version, &y.version) {
                    Ordering::Less => "upgraded",
                    Ordering::Greater => "downgraded",
                    Ordering::Equal => "changed",
                };
                out.push(Difference::new(
                    kind,
                    format!("software:{k}"),
                    Some(x.version.clone()),
                    Some(y.version.clone()),
                ));
            }
            Some(_) => {}
        }
    }
    for (k, y) in &b {
        if !a.contains_key(k) {
            out.push(Difference::new(
                "added",
                format!("software:{k}"),
                None,
                Some(y.version.clone()),
            ));
        }
    }
}

/// Orders version strings the way package managers broadly do: an epoch (`2:`) first, then
/// runs of digits compared as numbers and other runs compared as text, `~` before anything.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let split_epoch = |v: &str| -> (u64, String) {
        match v.split_once(':') {
            Some((e, rest)) if e.chars().all(|c| c.is_ascii_digit()) && !e.is_empty() => {
                (e.parse().unwrap_or(0), rest.to_owned())
            }
            _ => (0, v.to_owned()),
        }
    };
    let (ea, ra) = split_epoch(a);
    let (eb, rb) = split_epoch(b);
    ea.cmp(&eb).then_with(|| compare_runs(&ra, &rb))
}

fn compare_runs(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (x.peek().copied(), y.peek().copied()) {
            (None, None) => return Ordering::Equal,
            (Some('~'), Some('~')) => {
                x.next();
                y.next();
            }
            (Some('~'), _) => return Ordering::Less,
            (_, Some('~')) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let take = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                    let mut s = String::new();
                    while let Some(c) = it.peek().copied().filter(char::is_ascii_digit) {
                        s.push(c);
                        it.next();
                    }
                    s
                };
                let (n, m) = (take(&mut x), take(&mut y));
                let (n, m) = (n.trim_start_matches('0'), m.trim_start_matches('0'));
                let ord = n.len().cmp(&m.len()).then_with(|| n.cmp(m));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            // A number sorts before text at the same place; this keeps the order total.
            (Some(c), Some(_)) if c.is_ascii_digit() => return Ordering::Less,
            (Some(_), Some(d)) if d.is_ascii_digit() => return Ordering::Greater,
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(&d);
                }
                x.next();
                y.next();
            }
        }
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    fn software(kind: &'static str, i: usize) -> Difference {
        Difference::new(kind, format!("software:p{i}"), None, Some("1".into()))
    }

    #[test]
    fn a_huge_diff_keeps_hardware_and_installs_and_sums_up_the_rest() {
        let mut all: Vec<Difference> = (0..5000).map(|i| software("upgraded", i)).collect();
        all.push(software("added", 99_999));
        all.push(Difference::new(
            "changed",
            "hardware.ram_bytes".into(),
            None,
            None,
        ));
        let kept = bounded(all);
        assert_eq!(kept.len(), MAX_LISTED);
        assert_eq!(kept[0].field, "hardware.ram_bytes");
        assert_eq!(kept[1].field, "software:p99999");
        let summary = kept.last().expect("summary");
        assert_eq!(summary.field, "software:*");
        assert!(
            summary
                .after
                .as_deref()
                .is_some_and(|a| a.starts_with("4003 more changes") && a.contains("4003 upgraded")),
            "{summary:?}"
        );
    }

    #[test]
    fn a_normal_diff_is_untouched() {
        let all: Vec<Difference> = (0..10).map(|i| software("added", i)).collect();
        assert_eq!(bounded(all.clone()), all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sw(name: &str, version: &str) -> Software {
        Software {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: "amd64".to_owned(),
            ..Default::default()
        }
    }

    fn inventory(ram: u64, software: Vec<Software>) -> Inventory {
        Inventory {
            system: Some(System {
                hostname: "R12-PC03".to_owned(),
                ..Default::default()
            }),
            hardware: Some(Hardware {
                ram_bytes: ram,
                ..Default::default()
            }),
            software,
            ..Default::default()
        }
    }

    #[test]
    fn software_added_removed_and_upgraded() {
        let a = inventory(
            8 << 30,
            vec![
                sw("firefox-esr", "115.9.1esr-1"),
                sw("gimp", "2.10.34-1"),
                sw("vlc", "3.0.20-1"),
            ],
        );
        let b = inventory(
            8 << 30,
            vec![
                sw("firefox-esr", "128.3.1esr-1"),
                sw("scratch", "3.0"),
                sw("vlc", "3.0.20-1"),
            ],
        );
        let d = diff(&a, &b);
        assert_eq!(
            d,
            vec![
                Difference::new(
                    "upgraded",
                    "software:firefox-esr:amd64".into(),
                    Some("115.9.1esr-1".into()),
                    Some("128.3.1esr-1".into())
                ),
                Difference::new(
                    "removed",
                    "software:gimp:amd64".into(),
                    Some("2.10.34-1".into()),
                    None
                ),
                Difference::new(
                    "added",
                    "software:scratch:amd64".into(),
                    None,
                    Some("3.0".into())
                ),
            ]
        );
    }

    #[test]
    fn added_ram_is_one_change() {
        let d = diff(&inventory(8 << 30, vec![]), &inventory(16 << 30, vec![]));
        assert_eq!(
            d,
            vec![Difference::new(
                "changed",
                "hardware.ram_bytes".into(),
                Some("8589934592".into()),
                Some("17179869184".into())
            )]
        );
    }

    #[test]
    fn identical_inventories_have_no_differences() {
        let a = inventory(8 << 30, vec![sw("a", "1")]);
        assert!(diff(&a, &a.clone()).is_empty());
    }

    #[test]
    fn virtual_nics_are_ignored_and_physical_ones_tracked() {
        let nic = |name: &str, mac: &str, virt: bool| NetworkInterface {
            name: name.into(),
            mac: mac.into(),
            r#virtual: virt,
            ..Default::default()
        };
        let a = Inventory {
            interfaces: vec![nic("eth0", "00:11:22:33:44:55", false)],
            ..Default::default()
        };
        let b = Inventory {
            interfaces: vec![
                nic("eth1", "00:11:22:33:44:66", false),
                nic("veth1", "aa:aa:aa:aa:aa:aa", true),
            ],
            ..Default::default()
        };
        let fields: Vec<_> = diff(&a, &b)
            .into_iter()
            .map(|d| (d.kind, d.field))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("removed", "nic:00:11:22:33:44:55".to_owned()),
                ("added", "nic:00:11:22:33:44:66".to_owned())
            ]
        );
    }

    #[test]
    fn versions_order_like_package_managers() {
        assert_eq!(compare_versions("1.2.10", "1.2.9"), Ordering::Greater);
        assert_eq!(compare_versions("1:1.0", "2.0"), Ordering::Greater);
        assert_eq!(compare_versions("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(
            compare_versions("115.9.1esr-1", "128.3.1esr-1"),
            Ordering::Less
        );
        assert_eq!(
            compare_versions("2.10.34-1+deb12u1", "2.10.34-1"),
            Ordering::Greater
        );
    }

    proptest! {
        #[test]
        fn version_order_is_antisymmetric(a in "[0-9a-z.~:+-]{0,12}", b in "[0-9a-z.~:+-]{0,12}") {
            prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
        }
    }
}
