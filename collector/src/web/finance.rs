//! Financial Management's page, `/finance`: warranties ending soon and ended, end of life,
//! cost per department and per room, pages printed per printer per month, and repair
//! incidents per asset. [`report`] computes it once for the page and for the JSON API
//! (`/api/v1/finance`, `/api/v1/finance/{part}`).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::PageError;
use super::pages::{Nav, render, viewer};
use crate::errors::Failure;
use crate::finance::{self, CostGroup, DateRow, GroupBy, RepairRow};
use crate::http::{ApiState, blocking};
use crate::model::{AssetKind, Change, Lifecycle};
use crate::store::ChangeQuery;

/// How many months of page counts the report shows.
pub const MONTHS: usize = 6;
/// The lifecycle history the repair times are read from: at most this many change records
/// of the last year.
const CHANGE_SCAN: usize = 50_000;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    /// The warranty and end-of-life horizon in days (default: `warranty_notice_days`).
    pub days: Option<i64>,
}

/// Pages one printer printed per month, newest month first.
#[derive(Debug, Clone, Serialize)]
pub struct PrinterPages {
    pub asset_id: String,
    pub name: String,
    pub room: String,
    /// The page counter at the last sweep.
    pub counter: Option<u64>,
    pub months: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub today: String,
    pub days: i64,
    pub lifespan_years: u32,
    pub warranty_soon: Vec<DateRow>,
    pub warranty_ended: Vec<DateRow>,
    pub end_of_life: Vec<DateRow>,
    pub by_department: Vec<CostGroup>,
    pub by_room: Vec<CostGroup>,
    pub total_pence: i64,
    pub uncosted: usize,
    pub months: Vec<String>,
    pub pages: Vec<PrinterPages>,
    pub repairs: Vec<RepairRow>,
}

/// The whole report as of now.
pub async fn report(state: &ApiState, days: Option<i64>) -> Result<Report, Failure> {
    let (_, config) = state.ops.reloader.release_finance().await;
    let days = days
        .unwrap_or(i64::from(config.warranty_notice_days))
        .clamp(0, 3650);
    let web = state.web.clone();
    let store = state.store.clone();
    blocking(move || {
        let now = OffsetDateTime::now_utc();
        let today = now.date();
        let changes: Vec<Change> = store
            .changes(&ChangeQuery {
                asset: None,
                since: Some(now - time::Duration::days(366)),
                limit: CHANGE_SCAN,
            })?
            .into_iter()
            .filter(|c| c.field == "lifecycle" || c.field == "register.lifecycle")
            .collect();
        let mut per_asset: HashMap<&str, Vec<&Change>> = HashMap::new();
        for change in &changes {
            per_asset
                .entry(change.asset_id.as_str())
                .or_default()
                .push(change);
        }
        let months = finance::months_back(now, MONTHS);
        let mut report = web.catalog.read(|data| {
            let assets: Vec<&crate::model::Asset> =
                data.assets.values().map(|e| &e.asset).collect();
            let (warranty_soon, warranty_ended) =
                finance::warranties(assets.iter().copied(), today, days);
            let end_of_life =
                finance::end_of_life(assets.iter().copied(), today, config.lifespan_years, days);
            let by_department = finance::costs(assets.iter().copied(), GroupBy::Department);
            let by_room = finance::costs(assets.iter().copied(), GroupBy::Room);
            let in_repair: HashMap<String, i64> = assets
                .iter()
                .filter_map(|a| {
                    let list = per_asset
                        .get(a.id.as_str())
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    let seconds = finance::in_repair_seconds(list, a.register.lifecycle, now);
                    (seconds > 0).then(|| (a.id.clone(), seconds))
                })
                .collect();
            let repairs = finance::repairs(
                assets.iter().copied(),
                data.incidents.values(),
                &in_repair,
                now,
            );
            let printers: Vec<(String, String, String)> = data
                .assets
                .values()
                .filter(|e| {
                    e.asset.kind == AssetKind::Printer
                        && e.asset.register.lifecycle != Lifecycle::Disposed
                })
                .map(|e| {
                    let name = if e.asset.name.is_empty() {
                        e.asset.id.clone()
                    } else {
                        e.asset.name.clone()
                    };
                    let room = if e.asset.register.room.is_empty() {
                        e.location.clone()
                    } else {
                        e.asset.register.room.clone()
                    };
                    (e.asset.id.clone(), name, room)
                })
                .collect();
            Report {
                today: crate::model::register::iso_date::format(today),
                days,
                lifespan_years: config.lifespan_years,
                total_pence: by_department.iter().map(|g| g.total_pence).sum(),
                uncosted: by_department.iter().map(|g| g.uncosted).sum(),
                warranty_soon,
                warranty_ended,
                end_of_life,
                by_department,
                by_room,
                months: months.clone(),
                pages: printers
                    .into_iter()
                    .map(|(asset_id, name, room)| PrinterPages {
                        asset_id,
                        name,
                        room,
                        counter: None,
                        months: Vec::new(),
                    })
                    .collect(),
                repairs,
            }
        })?;
        for printer in &mut report.pages {
            printer.counter = store.meta(&finance::last_key(&printer.asset_id))?;
            printer.months = finance::monthly_pages(store.as_ref(), &printer.asset_id, &months)?;
        }
        report.pages.sort_by(|a, b| {
            let sum = |p: &PrinterPages| p.months.iter().map(|m| m.1).sum::<u64>();
            sum(b).cmp(&sum(a)).then_with(|| a.name.cmp(&b.name))
        });
        Ok(report)
    })
    .await
}

struct CostRow {
    name: String,
    assets: usize,
    costed: usize,
    total: String,
    uncosted: usize,
}

fn cost_rows(groups: &[CostGroup]) -> Vec<CostRow> {
    groups
        .iter()
        .map(|g| CostRow {
            name: if g.name.is_empty() {
                "(none recorded)".to_owned()
            } else {
                g.name.clone()
            },
            assets: g.assets,
            costed: g.costed,
            total: finance::money(g.total_pence),
            uncosted: g.uncosted,
        })
        .collect()
}

struct RepairView {
    asset_id: String,
    name: String,
    tag: String,
    lifecycle: &'static str,
    cost: String,
    incidents: usize,
    open: usize,
    open_time: String,
    repair_time: String,
}

#[derive(Template)]
#[template(path = "finance_overview.html")]
struct FinancePage {
    nav: Nav,
    r: Report,
    by_department: Vec<CostRow>,
    by_room: Vec<CostRow>,
    total: String,
    repairs: Vec<RepairView>,
}

fn span(seconds: i64) -> String {
    if seconds <= 0 {
        String::new()
    } else {
        crate::rules::human(time::Duration::seconds(seconds))
    }
}

pub async fn page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<Params>,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let r = report(&state, p.days).await?;
    Ok(render(&FinancePage {
        nav: Nav::of(&state.web, &viewer, "finance"),
        by_department: cost_rows(&r.by_department),
        by_room: cost_rows(&r.by_room),
        total: finance::money(r.total_pence),
        repairs: r
            .repairs
            .iter()
            .map(|x| RepairView {
                asset_id: x.asset_id.clone(),
                name: x.name.clone(),
                tag: x.asset_tag.clone(),
                lifecycle: x.lifecycle,
                cost: x.cost_pence.map(finance::money).unwrap_or_default(),
                incidents: x.incidents,
                open: x.open,
                open_time: span(x.open_seconds),
                repair_time: span(x.in_repair_seconds),
            })
            .collect(),
        r,
    }))
}
