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
//!
//! Routed ranges need no configuration either: each sweep says which gateway (and last hop)
//! every routed part of the scope goes through. When most of the devices behind one path
//! went silent together (their first misses within [`TOGETHER`]), their host-down conditions
//! become **one** condition keyed on the path (`path:198.19.0.0/22`): "Path to 198.19.0.0/22
//! via 198.18.0.2 down: 32 devices", listing them; it resolves when they answer again.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::json;

use crate::model::{Asset, AssetId, AssetKind, SnmpSnapshot};
use crate::rules::Condition;
use crate::scan::paths::RoutedPath;

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
    /// The routed parts of the scope and the devices behind each.
    pub paths: Vec<PathNode>,
}

/// One routed path and the devices behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathNode {
    /// The incident's key (`path:RANGE`).
    pub key: AssetId,
    /// "198.19.0.0/22 via 198.18.0.2".
    pub label: String,
    pub members: Vec<AssetId>,
    /// The gateway's own asset, when it is in the register.
    pub gateway: Option<AssetId>,
}

/// Devices whose first misses fall within this of each other went silent "together".
pub const TOGETHER: time::Duration = time::Duration::minutes(2);

/// The assets behind each routed path: those that answer ping at an address in its range
/// (the gateway itself excluded).
pub fn path_nodes(paths: &[RoutedPath], assets: &[Asset]) -> Vec<PathNode> {
    paths
        .iter()
        .map(|path| {
            let gateway = path.gateway.to_string();
            let members = assets
                .iter()
                .filter(|a| a.sources.contains(&crate::model::Source::Ping))
                .filter(|a| !a.ips.contains(&gateway))
                .filter(|a| {
                    a.ips
                        .iter()
                        .filter_map(|ip| ip.parse().ok())
                        .any(|ip| path.range.contains(ip))
                })
                .map(|a| a.id.clone())
                .collect();
            PathNode {
                key: format!("path:{}", path.range),
                label: path.label(),
                members,
                gateway: assets
                    .iter()
                    .find(|a| a.ips.contains(&gateway))
                    .map(|a| a.id.clone()),
            }
        })
        .collect()
}

impl Parents {
    /// Builds the map from config rules and SNMP snapshots (`fdb`, `lldp`).
    pub fn build(
        config: &TopologyConfig,
        assets: &[Asset],
        snmp: &HashMap<AssetId, SnmpSnapshot>,
        paths: &[RoutedPath],
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
        Self {
            of,
            paths: path_nodes(paths, assets),
        }
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
    let conditions = fold_paths(conditions, parents, assets);
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

/// Most devices behind a routed path silent together: one condition for the path instead of
/// theirs.
fn fold_paths(
    conditions: Vec<Condition>,
    parents: &Parents,
    assets: &HashMap<AssetId, &Asset>,
) -> Vec<Condition> {
    let since: HashMap<&str, i64> = conditions
        .iter()
        .filter(|c| c.rule == "host_down")
        .map(|c| {
            (
                c.asset_id.as_str(),
                c.measured["down_since"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let mut folded: HashSet<AssetId> = HashSet::new();
    let mut extra = Vec::new();
    for path in &parents.paths {
        let down: Vec<(&AssetId, i64)> = path
            .members
            .iter()
            .filter_map(|m| since.get(m.as_str()).map(|s| (m, *s)))
            .collect();
        let Some(latest) = down.iter().map(|(_, s)| *s).max() else {
            continue;
        };
        let together: Vec<&AssetId> = down
            .iter()
            .filter(|(_, s)| latest - *s <= TOGETHER.whole_seconds())
            .map(|(m, _)| *m)
            .collect();
        if together.len() < 2 || together.len() * 2 <= path.members.len() {
            continue;
        }
        let mut children: Vec<AssetId> = down.iter().map(|(m, _)| (*m).clone()).collect();
        children.sort();
        // The router itself silent too: the same failure, not a second incident.
        let router_down = path
            .gateway
            .as_ref()
            .filter(|g| since.contains_key(g.as_str()));
        if let Some(router) = router_down {
            folded.insert(router.clone());
        }
        let name = |id: &str| {
            assets
                .get(id)
                .map(|a| a.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| id.to_owned())
        };
        let names: Vec<String> = children.iter().map(|c| name(c)).collect();
        extra.push(Condition {
            rule: "host_down",
            asset_id: path.key.clone(),
            title: format!(
                "Path to {} down: {} devices",
                path.label,
                children.len()
            ),
            description: format!(
                "{} of the {} devices behind {} stopped answering together: the route, the \
                 router or its link is down{}. Unreachable: {}.",
                children.len(),
                path.members.len(),
                path.label,
                match router_down {
                    Some(r) => format!(" ({} does not answer either)", name(r)),
                    None => String::new(),
                },
                names.join(", ")
            ),
            impact: 1,
            urgency: 1,
            measured: json!({
                "affected": children.iter().zip(&names).map(|(id, n)| json!({"id": id, "name": n})).collect::<Vec<_>>(),
                "path": path.label,
                "behind": path.members.len(),
                "down_since": since.values().filter(|s| latest - **s <= TOGETHER.whole_seconds()).min(),
            }),
        });
        folded.extend(children);
    }
    let mut out: Vec<Condition> = conditions
        .into_iter()
        .filter(|c| !(c.rule == "host_down" && folded.contains(&c.asset_id)))
        .collect();
    out.extend(extra);
    out
}

#[cfg(test)]
mod path_tests {
    use super::*;

    fn asset(id: &str, ip: &str) -> Asset {
        let mut a = crate::cmdb::blank_asset(id.to_owned(), time::OffsetDateTime::UNIX_EPOCH);
        a.name = format!("dev-{id}");
        a.ips = vec![ip.to_owned()];
        a.sources.insert(crate::model::Source::Ping);
        a
    }

    fn down(id: &str, since: i64) -> Condition {
        Condition {
            rule: "host_down",
            asset_id: id.to_owned(),
            title: format!("{id} down"),
            description: String::new(),
            impact: 2,
            urgency: 1,
            measured: json!({"missed_checks": 2, "down_since": since}),
        }
    }

    #[test]
    fn most_hosts_behind_a_path_down_together_are_one_condition() {
        let assets: Vec<Asset> = (0..10)
            .map(|i| asset(&format!("a{i}"), &format!("198.19.0.{}", i + 10)))
            .chain([asset("gw", "198.18.0.2"), asset("lan", "198.18.0.9")])
            .collect();
        let path = RoutedPath {
            range: "198.19.0.0/22".parse().expect("net"),
            gateway: "198.18.0.2".parse().expect("ip"),
            iface: "eth0".into(),
            last_hop: None,
        };
        let parents = Parents::build(
            &TopologyConfig::default(),
            &assets,
            &HashMap::new(),
            &[path],
        );
        assert_eq!(
            parents.paths[0].members.len(),
            10,
            "the gateway is not behind itself"
        );
        let by_id: HashMap<AssetId, &Asset> = assets.iter().map(|a| (a.id.clone(), a)).collect();
        // 8 of 10 within a minute, and an unrelated LAN host.
        let mut conditions: Vec<Condition> =
            (0..8).map(|i| down(&format!("a{i}"), 1000 + i)).collect();
        conditions.push(down("lan", 1000));
        let out = fold(conditions, &parents, &by_id);
        assert_eq!(out.len(), 2, "{out:#?}");
        let path = out
            .iter()
            .find(|c| c.asset_id == "path:198.19.0.0/22")
            .expect("path");
        assert_eq!(
            path.title,
            "Path to 198.19.0.0/22 via 198.18.0.2 down: 8 devices"
        );
        assert_eq!(path.measured["affected"].as_array().map(Vec::len), Some(8));
        assert!(out.iter().any(|c| c.asset_id == "lan"));
        // The router down as well: still one incident.
        let mut with_router: Vec<Condition> =
            (0..8).map(|i| down(&format!("a{i}"), 1000 + i)).collect();
        with_router.push(down("gw", 1000));
        let out = fold(with_router, &parents, &by_id);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert!(out[0].description.contains("dev-gw does not answer either"));

        // A few hosts going down one by one over the day are their own incidents.
        let spread: Vec<Condition> = (0..8)
            .map(|i| down(&format!("a{i}"), 1000 + i * 3600))
            .collect();
        assert_eq!(fold(spread, &parents, &by_id).len(), 8);
        // A minority down together is not a path failure.
        let few: Vec<Condition> = (0..3).map(|i| down(&format!("a{i}"), 1000)).collect();
        assert_eq!(fold(few, &parents, &by_id).len(), 3);
    }
}
