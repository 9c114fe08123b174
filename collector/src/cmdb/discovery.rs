//! Merging a network sweep into the register.
//!
//! Each live host is matched to an asset by MAC, then by SNMP serial, then by IP with a
//! compatible name; otherwise it becomes a new asset ("new device appeared"). Fields an agent
//! reports are the agent's; discovery fills in what only the network knows (SNMP model,
//! serial, firmware, supplies) and, for devices without an agent, everything. Differences
//! from the previous sweep become change records, and every asset that has ever answered
//! ping gets one reachability sample per sweep covering its address.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::{Cmdb, blank_asset, identity, new_asset_id};
use crate::model::{Asset, AssetId, AssetKind, Change, ReachSample, Source, unix_millis};
use crate::scan::{DiscoveredHost, Sweep};
use crate::store::{Store, StoreError, WriteSet};

/// What one sweep did to the register.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepSummary {
    pub live: usize,
    pub new_assets: usize,
    pub changes: usize,
    pub down: usize,
}

impl Cmdb {
    /// Folds a sweep into the register, adding the records to `out`.
    pub fn apply_sweep(
        &mut self,
        store: &dyn Store,
        sweep: &Sweep,
        out: &mut WriteSet,
    ) -> Result<SweepSummary, StoreError> {
        let at = sweep.finished_at;
        let mut summary = SweepSummary {
            live: sweep.hosts.len(),
            ..Default::default()
        };
        let mut answered: BTreeSet<AssetId> = BTreeSet::new();
        let first_change = out.changes.len();
        for host in &sweep.hosts {
            let existing = self.match_host(host);
            let mut asset = match &existing {
                Some(id) => self.assets[id].clone(),
                None => {
                    summary.new_assets += 1;
                    let mut asset = blank_asset(new_asset_id(), at);
                    asset.kind = host.kind;
                    asset
                }
            };
            let before = asset.clone();
            describe_from_network(&mut asset, host);
            let mut index = 0;
            let mut change =
                |kind: &str, field: &str, before: Option<String>, after: Option<String>| {
                    index += 1;
                    out.changes.push(Change {
                        id: change_id(at, &asset.id, index),
                        asset_id: asset.id.clone(),
                        at,
                        kind: kind.to_owned(),
                        field: field.to_owned(),
                        before,
                        after,
                        clock_suspect: false,
                    });
                };
            if existing.is_none() {
                let what = [
                    host.ip.to_string(),
                    asset.name.clone(),
                    asset.vendor.clone(),
                    kind_label(asset.kind),
                ]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
                change("created", "asset", None, Some(what));
            } else if !before.sources.contains(&Source::Agent) {
                for (field, b, a) in [
                    ("name", &before.name, &asset.name),
                    ("model", &before.model, &asset.model),
                    ("serial", &before.serial, &asset.serial),
                    ("os", &before.os, &asset.os),
                ] {
                    if !b.is_empty() && b != a {
                        change("changed", field, Some(b.clone()), Some(a.clone()));
                    }
                }
                if !before.ips.is_empty() && before.ips != asset.ips {
                    change(
                        "changed",
                        "ips",
                        Some(before.ips.join(" ")),
                        Some(asset.ips.join(" ")),
                    );
                }
            }
            if let (Some(device), Some(id)) = (&host.snmp, &existing) {
                let previous = store
                    .snmp(id)?
                    .and_then(|s| s["firmware"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                if !previous.is_empty()
                    && !device.firmware.is_empty()
                    && previous != device.firmware
                {
                    change(
                        "changed",
                        "snmp.firmware",
                        Some(previous),
                        Some(device.firmware.clone()),
                    );
                }
            }
            if let Some(device) = &host.snmp {
                let mut snapshot = serde_json::to_value(device).expect("SNMP device serialises");
                let timed_out = device.notes.iter().any(|n| n.contains("timeout"));
                if timed_out && let Some(id) = &existing {
                    keep_what_timed_out(&mut snapshot, store.snmp(id)?);
                }
                if let Some(object) = snapshot.as_object_mut() {
                    object.insert(
                        "collected_at".into(),
                        serde_json::json!(at.unix_timestamp()),
                    );
                }
                out.snmp.push((asset.id.clone(), snapshot));
            }
            out.reach.push((
                asset.id.clone(),
                ReachSample {
                    at,
                    up: true,
                    rtt_us: (host.rtt_ms * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32,
                },
            ));
            out.last_seen.push((asset.id.clone(), at));
            answered.insert(asset.id.clone());
            if asset != before {
                out.assets.push(asset.clone());
                self.index(asset);
            }
        }
        // Devices that have answered ping before, in the swept ranges, silent this time.
        for asset in self.assets.values() {
            if answered.contains(&asset.id) || !asset.sources.contains(&Source::Ping) {
                continue;
            }
            let in_scope = asset
                .ips
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .any(|ip| sweep.scope.contains(ip));
            if in_scope {
                summary.down += 1;
                out.reach.push((
                    asset.id.clone(),
                    ReachSample {
                        at,
                        up: false,
                        rtt_us: 0,
                    },
                ));
            }
        }
        summary.changes = out.changes.len() - first_change;
        Ok(summary)
    }

    /// The asset a live host belongs to: MAC, then SNMP serial, then IP with a compatible name.
    fn match_host(&self, host: &DiscoveredHost) -> Option<AssetId> {
        if let Some(mac) = &host.mac
            && let Some(asset) = self.assets.values().find(|a| a.macs.contains(mac))
        {
            return Some(asset.id.clone());
        }
        let serial = host
            .snmp
            .as_ref()
            .and_then(|d| identity::normalise_serial(&d.serial));
        if let Some(serial) = serial
            && let Some(asset) = self
                .assets
                .values()
                .find(|a| a.serial.eq_ignore_ascii_case(&serial))
        {
            return Some(asset.id.clone());
        }
        let ip = host.ip.to_string();
        let name = host.name();
        self.assets
            .values()
            .filter(|a| a.ips.contains(&ip))
            .filter(|a| match (&name, a.name.is_empty()) {
                (Some(n), false) => same_name(n, &a.name) || same_name(n, &a.hostname),
                _ => true,
            })
            .filter(|a| match &host.mac {
                // A different MAC at the same address is a different device (DHCP reuse).
                Some(_) => a.macs.is_empty(),
                None => true,
            })
            .min_by_key(|a| a.first_seen)
            .map(|a| a.id.clone())
    }
}

/// A walk that timed out leaves its part empty; keep the previous values for it instead of
/// blanking them (the snapshot's `notes` say what was partial, `stale` lists what was kept).
fn keep_what_timed_out(snapshot: &mut serde_json::Value, previous: Option<serde_json::Value>) {
    let (Some(new), Some(serde_json::Value::Object(old))) = (snapshot.as_object_mut(), previous)
    else {
        return;
    };
    let mut kept = Vec::new();
    for (key, old_value) in old {
        let empty = |v: &serde_json::Value| {
            v.is_null()
                || v.as_array().is_some_and(Vec::is_empty)
                || v.as_str().is_some_and(str::is_empty)
        };
        let replace = new.get(&key).is_some_and(empty) && !empty(&old_value);
        if replace && !matches!(key.as_str(), "notes" | "stale" | "collected_at") {
            kept.push(serde_json::Value::from(key.clone()));
            new.insert(key, old_value);
        }
    }
    if !kept.is_empty() {
        new.insert("stale".into(), serde_json::Value::Array(kept));
    }
}

/// Fills what the network says about a device; agent-reported fields stay the agent's.
fn describe_from_network(asset: &mut Asset, host: &DiscoveredHost) {
    let has_agent = asset.sources.contains(&Source::Agent);
    asset.sources.insert(Source::Ping);
    let ip = host.ip.to_string();
    if has_agent {
        if !asset.ips.contains(&ip) {
            asset.ips.push(ip);
            asset.ips.sort();
        }
    } else {
        asset.ips = vec![ip.clone()];
        if let Some(mac) = &host.mac
            && !asset.macs.contains(mac)
        {
            asset.macs.push(mac.clone());
            asset.macs.sort();
        }
    }
    if let Some(device) = &host.snmp {
        asset.sources.insert(Source::Snmp);
        if !has_agent {
            let set = |field: &mut String, value: &str| {
                if !value.trim().is_empty() {
                    *field = value.trim().to_owned();
                }
            };
            set(&mut asset.vendor, &device.vendor);
            set(&mut asset.model, &device.model);
            set(
                &mut asset.serial,
                &identity::normalise_serial(&device.serial).unwrap_or_default(),
            );
            set(
                &mut asset.os,
                device.system.descr.lines().next().unwrap_or_default(),
            );
            if asset.os.chars().count() > 160 {
                asset.os = asset.os.chars().take(160).collect();
            }
        }
    }
    if !has_agent {
        if asset.vendor.is_empty() {
            asset.vendor = host.vendor.clone();
        }
        if host.kind != AssetKind::Unknown {
            asset.kind = host.kind;
        }
        if let Some(dns) = &host.dns_name {
            asset.hostname.clone_from(dns);
        }
        asset.name = host.name().unwrap_or_else(|| {
            if asset.name.is_empty() {
                host.ip.to_string()
            } else {
                asset.name.clone()
            }
        });
    }
}

fn kind_label(kind: AssetKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Short host names compared case-insensitively (`LIB-PC01` = `lib-pc01.school.local`).
fn same_name(a: &str, b: &str) -> bool {
    let short = |s: &str| s.split('.').next().unwrap_or(s).trim().to_ascii_lowercase();
    !a.trim().is_empty() && short(a) == short(b)
}

/// Deterministic, so a sweep replayed after a crash overwrites its own records.
fn change_id(at: time::OffsetDateTime, asset: &str, index: usize) -> String {
    let digest = Sha256::new()
        .chain_update(unix_millis(at).to_be_bytes())
        .chain_update(asset.as_bytes())
        .chain_update((index as u64).to_be_bytes())
        .finalize();
    hex::encode(&digest[..8])
}
