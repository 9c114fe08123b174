//! CSV over HTTP: `GET /api/v1/export/{assets,incidents,changes,software}.csv` and
//! `POST /api/v1/import/assets?dry_run=true|false` (body: the CSV file).
//!
//! Exports read through the same services the lists use (`web::query` over the catalog;
//! changes and inventories through `Store` in `spawn_blocking`). An import is parsed by
//! `crate::csv` and then applied as **one** `Job::EditRegister` (all rows or none; a dry run
//! is the same job with `dry_run: true`). Answers: 200 with what each row would do / did,
//! 422 with every error (`row N, column "X": …`), 413 past [`MAX_IMPORT_BYTES`] (refused
//! from `Content-Length` before the body is read).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, ApiState, blocking};
use crate::csv::{ImportError, ImportRow, MAX_IMPORT_BYTES, SoftwareRow};
use crate::model::register::{EditError, EditOutcome};
use crate::store::ChangeQuery;

/// The exports (under `/api/v1`, behind the token).
pub fn export_routes() -> Router<ApiState> {
    Router::new().route("/export/{file}", get(export))
}

/// The import (under `/api/v1`): the bearer token or a dashboard session with its form
/// token, checked by the handler like the other register edits.
pub fn import_routes() -> Router<ApiState> {
    Router::new().route(
        "/import/assets",
        post(import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
    )
}

/// Which export, from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    Assets,
    Incidents,
    Changes,
    Software,
}

impl Export {
    pub fn from_file(file: &str) -> Option<Export> {
        Some(match file.strip_suffix(".csv").unwrap_or(file) {
            "assets" => Export::Assets,
            "incidents" => Export::Incidents,
            "changes" => Export::Changes,
            "software" => Export::Software,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Export::Assets => "assets",
            Export::Incidents => "incidents",
            Export::Changes => "changes",
            Export::Software => "software",
        }
    }
}

/// The CSV text of one export (with a UTF-8 byte order mark, so Excel reads it as UTF-8).
pub async fn export_bytes(state: &ApiState, which: Export) -> Result<Vec<u8>, ApiError> {
    let mut out = "\u{feff}".as_bytes().to_vec();
    let failed = |e: ::csv::Error| {
        ApiError::new(
            crate::errors::Kind::Internal,
            format!("writing the CSV failed: {e}"),
        )
    };
    match which {
        Export::Assets => {
            let (rows, _) =
                crate::web::query::assets(state, crate::web::query::AssetQuery::default()).await?;
            let assets: Vec<_> = rows.into_iter().map(|l| l.asset).collect();
            crate::csv::write_assets(&mut out, &assets).map_err(failed)?;
        }
        Export::Incidents => {
            let (incidents, _) = crate::web::query::incidents(
                state,
                crate::web::query::IncidentQuery {
                    status: "all".into(),
                    ..Default::default()
                },
            )
            .await?;
            crate::csv::write_incidents(&mut out, &incidents).map_err(failed)?;
        }
        Export::Changes => {
            let store = state.store.clone();
            let changes = blocking(move || {
                Ok(store.changes(&ChangeQuery {
                    asset: None,
                    since: None,
                    limit: 1_000_000,
                })?)
            })
            .await?;
            crate::csv::write_changes(&mut out, &changes).map_err(failed)?;
        }
        Export::Software => {
            let (rows, _) =
                crate::web::query::assets(state, crate::web::query::AssetQuery::default()).await?;
            let store = state.store.clone();
            let software = blocking(move || {
                let mut out = Vec::new();
                for listed in rows {
                    let asset = listed.asset;
                    let Some(record) = store.inventory(&asset.id)? else {
                        continue;
                    };
                    for s in &record.inventory.software {
                        out.push(SoftwareRow {
                            asset_id: asset.id.clone(),
                            asset_name: asset.name.clone(),
                            asset_tag: asset.register.asset_tag.clone(),
                            title: s.name.clone(),
                            version: s.version.clone(),
                            publisher: s.publisher.clone(),
                        });
                    }
                }
                Ok(out)
            })
            .await?;
            crate::csv::write_software(&mut out, &software).map_err(failed)?;
        }
    }
    Ok(out)
}

/// `text/csv` with a download name such as `caretaker-assets-2026-12-02.csv`.
pub fn csv_response(which: Export, body: Vec<u8>) -> Response {
    let today = crate::model::register::iso_date::format(time::OffsetDateTime::now_utc().date());
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"caretaker-{}-{today}.csv\"",
                    which.name()
                ),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

async fn export(State(state): State<ApiState>, Path(file): Path<String>) -> Response {
    let Some(which) = Export::from_file(&file) else {
        return ApiError::not_found(format!(
            "export {file}: there are assets.csv, incidents.csv, changes.csv and software.csv"
        ))
        .into_response();
    };
    match export_bytes(&state, which).await {
        Ok(body) => csv_response(which, body),
        Err(error) => error.into_response(),
    }
}

/// What one row did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RowReport {
    pub row: usize,
    pub asset_id: String,
    /// `created`, `changed` or `unchanged`.
    pub action: &'static str,
    pub matched_by: String,
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub rows: usize,
    pub created: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// An import's answer.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub rows: Vec<RowReport>,
    pub totals: Totals,
}

/// Why an import did nothing.
#[derive(Debug)]
pub enum ImportFailure {
    /// Errors in the file (or refused by the register), each naming row and column: 422.
    Rows(Vec<ImportError>),
    /// Someone edited a matched asset during the import: 409.
    Conflict(String),
    Other(ApiError),
}

impl From<ApiError> for ImportFailure {
    fn from(error: ApiError) -> Self {
        ImportFailure::Other(error)
    }
}

impl IntoResponse for ImportFailure {
    fn into_response(self) -> Response {
        match self {
            ImportFailure::Rows(errors) => {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    axum::Json(json!({
                        "error": format!(
                            "nothing was imported: {} error{} in the file; {}",
                            errors.len(),
                            if errors.len() == 1 { "" } else { "s" },
                            lines.first().cloned().unwrap_or_default()
                        ),
                        "errors": errors,
                        "messages": lines,
                    })),
                )
                    .into_response()
            }
            ImportFailure::Conflict(message) => (
                StatusCode::CONFLICT,
                axum::Json(json!({ "error": format!("nothing was imported: {message}") })),
            )
                .into_response(),
            ImportFailure::Other(error) => error.into_response(),
        }
    }
}

/// A refusal from the register, turned into the row (and column) of the file it is about.
fn refused(rows: &[ImportRow], error: &EditError) -> ImportFailure {
    let row_of = |index: usize| rows.get(index).map_or(0, |r| r.row);
    let message = super::register::describe(error);
    match error {
        EditError::Conflict { .. } => ImportFailure::Conflict(message),
        EditError::NotFound { index, .. } => ImportFailure::Rows(vec![ImportError {
            row: row_of(*index),
            column: String::new(),
            message,
        }]),
        EditError::DuplicateTag { index, .. } => ImportFailure::Rows(vec![ImportError {
            row: row_of(*index),
            column: "asset_tag".into(),
            message,
        }]),
        EditError::Invalid {
            index,
            field,
            message,
        } => ImportFailure::Rows(vec![ImportError {
            row: row_of(*index),
            column: field.clone(),
            message: message.clone(),
        }]),
    }
}

fn report(rows: &[ImportRow], outcomes: Vec<EditOutcome>, dry_run: bool) -> ImportReport {
    let mut totals = Totals::default();
    let rows: Vec<RowReport> = rows
        .iter()
        .zip(outcomes)
        .map(|(row, outcome)| {
            let action = if outcome.created {
                totals.created += 1;
                "created"
            } else if outcome.changes.is_empty() {
                totals.unchanged += 1;
                "unchanged"
            } else {
                totals.changed += 1;
                "changed"
            };
            RowReport {
                row: row.row,
                asset_id: outcome.asset_id,
                action,
                matched_by: outcome.matched_by,
                changes: outcome
                    .changes
                    .into_iter()
                    .map(|(field, before, after)| FieldChange {
                        field,
                        before,
                        after,
                    })
                    .collect(),
            }
        })
        .collect();
    totals.rows = rows.len();
    ImportReport {
        dry_run,
        rows,
        totals,
    }
}

/// Parses `body` and runs it as one register job (the API's and the dashboard's import).
pub async fn import_csv(
    state: &ApiState,
    body: Bytes,
    author: String,
    dry_run: bool,
) -> Result<ImportReport, ImportFailure> {
    let parsed = blocking(move || Ok(crate::csv::parse_assets(&body[..]))).await?;
    let rows = parsed.map_err(ImportFailure::Rows)?;
    let edits = rows.iter().map(|r| r.edit.clone()).collect();
    match super::register::run(state, edits, author, dry_run).await? {
        Ok(outcomes) => Ok(report(&rows, outcomes, dry_run)),
        Err(error) => Err(refused(&rows, &error)),
    }
}

/// A body past the cap, told before reading it.
pub fn too_large() -> ApiError {
    ApiError::new(
        crate::errors::Kind::TooLarge,
        format!(
            "the file is larger than {} MiB; split it into smaller files",
            MAX_IMPORT_BYTES / (1024 * 1024)
        ),
    )
}

/// Whether the request says it is larger than the cap.
pub fn declared_too_large(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > MAX_IMPORT_BYTES as u64)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportParams {
    #[serde(default)]
    dry_run: Option<bool>,
}

async fn import(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<ImportParams>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if declared_too_large(&headers) {
        return too_large().into_response();
    }
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => return ApiError::invalid(e.body_text()).into_response(),
    };
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large().into_response();
        }
        Err(e) => return ApiError::invalid(e.body_text()).into_response(),
    };
    let author = match super::register::editor(&state, &headers) {
        Ok(author) => author,
        Err(error) => return error.into_response(),
    };
    match import_csv(&state, body, author, params.dry_run.unwrap_or(false)).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(failure) => failure.into_response(),
    }
}
