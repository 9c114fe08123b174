//! JSON rendering of a [`Report`] for `caretaker-agent inventory --json`: field names are the
//! proto field names (snake_case), timestamps RFC 3339 UTC, the `body` oneof appears as
//! `inventory` or `status`.

use std::time::{Duration, UNIX_EPOCH};

use caretaker_proto::v1::{
    Antivirus, Battery, Disk, Firewall, Hardware, Hotfix, Inventory, NetworkInterface, Report,
    Software, Status, System, Volume, VolumeEncryption, report::Body,
};
use serde_json::{Value, json};

pub fn report(r: &Report) -> Value {
    let mut v = json!({
        "seq": r.seq,
        "collected_at": ts(r.collected_at.as_ref()),
        "missing": r.missing,
        "agent_version": r.agent_version,
    });
    match &r.body {
        Some(Body::Inventory(inv)) => v["inventory"] = inventory(inv),
        Some(Body::Status(s)) => v["status"] = status(s),
        None => {}
    }
    v
}

/// RFC 3339 UTC, or null when unset.
pub fn ts(t: Option<&prost_types::Timestamp>) -> Value {
    match t {
        Some(t) if t.seconds >= 0 => {
            let at = UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos.max(0) as u32);
            Value::String(humantime::format_rfc3339_seconds(at).to_string())
        }
        _ => Value::Null,
    }
}

fn inventory(i: &Inventory) -> Value {
    json!({
        "system": i.system.as_ref().map(system),
        "hardware": i.hardware.as_ref().map(hardware),
        "disks": i.disks.iter().map(disk).collect::<Vec<_>>(),
        "volumes": i.volumes.iter().map(volume).collect::<Vec<_>>(),
        "interfaces": i.interfaces.iter().map(interface).collect::<Vec<_>>(),
        "software": i.software.iter().map(software).collect::<Vec<_>>(),
        "antivirus": i.antivirus.iter().map(antivirus).collect::<Vec<_>>(),
        "firewalls": i.firewalls.iter().map(firewall).collect::<Vec<_>>(),
        "encryption": i.encryption.iter().map(encryption).collect::<Vec<_>>(),
        "hotfixes": i.hotfixes.iter().map(hotfix).collect::<Vec<_>>(),
        "batteries": i.batteries.iter().map(battery).collect::<Vec<_>>(),
    })
}

fn antivirus(a: &Antivirus) -> Value {
    json!({
        "name": a.name, "enabled": a.enabled, "up_to_date": a.up_to_date,
        "product_state": a.product_state,
    })
}

fn firewall(f: &Firewall) -> Value {
    json!({"name": f.name, "profile": f.profile, "enabled": f.enabled})
}

fn encryption(e: &VolumeEncryption) -> Value {
    json!({
        "mount": e.mount, "method": e.method, "protection": e.protection,
        "conversion": e.conversion, "percent": e.percent,
    })
}

fn hotfix(h: &Hotfix) -> Value {
    json!({
        "id": h.id, "description": h.description,
        "installed_at": ts(h.installed_at.as_ref()), "source": h.source,
    })
}

fn battery(b: &Battery) -> Value {
    json!({
        "name": b.name, "chemistry": b.chemistry,
        "design_capacity_mwh": b.design_capacity_mwh,
        "full_charge_capacity_mwh": b.full_charge_capacity_mwh,
        "cycle_count": b.cycle_count, "health_percent": b.health_percent,
    })
}

fn system(s: &System) -> Value {
    json!({
        "hostname": s.hostname,
        "domain": s.domain,
        "os_name": s.os_name,
        "os_version": s.os_version,
        "os_build": s.os_build,
        "kernel": s.kernel,
        "arch": s.arch,
        "boot_time": ts(s.boot_time.as_ref()),
        "machine_id": s.machine_id,
        "domain_type": s.domain_type,
        "last_update_at": ts(s.last_update_at.as_ref()),
    })
}

fn hardware(h: &Hardware) -> Value {
    json!({
        "vendor": h.vendor,
        "model": h.model,
        "serial": h.serial,
        "smbios_uuid": h.smbios_uuid,
        "bios_vendor": h.bios_vendor,
        "bios_version": h.bios_version,
        "bios_date": h.bios_date,
        "board_vendor": h.board_vendor,
        "board_model": h.board_model,
        "board_serial": h.board_serial,
        "cpu_model": h.cpu_model,
        "cpu_cores": h.cpu_cores,
        "cpu_threads": h.cpu_threads,
        "ram_bytes": h.ram_bytes,
        "chassis": h.chassis,
    })
}

fn disk(d: &Disk) -> Value {
    json!({
        "name": d.name,
        "model": d.model,
        "serial": d.serial,
        "size_bytes": d.size_bytes,
        "kind": d.kind,
        "removable": d.removable,
    })
}

fn volume(v: &Volume) -> Value {
    json!({
        "mount": v.mount,
        "device": v.device,
        "file_system": v.file_system,
        "total_bytes": v.total_bytes,
        "free_bytes": v.free_bytes,
        "removable": v.removable,
    })
}

fn interface(n: &NetworkInterface) -> Value {
    json!({
        "name": n.name,
        "mac": n.mac,
        "ipv4": n.ipv4,
        "ipv6": n.ipv6,
        "speed_mbps": n.speed_mbps,
        "up": n.up,
        "virtual": n.r#virtual,
    })
}

fn software(s: &Software) -> Value {
    json!({
        "name": s.name,
        "version": s.version,
        "publisher": s.publisher,
        "installed_at": ts(s.installed_at.as_ref()),
        "source": s.source,
        "arch": s.arch,
    })
}

fn status(s: &Status) -> Value {
    json!({
        "uptime_secs": s.uptime_secs,
        "cpu_percent": s.cpu_percent,
        "load1": s.load1,
        "load5": s.load5,
        "load15": s.load15,
        "memory_total_bytes": s.memory_total_bytes,
        "memory_used_bytes": s.memory_used_bytes,
        "swap_total_bytes": s.swap_total_bytes,
        "swap_used_bytes": s.swap_used_bytes,
        "volumes": s.volumes.iter().map(|v| json!({
            "mount": v.mount, "total_bytes": v.total_bytes, "free_bytes": v.free_bytes,
        })).collect::<Vec<_>>(),
        "logged_on_users": s.logged_on_users,
        "journal_dropped": s.journal_dropped,
        "boot_time": ts(s.boot_time.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        assert_eq!(ts(Some(&t)), json!("2023-11-14T22:13:20Z"));
        assert_eq!(ts(None), Value::Null);
    }

    #[test]
    fn body_is_named_after_the_oneof_field() {
        let r = Report {
            seq: 3,
            body: Some(Body::Inventory(Inventory {
                software: vec![Software {
                    name: "vim".into(),
                    ..Software::default()
                }],
                ..Inventory::default()
            })),
            ..Report::default()
        };
        let v = report(&r);
        assert_eq!(v["seq"], 3);
        assert_eq!(v["inventory"]["software"][0]["name"], "vim");
        assert!(v.get("status").is_none());
    }
}
