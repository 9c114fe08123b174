//! The JSON API under `/api/v1` (and, later, the dashboard).
//!
//! Every route but `/api/v1/health` wants `Authorization: Bearer <api-token>`. Handlers read
//! through the typed [`Store`] in `spawn_blocking` (sled scans block) and answer errors as
//! `{"error": "..."}` with a fitting status. `serve` runs until its cancellation token fires.

mod assets;
mod incidents;
mod tracking;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::ingest::Agents;
use crate::store::{Store, StoreError};

/// What handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub agents: Arc<Agents>,
    pub api_token: Arc<str>,
    pub stale_after: Duration,
    /// A ping verdict older than this no longer decides the status.
    pub reach_stale_after: Duration,
    /// School hours for availability (24/7 when not configured).
    pub school_hours: std::sync::Arc<crate::track::SchoolHours>,
    /// For actions that change the register (incident actions).
    pub register: crate::register::Register,
}

/// An API error: a status and a sentence.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "API read failed");
        Self(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unavailable".to_owned(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

/// Runs blocking store work off the async threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "request handler failed"))?
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/assets", get(assets::list))
        .route("/assets/{id}", get(assets::one))
        .route("/changes", get(assets::changes))
        .route("/capacity", get(assets::capacity))
        .route("/incidents", get(incidents::list))
        .route("/incidents/{id}", get(incidents::one))
        .route("/incidents/{id}/ack", post(incidents::ack))
        .route("/incidents/{id}/resolve", post(incidents::resolve))
        .route("/incidents/{id}/note", post(incidents::note))
        .route("/problems", get(incidents::problems))
        .route("/availability", get(tracking::availability))
        .route("/outbox", get(incidents::outbox))
        .route("/problems/{id}", post(incidents::update_problem))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route(
            "/health",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        );
    Router::new()
        .nest("/api/v1", api)
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = presented.is_some_and(|p| {
        p.len() == state.api_token.len()
            && p.bytes()
                .zip(state.api_token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        next.run(request).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response()
    }
}

/// Serves the API on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
