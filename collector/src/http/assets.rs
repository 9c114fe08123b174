//! `/assets`, `/assets/{id}` and `/changes`: the asset register and its history.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use caretaker_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{ApiError, ApiState, blocking};
use crate::model::{Asset, Change, ReachSample, Status};
use crate::store::ChangeQuery;

/// An asset as the list shows it: the register's fields plus derived `status`/`last_seen`.
#[derive(Serialize)]
pub struct AssetView {
    #[serde(flatten)]
    asset: Asset,
    status: Status,
    #[serde(with = "time::serde::rfc3339::option")]
    last_seen: Option<OffsetDateTime>,
}

/// `seen`: last contact recorded in the store; `heard`: agents heard since this collector
/// started (taken once per request, not per asset).
fn view(
    state: &ApiState,
    asset: Asset,
    seen: &HashMap<String, OffsetDateTime>,
    heard: &HashMap<String, OffsetDateTime>,
    reach: Option<ReachSample>,
) -> AssetView {
    let (status, last_seen) = crate::web::catalog::status_of(
        &asset,
        seen.get(&asset.id).copied(),
        heard,
        reach,
        state.stale_after,
        state.reach_stale_after,
        OffsetDateTime::now_utc(),
    );
    AssetView {
        asset,
        status,
        last_seen,
    }
}

/// Every asset, by name: the same query the dashboard's asset list runs.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<AssetView>>, ApiError> {
    let (rows, _) =
        crate::web::query::assets(&state, crate::web::query::AssetQuery::default()).await?;
    Ok(Json(
        rows.into_iter()
            .map(|l| AssetView {
                asset: l.asset,
                status: l.status,
                last_seen: l.last_seen,
            })
            .collect(),
    ))
}

pub async fn one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let key = id.clone();
    let (asset, seen, inventory, reach, snmp) = blocking(move || {
        Ok((
            store.asset(&key)?,
            store.last_seen()?,
            store.inventory(&key)?,
            store.latest_reach(&key)?,
            store.snmp(&key)?,
        ))
    })
    .await?;
    let asset = asset.ok_or_else(|| ApiError::not_found(format!("asset {id}")))?;
    let mut body = serde_json::to_value(view(
        &state,
        asset,
        &seen,
        &state.agents.last_heard(),
        reach,
    ))
    .expect("asset view serialises");
    let inventory = inventory.map(|r| r.inventory).unwrap_or_default();
    let object = body.as_object_mut().expect("asset view is an object");
    object.insert("hardware".into(), hardware(&inventory));
    object.insert(
        "software".into(),
        inventory
            .software
            .iter()
            .map(|s| {
                json!({"name": s.name, "version": s.version, "publisher": s.publisher,
                       "arch": s.arch, "source": s.source,
                       "installed_at": s.installed_at.as_ref().and_then(rfc3339)})
            })
            .collect(),
    );
    // The agent's view of the interfaces when there is one; SNMP's otherwise.
    let interfaces = if inventory.interfaces.is_empty() {
        snmp.as_ref()
            .map(|d| serde_json::to_value(&d.interfaces).expect("interfaces serialise"))
            .unwrap_or_else(|| json!([]))
    } else {
        inventory
            .interfaces
            .iter()
            .map(|n| {
                json!({"name": n.name, "mac": n.mac, "ipv4": n.ipv4, "ipv6": n.ipv6,
                   "speed_mbps": n.speed_mbps, "up": n.up, "virtual": n.r#virtual})
            })
            .collect()
    };
    object.insert("interfaces".into(), interfaces);
    object.insert(
        "supplies".into(),
        snmp.as_ref()
            .map(|d| serde_json::to_value(&d.supplies).expect("supplies serialise"))
            .unwrap_or_else(|| json!([])),
    );
    object.insert(
        "counters".into(),
        json!({
            "page_count": snmp.as_ref().and_then(|d| d.page_count),
            "interfaces": snmp.as_ref().map(|d| d.interfaces.len()),
        }),
    );
    if let Some(snmp) = snmp {
        object.insert(
            "snmp".into(),
            serde_json::to_value(snmp).expect("snapshot serialises"),
        );
    }
    Ok(Json(body))
}

fn rfc3339(ts: &prost_types::Timestamp) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp(ts.seconds).ok()?;
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn hardware(inventory: &v1::Inventory) -> Value {
    let hw = inventory.hardware.clone().unwrap_or_default();
    let system = inventory.system.clone().unwrap_or_default();
    json!({
        "vendor": hw.vendor, "model": hw.model, "serial": hw.serial, "smbios_uuid": hw.smbios_uuid,
        "chassis": hw.chassis,
        "bios": {"vendor": hw.bios_vendor, "version": hw.bios_version, "date": hw.bios_date},
        "board": {"vendor": hw.board_vendor, "model": hw.board_model, "serial": hw.board_serial},
        "cpu": {"model": hw.cpu_model, "cores": hw.cpu_cores, "threads": hw.cpu_threads},
        "ram_bytes": hw.ram_bytes,
        "os": {"name": system.os_name, "version": system.os_version, "build": system.os_build,
               "kernel": system.kernel, "arch": system.arch, "domain": system.domain,
               "boot_time": system.boot_time.as_ref().and_then(rfc3339)},
        "disks": inventory.disks.iter().map(|d| json!({"name": d.name, "model": d.model,
            "serial": d.serial, "size_bytes": d.size_bytes, "kind": d.kind, "removable": d.removable}))
            .collect::<Vec<_>>(),
        "volumes": inventory.volumes.iter().map(|v| json!({"mount": v.mount, "device": v.device,
            "file_system": v.file_system, "total_bytes": v.total_bytes, "free_bytes": v.free_bytes,
            "removable": v.removable})).collect::<Vec<_>>(),
        "os_domain_type": system.domain_type,
        "last_update_at": system.last_update_at.as_ref().and_then(rfc3339),
        "antivirus": inventory.antivirus.iter().map(|a| json!({"name": a.name,
            "enabled": a.enabled, "up_to_date": a.up_to_date})).collect::<Vec<_>>(),
        "firewalls": inventory.firewalls.iter().map(|f| json!({"name": f.name,
            "profile": f.profile, "enabled": f.enabled})).collect::<Vec<_>>(),
        "encryption": inventory.encryption.iter().map(|e| json!({"mount": e.mount,
            "method": e.method, "protection": e.protection, "conversion": e.conversion}))
            .collect::<Vec<_>>(),
        "hotfixes": inventory.hotfixes.iter().map(|h| json!({"id": h.id,
            "description": h.description, "installed_at": h.installed_at.as_ref().and_then(rfc3339)}))
            .collect::<Vec<_>>(),
        "batteries": inventory.batteries.iter().map(|b| json!({"name": b.name,
            "chemistry": b.chemistry, "health_percent": b.health_percent,
            "cycle_count": b.cycle_count})).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeParams {
    asset: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    since: Option<OffsetDateTime>,
    limit: Option<usize>,
}

pub async fn changes(
    State(state): State<ApiState>,
    params: Result<Query<ChangeParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Change>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = params.limit.unwrap_or(1000);
    if limit == 0 || limit > 100_000 {
        return Err(ApiError::invalid("limit must be between 1 and 100000"));
    }
    let store = state.store.clone();
    let query = ChangeQuery {
        asset: params.asset.clone(),
        since: params.since,
        limit,
    };
    let (changes, exists) = blocking(move || {
        let exists = match &query.asset {
            Some(id) => store.asset(id)?.is_some(),
            None => true,
        };
        Ok((store.changes(&query)?, exists))
    })
    .await?;
    if !exists {
        return Err(ApiError::not_found(format!(
            "asset {}",
            params.asset.unwrap_or_default()
        )));
    }
    Ok(Json(changes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityParams {
    asset: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    since: Option<OffsetDateTime>,
    limit: Option<usize>,
}

/// Raw status samples of one asset, oldest first. Trends and forecasts come with the
/// capacity issue; the samples are what they will be computed from.
pub async fn capacity(
    State(state): State<ApiState>,
    params: Result<Query<CapacityParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = params.limit.unwrap_or(10_000);
    if limit == 0 || limit > 100_000 {
        return Err(ApiError::invalid("limit must be between 1 and 100000"));
    }
    let store = state.store.clone();
    let asset = params.asset.clone();
    let since = params
        .since
        .unwrap_or_else(|| OffsetDateTime::now_utc() - time::Duration::days(30));
    let (exists, samples, levels) = blocking(move || {
        let exists = store.asset(&asset)?.is_some();
        let far = OffsetDateTime::now_utc() + time::Duration::days(3650);
        Ok((
            exists,
            store.samples(&asset, since, far, limit)?,
            store.levels(&asset, since, far)?,
        ))
    })
    .await?;
    let now = OffsetDateTime::now_utc();
    let params_forecast = crate::track::ForecastParams::default();
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    // Volumes, memory and CPU: the latest use and, when the trend supports it, days until
    // full (or saturated).
    let mut volume_series: std::collections::BTreeMap<String, Vec<(OffsetDateTime, f64)>> =
        Default::default();
    let mut memory_series = Vec::new();
    let mut cpu_series = Vec::new();
    for sample in &samples {
        let point = crate::observe::status_point(sample.at, &sample.status);
        for (mount, used, _) in point.volumes {
            volume_series
                .entry(mount)
                .or_default()
                .push((sample.at, used));
        }
        if let Some(memory) = point.memory_percent {
            memory_series.push((sample.at, memory));
        }
        cpu_series.push((sample.at, point.cpu_percent));
    }
    let rising = |points: &[(OffsetDateTime, f64)], name: &str| {
        let forecast = crate::track::days_until(
            points,
            100.0,
            crate::track::Direction::Rising,
            now,
            &params_forecast,
        );
        json!({"used_percent": points.last().map(|p| p.1),
               name: forecast.as_ref().map(|f| f.days),
               "slope_percent_per_day": forecast.as_ref().map(|f| f.slope_per_day)})
    };
    let memory = (!memory_series.is_empty()).then(|| rising(&memory_series, "days_until_full"));
    let cpu = (!cpu_series.is_empty()).then(|| rising(&cpu_series, "days_until_saturated"));
    let volumes: Vec<Value> = volume_series
        .iter()
        .map(|(mount, points)| {
            let mut volume = rising(points, "days_until_full");
            volume["mount"] = json!(mount);
            volume
        })
        .collect();
    let mut supply_series: std::collections::BTreeMap<String, Vec<(OffsetDateTime, f64)>> =
        Default::default();
    for (at, values) in &levels {
        for (description, percent) in values {
            supply_series
                .entry(description.clone())
                .or_default()
                .push((*at, *percent));
        }
    }
    let supplies: Vec<Value> = supply_series
        .iter()
        .map(|(description, points)| {
            let forecast = crate::track::days_until(
                points,
                0.0,
                crate::track::Direction::Falling,
                now,
                &params_forecast,
            );
            json!({"description": description, "percent": points.last().map(|p| p.1),
                   "days_until_empty": forecast.as_ref().map(|f| f.days),
                   "slope_percent_per_day": forecast.as_ref().map(|f| f.slope_per_day),
                   "points": points.iter().map(|(t, p)| json!([rfc(*t), p])).collect::<Vec<_>>()})
        })
        .collect();
    if !exists {
        return Err(ApiError::not_found(format!("asset {}", params.asset)));
    }
    let samples: Vec<Value> = samples
        .into_iter()
        .map(|s| {
            let st = s.status;
            json!({
                "at": s.at.format(&time::format_description::well_known::Rfc3339).ok(),
                "seq": s.seq,
                "clock_suspect": s.clock_suspect,
                "uptime_secs": st.uptime_secs,
                "cpu_percent": st.cpu_percent,
                "load": [st.load1, st.load5, st.load15],
                "memory_total_bytes": st.memory_total_bytes,
                "memory_used_bytes": st.memory_used_bytes,
                "swap_total_bytes": st.swap_total_bytes,
                "swap_used_bytes": st.swap_used_bytes,
                "volumes": st.volumes.iter().map(|v| json!({"mount": v.mount,
                    "total_bytes": v.total_bytes, "free_bytes": v.free_bytes})).collect::<Vec<_>>(),
                "logged_on_users": st.logged_on_users,
                "journal_dropped": st.journal_dropped,
            })
        })
        .collect();
    Ok(Json(
        json!({ "asset_id": params.asset, "volumes": volumes, "memory": memory, "cpu": cpu,
               "supplies": supplies, "samples": samples }),
    ))
}
