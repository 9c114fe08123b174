//! `/software`, `/software/{title}` (Release Management) and `/finance`,
//! `/finance/{part}` (Financial Management): the same queries as the dashboard's
//! `/releases` and `/finance` pages (`web::releases`, `web::finance`).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::{ApiError, ApiState};
use crate::web::{finance, releases};

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct SoftwareParams {
    pub q: String,
}

/// Every title: versions with their install counts (assets listed on `/software/{title}`).
pub async fn software(
    State(state): State<ApiState>,
    Query(p): Query<SoftwareParams>,
) -> Result<Json<Value>, ApiError> {
    let all = releases::current(&state).await?;
    let list: Vec<Value> = crate::release::search(&all, &p.q)
        .into_iter()
        .map(|t| {
            json!({
                "title": t.name,
                "key": t.key,
                "installs": t.installs,
                "versions": t.versions.iter().map(|v| json!({"version": v.version, "count": v.count, "outdated": v.outdated})).collect::<Vec<_>>(),
                "minimum_version": t.minimum_version,
                "outdated": t.outdated.len(),
                "licences": t.licences,
                "over_deployed": t.over_deployed,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

/// One title with every version, the assets running it and the outdated installs.
pub async fn title(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let all = releases::current(&state).await?;
    let t = releases::find(&all, &key)
        .ok_or_else(|| ApiError::not_found(format!("no software title {key:?}")))?;
    Ok(Json(serde_json::to_value(t).unwrap_or(Value::Null)))
}

/// The whole finance report (`?days=N`: the warranty and end-of-life horizon).
pub async fn report(
    State(state): State<ApiState>,
    Query(p): Query<finance::Params>,
) -> Result<Json<Value>, ApiError> {
    let r = finance::report(&state, p.days).await?;
    Ok(Json(serde_json::to_value(r).unwrap_or(Value::Null)))
}

/// One part of it: `warranties`, `end-of-life`, `costs`, `pages`, `repairs`.
pub async fn part(
    State(state): State<ApiState>,
    Path(part): Path<String>,
    Query(p): Query<finance::Params>,
) -> Result<Json<Value>, ApiError> {
    let r = finance::report(&state, p.days).await?;
    let value = match part.as_str() {
        "warranties" => json!({"days": r.days, "soon": r.warranty_soon, "ended": r.warranty_ended}),
        "end-of-life" => {
            json!({"lifespan_years": r.lifespan_years, "days": r.days, "assets": r.end_of_life})
        }
        "costs" => {
            json!({"total_pence": r.total_pence, "uncosted": r.uncosted, "by_department": r.by_department, "by_room": r.by_room})
        }
        "pages" => json!({"months": r.months, "printers": r.pages}),
        "repairs" => json!({"assets": r.repairs}),
        other => {
            return Err(ApiError::not_found(format!(
                "no finance list {other:?} (warranties, end-of-life, costs, pages, repairs)"
            )));
        }
    };
    Ok(Json(value))
}
