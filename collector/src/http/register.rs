//! Register edits over the JSON API: `PATCH /api/v1/assets/{id}` (register fields, with the
//! revision the client saw in `If-Match: "<rev>"` or `expected_rev`), `POST /api/v1/assets`
//! (a manual asset) and `POST /api/v1/assets/bulk` (one patch on listed ids or on what the
//! asset list's filters match).
//!
//! Every edit is one `Job::EditRegister` for the writer (`cmdb::register` holds the logic);
//! the answer comes once it is durable. Who may edit: the API bearer token (author `api`),
//! or a dashboard session of a technician or admin with its form token in `X-CSRF-Token`
//! (author: the user); read-only users get 403. Answers: 200/201 with the asset, 400 for a
//! body that cannot be read (naming the field), 422 for a value the register refuses
//! (`{"error", "field"}`), 404, and 409 for a stale revision (with the current asset) or an
//! asset tag another asset has.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use serde_json::{Map, Value, json};

use super::{ApiError, ApiState, blocking};
use crate::errors::{Failure, Kind};
use crate::model::register::{
    EditError, EditOutcome, EditTarget, NewAsset, RegisterEdit, RegisterPatch,
};
use crate::register::Job;

/// Most assets one bulk edit may name or match.
pub const MAX_BULK: usize = 5000;

/// The API's register routes (merged into `/api/v1` beside the token-guarded ones: they
/// check the token or a session themselves).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/assets", post(create))
        .route("/assets/bulk", post(bulk))
        .route("/assets/{id}", patch(patch_one))
}

/// A refusal already answered (boxed: responses are large).
type Bad = Box<Response>;

/// A refusal with a JSON body of its own.
fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// Who is editing: `api` for the bearer token, else the logged-in dashboard user (who must
/// be allowed to act and present the session's form token).
pub fn editor(state: &ApiState, headers: &HeaderMap) -> Result<String, Failure> {
    if let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = presented.strip_prefix("Bearer ").map(str::trim);
        return if token
            .is_some_and(|t| crate::secret::same(t.as_bytes(), state.api_token.as_bytes()))
        {
            Ok("api".to_owned())
        } else {
            Err(Failure::new(
                Kind::Unauthenticated,
                "missing or wrong bearer token",
            ))
        };
    }
    let viewer = state.web.auth.viewer(headers).ok_or_else(|| {
        Failure::new(
            Kind::Unauthenticated,
            "missing or wrong bearer token (or log in to the dashboard)",
        )
    })?;
    if !viewer.user.role.can_act() {
        return Err(Failure::new(
            Kind::Forbidden,
            "this account is read-only: it may look but not change the register",
        ));
    }
    crate::web::auth::check_origin(headers)
        .map_err(|_| Failure::new(Kind::Forbidden, "cross-site requests are refused"))?;
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if csrf.is_empty() || !crate::secret::same(csrf.as_bytes(), viewer.session.csrf.as_bytes()) {
        return Err(Failure::new(
            Kind::Forbidden,
            "a session's edits need its form token in X-CSRF-Token",
        ));
    }
    Ok(viewer.user.name)
}

/// What a refused job means to a client, in words.
pub fn describe(error: &EditError) -> String {
    match error {
        EditError::Conflict {
            asset_id,
            expected,
            current,
            ..
        } => format!(
            "asset {asset_id} was changed by someone else since you opened it (you saw revision {expected}, it is now {current})"
        ),
        EditError::NotFound { asset_id, .. } => format!("asset {asset_id} not found"),
        EditError::DuplicateTag {
            asset_tag, other, ..
        } => format!("asset tag {asset_tag:?} is already asset {other}'s"),
        EditError::Invalid { field, message, .. } => format!("{field}: {message}"),
    }
}

/// Runs one register job on the writer and waits until it is durable.
pub async fn run(
    state: &ApiState,
    edits: Vec<RegisterEdit>,
    author: String,
    dry_run: bool,
) -> Result<Result<Vec<EditOutcome>, EditError>, Failure> {
    Ok(state
        .register
        .ask(|reply| Job::EditRegister {
            edits,
            author,
            dry_run,
            reply,
        })
        .await?)
}

/// The answer to a refused job (409 with the current asset for a conflict).
async fn refused(state: &ApiState, error: EditError) -> Response {
    let message = describe(&error);
    match error {
        EditError::Conflict {
            index,
            asset_id,
            expected,
            current,
        } => {
            let asset = current_asset(state, &asset_id).await.unwrap_or(Value::Null);
            answer(
                StatusCode::CONFLICT,
                json!({"error": message, "index": index, "expected_rev": expected,
                       "current_rev": current, "asset": asset}),
            )
        }
        EditError::NotFound { index, .. } => answer(
            StatusCode::NOT_FOUND,
            json!({"error": message, "index": index}),
        ),
        EditError::DuplicateTag { index, other, .. } => answer(
            StatusCode::CONFLICT,
            json!({"error": message, "index": index, "field": "asset_tag", "other": other}),
        ),
        EditError::Invalid { index, field, .. } => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": message, "index": index, "field": field}),
        ),
    }
}

async fn current_asset(state: &ApiState, id: &str) -> Result<Value, ApiError> {
    let store = state.store.clone();
    let key = id.to_owned();
    let asset = blocking(move || Ok(store.asset(&key)?)).await?;
    Ok(asset.map_or(Value::Null, |a| {
        serde_json::to_value(a).expect("assets serialise")
    }))
}

/// A body that is not what the route reads: 400 naming the field.
fn unreadable(field: &str, message: impl std::fmt::Display) -> Response {
    let error = if field.is_empty() {
        format!("{message}")
    } else {
        format!("{field}: {message}")
    };
    answer(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "field": field}),
    )
}

fn object(body: &[u8]) -> Result<Map<String, Value>, Bad> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Box::new(unreadable("", "the body must be a JSON object"))),
        Err(error) => Err(Box::new(unreadable(
            "",
            format!("the body is not JSON: {error}"),
        ))),
    }
}

/// The register patch in `fields`, or 400 naming the first field that cannot be read.
pub fn read_patch(fields: Map<String, Value>) -> Result<RegisterPatch, Bad> {
    parse_patch(fields).map_err(|(field, message)| Box::new(unreadable(&field, message)))
}

/// The register patch in `fields`, or `(field, why)` for the first one that cannot be read.
pub fn parse_patch(fields: Map<String, Value>) -> Result<RegisterPatch, (String, String)> {
    for (key, value) in &fields {
        let mut one = Map::new();
        one.insert(key.clone(), value.clone());
        if let Err(error) = serde_json::from_value::<RegisterPatch>(Value::Object(one)) {
            let message = error.to_string();
            return Err(if message.starts_with("unknown field") {
                (key.clone(), "not a register field".to_owned())
            } else {
                (key.clone(), message)
            });
        }
    }
    serde_json::from_value(Value::Object(fields)).map_err(|e| (String::new(), e.to_string()))
}

/// `If-Match: "7"` (or `W/"7"`, or `7`).
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Bad> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse().map(Some).map_err(|_| {
        Box::new(unreadable(
            "If-Match",
            "must be the asset's register_rev, e.g. \"3\"",
        ))
    })
}

fn etag(rev: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{rev}\"")).expect("digits are a header value")
}

/// The asset as stored after an edit, with what the edit changed.
async fn edited(
    state: &ApiState,
    status: StatusCode,
    outcome: &EditOutcome,
    location: bool,
) -> Response {
    let mut asset = match current_asset(state, &outcome.asset_id).await {
        Ok(asset) => asset,
        Err(error) => return error.into_response(),
    };
    if let Some(object) = asset.as_object_mut() {
        object.insert(
            "changes".into(),
            outcome
                .changes
                .iter()
                .map(|(field, before, after)| {
                    json!({"field": field, "before": before, "after": after})
                })
                .collect(),
        );
    }
    let mut response = (status, Json(asset)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(outcome.register_rev));
    if location
        && let Ok(value) = HeaderValue::from_str(&format!("/api/v1/assets/{}", outcome.asset_id))
    {
        headers.insert(header::LOCATION, value);
    }
    response
}

/// `PATCH /api/v1/assets/{id}`: register fields, optionally `expected_rev`.
async fn patch_one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let author = match editor(&state, &headers) {
        Ok(author) => author,
        Err(failure) => return failure.into_response(),
    };
    let mut fields = match object(&body) {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    let in_body = match fields.remove("expected_rev") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(rev) => Some(rev),
            None => return unreadable("expected_rev", "must be a whole number"),
        },
    };
    let in_header = match if_match(&headers) {
        Ok(rev) => rev,
        Err(response) => return *response,
    };
    if let (Some(a), Some(b)) = (in_body, in_header)
        && a != b
    {
        return unreadable("expected_rev", "differs from If-Match");
    }
    let patch = match read_patch(fields) {
        Ok(patch) => patch,
        Err(response) => return *response,
    };
    let edit = RegisterEdit {
        target: EditTarget::Asset {
            asset_id: id,
            expected_rev: in_body.or(in_header),
        },
        patch,
    };
    match run(&state, vec![edit], author, false).await {
        Err(failure) => failure.into_response(),
        Ok(Err(error)) => refused(&state, error).await,
        Ok(Ok(outcomes)) => edited(&state, StatusCode::OK, &outcomes[0], false).await,
    }
}

/// `POST /api/v1/assets`: a manual asset (`kind`, `name`, optional `vendor`, `model`,
/// `serial`, `macs`) with any register fields.
async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let author = match editor(&state, &headers) {
        Ok(author) => author,
        Err(failure) => return failure.into_response(),
    };
    let mut fields = match object(&body) {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    let mut described = Map::new();
    for key in ["kind", "name", "vendor", "model", "serial", "macs"] {
        if let Some(value) = fields.remove(key) {
            described.insert(key.to_owned(), value);
        }
    }
    for key in ["kind", "name"] {
        if !described.contains_key(key) {
            return unreadable(key, "a new asset needs it");
        }
    }
    let new: NewAsset = match serde_json::from_value(Value::Object(described.clone())) {
        Ok(new) => new,
        Err(error) => {
            let field = described
                .keys()
                .find(|k| {
                    let mut probe = described.clone();
                    probe.insert("kind".into(), json!("other"));
                    probe.insert("name".into(), json!("x"));
                    if **k == "kind" || **k == "name" {
                        probe.insert((*k).clone(), described[*k].clone());
                    }
                    serde_json::from_value::<NewAsset>(Value::Object(probe)).is_err()
                })
                .cloned()
                .unwrap_or_default();
            return unreadable(&field, error);
        }
    };
    let patch = match read_patch(fields) {
        Ok(patch) => patch,
        Err(response) => return *response,
    };
    let edit = RegisterEdit {
        target: EditTarget::New(new),
        patch,
    };
    match run(&state, vec![edit], author, false).await {
        Err(failure) => failure.into_response(),
        Ok(Err(error)) => refused(&state, error).await,
        Ok(Ok(outcomes)) => edited(&state, StatusCode::CREATED, &outcomes[0], true).await,
    }
}

/// `POST /api/v1/assets/bulk`: `{"ids": [...]}` or `{"filter": {q, kind, status, source,
/// location, room, department, lifecycle}}`, with `"patch": {...}` and optionally
/// `"dry_run": true`. One job: every asset or none.
async fn bulk(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let author = match editor(&state, &headers) {
        Ok(author) => author,
        Err(failure) => return failure.into_response(),
    };
    let mut fields = match object(&body) {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    let patch = match fields.remove("patch") {
        Some(Value::Object(patch)) => match read_patch(patch) {
            Ok(patch) => patch,
            Err(response) => return *response,
        },
        _ => return unreadable("patch", "an object of register fields is needed"),
    };
    let dry_run = match fields.remove("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return unreadable("dry_run", "must be true or false"),
    };
    let ids: Vec<String> = match (fields.remove("ids"), fields.remove("filter")) {
        (Some(ids), None) => match serde_json::from_value::<Vec<String>>(ids) {
            Ok(ids) => ids,
            Err(error) => return unreadable("ids", error),
        },
        (None, Some(Value::Object(filter))) => {
            let mut query = crate::web::query::AssetQuery::default();
            for (key, value) in filter {
                let Some(text) = value.as_str().map(str::to_owned) else {
                    return unreadable(&format!("filter.{key}"), "must be text");
                };
                match key.as_str() {
                    "q" => query.q = text,
                    "kind" => query.kind = text,
                    "status" => query.status = text,
                    "source" => query.source = text,
                    "location" => query.location = text,
                    "room" => query.room = text,
                    "department" => query.department = text,
                    "lifecycle" => query.lifecycle = text,
                    _ => return unreadable(&format!("filter.{key}"), "not an asset list filter"),
                }
            }
            match crate::web::query::assets(&state, query).await {
                Ok((rows, _)) => rows.into_iter().map(|l| l.asset.id).collect(),
                Err(failure) => return failure.into_response(),
            }
        }
        (None, Some(_)) => return unreadable("filter", "must be an object"),
        _ => return unreadable("ids", "give either ids or filter"),
    };
    if let Some(key) = fields.keys().next() {
        return unreadable(key, "not a bulk edit field (ids, filter, patch, dry_run)");
    }
    if ids.is_empty() {
        return unreadable("ids", "no asset selected");
    }
    if ids.len() > MAX_BULK {
        return unreadable("ids", format!("at most {MAX_BULK} assets in one edit"));
    }
    let edits = bulk_edits(&ids, &patch);
    match run(&state, edits, author, dry_run).await {
        Err(failure) => failure.into_response(),
        Ok(Err(error)) => refused(&state, error).await,
        Ok(Ok(outcomes)) => {
            let changed: Vec<&str> = outcomes
                .iter()
                .filter(|o| !o.changes.is_empty())
                .map(|o| o.asset_id.as_str())
                .collect();
            answer(
                StatusCode::OK,
                json!({"matched": outcomes.len(), "changed": changed.len(),
                       "changed_ids": changed, "dry_run": dry_run}),
            )
        }
    }
}

/// One edit per distinct id (in the order given).
pub fn bulk_edits(ids: &[String], patch: &RegisterPatch) -> Vec<RegisterEdit> {
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(id.as_str()))
        .map(|id| RegisterEdit {
            target: EditTarget::Asset {
                asset_id: id.clone(),
                expected_rev: None,
            },
            patch: patch.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_patch_names_its_field() {
        let fields = |text: &str| match serde_json::from_str::<Value>(text).unwrap() {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let field = |text: &str| parse_patch(fields(text)).expect_err("refused").0;
        assert_eq!(
            field(r#"{"room": "B12", "warranty_end": "31/08/2029"}"#),
            "warranty_end"
        );
        assert_eq!(field(r#"{"rooom": "B12"}"#), "rooom");
        assert_eq!(field(r#"{"cost_pence": "cheap"}"#), "cost_pence");
        assert_eq!(field(r#"{"lifecycle": "lost"}"#), "lifecycle");
        assert!(parse_patch(fields(r#"{"room": "B12", "cost_pence": null}"#)).is_ok());
        let patch = parse_patch(fields(r#"{"lifecycle": "in-repair"}"#)).unwrap();
        assert_eq!(patch.lifecycle, Some(crate::model::Lifecycle::InRepair));
        assert_eq!(patch.room, None);
    }

    #[test]
    fn bulk_edits_name_each_asset_once() {
        let ids: Vec<String> = ["a", "b", "a"].iter().map(|s| (*s).to_owned()).collect();
        let edits = bulk_edits(&ids, &RegisterPatch::default());
        assert_eq!(edits.len(), 2);
    }
}
