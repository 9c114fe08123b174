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
use crate::model::Incident;
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

/// The same query the dashboard's incident list runs (no paging: every match).
pub async fn list(
    State(state): State<ApiState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let (incidents, _) = crate::web::query::incidents(
        &state,
        crate::web::query::IncidentQuery {
            status: params.status.unwrap_or_else(|| "open".to_owned()),
            asset: params.asset,
            ..Default::default()
        },
    )
    .await?;
    Ok(Json(incidents.iter().map(view).collect()))
}

/// One incident with its SLA clocks (`sla`: per clock its state, seconds counted, target
/// and seconds left; `paused` while on hold, when the deadline moves with the time held).
pub async fn one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let incident = crate::web::query::incident(&state, id.clone())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("incident {id}")))?;
    let a = crate::web::service_levels::assess(&state, &incident, time::OffsetDateTime::now_utc())
        .await;
    let clock = |m: crate::sla::clock::Measure| {
        json!({
            "state": m.state,
            "elapsed_seconds": m.elapsed.as_secs(),
            "target_seconds": m.target.map(|t| t.as_secs()),
            "left_seconds": m.left().map(|l| l.as_secs()),
            "stopped": m.stopped,
        })
    };
    let mut value = view(&incident);
    value["sla"] = json!({
        "response": clock(a.response),
        "resolution": clock(a.resolution),
        "on_hold_seconds": a.on_hold.as_secs(),
        "paused": incident.state == crate::model::IncidentState::OnHold,
    });
    Ok(Json(value))
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

/// `{"text": "waiting for a part"}` (the reason, required): the SLA clock pauses.
pub async fn hold(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    payload: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body(payload)?;
    let reason = body
        .text
        .ok_or_else(|| ApiError::invalid("putting on hold needs {\"text\": \"reason\"}"))?;
    act(
        &state,
        id,
        Action::Hold {
            by: body.by.unwrap_or_else(|| "technician".to_owned()),
            reason,
        },
    )
    .await
}

/// Takes an incident off hold (an optional `text` for the note): the SLA clock runs again.
pub async fn resume(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    payload: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body(payload)?;
    act(
        &state,
        id,
        Action::Resume {
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
    workaround: Option<String>,
    known_error: Option<bool>,
}

/// `GET /problems/{id}` (id or `PRB…` number): the problem, with its linked incidents'
/// numbers, states and titles.
pub async fn problem(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (store, web, wanted) = (state.store.clone(), state.web.clone(), id.clone());
    let found = blocking(move || {
        let Some(problem) = store
            .problems()?
            .into_iter()
            .find(|p| p.id == wanted || p.number.eq_ignore_ascii_case(&wanted))
        else {
            return Ok(None);
        };
        let incidents = web.catalog.read(|data| {
            problem
                .incident_ids
                .iter()
                .map(|id| match data.incidents.get(id) {
                    Some(i) => {
                        json!({"id": i.id, "number": i.number, "state": i.state, "title": i.title})
                    }
                    None => json!({"id": id}),
                })
                .collect::<Vec<_>>()
        })?;
        let mut value = json!(problem);
        value["incidents"] = json!(incidents);
        Ok(Some(value))
    })
    .await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("problem {id}")))
}

pub async fn update_problem(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    payload: Result<Json<ProblemBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = payload.map_err(|r| rejected(r.status(), r.body_text()))?;
    let problem = ask(&state, |reply| Job::Problem {
        id,
        update: crate::incidents::ProblemUpdate {
            root_cause: body.root_cause,
            workaround: body.workaround,
            known_error: body.known_error,
        },
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
