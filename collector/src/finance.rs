//! Financial Management over the register fields: warranty expiries, end of life
//! (purchase date + `[finance] lifespan_years`, or retired), cost per department and per
//! room, pages printed per printer per month, and what a device really costs in repairs
//! (its incidents, their open time, and its time in lifecycle `in-repair`).
//!
//! Pure functions over assets and incidents (the dashboard and the API call them on the
//! catalog's data), plus [`count_pages`], which the register writer calls when a sweep
//! merges: it keeps one small counter per printer and month in the store's `meta` values
//! (`pages.month/{asset}/{YYYY-MM}`, and the last counter seen as `pages.last/{asset}`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::model::register::iso_date;
use crate::model::{Asset, AssetId, Change, Incident, Lifecycle, RegisterFields, SnmpSnapshot};
use crate::store::{Store, StoreError};

/// `[finance]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinanceConfig {
    /// A device reaches its end of life this many years after its purchase date.
    pub lifespan_years: u32,
    /// The `warranty_expiry` notice comes this many days before a warranty ends (0: never).
    pub warranty_notice_days: u32,
}

impl Default for FinanceConfig {
    fn default() -> Self {
        Self {
            lifespan_years: 5,
            warranty_notice_days: 30,
        }
    }
}

impl FinanceConfig {
    /// Impossible settings as `(key, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut issues = Vec::new();
        if !(1..=50).contains(&self.lifespan_years) {
            issues.push((
                "lifespan_years",
                format!("{} is not between 1 and 50", self.lifespan_years),
            ));
        }
        if self.warranty_notice_days > 3650 {
            issues.push((
                "warranty_notice_days",
                format!(
                    "{} is more than 3650 (ten years)",
                    self.warranty_notice_days
                ),
            ));
        }
        issues
    }
}

/// Whether an asset still belongs to the school's books.
fn held(asset: &Asset) -> bool {
    asset.register.lifecycle != Lifecycle::Disposed
}

fn name(asset: &Asset) -> String {
    if asset.name.is_empty() {
        asset
            .ips
            .first()
            .cloned()
            .unwrap_or_else(|| asset.id.clone())
    } else {
        asset.name.clone()
    }
}

/// An asset in the warranty and end-of-life lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateRow {
    pub asset_id: AssetId,
    pub name: String,
    pub asset_tag: String,
    pub department: String,
    pub room: String,
    pub lifecycle: &'static str,
    /// The warranty end, or the end of life.
    pub date: Option<String>,
    /// Days from today to `date` (negative: past).
    pub days_left: Option<i64>,
    /// Why it is on the end-of-life list: `age` or `retired`.
    pub reason: &'static str,
}

fn row(asset: &Asset, date: Option<Date>, today: Date, reason: &'static str) -> DateRow {
    DateRow {
        asset_id: asset.id.clone(),
        name: name(asset),
        asset_tag: asset.register.asset_tag.clone(),
        department: asset.register.department.clone(),
        room: asset.register.room.clone(),
        lifecycle: asset.register.lifecycle.as_str(),
        date: date.map(iso_date::format),
        days_left: date.map(|d| (d - today).whole_days()),
        reason,
    }
}

/// Warranties ending within `within_days` of `today` (soonest first), and those already
/// ended (most recent first). Retired and disposed assets are left out.
pub fn warranties<'a>(
    assets: impl IntoIterator<Item = &'a Asset>,
    today: Date,
    within_days: i64,
) -> (Vec<DateRow>, Vec<DateRow>) {
    let mut soon = Vec::new();
    let mut ended = Vec::new();
    for asset in assets {
        if matches!(
            asset.register.lifecycle,
            Lifecycle::Retired | Lifecycle::Disposed
        ) {
            continue;
        }
        let Some(end) = asset.register.warranty_end else {
            continue;
        };
        let left = (end - today).whole_days();
        if left < 0 {
            ended.push(row(asset, Some(end), today, "warranty"));
        } else if left <= within_days {
            soon.push(row(asset, Some(end), today, "warranty"));
        }
    }
    soon.sort_by(|a, b| a.date.cmp(&b.date).then_with(|| a.name.cmp(&b.name)));
    ended.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.name.cmp(&b.name)));
    (soon, ended)
}

/// The day `years` after `date` (29 February becomes 28 February).
pub fn add_years(date: Date, years: u32) -> Date {
    let year = date
        .year()
        .saturating_add(i32::try_from(years).unwrap_or(i32::MAX));
    date.replace_year(year)
        .or_else(|_| date.replace_day(28).and_then(|d| d.replace_year(year)))
        .unwrap_or(Date::MAX)
}

/// Assets at (or within `within_days` of) their end of life — purchase date +
/// `lifespan_years` — and retired ones, earliest first; disposed assets are gone.
pub fn end_of_life<'a>(
    assets: impl IntoIterator<Item = &'a Asset>,
    today: Date,
    lifespan_years: u32,
    within_days: i64,
) -> Vec<DateRow> {
    let mut out = Vec::new();
    for asset in assets {
        let end = asset
            .register
            .purchase_date
            .map(|d| add_years(d, lifespan_years));
        match asset.register.lifecycle {
            Lifecycle::Disposed => {}
            Lifecycle::Retired => out.push(row(asset, end, today, "retired")),
            _ => {
                if let Some(end) = end
                    && (end - today).whole_days() <= within_days
                {
                    out.push(row(asset, Some(end), today, "age"));
                }
            }
        }
    }
    out.sort_by(|a, b| {
        a.date
            .is_none()
            .cmp(&b.date.is_none())
            .then_with(|| a.date.cmp(&b.date))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// One department's or room's share of what the school's devices cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostGroup {
    /// The department or room; "" for assets without one.
    pub name: String,
    pub assets: usize,
    /// Assets with a cost recorded, and their sum in pence.
    pub costed: usize,
    pub total_pence: i64,
    /// Assets without a cost recorded (not in the sum).
    pub uncosted: usize,
}

/// Which register field [`costs`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Department,
    Room,
}

impl GroupBy {
    fn key(self, fields: &RegisterFields) -> String {
        match self {
            GroupBy::Department => fields.department.trim().to_owned(),
            GroupBy::Room => {
                // A room is only unique with its building and site.
                let parts: Vec<&str> = [&fields.site, &fields.building, &fields.room]
                    .into_iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect();
                if fields.room.trim().is_empty() {
                    String::new()
                } else {
                    parts.join(" / ")
                }
            }
        }
    }
}

/// Cost per group, largest sum first (then by name); disposed assets are left out.
pub fn costs<'a>(assets: impl IntoIterator<Item = &'a Asset>, by: GroupBy) -> Vec<CostGroup> {
    let mut groups: BTreeMap<String, CostGroup> = BTreeMap::new();
    for asset in assets.into_iter().filter(|a| held(a)) {
        let key = by.key(&asset.register);
        let group = groups.entry(key.clone()).or_insert_with(|| CostGroup {
            name: key,
            assets: 0,
            costed: 0,
            total_pence: 0,
            uncosted: 0,
        });
        group.assets += 1;
        match asset.register.cost_pence {
            Some(pence) => {
                group.costed += 1;
                group.total_pence = group.total_pence.saturating_add(pence);
            }
            None => group.uncosted += 1,
        }
    }
    let mut out: Vec<CostGroup> = groups.into_values().collect();
    out.sort_by(|a, b| {
        b.total_pence
            .cmp(&a.total_pence)
            .then_with(|| a.name.is_empty().cmp(&b.name.is_empty()))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// Pence as money: `1234567` → `12,345.67`.
pub fn money(pence: i64) -> String {
    let sign = if pence < 0 { "-" } else { "" };
    let abs = pence.unsigned_abs();
    let units = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{:02}", abs % 100)
}

/// A month as `YYYY-MM`.
pub fn month_of(at: OffsetDateTime) -> String {
    format!("{:04}-{:02}", at.year(), u8::from(at.month()))
}

/// The `n` months up to and including `at`'s, newest first.
pub fn months_back(at: OffsetDateTime, n: usize) -> Vec<String> {
    let (mut year, mut month) = (at.year(), u8::from(at.month()));
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(format!("{year:04}-{month:02}"));
        if month == 1 {
            month = 12;
            year -= 1;
        } else {
            month -= 1;
        }
    }
    out
}

pub fn month_key(asset: &str, month: &str) -> String {
    format!("pages.month/{asset}/{month}")
}

pub fn last_key(asset: &str) -> String {
    format!("pages.last/{asset}")
}

/// More pages than this between two sweeps is not printing but a counter that jumped (a
/// board swapped in from another printer): the sweep only moves the baseline.
pub const MAX_PAGES_PER_SWEEP: u64 = 1_000_000;

/// Pages printed since the previous counter reading: the difference; after a counter that
/// went backwards (reset, or the printer replaced under the same asset) the pages since the
/// reset (the new reading); nothing for the first reading or an implausible jump.
pub fn pages_between(previous: Option<u64>, now: u64) -> u64 {
    let delta = match previous {
        None => 0,
        Some(before) if now >= before => now - before,
        Some(_) => now,
    };
    if delta > MAX_PAGES_PER_SWEEP {
        0
    } else {
        delta
    }
}

/// Writer side: adds this sweep's pages to each printer's month, as `meta` writes in the
/// sweep's write set. Reads the previous values from the store (or from `meta` itself, when
/// one batch merges two sweeps).
pub fn count_pages(
    store: &dyn Store,
    at: OffsetDateTime,
    snmp: &[(AssetId, SnmpSnapshot)],
    meta: &mut Vec<(String, u64)>,
) -> Result<(), StoreError> {
    let month = month_of(at);
    for (asset, snapshot) in snmp {
        let Some(count) = snapshot.page_count else {
            continue;
        };
        let read = |key: &str, meta: &Vec<(String, u64)>| -> Result<Option<u64>, StoreError> {
            match meta.iter().rev().find(|(k, _)| k == key) {
                Some((_, v)) => Ok(Some(*v)),
                None => store.meta(key),
            }
        };
        let last = last_key(asset);
        let previous = read(&last, meta)?;
        let pages = pages_between(previous, count);
        if pages > 0 {
            let key = month_key(asset, &month);
            let sum = read(&key, meta)?.unwrap_or(0).saturating_add(pages);
            meta.push((key, sum));
        }
        if previous != Some(count) {
            meta.push((last, count));
        }
    }
    Ok(())
}

/// A printer's pages in each of `months` (as [`months_back`] gives them).
pub fn monthly_pages(
    store: &dyn Store,
    asset: &str,
    months: &[String],
) -> Result<Vec<(String, u64)>, StoreError> {
    months
        .iter()
        .map(|m| Ok((m.clone(), store.meta(&month_key(asset, m))?.unwrap_or(0))))
        .collect()
}

/// What a device really costs: its incidents and their open time, and its time in repair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairRow {
    pub asset_id: AssetId,
    pub name: String,
    pub asset_tag: String,
    pub lifecycle: &'static str,
    pub cost_pence: Option<i64>,
    pub incidents: usize,
    /// Still open (not resolved or closed).
    pub open: usize,
    /// Sum over its incidents of opened → resolved (or now).
    pub open_seconds: i64,
    /// Time spent in lifecycle `in-repair` (from the register's change records).
    pub in_repair_seconds: i64,
}

/// Seconds an asset spent in `in-repair`, from its lifecycle change records (oldest first
/// or not: they are sorted here) and its lifecycle now.
pub fn in_repair_seconds(changes: &[&Change], now_state: Lifecycle, now: OffsetDateTime) -> i64 {
    let mut changes: Vec<&&Change> = changes
        .iter()
        .filter(|c| c.field == "lifecycle" || c.field == "register.lifecycle")
        .collect();
    changes.sort_by_key(|c| c.at);
    let in_repair = |v: &Option<String>| {
        v.as_deref()
            .and_then(Lifecycle::parse)
            .is_some_and(|l| l == Lifecycle::InRepair)
    };
    let mut total = 0i64;
    let mut since: Option<OffsetDateTime> = None;
    for change in changes {
        if in_repair(&change.after) {
            since.get_or_insert(change.at);
        } else if let Some(start) = since.take() {
            total += (change.at - start).whole_seconds().max(0);
        } else if in_repair(&change.before) {
            // In repair before the first record we have: counted from nothing we know.
        }
    }
    if now_state == Lifecycle::InRepair
        && let Some(start) = since
    {
        total += (now - start).whole_seconds().max(0);
    }
    total
}

/// Incidents that are reminders about paperwork, not faults: they are no repair and cost the
/// device nothing (`rules::warranty`, `rules::certificates`).
pub const NOT_REPAIRS: [&str; 2] = ["warranty_expiry", "certificate_expiry"];

/// Every asset with incidents (other than [`NOT_REPAIRS`]) or time in repair, the costliest
/// first (time in repair and open time, then incident count).
pub fn repairs<'a>(
    assets: impl IntoIterator<Item = &'a Asset>,
    incidents: impl IntoIterator<Item = &'a Incident>,
    in_repair: &HashMap<AssetId, i64>,
    now: OffsetDateTime,
) -> Vec<RepairRow> {
    let mut per: HashMap<&str, (usize, usize, i64)> = HashMap::new();
    for incident in incidents {
        if NOT_REPAIRS.contains(&incident.rule.as_str()) {
            continue;
        }
        let entry = per.entry(incident.asset_id.as_str()).or_default();
        entry.0 += 1;
        let end = incident.resolved_at.or(incident.closed_at);
        if end.is_none() {
            entry.1 += 1;
        }
        entry.2 += (end.unwrap_or(now) - incident.opened_at)
            .whole_seconds()
            .max(0);
    }
    let mut out: Vec<RepairRow> = assets
        .into_iter()
        .filter_map(|asset| {
            let (count, open, seconds) = per.get(asset.id.as_str()).copied().unwrap_or_default();
            let repair = in_repair.get(&asset.id).copied().unwrap_or(0);
            (count > 0 || repair > 0).then(|| RepairRow {
                asset_id: asset.id.clone(),
                name: name(asset),
                asset_tag: asset.register.asset_tag.clone(),
                lifecycle: asset.register.lifecycle.as_str(),
                cost_pence: asset.register.cost_pence,
                incidents: count,
                open,
                open_seconds: seconds,
                in_repair_seconds: repair,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (b.in_repair_seconds + b.open_seconds)
            .cmp(&(a.in_repair_seconds + a.open_seconds))
            .then_with(|| b.incidents.cmp(&a.incidents))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, WriteSet};
    use time::macros::{date, datetime};

    fn asset(id: &str, fields: RegisterFields) -> Asset {
        let mut a: Asset = serde_json::from_value(serde_json::json!({
            "id": id, "kind": "pc", "name": id.to_uppercase(), "hostname": "", "ips": [], "macs": [],
            "vendor": "", "model": "", "serial": "", "smbios_uuid": "", "machine_id": "", "os": "",
            "sources": [], "first_seen": "2026-01-01T00:00:00Z", "agent_ids": [],
            "identity_notes": [], "partial": [], "clock_suspect": false, "classification": ""
        }))
        .expect("asset");
        a.register = fields;
        a
    }

    fn fields(f: impl FnOnce(&mut RegisterFields)) -> RegisterFields {
        let mut r = RegisterFields::default();
        f(&mut r);
        r
    }

    const TODAY: Date = date!(2026 - 12 - 02);

    #[test]
    fn warranties_soon_and_ended_and_retired_left_out() {
        let assets = [
            asset(
                "a",
                fields(|r| r.warranty_end = Some(date!(2026 - 12 - 20))),
            ),
            asset(
                "b",
                fields(|r| r.warranty_end = Some(date!(2027 - 06 - 01))),
            ),
            asset(
                "c",
                fields(|r| r.warranty_end = Some(date!(2026 - 11 - 01))),
            ),
            asset(
                "d",
                fields(|r| {
                    r.warranty_end = Some(date!(2026 - 12 - 03));
                    r.lifecycle = Lifecycle::Retired;
                }),
            ),
            asset("e", fields(|r| r.warranty_end = Some(TODAY))),
            asset("f", RegisterFields::default()),
        ];
        let (soon, ended) = warranties(&assets, TODAY, 30);
        let ids = |rows: &[DateRow]| rows.iter().map(|r| r.asset_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&soon), ["e", "a"]);
        assert_eq!(soon[1].days_left, Some(18));
        assert_eq!(ids(&ended), ["c"]);
        assert_eq!(ended[0].days_left, Some(-31));
    }

    #[test]
    fn end_of_life_by_age_or_retirement() {
        let assets = [
            asset(
                "old",
                fields(|r| r.purchase_date = Some(date!(2020 - 09 - 01))),
            ),
            asset(
                "new",
                fields(|r| r.purchase_date = Some(date!(2025 - 09 - 01))),
            ),
            asset(
                "leap",
                fields(|r| r.purchase_date = Some(date!(2020 - 02 - 29))),
            ),
            asset("ret", fields(|r| r.lifecycle = Lifecycle::Retired)),
            asset(
                "gone",
                fields(|r| {
                    r.lifecycle = Lifecycle::Disposed;
                    r.purchase_date = Some(date!(2010 - 01 - 01));
                }),
            ),
        ];
        let rows = end_of_life(&assets, TODAY, 5, 0);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.asset_id.as_str(), r.date.as_deref(), r.reason))
            .collect();
        assert_eq!(
            got,
            [
                ("leap", Some("2025-02-28"), "age"),
                ("old", Some("2025-09-01"), "age"),
                ("ret", None, "retired"),
            ]
        );
        assert_eq!(
            end_of_life(&assets, TODAY, 1, 0).len(),
            4,
            "a shorter lifespan catches `new`"
        );
    }

    #[test]
    fn costs_per_department_and_room_with_uncosted_apart() {
        let assets = [
            asset(
                "a",
                fields(|r| {
                    r.department = "Science".into();
                    r.room = "S1".into();
                    r.cost_pence = Some(50_000);
                }),
            ),
            asset(
                "b",
                fields(|r| {
                    r.department = "Science".into();
                    r.room = "S2".into();
                    r.cost_pence = Some(25_050);
                }),
            ),
            asset(
                "c",
                fields(|r| {
                    r.department = "Science".into();
                    r.room = "S2".into();
                }),
            ),
            asset(
                "d",
                fields(|r| {
                    r.department = "Maths".into();
                    r.building = "Main".into();
                    r.room = "M1".into();
                    r.cost_pence = Some(99_999);
                }),
            ),
            asset("e", fields(|r| r.cost_pence = Some(1))),
            asset(
                "f",
                fields(|r| {
                    r.department = "Maths".into();
                    r.cost_pence = Some(1_000_000);
                    r.lifecycle = Lifecycle::Disposed;
                }),
            ),
        ];
        let by_department = costs(&assets, GroupBy::Department);
        let got: Vec<_> = by_department
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.assets,
                    g.costed,
                    g.total_pence,
                    g.uncosted,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("Maths", 1, 1, 99_999, 0),
                ("Science", 3, 2, 75_050, 1),
                ("", 1, 1, 1, 0)
            ]
        );
        let by_room = costs(&assets, GroupBy::Room);
        let got: Vec<_> = by_room
            .iter()
            .map(|g| (g.name.as_str(), g.total_pence))
            .collect();
        assert_eq!(
            got,
            [
                ("Main / M1", 99_999),
                ("S1", 50_000),
                ("S2", 25_050),
                ("", 1)
            ]
        );
        assert_eq!(money(123_456_789), "1,234,567.89");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-100_000), "-1,000.00");
    }

    #[test]
    fn pages_per_month_survive_resets_and_two_sweeps_in_one_batch() {
        assert_eq!(pages_between(None, 5000), 0);
        assert_eq!(pages_between(Some(5000), 5120), 120);
        assert_eq!(
            pages_between(Some(5000), 30),
            30,
            "reset: pages since the reset"
        );
        assert_eq!(
            pages_between(Some(5), 50_000_000),
            0,
            "a jump is not printing"
        );
        let store = MemoryStore::default();
        let printer = |count: u64| {
            let s = SnmpSnapshot {
                page_count: Some(count),
                ..SnmpSnapshot::default()
            };
            vec![("p1".to_owned(), s)]
        };
        let sweep = |at, count, store: &MemoryStore| {
            let mut set = WriteSet::default();
            count_pages(store, at, &printer(count), &mut set.meta).expect("count");
            store.commit(set).expect("commit");
        };
        sweep(datetime!(2026-11-30 10:00 UTC), 1000, &store);
        sweep(datetime!(2026-11-30 11:00 UTC), 1100, &store);
        sweep(datetime!(2026-12-01 09:00 UTC), 1150, &store);
        sweep(datetime!(2026-12-01 10:00 UTC), 20, &store);
        let mut set = WriteSet::default();
        count_pages(
            &store,
            datetime!(2026-12-02 10:00 UTC),
            &printer(25),
            &mut set.meta,
        )
        .expect("count");
        count_pages(
            &store,
            datetime!(2026-12-02 11:00 UTC),
            &printer(40),
            &mut set.meta,
        )
        .expect("count");
        store.commit(set).expect("commit");
        let months = months_back(datetime!(2026-12-02 12:00 UTC), 3);
        assert_eq!(months, ["2026-12", "2026-11", "2026-10"]);
        assert_eq!(
            monthly_pages(&store, "p1", &months).expect("read"),
            [
                ("2026-12".to_owned(), 50 + 20 + 20),
                ("2026-11".to_owned(), 100),
                ("2026-10".to_owned(), 0)
            ]
        );
        assert_eq!(
            months_back(datetime!(2026-01-15 00:00 UTC), 2),
            ["2026-01", "2025-12"]
        );
    }

    #[test]
    fn repairs_add_incident_time_and_time_in_repair() {
        let now = datetime!(2026-12-02 12:00 UTC);
        let change = |at, before: &str, after: &str| Change {
            id: format!("{at}"),
            asset_id: "a".into(),
            at,
            kind: "changed".into(),
            field: "lifecycle".into(),
            before: Some(before.into()),
            after: Some(after.into()),
            clock_suspect: false,
            expected_by: None,
            author: None,
        };
        let changes = [
            change(datetime!(2026-11-01 12:00 UTC), "deployed", "in-repair"),
            change(datetime!(2026-11-03 12:00 UTC), "in-repair", "deployed"),
            change(datetime!(2026-12-01 12:00 UTC), "deployed", "in-repair"),
        ];
        let refs: Vec<&Change> = changes.iter().collect();
        assert_eq!(
            in_repair_seconds(&refs, Lifecycle::InRepair, now),
            3 * 86_400
        );
        assert_eq!(
            in_repair_seconds(&refs, Lifecycle::Deployed, now),
            2 * 86_400
        );
        let incident = |asset: &str, opened, resolved: Option<OffsetDateTime>| {
            let mut i: Incident = serde_json::from_value(serde_json::json!({
                "id": format!("{asset}{opened}"), "number": "INC1", "asset_id": asset,
                "asset_name": "", "rule": "r", "title": "t", "description": "",
                "impact": 3, "urgency": 3, "priority": 5, "state": "new",
                "opened_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
                "occurrences": 1, "notes": []
            }))
            .expect("incident");
            i.opened_at = opened;
            i.resolved_at = resolved;
            i
        };
        let mut notice = incident("c", datetime!(2026-11-01 10:00 UTC), None);
        notice.rule = "warranty_expiry".into();
        let incidents = [
            notice,
            incident("a", datetime!(2026-12-02 10:00 UTC), None),
            incident(
                "b",
                datetime!(2026-11-02 10:00 UTC),
                Some(datetime!(2026-11-02 11:00 UTC)),
            ),
            incident(
                "b",
                datetime!(2026-11-03 10:00 UTC),
                Some(datetime!(2026-11-03 10:30 UTC)),
            ),
        ];
        let assets = [
            asset("a", RegisterFields::default()),
            asset("b", RegisterFields::default()),
            asset("c", RegisterFields::default()),
        ];
        let repair: HashMap<AssetId, i64> = [("a".to_owned(), 3 * 86_400)].into_iter().collect();
        let rows = repairs(&assets, &incidents, &repair, now);
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.asset_id.as_str(),
                    r.incidents,
                    r.open,
                    r.open_seconds,
                    r.in_repair_seconds,
                )
            })
            .collect();
        assert_eq!(
            got,
            [("a", 1, 1, 7200, 3 * 86_400), ("b", 2, 0, 5400, 0)],
            "c's warranty notice is no repair"
        );
    }
}
