//! `/incidents`, `/problems`: the service desk's list, and the technician's actions, which go
//! through the register writer so they are ordered with everything the rules do.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, blocking, rejected};
use crate::incidents::{Action, ActionError};
use crate::model::{Incident, IncidentState};
use crate::register::Job;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<String>,
    asset: Option<String>,
}

/// The incident as the API shows it (internal bookkeeping left out).
pub fn view(incident: &Incident) -> Value {
    let mut value = serde_json::to_value(incident).expect("incident serialises");
    if let Some(object) = value.as_object_mut() {
        object.remove("transitions");
        object.remove("clear_since");
    }
    value
}

pub async fn list(
    State(state): State<ApiState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let status = params.status.unwrap_or_else(|| "open".to_owned());
    let keep: fn(IncidentState) -> bool = match status.as_str() {
        "open" => IncidentState::is_open,
        "resolved" => |s| matches!(s, IncidentState::Resolved | IncidentState::Closed),
        "all" => |_| true,
        other => {
            return Err(ApiError::invalid(format!(
                "status {other:?} is not open, resolved or all"
            )));
        }
    };
    let store = state.store.clone();
    let mut incidents = blocking(move || Ok(store.incidents()?)).await?;
    incidents.retain(|i| keep(i.state) && params.asset.as_ref().is_none_or(|a| *a == i.asset_id));
    // Most urgent first, then newest.
    incidents.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| b.opened_at.cmp(&a.opened_at))
    });
    Ok(Json(incidents.iter().map(view).collect()))
}

pub async fn one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let key = id.clone();
    let found = blocking(move || {
        Ok(store
            .incidents()?
            .into_iter()
            .find(|i| i.id == key || i.number.eq_ignore_ascii_case(&key)))
    })
    .await?;
    found
        .map(|i| Json(view(&i)))
        .ok_or_else(|| ApiError::not_found(format!("incident {id}")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    by: Option<String>,
    text: Option<String>,
}

/// An optional JSON body: empty means defaults; anything else must parse.
fn body(payload: Result<Bytes, BytesRejection>) -> Result<ActionBody, ApiError> {
    let bytes = payload.map_err(|r| rejected(r.status(), r.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

pub async fn ack(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    payload: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body(payload)?;
    act(
        &state,
        id,
        Action::Acknowledge {
            by: body.by.unwrap_or_else(|| "technician".to_owned()),
        },
    )
    .await
}

pub async fn resolve(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    payload: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body(payload)?;
    act(
        &state,
        id,
        Action::Resolve {
            by: body.by.unwrap_or_else(|| "technician".to_owned()),
            text: body.text,
        },
    )
    .await
}

pub async fn note(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    payload: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body(payload)?;
    let text = body
        .text
        .ok_or_else(|| ApiError::invalid("a note needs {\"text\": \"...\"}"))?;
    act(
        &state,
        id,
        Action::Note {
            by: body.by.unwrap_or_else(|| "technician".to_owned()),
            text,
        },
    )
    .await
}

async fn act(state: &ApiState, id: String, action: Action) -> Result<Json<Value>, ApiError> {
    let incident = ask(state, |reply| Job::Act { id, action, reply }).await?;
    Ok(Json(view(&incident)))
}

/// Sends a job to the register writer and waits for its outcome, once durable.
async fn ask<T>(
    state: &ApiState,
    job: impl FnOnce(crate::register::Reply<Result<T, ActionError>>) -> Job,
) -> Result<T, ApiError> {
    Ok(state.register.ask(job).await??)
}

pub async fn problems(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let problems = blocking(move || Ok(store.problems()?)).await?;
    Ok(Json(json!(problems)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemBody {
    root_cause: Option<String>,
    known_error: Option<bool>,
}

pub async fn update_problem(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    payload: Result<Json<ProblemBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = payload.map_err(|r| rejected(r.status(), r.body_text()))?;
    let problem = ask(&state, |reply| Job::Problem {
        id,
        root_cause: body.root_cause,
        known_error: body.known_error,
        reply,
    })
    .await?;
    Ok(Json(json!(problem)))
}

pub async fn outbox(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let entries = blocking(move || Ok(store.outbox()?)).await?;
    Ok(Json(crate::alerts::outbox_view(&entries, 500)))
}
