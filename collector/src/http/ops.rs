//! Operations routes: `POST /api/v1/backup` streams a point-in-time backup (plain; the CLI
//! encrypts it when asked and writes the file).

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

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
