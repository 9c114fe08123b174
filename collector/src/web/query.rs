//! The queries both the dashboard and the JSON API answer from: asset and incident lists
//! (search, filters, sort, pages) and the overview's figures, over the [`Catalog`].
//!
//! [`Catalog`]: super::catalog::Catalog

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use super::catalog::{Entry, status_of};
use crate::errors::Failure;
use crate::http::{ApiState, blocking};
use crate::model::{Asset, Incident, IncidentState, Status};

/// One row of the asset list.
#[derive(Debug, Clone)]
pub struct Listed {
    pub asset: Asset,
    pub status: Status,
    pub last_seen: Option<OffsetDateTime>,
    pub location: String,
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AssetQuery {
    /// Words that must all match (name, hostname, IP, MAC, serial, user, room, software).
    pub q: String,
    pub kind: String,
    pub status: String,
    pub source: String,
    /// Part of the room / location (SNMP sysLocation or the register's site, building, room).
    pub location: String,
    /// Register filters: part of the room, part of the department, a lifecycle state.
    pub room: String,
    pub department: String,
    pub lifecycle: String,
    /// `name` (default), `kind`, `status`, `ip`, `last_seen`.
    pub sort: String,
    pub desc: bool,
    pub offset: usize,
    /// 0: all.
    pub limit: usize,
}

pub fn kind_name(asset: &Asset) -> &'static str {
    use crate::model::AssetKind as K;
    match asset.kind {
        K::Pc => "pc",
        K::Server => "server",
        K::Laptop => "laptop",
        K::Printer => "printer",
        K::Switch => "switch",
        K::Router => "router",
        K::AccessPoint => "access-point",
        K::Ups => "ups",
        K::Nas => "nas",
        K::Projector => "projector",
        K::Phone => "phone",
        K::Display => "display",
        K::Visualiser => "visualiser",
        K::Trolley => "trolley",
        K::Other => "other",
        K::Unknown => "unknown",
    }
}

fn source_name(source: crate::model::Source) -> &'static str {
    match source {
        crate::model::Source::Agent => "agent",
        crate::model::Source::Ping => "ping",
        crate::model::Source::Snmp => "snmp",
        crate::model::Source::Manual => "manual",
    }
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Up => "up",
        Status::Down => "down",
        Status::Unknown => "unknown",
    }
}

/// Every word is in the asset's search text or in one of its software titles.
fn matches(entry: &Entry, words: &[(String, std::collections::HashSet<u32>)]) -> bool {
    words.iter().all(|(word, titles)| {
        entry.haystack.contains(word.as_str()) || entry.software.iter().any(|t| titles.contains(t))
    })
}

/// Every asset matching `query`, sorted, with the total before paging.
pub async fn assets(state: &ApiState, query: AssetQuery) -> Result<(Vec<Listed>, usize), Failure> {
    let web = state.web.clone();
    let heard = state.agents.last_heard();
    let (stale, reach_stale) = (state.stale_after, state.reach_stale_after);
    blocking(move || {
        let now = OffsetDateTime::now_utc();
        let (rows, total) = web.catalog.read(|data| {
            let words: Vec<(String, std::collections::HashSet<u32>)> = query
                .q
                .split_whitespace()
                .map(|w| {
                    let w = w.to_lowercase();
                    let titles = data.titles_matching(&w);
                    (w, titles)
                })
                .collect();
            let location = query.location.to_lowercase();
            let room = query.room.trim().to_lowercase();
            let department = query.department.trim().to_lowercase();
            let mut rows: Vec<(&Entry, Status, Option<OffsetDateTime>)> = Vec::new();
            for entry in data.assets.values() {
                if !query.kind.is_empty() && kind_name(&entry.asset) != query.kind {
                    continue;
                }
                if !query.source.is_empty()
                    && !entry
                        .asset
                        .sources
                        .iter()
                        .any(|s| source_name(*s) == query.source)
                {
                    continue;
                }
                let register = &entry.asset.register;
                if !location.is_empty()
                    && !entry.location.to_lowercase().contains(&location)
                    && ![&register.site, &register.building, &register.room]
                        .iter()
                        .any(|p| p.to_lowercase().contains(&location))
                {
                    continue;
                }
                if !room.is_empty() && !register.room.to_lowercase().contains(&room) {
                    continue;
                }
                if !department.is_empty()
                    && !register.department.to_lowercase().contains(&department)
                {
                    continue;
                }
                if !query.lifecycle.is_empty() && register.lifecycle.as_str() != query.lifecycle {
                    continue;
                }
                if !words.is_empty() && !matches(entry, &words) {
                    continue;
                }
                let (status, last_seen) = status_of(
                    &entry.asset,
                    entry.last_seen,
                    &heard,
                    entry.reach,
                    stale,
                    reach_stale,
                    now,
                );
                if !query.status.is_empty() && status_name(status) != query.status {
                    continue;
                }
                rows.push((entry, status, last_seen));
            }
            fn name<'a>(r: &(&'a Entry, Status, Option<OffsetDateTime>)) -> &'a str {
                r.0.name_lower.as_str()
            }
            match query.sort.as_str() {
                "kind" => rows.sort_unstable_by(|a, b| {
                    (kind_name(&a.0.asset), name(a)).cmp(&(kind_name(&b.0.asset), name(b)))
                }),
                "status" => rows.sort_unstable_by(|a, b| {
                    (status_name(a.1), name(a)).cmp(&(status_name(b.1), name(b)))
                }),
                "ip" => rows.sort_by_cached_key(|r| {
                    (
                        r.0.asset
                            .ips
                            .first()
                            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok()),
                        r.0.name_lower.clone(),
                    )
                }),
                "last_seen" => rows.sort_unstable_by(|a, b| (a.2, name(a)).cmp(&(b.2, name(b)))),
                _ => rows.sort_unstable_by(|a, b| {
                    (name(a), a.0.asset.id.as_str()).cmp(&(name(b), b.0.asset.id.as_str()))
                }),
            }
            if query.desc {
                rows.reverse();
            }
            let total = rows.len();
            let take = if query.limit == 0 {
                usize::MAX
            } else {
                query.limit
            };
            let page: Vec<Listed> = rows
                .into_iter()
                .skip(query.offset)
                .take(take)
                .map(|(entry, status, last_seen)| Listed {
                    asset: entry.asset.clone(),
                    status,
                    last_seen,
                    location: entry.location.clone(),
                    users: entry.users.clone(),
                })
                .collect();
            (page, total)
        })?;
        Ok((rows, total))
    })
    .await
}

#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    /// `open` (default), `resolved` (and closed), `all`.
    pub status: String,
    pub asset: Option<String>,
    pub priority: Option<u8>,
    /// Words matched against number, title, asset name, assignee.
    pub q: String,
    pub offset: usize,
    /// 0: all.
    pub limit: usize,
}

/// Incidents matching `query`, most urgent first, then newest; with the total.
pub async fn incidents(
    state: &ApiState,
    query: IncidentQuery,
) -> Result<(Vec<Incident>, usize), Failure> {
    let keep: fn(IncidentState) -> bool = match query.status.as_str() {
        "" | "open" => IncidentState::is_open,
        "resolved" => |s| matches!(s, IncidentState::Resolved | IncidentState::Closed),
        "all" => |_| true,
        other => {
            return Err(Failure::invalid(format!(
                "status {other:?} is not open, resolved or all"
            )));
        }
    };
    let web = state.web.clone();
    blocking(move || {
        let words: Vec<String> = query.q.split_whitespace().map(str::to_lowercase).collect();
        Ok(web.catalog.read(|data| {
            let take = if query.limit == 0 {
                usize::MAX
            } else {
                query.limit
            };
            let mut total = 0;
            let mut page = Vec::new();
            for key in &data.order {
                let keep = keep(key.state)
                    && query.asset.as_ref().is_none_or(|a| *a == key.asset_id)
                    && query.priority.is_none_or(|p| p == key.priority)
                    && words.iter().all(|w| key.text.contains(w.as_str()));
                if !keep {
                    continue;
                }
                if total >= query.offset
                    && page.len() < take
                    && let Some(incident) = data.incidents.get(&key.id)
                {
                    page.push(incident.clone());
                }
                total += 1;
            }
            (page, total)
        })?)
    })
    .await
}

/// One incident by id or `INC…` number.
pub async fn incident(state: &ApiState, key: String) -> Result<Option<Incident>, Failure> {
    let web = state.web.clone();
    blocking(move || Ok(web.catalog.read(|data| data.incident(&key).cloned())?)).await
}

/// The overview's figures.
#[derive(Debug, Default)]
pub struct Overview {
    /// Per kind: `(kind, up, down, unknown)`.
    pub by_kind: Vec<(String, usize, usize, usize)>,
    pub totals: (usize, usize, usize),
    /// Per priority 1–5: `(count, oldest opened_at)`.
    pub by_priority: Vec<(u8, usize, Option<OffsetDateTime>)>,
    /// The most urgent open incidents (at most 10).
    pub urgent: Vec<Incident>,
    /// `(asset id, asset name, what)`.
    pub capacity: Vec<(String, String, String)>,
    pub last_sweep: Option<OffsetDateTime>,
    /// `(agents heard within stale_after, agents that ever reported)`.
    pub agents: (usize, usize),
}

pub async fn overview(state: &ApiState) -> Result<Overview, Failure> {
    let web = state.web.clone();
    let heard = state.agents.last_heard();
    let (stale, reach_stale) = (state.stale_after, state.reach_stale_after);
    blocking(move || {
        let now = OffsetDateTime::now_utc();
        Ok(web.catalog.read(|data| {
            let mut out = Overview::default();
            let mut kinds: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
            let mut agents_total = 0;
            let mut agents_fresh = 0;
            for entry in data.assets.values() {
                let (status, last_seen) = status_of(
                    &entry.asset,
                    entry.last_seen,
                    &heard,
                    entry.reach,
                    stale,
                    reach_stale,
                    now,
                );
                let counts = kinds.entry(kind_name(&entry.asset).to_owned()).or_default();
                match status {
                    Status::Up => counts.0 += 1,
                    Status::Down => counts.1 += 1,
                    Status::Unknown => counts.2 += 1,
                }
                if !entry.asset.agent_ids.is_empty() {
                    agents_total += 1;
                    let fresh = last_seen.is_some_and(|at| {
                        now - at <= time::Duration::try_from(stale).unwrap_or(time::Duration::MAX)
                    });
                    agents_fresh += usize::from(fresh);
                }
                for (mount, used) in &entry.volumes {
                    if *used >= 90.0 {
                        out.capacity.push((
                            entry.asset.id.clone(),
                            entry.asset.name.clone(),
                            format!("disk {mount} {used:.0}% full"),
                        ));
                    }
                }
                for (supply, percent) in &entry.supplies {
                    if *percent <= 15.0 {
                        out.capacity.push((
                            entry.asset.id.clone(),
                            entry.asset.name.clone(),
                            format!("{supply} at {percent:.0}%"),
                        ));
                    }
                }
                if let Some((on_battery, charge, replace)) = entry.ups {
                    if on_battery {
                        out.capacity.push((
                            entry.asset.id.clone(),
                            entry.asset.name.clone(),
                            "UPS on battery".to_owned(),
                        ));
                    }
                    if replace {
                        out.capacity.push((
                            entry.asset.id.clone(),
                            entry.asset.name.clone(),
                            "UPS battery needs replacing".to_owned(),
                        ));
                    }
                    if let Some(c) = charge.filter(|c| *c < 50.0) {
                        out.capacity.push((
                            entry.asset.id.clone(),
                            entry.asset.name.clone(),
                            format!("UPS charge {c:.0}%"),
                        ));
                    }
                }
            }
            out.capacity.sort();
            out.capacity.truncate(50);
            for (kind, (up, down, unknown)) in kinds {
                out.totals.0 += up;
                out.totals.1 += down;
                out.totals.2 += unknown;
                out.by_kind.push((kind, up, down, unknown));
            }
            let mut by_priority: HashMap<u8, (usize, Option<OffsetDateTime>)> = HashMap::new();
            let mut open: Vec<&Incident> = Vec::new();
            for incident in data.incidents.values().filter(|i| i.state.is_open()) {
                let slot = by_priority.entry(incident.priority).or_default();
                slot.0 += 1;
                slot.1 = Some(
                    slot.1
                        .map_or(incident.opened_at, |o| o.min(incident.opened_at)),
                );
                open.push(incident);
            }
            out.by_priority = (1..=5)
                .map(|p| {
                    let (n, oldest) = by_priority.get(&p).copied().unwrap_or_default();
                    (p, n, oldest)
                })
                .collect();
            let order = |a: &&Incident, b: &&Incident| {
                a.priority
                    .cmp(&b.priority)
                    .then_with(|| a.opened_at.cmp(&b.opened_at))
            };
            if open.len() > 10 {
                open.select_nth_unstable_by(10, order);
                open.truncate(10);
            }
            open.sort_by(order);
            out.urgent = open.into_iter().cloned().collect();
            out.last_sweep = data.last_reach;
            out.agents = (agents_fresh, agents_total);
            out
        })?)
    })
    .await
}
