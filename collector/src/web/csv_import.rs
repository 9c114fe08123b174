//! CSV in the dashboard: the asset import page (`/assets/import`) and the four exports
//! (`/export/{assets,incidents,changes,software}.csv`) for a logged-in user.
//!
//! An import is two posts of one plain multipart form (no JavaScript needed). The upload
//! runs [`crate::http::csv::import_csv`] as a dry run and shows what each row would do (or
//! every error, naming row and column, with nothing imported). The page then carries the
//! file back in a hidden field (base64, so not one byte changes on the way) with a
//! fingerprint of the dry run; "Import" runs the dry run again and imports only when it
//! still says the same, so what is imported is what the technician was shown. Nothing is
//! kept on the server between the two posts: a restart or a second tab loses nothing.
//!
//! Both posts check the session's form token and the Origin like every other form;
//! read-only users get 403 before the body is read; a file past
//! [`crate::csv::MAX_IMPORT_BYTES`] gets 413. The import is the API's, the same one job
//! for the register writer: this module never reaches the store.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::PageError;
use super::auth::Viewer;
use super::pages::{Nav, render, viewer};
use crate::csv::{ImportError, MAX_IMPORT_BYTES};
use crate::http::ApiState;
use crate::http::csv::{
    Export, ImportFailure, ImportReport, RowReport, csv_response, export_bytes,
};

/// The most bytes an upload's body may have: the file plus the form's other fields and the
/// multipart framing.
pub const UPLOAD_LIMIT: usize = MAX_IMPORT_BYTES + 64 * 1024;
/// The most bytes the confirming post may have: the file in base64 (4/3) and the rest.
pub const CONFIRM_LIMIT: usize = MAX_IMPORT_BYTES / 3 * 4 + 4 + 64 * 1024;
// The largest file fits both posts: as itself in an upload, in base64 when confirmed.
const _: () = assert!(MAX_IMPORT_BYTES < UPLOAD_LIMIT);
const _: () = assert!(MAX_IMPORT_BYTES.div_ceil(3) * 4 < CONFIRM_LIMIT);
/// Rows drawn in a result table; the totals always count every row.
const SHOWN_ROWS: usize = 2000;
/// The longest text field (form token, file name, fingerprint) read from the form.
const MAX_TEXT_FIELD: usize = 1024;

struct ChangeView {
    field: String,
    before: String,
    after: String,
}

struct RowView {
    row: usize,
    asset_id: String,
    /// The asset's name as the register has it now (empty for one still to be made).
    name: String,
    action: &'static str,
    matched_by: String,
    changes: Vec<ChangeView>,
}

/// What the page shows below the upload form.
enum Outcome {
    /// Nothing yet: the upload form alone.
    Empty,
    /// The dry run is good: its table and the "Import" button.
    Checked,
    /// The file was imported.
    Done,
    /// Nothing was imported: why.
    Refused,
}

#[derive(Template)]
#[template(path = "csv_import.html")]
struct ImportPage {
    nav: Nav,
    csrf: String,
    can_act: bool,
    exports: Vec<(&'static str, &'static str)>,
    max_mib: usize,
    /// `empty`, `checked`, `done`, `refused` (for the template).
    outcome: &'static str,
    /// A sentence on top of the result.
    message: String,
    file_name: String,
    rows: Vec<RowView>,
    hidden_rows: usize,
    created: usize,
    changed: usize,
    unchanged: usize,
    total: usize,
    errors: Vec<ImportError>,
    /// The file again, base64, for the confirming post.
    data: String,
    fingerprint: String,
}

impl ImportPage {
    fn new(state: &ApiState, viewer: &Viewer) -> Self {
        Self {
            nav: Nav::of(&state.web, viewer, "import"),
            csrf: viewer.session.csrf.clone(),
            can_act: viewer.user.role.can_act(),
            exports: vec![
                ("assets", "Assets (the register)"),
                ("incidents", "Incidents"),
                ("changes", "Changes (history of every asset)"),
                ("software", "Software (installed programs per asset)"),
            ],
            max_mib: MAX_IMPORT_BYTES / (1024 * 1024),
            outcome: "empty",
            message: String::new(),
            file_name: String::new(),
            rows: Vec::new(),
            hidden_rows: 0,
            created: 0,
            changed: 0,
            unchanged: 0,
            total: 0,
            errors: Vec::new(),
            data: String::new(),
            fingerprint: String::new(),
        }
    }

    fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = match outcome {
            Outcome::Empty => "empty",
            Outcome::Checked => "checked",
            Outcome::Done => "done",
            Outcome::Refused => "refused",
        };
        self
    }

    fn with_report(mut self, report: &ImportReport, names: &HashMap<String, String>) -> Self {
        self.rows = report
            .rows
            .iter()
            .take(SHOWN_ROWS)
            .map(|r| RowView {
                row: r.row,
                asset_id: r.asset_id.clone(),
                name: names.get(&r.asset_id).cloned().unwrap_or_default(),
                action: r.action,
                matched_by: match r.matched_by.as_str() {
                    "created" => String::new(),
                    other => other.to_owned(),
                },
                changes: r
                    .changes
                    .iter()
                    .map(|c| ChangeView {
                        field: match super::register::label(&c.field) {
                            "" => c.field.clone(),
                            label => label.to_owned(),
                        },
                        before: shown_value(&c.field, &c.before),
                        after: shown_value(&c.field, &c.after),
                    })
                    .collect(),
            })
            .collect();
        self.hidden_rows = report.rows.len().saturating_sub(SHOWN_ROWS);
        self.created = report.totals.created;
        self.changed = report.totals.changed;
        self.unchanged = report.totals.unchanged;
        self.total = report.totals.rows;
        self
    }

    fn respond(self, status: StatusCode) -> Response {
        let mut response = render(&self);
        *response.status_mut() = status;
        response
    }
}

/// A changed value as the forms show it: the cost in pounds, not pence.
fn shown_value(field: &str, value: &str) -> String {
    match value.parse::<i64>() {
        Ok(pence) if field == "cost_pence" => super::register::pounds(pence),
        _ => value.to_owned(),
    }
}

/// The names of the shown rows' assets, read from the store (a created row's asset exists
/// only after the real import).
async fn names(
    state: &ApiState,
    report: &ImportReport,
) -> Result<HashMap<String, String>, PageError> {
    let ids: Vec<String> = report
        .rows
        .iter()
        .take(SHOWN_ROWS)
        .map(|r| r.asset_id.clone())
        .collect();
    let store = state.store.clone();
    Ok(crate::http::blocking(move || {
        let mut names = HashMap::new();
        for id in ids {
            if let Some(asset) = store.asset(&id)? {
                names.insert(id, asset.name);
            }
        }
        Ok(names)
    })
    .await?)
}

/// What a dry run promises, so the confirming post imports only what was shown: every row's
/// action, match and changes (not the ids of assets still to be made), and the file.
fn fingerprint(file: &[u8], rows: &[RowReport]) -> String {
    let mut hash = Sha256::new();
    hash.update(Sha256::digest(file));
    for r in rows {
        hash.update(r.row.to_le_bytes());
        for part in [
            r.action,
            r.matched_by.as_str(),
            if r.action == "created" {
                ""
            } else {
                r.asset_id.as_str()
            },
        ] {
            hash.update(part.len().to_le_bytes());
            hash.update(part.as_bytes());
        }
        hash.update(r.changes.len().to_le_bytes());
        for c in &r.changes {
            for part in [&c.field, &c.before, &c.after] {
                hash.update(part.len().to_le_bytes());
                hash.update(part.as_bytes());
            }
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /assets/import`: the upload form and the export links.
pub async fn page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    Ok(ImportPage::new(&state, &viewer)
        .outcome(Outcome::Empty)
        .respond(StatusCode::OK))
}

/// `GET /export/{file}`: one export as a download, for anyone logged in.
pub async fn export(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(file): Path<String>,
) -> Result<Response, PageError> {
    viewer(&state, &headers, &uri)?;
    let which = Export::from_file(&file).ok_or_else(|| {
        PageError::not_found(format!(
            "There is no export {file}: there are assets.csv, incidents.csv, changes.csv and \
             software.csv."
        ))
    })?;
    Ok(csv_response(which, export_bytes(&state, which).await?))
}

fn too_large() -> PageError {
    PageError::Status(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "The file is larger than {} MiB, more than a school's register ever is: split it \
             into smaller files and import them one after the other. Nothing was imported.",
            MAX_IMPORT_BYTES / (1024 * 1024)
        ),
    )
}

fn declared_over(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// A multipart form's fields: small text fields, and at most one large one (`big`).
#[derive(Default)]
struct Upload {
    csrf: String,
    file_name: String,
    fingerprint: String,
    big: Vec<u8>,
}

/// Reads the form, keeping `big_field` up to `big_limit` bytes (413 past it).
async fn read_form(
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    big_field: &str,
    big_limit: usize,
) -> Result<Upload, PageError> {
    let mut multipart = multipart.map_err(|e| {
        PageError::bad(format!(
            "The form could not be read ({}); send it from the import page.",
            e.body_text()
        ))
    })?;
    let failed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            PageError::bad(format!("The form could not be read: {}", e.body_text()))
        }
    };
    let mut upload = Upload::default();
    while let Some(mut field) = multipart.next_field().await.map_err(failed)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == big_field {
            if let Some(file_name) = field.file_name() {
                upload.file_name = file_name.to_owned();
            }
            while let Some(chunk) = field.chunk().await.map_err(failed)? {
                if upload.big.len() + chunk.len() > big_limit {
                    return Err(too_large());
                }
                upload.big.extend_from_slice(&chunk);
            }
            continue;
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(failed)? {
            if text.len() + chunk.len() > MAX_TEXT_FIELD {
                return Err(PageError::bad(format!(
                    "The form's field {name:?} is too long."
                )));
            }
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        match name.as_str() {
            "csrf" => upload.csrf = text,
            "file_name" => upload.file_name = text,
            "fingerprint" => upload.fingerprint = text,
            _ => {}
        }
    }
    Ok(upload)
}

/// The logged-in user who may act, before the body is read.
fn actor(state: &ApiState, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, PageError> {
    let viewer = viewer(state, headers, uri)?;
    viewer.may_act()?;
    Ok(viewer)
}

/// The page for an import that did nothing.
fn refused_page(page: ImportPage, failure: ImportFailure) -> Result<Response, PageError> {
    match failure {
        ImportFailure::Rows(errors) => {
            let mut page = page.outcome(Outcome::Refused);
            page.message = format!(
                "Nothing was imported: the file has {} error{}. Correct {} and upload it again.",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                if errors.len() == 1 { "it" } else { "them" },
            );
            page.errors = errors;
            Ok(page.respond(StatusCode::UNPROCESSABLE_ENTITY))
        }
        ImportFailure::Conflict(message) => {
            let mut page = page.outcome(Outcome::Refused);
            page.message = format!(
                "Nothing was imported: {message}. Upload the file again to see what it would do now."
            );
            Ok(page.respond(StatusCode::CONFLICT))
        }
        ImportFailure::Other(error) => Err(error.into()),
    }
}

/// `POST /assets/import` (multipart: `csrf`, `file`): the dry run.
pub async fn upload(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, PageError> {
    let viewer = actor(&state, &headers, &uri)?;
    if declared_over(&headers, UPLOAD_LIMIT) {
        return Err(too_large());
    }
    let upload = read_form(multipart, "file", MAX_IMPORT_BYTES).await?;
    state
        .web
        .auth
        .check_post(&headers, Some(&viewer), &upload.csrf)?;
    let mut page = ImportPage::new(&state, &viewer);
    page.file_name = upload.file_name.clone();
    if upload.big.is_empty() {
        page = page.outcome(Outcome::Refused);
        page.message = "Choose a CSV file to check.".to_owned();
        return Ok(page.respond(StatusCode::UNPROCESSABLE_ENTITY));
    }
    let file = axum::body::Bytes::from(upload.big);
    match crate::http::csv::import_csv(&state, file.clone(), viewer.user.name.clone(), true).await {
        Ok(report) => {
            let names = names(&state, &report).await?;
            Ok(checked(page, &file, &report, &names, None).respond(StatusCode::OK))
        }
        Err(failure) => refused_page(page, failure),
    }
}

/// The dry run's page: its table, the file in a hidden field and the "Import" button.
fn checked(
    page: ImportPage,
    file: &[u8],
    report: &ImportReport,
    names: &HashMap<String, String>,
    note: Option<&str>,
) -> ImportPage {
    let mut page = page.outcome(Outcome::Checked).with_report(report, names);
    page.fingerprint = fingerprint(file, &report.rows);
    page.data = base64::engine::general_purpose::STANDARD.encode(file);
    let summary = format!(
        "Checked, nothing imported yet: {} row{}; {} would be created, {} changed, {} left \
         as they are.",
        page.total,
        if page.total == 1 { "" } else { "s" },
        page.created,
        page.changed,
        page.unchanged
    );
    page.message = match note {
        Some(note) => format!("{note} {summary}"),
        None => summary,
    };
    page
}

/// `POST /assets/import/confirm` (multipart: `csrf`, `data` = the file in base64,
/// `fingerprint` of the dry run shown): imports, if the dry run still says the same.
pub async fn confirm(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, PageError> {
    let viewer = actor(&state, &headers, &uri)?;
    if declared_over(&headers, CONFIRM_LIMIT) {
        return Err(too_large());
    }
    let upload = read_form(multipart, "data", CONFIRM_LIMIT).await?;
    state
        .web
        .auth
        .check_post(&headers, Some(&viewer), &upload.csrf)?;
    let encoded: Vec<u8> = upload
        .big
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let file = base64::engine::general_purpose::STANDARD
        .decode(&encoded)
        .map_err(|_| {
            PageError::bad("The form's copy of the file is damaged; upload the file again.")
        })?;
    if file.len() > MAX_IMPORT_BYTES {
        return Err(too_large());
    }
    let file = axum::body::Bytes::from(file);
    let mut page = ImportPage::new(&state, &viewer);
    page.file_name = upload.file_name.clone();
    let author = viewer.user.name.clone();
    // The dry run again: the register may have changed since the technician looked.
    let now = match crate::http::csv::import_csv(&state, file.clone(), author.clone(), true).await {
        Ok(report) => report,
        Err(failure) => return refused_page(page, failure),
    };
    if fingerprint(&file, &now.rows) != upload.fingerprint.trim() {
        let names = names(&state, &now).await?;
        return Ok(checked(
            page,
            &file,
            &now,
            &names,
            Some(
                "The register changed since this file was checked, so nothing was imported. \
                 Below is what it would do now; import it again if that is right.",
            ),
        )
        .respond(StatusCode::CONFLICT));
    }
    match crate::http::csv::import_csv(&state, file, author, false).await {
        Ok(report) => {
            let names = names(&state, &report).await?;
            let mut page = page.outcome(Outcome::Done).with_report(&report, &names);
            page.message = format!(
                "Imported {} row{}: {} created, {} changed, {} left as they were. Every change \
                 is in the assets' history under your name.",
                page.total,
                if page.total == 1 { "" } else { "s" },
                page.created,
                page.changed,
                page.unchanged
            );
            Ok(page.respond(StatusCode::OK))
        }
        Err(failure) => refused_page(page, failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::csv::FieldChange;

    fn row(action: &'static str, id: &str, after: &str) -> RowReport {
        RowReport {
            row: 2,
            asset_id: id.to_owned(),
            action,
            matched_by: "asset_tag".to_owned(),
            changes: vec![FieldChange {
                field: "room".to_owned(),
                before: "B1".to_owned(),
                after: after.to_owned(),
            }],
        }
    }

    #[test]
    fn the_fingerprint_tells_a_changed_dry_run() {
        let file = b"asset_tag,room\nCT-1,B12\n";
        let shown = fingerprint(file, &[row("changed", "a1", "B12")]);
        assert_eq!(shown, fingerprint(file, &[row("changed", "a1", "B12")]));
        assert_eq!(shown.len(), 64);
        // Another value before or after, another asset, another file: not what was shown.
        assert_ne!(shown, fingerprint(file, &[row("changed", "a1", "B13")]));
        assert_ne!(shown, fingerprint(file, &[row("changed", "a2", "B12")]));
        assert_ne!(
            shown,
            fingerprint(b"asset_tag,room\n", &[row("changed", "a1", "B12")])
        );
        // Field boundaries count: "ab"+"c" is not "a"+"bc".
        let mut a = row("changed", "a1", "c");
        a.changes[0].before = "ab".to_owned();
        let mut b = row("changed", "a1", "bc");
        b.changes[0].before = "a".to_owned();
        assert_ne!(fingerprint(file, &[a]), fingerprint(file, &[b]));
    }
}
