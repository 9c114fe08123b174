//! `/availability`: up/down history, availability % around the clock and within school
//! hours, outages, MTBF and MTTR; computed on request from the stored ping verdicts and agent
//! status reports with the pure maths in `track`.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{ApiError, ApiState, blocking};
use crate::track::{self, SchoolHours};

/// A stored verdict stands for this long (see `track::VERDICT_MAX_GAP`).
const MAX_GAP: std::time::Duration = track::VERDICT_MAX_GAP;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityParams {
    asset: String,
    window: Option<String>,
}

pub async fn availability(
    State(state): State<ApiState>,
    params: Result<Query<AvailabilityParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let window = params.window.unwrap_or_else(|| "24h".to_owned());
    let span = match window.as_str() {
        "24h" => time::Duration::hours(24),
        "7d" => time::Duration::days(7),
        "30d" => time::Duration::days(30),
        other => {
            return Err(ApiError::invalid(format!(
                "window {other:?} is not 24h, 7d or 30d"
            )));
        }
    };
    let now = OffsetDateTime::now_utc();
    let from = now - span;
    let store = state.store.clone();
    let asset_id = params.asset.clone();
    let lookback = from - time::Duration::try_from(MAX_GAP).unwrap_or_default();
    let (asset, reach, status) = blocking(move || {
        Ok((
            store.asset(&asset_id)?,
            store.reach(
                &asset_id,
                lookback,
                now + time::Duration::minutes(1),
                200_000,
            )?,
            store.samples(
                &asset_id,
                lookback,
                now + time::Duration::minutes(1),
                200_000,
            )?,
        ))
    })
    .await?;
    let asset = asset.ok_or_else(|| ApiError::not_found(format!("asset {}", params.asset)))?;
    let samples = track::verdict_timeline(&reach, &status);
    let outages = track::outages(&samples, MAX_GAP);
    let in_window: Vec<_> = outages
        .iter()
        .filter(|o| o.end.is_none_or(|e| e > from))
        .collect();
    let (mtbf, mttr) = track::mtbf_mttr(&outages, from, now);
    let around = track::availability(&samples, from, now, MAX_GAP, &SchoolHours::always());
    let hours = state.ops.school_hours();
    let school =
        (!hours.is_always()).then(|| track::availability(&samples, from, now, MAX_GAP, &hours));
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    let figures = |a: &track::Availability| json!({"percent": a.percent, "up_secs": a.up_secs, "down_secs": a.down_secs, "unknown_secs": a.unknown_secs});
    Ok(Json(json!({
        "asset_id": asset.id,
        "name": asset.name,
        "window": window,
        "from": rfc(from),
        "to": rfc(now),
        "around_the_clock": figures(&around),
        "school_hours": school.as_ref().map(figures),
        "outages": in_window.iter().map(|o| json!({
            "start": rfc(o.start),
            "end": o.end.and_then(rfc),
            "duration_secs": o.duration(now).as_secs(),
            "unobserved_secs": o.unobserved.as_secs(),
        })).collect::<Vec<_>>(),
        "mtbf_secs": mtbf.map(|d| d.as_secs()),
        "mttr_secs": mttr.map(|d| d.as_secs()),
    })))
}
