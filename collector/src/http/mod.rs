//! The JSON API under `/api/v1` (and, later, the dashboard).
//!
//! Every route but `/api/v1/health` wants `Authorization: Bearer <api-token>`. Handlers read
//! through the typed [`Store`] in `spawn_blocking` (sled scans block) and answer errors as
//! `{"error": "..."}` with a fitting status. `serve` runs until its cancellation token fires.

mod assets;
pub mod csv;
mod incidents;
mod ops;
mod pki;
pub mod register;
mod release_finance;
pub mod tls;
mod tracking;

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

use crate::agents::Agents;
use crate::errors::{Failure, Kind};
use crate::store::Store;

/// Runs blocking store work off the async threads (sled scans block).
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::store::blocking(work).await
}

/// What handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub agents: Arc<Agents>,
    /// Ingest counters, shown by `/health`.
    pub stats: Arc<crate::agents::IngestStats>,
    /// What is failing right now, shown by `/health`.
    pub health: Arc<crate::health::Health>,
    pub api_token: Arc<str>,
    pub stale_after: Duration,
    /// A ping verdict older than this no longer decides the status.
    pub reach_stale_after: Duration,
    /// School hours for availability (24/7 when not configured).
    pub school_hours: std::sync::Arc<crate::track::SchoolHours>,
    /// For actions that change the register (incident actions).
    pub register: crate::register::Register,
    /// The dashboard: users, sessions, and the read cache the lists come from.
    pub web: Arc<crate::web::Web>,
    /// Backups (and the other operations routes).
    pub ops: Arc<crate::ops::Ops>,
    /// Tokens, revocation and the CA (`pki`).
    pub pki: Arc<crate::pki::Pki>,
}

/// An API error: a [`Failure`] answered as `{"error": "..."}` with the status the one
/// table in `errors` gives it.
pub type ApiError = Failure;

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.http_status(),
            axum::Json(json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// An axum extractor's rejection (bad JSON, wrong content type, body too large).
pub fn rejected(status: StatusCode, text: String) -> Failure {
    let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
        Kind::TooLarge
    } else {
        Kind::Invalid
    };
    Failure::new(kind, text)
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
        .route("/incidents/{id}/hold", post(incidents::hold))
        .route("/incidents/{id}/resume", post(incidents::resume))
        .route("/problems", get(incidents::problems))
        .route("/availability", get(tracking::availability))
        .route("/software", get(release_finance::software))
        .route("/software/{title}", get(release_finance::title))
        .route("/finance", get(release_finance::report))
        .route("/finance/{part}", get(release_finance::part))
        .route("/outbox", get(incidents::outbox))
        .route(
            "/reports/monthly",
            get(crate::web::service_levels::api_json),
        )
        .route(
            "/reports/monthly.pdf",
            get(crate::web::service_levels::api_pdf),
        )
        .route(
            "/problems/{id}",
            get(incidents::problem).post(incidents::update_problem),
        )
        .route(
            "/users",
            get(crate::web::auth::api_list).post(crate::web::auth::api_add),
        )
        .route("/users/{name}/disable", post(crate::web::auth::api_disable))
        .route(
            "/users/{name}/password",
            post(crate::web::auth::api_password),
        )
        .route("/backup", post(ops::backup))
        .route("/reload", post(ops::reload))
        .route("/tokens", get(pki::list_tokens).post(pki::create_token))
        .route("/tokens/{id}/revoke", post(pki::revoke_token))
        .route("/agents/{id}/revoke", post(pki::revoke_agent))
        .route("/ca", get(pki::ca))
        .route("/ca/rotate", post(pki::rotate))
        .merge(csv::export_routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        // Register edits check the token or a dashboard session themselves.
        .merge(register::routes())
        .merge(csv::import_routes())
        .route("/health", get(health))
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(json!({ "error": "method not allowed on this route" })),
            )
        })
        .layer(middleware::map_response(json_errors));
    Router::new()
        .route("/metrics", get(ops::metrics))
        .nest("/api/v1", api)
        .merge(crate::web::routes())
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Unknown addresses: JSON under `/api/`, the dashboard's 404 page elsewhere.
async fn fallback(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        Failure::not_found("route").into_response()
    } else {
        crate::web::not_found().await
    }
}

/// Every API error answers `{"error": "..."}`, also those axum's extractors produce
/// themselves (a path that is not UTF-8, a wrong content type, a body past the limit) in
/// plain text. The status is kept, except 422 (JSON of the wrong shape), which the API
/// documents as 400. 405 stays 405.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Liveness, what is failing, and the ingest counters since start (no token needed: no
/// register data). 503 while degraded, so a monitor's plain HTTP check notices.
async fn health(State(state): State<ApiState>) -> Response {
    let ingest: serde_json::Map<String, serde_json::Value> = state
        .stats
        .snapshot()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.into()))
        .collect();
    let problems: Vec<serde_json::Value> = state
        .health
        .problems()
        .into_iter()
        .map(|(component, since, reason)| {
            json!({"component": component, "reason": reason,
                   "since": since.format(&time::format_description::well_known::Rfc3339).ok()})
        })
        .collect();
    let (code, status) = if problems.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    };
    (
        code,
        axum::Json(json!({ "status": status, "problems": problems, "ingest": ingest })),
    )
        .into_response()
}

/// Failed API authentications, logged rate-limited with their source (see `authlog`).
static API_AUTH_FAILURES: std::sync::LazyLock<crate::authlog::FailedAuth> =
    std::sync::LazyLock::new(Default::default);

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok =
        presented.is_some_and(|p| crate::secret::same(p.as_bytes(), state.api_token.as_bytes()));
    if ok {
        next.run(request).await
    } else {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        API_AUTH_FAILURES.log(peer, "API bearer token");
        Failure::new(Kind::Unauthenticated, "missing or wrong bearer token").into_response()
    }
}

/// Serves the API on `listener` until `shutdown` fires, with the connection limits of
/// `crate::conn` (timeouts, request deadline, URI and header caps).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    limits: crate::conn::HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = crate::conn::Connections::new(limits.timeouts);
    let app = limited(router(state), limits, &connections)
        .layer(middleware::from_fn(crate::conn::peer_as_socket_addr))
        .into_make_service_with_connect_info::<crate::conn::Peer>();
    let listener = crate::conn::GuardedListener {
        listener,
        connections,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// `app` with the connection and request limits of `conn` (both the plain and the HTTPS
/// listener serve this).
pub fn limited(
    app: Router,
    limits: crate::conn::HttpLimits,
    connections: &crate::conn::Connections,
) -> Router {
    app.layer(middleware::from_fn_with_state(
        limits.request_timeout,
        crate::conn::request_deadline,
    ))
    .layer(middleware::from_fn(crate::conn::request_limits))
    .layer(connections.layer(crate::conn::http_peer))
}
