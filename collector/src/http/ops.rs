//! Operations routes: `POST /api/v1/backup` streams a point-in-time backup (plain; the CLI
//! encrypts it when asked and writes the file); `GET /metrics` is the Prometheus scrape
//! (a bearer token — the API token or `[metrics] token_file` — or an address in `allow`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;

use super::{ApiError, ApiState};
use crate::errors::{Failure, Kind};

/// Takes a snapshot through the writer into a private file in the data directory, then
/// streams it (the file is unlinked once open, so nothing is left behind).
pub async fn backup(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let snapshots = state.ops.snapshots.clone();
    let name = format!(".api-backup-{}.partial", crate::secret::random_hex(8));
    let path = snapshots.data_dir.join(name);
    let summary = snapshots.take(path.clone(), None).await.map_err(|error| {
        tracing::error!(%error, "Backup over the API failed");
        Failure::new(Kind::StoreUnavailable, format!("backup failed: {error}"))
    })?;
    let file = tokio::fs::File::open(&path).await;
    let _ = tokio::fs::remove_file(&path).await;
    let file =
        file.map_err(|e| Failure::new(Kind::StoreUnavailable, format!("backup failed: {e}")))?;
    tracing::info!(
        records = summary.records,
        files = summary.files,
        bytes = summary.bytes,
        "Backup taken over the API"
    );
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, summary.bytes.to_string()),
        ],
        body,
    )
        .into_response())
}

/// `GET /metrics`: the Prometheus text format (see `metrics`).
pub async fn metrics(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let config = &state.ops.metrics;
    let token_ok = presented.is_some_and(|p| {
        crate::secret::same(p.as_bytes(), state.api_token.as_bytes())
            || config
                .token()
                .is_some_and(|t| crate::secret::same(p.as_bytes(), t.as_bytes()))
    });
    if !token_ok && !config.allows(peer.ip()) {
        return Err(Failure::new(
            Kind::Unauthenticated,
            "metrics need a bearer token or a client address in [metrics] allow",
        ));
    }
    // While the store cannot be read (full, being reopened) the rest still answers: that is
    // when the degraded gauge matters most.
    let store = state.store.clone();
    let read =
        super::blocking(move || Ok((store.incidents()?, store.outbox()?, store.size_on_disk()?)))
            .await
            .ok();
    let snapshot = crate::metrics::Snapshot {
        stats: &state.stats,
        problems: state
            .health
            .problems()
            .into_iter()
            .map(|(component, _, reason)| (component, reason))
            .collect(),
        queue_depth: state.register.queue_depth(),
        store: read,
    };
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&snapshot),
    )
        .into_response())
}

/// `POST /api/v1/reload`: reads the config file again; 200 with what was applied, or 400
/// with why not (the old config stays).
pub async fn reload(State(state): State<ApiState>) -> Result<Response, ApiError> {
    match state.ops.reloader.reload().await {
        Ok(outcome) => Ok((StatusCode::OK, axum::Json(outcome)).into_response()),
        Err(error @ crate::reload::ReloadError::Register(_)) => {
            Err(Failure::new(Kind::StoreUnavailable, error.to_string()))
        }
        Err(error) => {
            tracing::error!(%error, "Config not reloaded");
            Err(Failure::new(Kind::Invalid, error.to_string()))
        }
    }
}
