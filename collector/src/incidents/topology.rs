//! Which device each device depends on, and folding a down parent's children into one
//! incident.
//!
//! Parents come from the config (`[[topology.parents]]`: a child selector or CIDR and the
//! parent's selector) and from discovery: a MAC in a switch's forwarding table (learned on a
//! port that carries few MACs, i.e. an edge port, not an uplink) or an LLDP neighbour hangs
//! below that switch. When a parent is down, its children's "host down" conditions are
//! dropped and listed in the parent's condition instead ("ICT-SW2 down — 31 devices behind it
//! unreachable"); if the parent's own ping still answers (a dead uplink), one incident still
//! names them all.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::json;

use crate::model::{Asset, AssetId, AssetKind, SnmpSnapshot};
use crate::rules::Condition;

/// `[[topology.parents]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentRule {
    /// An asset selector (id, name, IP, `kind:…`) or a CIDR range of child addresses.
    pub child: String,
    /// The parent's selector (id, name or IP).
    pub parent: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    pub parents: Vec<ParentRule>,
    /// A switch port with more MACs than this behind it is an uplink, not an edge port.
    pub edge_port_max_macs: usize,
}

/// Child → parent.
#[derive(Debug, Clone, Default)]
pub struct Parents {
    pub of: HashMap<AssetId, AssetId>,
}

impl Parents {
    /// Builds the map from config rules and SNMP snapshots (`fdb`, `lldp`).
    pub fn build(
        config: &TopologyConfig,
        assets: &[Asset],
        snmp: &HashMap<AssetId, SnmpSnapshot>,
    ) -> Self {
        let mut of = HashMap::new();
        let by_mac: HashMap<&str, &Asset> = assets
            .iter()
            .flat_map(|a| a.macs.iter().map(move |m| (m.as_str(), a)))
            .collect();
        let edge_max = if config.edge_port_max_macs == 0 {
            4
        } else {
            config.edge_port_max_macs
        };
        // Discovery: for each MAC, the switch where it sits on the port with the fewest MACs.
        let mut best: HashMap<AssetId, (usize, AssetId)> = HashMap::new();
        for (switch_id, snapshot) in snmp {
            let mut per_port: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
            for entry in &snapshot.fdb {
                let port = entry.if_index.unwrap_or(entry.port);
                per_port.entry(port).or_default().push(entry.mac.as_str());
            }
            for macs in per_port.values().filter(|m| m.len() <= edge_max) {
                for mac in macs {
                    if let Some(child) = by_mac.get(mac).filter(|c| c.id != *switch_id) {
                        let candidate = (macs.len(), switch_id.clone());
                        best.entry(child.id.clone())
                            .and_modify(|b| {
                                if candidate.0 < b.0 {
                                    *b = candidate.clone();
                                }
                            })
                            .or_insert(candidate);
                    }
                }
            }
            for neighbour in &snapshot.lldp {
                let name = neighbour.sys_name.as_str();
                let addr = neighbour.mgmt_addr.as_deref().unwrap_or_default();
                if let Some(child) = assets.iter().find(|a| {
                    a.id != *switch_id
                        && ((!name.is_empty() && a.name.eq_ignore_ascii_case(name))
                            || (!addr.is_empty() && a.ips.iter().any(|i| i == addr)))
                }) {
                    // LLDP neighbours are usually other switches or APs one hop down; keep a
                    // forwarding-table answer if there is one.
                    best.entry(child.id.clone())
                        .or_insert((usize::MAX, switch_id.clone()));
                }
            }
        }
        for (child, (_, parent)) in best {
            of.insert(child, parent);
        }
        // Configuration wins over discovery.
        for rule in &config.parents {
            let Some(parent) = assets
                .iter()
                .find(|a| super::selector_matches(&rule.parent, a))
            else {
                continue;
            };
            let range: Option<crate::scan::targets::Ipv4Net> =
                rule.child.parse().ok().filter(|_| rule.child.contains('/'));
            for child in assets.iter().filter(|a| a.id != parent.id) {
                let matches = match &range {
                    Some(net) => child
                        .ips
                        .iter()
                        .filter_map(|ip| ip.parse().ok())
                        .any(|ip| net.contains(ip)),
                    None => super::selector_matches(&rule.child, child),
                };
                if matches {
                    of.insert(child.id.clone(), parent.id.clone());
                }
            }
        }
        // Break cycles: a device cannot depend on itself through others.
        let ids: Vec<AssetId> = of.keys().cloned().collect();
        for id in ids {
            let mut seen = HashSet::from([id.clone()]);
            let mut at = id.clone();
            while let Some(next) = of.get(&at).cloned() {
                if !seen.insert(next.clone()) {
                    of.remove(&id);
                    break;
                }
                at = next;
            }
        }
        Self { of }
    }

    /// The highest ancestor of `asset` that is itself in `down`, if any.
    fn down_root(&self, asset: &str, down: &HashSet<&str>) -> Option<AssetId> {
        let mut root = None;
        let mut at = asset;
        let mut hops = 0;
        while let Some(parent) = self.of.get(at) {
            if down.contains(parent.as_str()) {
                root = Some(parent.clone());
            }
            at = parent;
            hops += 1;
            if hops > 64 {
                break;
            }
        }
        root
    }
}

/// Drops the host-down conditions of devices whose parent is down and lists them in the
/// parent's condition. A parent that is not itself down but has most of its children down
/// gets a condition of its own ("path down").
pub fn fold(
    conditions: Vec<Condition>,
    parents: &Parents,
    assets: &HashMap<AssetId, &Asset>,
) -> Vec<Condition> {
    let down: HashSet<&str> = conditions
        .iter()
        .filter(|c| c.rule == "host_down")
        .map(|c| c.asset_id.as_str())
        .collect();
    let mut folded: BTreeMap<AssetId, Vec<AssetId>> = BTreeMap::new();
    let mut keep = Vec::new();
    for condition in &conditions {
        if condition.rule == "host_down"
            && let Some(root) = parents.down_root(&condition.asset_id, &down)
        {
            folded
                .entry(root)
                .or_default()
                .push(condition.asset_id.clone());
            continue;
        }
        keep.push(condition.clone());
    }
    // Children of a parent that still answers ping, all down together: the path is down.
    let mut by_parent: BTreeMap<&AssetId, Vec<AssetId>> = BTreeMap::new();
    for condition in &keep {
        if condition.rule == "host_down"
            && let Some(parent) = parents.of.get(&condition.asset_id)
            && !down.contains(parent.as_str())
        {
            by_parent
                .entry(parent)
                .or_default()
                .push(condition.asset_id.clone());
        }
    }
    let mut path_down: BTreeMap<AssetId, Vec<AssetId>> = BTreeMap::new();
    for (parent, children) in by_parent {
        let total = parents.of.values().filter(|p| *p == parent).count();
        if children.len() >= 2 && children.len() * 2 > total {
            path_down.insert(parent.clone(), children);
        }
    }
    if !path_down.is_empty() {
        let drop: HashSet<&AssetId> = path_down.values().flatten().collect();
        keep.retain(|c| !(c.rule == "host_down" && drop.contains(&c.asset_id)));
    }
    let name = |id: &str| {
        assets
            .get(id)
            .map(|a| a.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| id.to_owned())
    };
    let listing = |ids: &[AssetId]| {
        ids.iter()
            .map(|id| json!({"id": id, "name": name(id)}))
            .collect::<Vec<_>>()
    };
    for condition in keep.iter_mut() {
        if condition.rule != "host_down" {
            continue;
        }
        if let Some(children) = folded.get(&condition.asset_id) {
            let kind = assets.get(&condition.asset_id).map(|a| a.kind);
            let what = if matches!(
                kind,
                Some(AssetKind::Switch | AssetKind::Router | AssetKind::AccessPoint)
            ) {
                "behind it"
            } else {
                "that depend on it"
            };
            condition.title = format!(
                "{} — {} devices {what} unreachable",
                condition.title,
                children.len()
            );
            condition.description = format!(
                "{} Devices {what}, not reported separately: {}.",
                condition.description,
                children
                    .iter()
                    .map(|c| name(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            condition.impact = 1;
            condition.measured["affected"] = json!(listing(children));
        }
    }
    for (parent, children) in path_down {
        let label = name(&parent);
        keep.push(Condition {
            rule: "host_down",
            asset_id: parent.clone(),
            title: format!("Path through {label} down — {} devices unreachable", children.len()),
            description: format!(
                "{label} still answers, but {} of the devices behind it do not: an uplink, port or VLAN problem. Unreachable: {}.",
                children.len(),
                children.iter().map(|c| name(c)).collect::<Vec<_>>().join(", ")
            ),
            impact: 1,
            urgency: 1,
            measured: json!({"affected": listing(&children), "parent_answers": true}),
        });
    }
    keep
}
