//! Enrolment tokens, agent revocation and CA rotation for the CLI (`token`, `agent revoke`,
//! `ca rotate`): routes under `/api/v1`, acting on the collector's `Pki`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{ApiError, ApiState, blocking};
use crate::errors::{Failure, Kind};
use crate::pki::{TokenError, TokenRecord, rfc3339};

fn token_json(token: &TokenRecord, now: OffsetDateTime) -> Value {
    json!({
        "id": token.id,
        "label": token.label,
        "state": token.state(now),
        "created_at": rfc3339(token.created_at),
        "expires_at": token.expires_at.map(rfc3339),
        "max_uses": token.max_uses,
        "used": token.used,
        "revoked_at": token.revoked_at.map(rfc3339),
    })
}

pub async fn list_tokens(State(state): State<ApiState>) -> Json<Value> {
    let now = OffsetDateTime::now_utc();
    Json(Value::Array(
        state
            .pki
            .tokens()
            .iter()
            .map(|t| token_json(t, now))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    uses: Option<u32>,
    /// A duration such as `30d`.
    expires: Option<String>,
    #[serde(default)]
    label: String,
}

pub async fn create_token(
    State(state): State<ApiState>,
    Json(body): Json<NewToken>,
) -> Result<Json<Value>, ApiError> {
    let expires = body
        .expires
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| Failure::new(Kind::Invalid, format!("expires: {e}")))?;
    if body.uses == Some(0) {
        return Err(Failure::new(Kind::Invalid, "uses must be at least 1"));
    }
    if body.label.len() > 200 {
        return Err(Failure::new(
            Kind::Invalid,
            "label is longer than 200 bytes",
        ));
    }
    let pki = state.pki.clone();
    let (record, text) = blocking(move || {
        pki.create_token(body.uses, expires, &body.label)
            .map_err(|e| Failure::new(Kind::StoreUnavailable, e.to_string()))
    })
    .await?;
    let mut answer = token_json(&record, OffsetDateTime::now_utc());
    answer["token"] = text.into();
    tracing::info!(token = %record.id, label = %record.label, "Enrolment token created");
    Ok(Json(answer))
}

pub async fn revoke_token(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let pki = state.pki.clone();
    let record = blocking(move || {
        pki.revoke_token(&id).map_err(|e| match e {
            TokenError::Unknown(_) => Failure::not_found("token"),
            other => Failure::new(Kind::StoreUnavailable, other.to_string()),
        })
    })
    .await?;
    tracing::info!(token = %record.id, "Enrolment token revoked");
    Ok(Json(token_json(&record, OffsetDateTime::now_utc())))
}

pub async fn revoke_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !state.agents.knows(&id) {
        return Err(Failure::not_found("agent"));
    }
    let pki = state.pki.clone();
    let agent = id.clone();
    let certificates = blocking(move || {
        pki.revoke_agent(&agent)
            .map_err(|e| Failure::new(Kind::StoreUnavailable, e.to_string()))
    })
    .await?;
    Ok(Json(
        json!({"agent_id": id, "revoked": true, "certificates": certificates}),
    ))
}

pub async fn ca(State(state): State<ApiState>) -> Json<Value> {
    let cas = state.pki.cas();
    Json(json!({
        "fingerprint": state.pki.fingerprint(),
        "rotating": cas.len() > 1,
        "cas": cas.iter().map(|(fp, subject, not_after)| json!({
            "fingerprint": fp, "subject": subject, "not_after": rfc3339(*not_after)
        })).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    #[serde(default)]
    finish: bool,
}

pub async fn rotate(
    State(state): State<ApiState>,
    Json(body): Json<Rotate>,
) -> Result<Json<Value>, ApiError> {
    let pki = state.pki.clone();
    let fingerprint = blocking(move || {
        pki.rotate(body.finish).map_err(|e| match e {
            crate::pki::PkiError::NoRotation | crate::pki::PkiError::RotationUnderWay => {
                Failure::new(Kind::Conflict, e.to_string())
            }
            other => Failure::new(Kind::StoreUnavailable, other.to_string()),
        })
    })
    .await?;
    Ok(Json(
        json!({"fingerprint": fingerprint, "finished": body.finish}),
    ))
}
