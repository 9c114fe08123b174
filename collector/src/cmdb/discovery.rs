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
use time::OffsetDateTime;

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

/// The meta key holding when the first sweep finished.
pub const BASELINE_KEY: &str = "scan.baseline";

/// The meta key marking `asset` gone (Unix seconds; 0 when it came back).
pub fn gone_key(asset: &str) -> String {
    format!("gone:{asset}")
}

impl Cmdb {
    /// Folds a sweep into the register, adding the records to `out`: assets found, changed or
    /// new, a reachability verdict for every asset in the swept ranges that has answered ping
    /// before, and devices gone silent for `gone_after` (or back). `last_up` says when an
    /// asset last answered ping before this sweep.
    pub fn apply_sweep(
        &mut self,
        store: &dyn Store,
        sweep: &Sweep,
        last_up: &dyn Fn(&str) -> Option<OffsetDateTime>,
        out: &mut WriteSet,
    ) -> Result<SweepSummary, StoreError> {
        let at = sweep.finished_at;
        let mut summary = SweepSummary {
            live: sweep.hosts.len(),
            ..Default::default()
        };
        let mut answered: BTreeSet<AssetId> = BTreeSet::new();
        // Which asset each live address was matched to.
        let mut holders: std::collections::HashMap<String, AssetId> = Default::default();
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
                        expected_by: None,
                        author: None,
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
            if let Some(device) = &host.snmp {
                let previous = match &existing {
                    Some(id) => store.snmp(id)?,
                    None => None,
                };
                let mut snapshot = device.clone();
                snapshot.collected_at = Some(at);
                if let Some(previous) = &previous {
                    if !previous.firmware.is_empty()
                        && !device.firmware.is_empty()
                        && previous.firmware != device.firmware
                    {
                        change(
                            "changed",
                            "snmp.firmware",
                            Some(previous.firmware.clone()),
                            Some(device.firmware.clone()),
                        );
                    }
                    snapshot.keep_missing_from(previous);
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
            holders.insert(host.ip.to_string(), asset.id.clone());
            if asset != before {
                out.assets.push(asset.clone());
                self.index(asset);
            }
        }
        self.confirm_addresses(sweep, &answered, &holders, out);
        self.paths.clone_from(&sweep.paths);
        // Devices that have answered ping before, in the swept ranges, silent this time.
        for asset in self.assets.values() {
            if answered.contains(&asset.id) || !asset.sources.contains(&Source::Ping) {
                continue;
            }
            if sweep.scope.covers(asset) {
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
        self.gone_or_back(sweep, &answered, last_up, out);
        if self.baseline.is_none() {
            self.baseline = Some(at);
            out.meta
                .push((BASELINE_KEY.to_owned(), at.unix_timestamp() as u64));
        }
        summary.changes = out.changes.len() - first_change;
        Ok(summary)
    }

    /// Network-only assets found by this sweep without some of their in-scope addresses: an
    /// address leaves the asset after `address_misses` such sweeps in a row (the same
    /// confirmation `host_down` needs), or at once when another asset answered at it. One
    /// missed sweep therefore writes nothing.
    fn confirm_addresses(
        &mut self,
        sweep: &Sweep,
        answered: &BTreeSet<AssetId>,
        holder: &std::collections::HashMap<String, AssetId>,
        out: &mut WriteSet,
    ) {
        let at = sweep.finished_at;
        let mut found_at: std::collections::HashMap<&AssetId, Vec<&String>> = Default::default();
        for (ip, id) in holder {
            found_at.entry(id).or_default().push(ip);
        }
        let mut updated = Vec::new();
        for id in answered {
            let Some(asset) = self.assets.get(id) else {
                continue;
            };
            if asset.sources.contains(&Source::Agent) {
                continue;
            }
            let here = found_at.get(id).cloned().unwrap_or_default();
            let mut keep = Vec::new();
            for ip in &asset.ips {
                let in_scope = ip
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|a| sweep.scope.contains(a));
                let key = (id.clone(), ip.clone());
                if !in_scope || here.contains(&ip) {
                    self.missed.remove(&key);
                    keep.push(ip.clone());
                    continue;
                }
                let taken = holder.get(ip).is_some_and(|other| other != id);
                let misses = self.missed.entry(key.clone()).or_insert(0);
                *misses += 1;
                if taken || *misses >= self.address_misses {
                    self.missed.remove(&key);
                } else {
                    keep.push(ip.clone());
                }
            }
            if keep != asset.ips && !keep.is_empty() {
                let mut asset = asset.clone();
                out.changes.push(Change {
                    id: change_id(at, &asset.id, 1_000),
                    asset_id: asset.id.clone(),
                    at,
                    kind: "changed".to_owned(),
                    field: "ips".to_owned(),
                    before: Some(asset.ips.join(" ")),
                    after: Some(keep.join(" ")),
                    clock_suspect: false,
                    expected_by: None,
                    author: None,
                });
                asset.ips = keep;
                updated.push(asset);
            }
        }
        for asset in updated {
            out.assets.retain(|a| a.id != asset.id);
            out.assets.push(asset.clone());
            self.index(asset);
        }
    }

    /// Devices found only by the network that have not answered for `gone_after` get one
    /// "removed" change record; answering again gets a "returned" one.
    fn gone_or_back(
        &mut self,
        sweep: &Sweep,
        answered: &BTreeSet<AssetId>,
        last_up: &dyn Fn(&str) -> Option<OffsetDateTime>,
        out: &mut WriteSet,
    ) {
        let at = sweep.finished_at;
        let mut records = Vec::new();
        for asset in self.assets.values() {
            if asset.sources.contains(&Source::Agent)
                || !asset.sources.contains(&Source::Ping)
                || !sweep.scope.covers(asset)
            {
                continue;
            }
            let was_gone = self.gone.contains_key(&asset.id);
            if answered.contains(&asset.id) {
                if was_gone {
                    records.push((asset, "returned", 0));
                }
                continue;
            }
            let last_up = last_up(&asset.id).unwrap_or(asset.first_seen);
            if !was_gone && at - last_up >= self.gone_after {
                records.push((asset, "removed", at.unix_timestamp() as u64));
            }
        }
        let mut marks = Vec::new();
        for (asset, kind, mark) in records {
            out.changes.push(Change {
                id: format!("{}-{kind}-{}", asset.id, at.unix_timestamp()),
                asset_id: asset.id.clone(),
                at,
                kind: kind.to_owned(),
                field: "asset".to_owned(),
                before: (kind == "removed").then(|| asset.name.clone()),
                after: (kind == "returned").then(|| asset.name.clone()),
                clock_suspect: false,
                expected_by: None,
                author: None,
            });
            out.meta.push((gone_key(&asset.id), mark));
            marks.push((asset.id.clone(), mark));
        }
        for (asset, mark) in marks {
            if mark == 0 {
                self.gone.remove(&asset);
            } else {
                self.gone.insert(asset, at);
            }
        }
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
        // Addresses are added at once but leave only after confirmation (`confirm_addresses`).
        if !asset.ips.contains(&ip) {
            asset.ips.push(ip.clone());
            asset.ips.sort();
        }
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
    // IPv6 neighbours with the host's MAC: added, never removed by a sweep.
    for ip in &host.ipv6 {
        if !asset.ips.contains(ip) {
            asset.ips.push(ip.clone());
            asset.ips.sort();
        }
    }
    if !has_agent {
        if asset.vendor.is_empty()
            && let Some(vendor) = &host.enterprise_vendor
        {
            asset.vendor.clone_from(vendor);
        }
        if asset.vendor.is_empty() {
            asset.vendor = host.vendor.clone();
        }
        if host.kind != AssetKind::Unknown {
            asset.kind = host.kind;
            asset.classification.clone_from(&host.classification);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{DiscoveredHost, Method, Scope};
    use crate::store::MemoryStore;

    fn host(ip: [u8; 4], mac: &str) -> DiscoveredHost {
        DiscoveredHost {
            ip: ip.into(),
            rtt_ms: 0.4,
            found_by: Method::Arp,
            mac: Some(mac.to_owned()),
            vendor: String::new(),
            dns_name: None,
            kind: AssetKind::Unknown,
            classification: String::new(),
            enterprise_vendor: None,
            open_ports: Vec::new(),
            snmp: None,
            snmp_credential: None,
            ipv6: Vec::new(),
        }
    }

    fn sweep(n: i64, hosts: Vec<DiscoveredHost>) -> Sweep {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000 + n * 60).expect("time");
        Sweep {
            started_at: at,
            finished_at: at,
            scope: Scope::parse(&["198.18.0.0/22".to_owned()], 4096).expect("scope"),
            probed: 1022,
            hosts,
            own: Vec::new(),
            paths: Vec::new(),
        }
    }

    #[test]
    fn an_address_leaves_only_after_the_host_down_confirmation() {
        let store = MemoryStore::default();
        let mut cmdb = Cmdb::load(&store, crate::cmdb::Settings::default()).expect("load");
        let never = |_: &str| None;
        let mac = "00:1b:21:aa:bb:01";
        let other = host([198, 18, 0, 20], "00:1b:21:aa:bb:02");
        let mut changes = Vec::new();
        let apply = |cmdb: &mut Cmdb, s: Sweep, changes: &mut Vec<Change>| {
            let mut out = WriteSet::default();
            cmdb.apply_sweep(&store, &s, &never, &mut out)
                .expect("sweep");
            changes.extend(out.changes.into_iter().filter(|c| c.kind != "created"));
        };
        apply(
            &mut cmdb,
            sweep(0, vec![host([198, 18, 0, 10], mac), other.clone()]),
            &mut changes,
        );
        // Missing from one sweep, then back at the same address: nothing changed.
        apply(&mut cmdb, sweep(1, vec![other.clone()]), &mut changes);
        apply(
            &mut cmdb,
            sweep(2, vec![host([198, 18, 0, 10], mac), other.clone()]),
            &mut changes,
        );
        assert!(changes.is_empty(), "{changes:?}");
        // A new address is news at once; the old one leaves after two sweeps without it.
        apply(
            &mut cmdb,
            sweep(3, vec![host([198, 18, 0, 11], mac), other.clone()]),
            &mut changes,
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].before.as_deref(), Some("198.18.0.10"));
        assert_eq!(changes[0].after.as_deref(), Some("198.18.0.10 198.18.0.11"));
        apply(
            &mut cmdb,
            sweep(4, vec![host([198, 18, 0, 11], mac), other.clone()]),
            &mut changes,
        );
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[1].after.as_deref(), Some("198.18.0.11"));
        let asset = cmdb
            .assets()
            .find(|a| a.macs.contains(&mac.to_owned()))
            .expect("asset");
        assert_eq!(asset.ips, ["198.18.0.11"]);
    }
}
