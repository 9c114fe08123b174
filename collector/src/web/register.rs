//! The register in the dashboard (FITS Configuration Management): the "Register" section of
//! an asset's page with its edit form, the "New manual asset" page and the bulk edit of a
//! filtered asset list ("move 30 PCs to room B12").
//!
//! Plain forms (no JavaScript needed), POST-redirect-GET, the session's form token and the
//! Origin check like every other form; read-only users see the fields but no forms, and
//! their POSTs get 403. Every edit is one `Job::EditRegister` through
//! [`crate::http::register::run`]; the form carries the `register_rev` it was drawn from,
//! so an edit racing another one is shown as a conflict with the current values and never
//! overwrites them.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::PageError;
use super::auth::Viewer;
use super::pages::{KINDS, Nav, form_rejected, render, url_encode};
use crate::cmdb::register::{FIELDS, field_text};
use crate::http::ApiState;
use crate::http::register::{MAX_BULK, bulk_edits, describe, run};
use crate::model::register::{
    EditError, EditTarget, NewAsset, RegisterEdit, RegisterPatch, iso_date,
};
use crate::model::{Asset, AssetKind, Lifecycle, RegisterFields};

/// A form's fields as the browser sent them (repeated names kept, e.g. ticked `ids`).
type Fields = Vec<(String, String)>;

/// A register field's name as the forms show it (empty for an unknown field).
pub(super) fn label(field: &str) -> &'static str {
    match field {
        "asset_tag" => "Asset tag",
        "site" => "Site",
        "building" => "Building",
        "room" => "Room",
        "assigned_user" => "Assigned user",
        "department" => "Department",
        "purchase_date" => "Purchase date",
        "supplier" => "Supplier",
        "order_ref" => "Order reference",
        "cost_pence" => "Cost (£)",
        "warranty_end" => "Warranty end",
        "funding" => "Funding",
        "notes" => "Notes",
        "lifecycle" => "Lifecycle",
        "disposal_ref" => "Disposal reference",
        _ => "",
    }
}

/// Pence as pounds, `1234.50`.
pub fn pounds(pence: i64) -> String {
    format!(
        "{}{}.{:02}",
        if pence < 0 { "-" } else { "" },
        pence.abs() / 100,
        pence.abs() % 100
    )
}

/// `499.99`, `£1,200`, `12.5` → pence.
fn parse_pounds(text: &str) -> Option<i64> {
    let text: String = text
        .trim()
        .trim_start_matches('£')
        .chars()
        .filter(|c| *c != ',' && *c != ' ')
        .collect();
    let negative = text.starts_with('-');
    let digits = text.trim_start_matches('-');
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 2
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    let pence = whole.checked_mul(100)?.checked_add(frac)?;
    Some(if negative { -pence } else { pence })
}

/// One field of the register form.
pub struct FieldView {
    pub name: &'static str,
    pub label: &'static str,
    /// `text`, `date`, `money`, `notes`, `lifecycle`.
    pub input: &'static str,
    pub value: String,
}

/// The register form's fields filled from `fields`, or from what the user typed.
fn field_views(fields: &RegisterFields, typed: Option<&Fields>) -> Vec<FieldView> {
    FIELDS
        .iter()
        .map(|name| {
            let value = match typed {
                Some(typed) => value_of(typed, form_name(name)).to_owned(),
                None if *name == "cost_pence" => fields.cost_pence.map(pounds).unwrap_or_default(),
                None => field_text(fields, name),
            };
            FieldView {
                name: form_name(name),
                label: label(name),
                input: match *name {
                    "purchase_date" | "warranty_end" => "date",
                    "cost_pence" => "money",
                    "notes" => "notes",
                    "lifecycle" => "lifecycle",
                    _ => "text",
                },
                value,
            }
        })
        .collect()
}

/// The form's name for a register field (the cost is typed in pounds).
fn form_name(field: &'static str) -> &'static str {
    if field == "cost_pence" { "cost" } else { field }
}

fn value_of<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn lifecycles() -> Vec<&'static str> {
    Lifecycle::ALL.iter().map(|l| l.as_str()).collect()
}

/// A register patch from a form. `all`: every field is set (an empty box clears it), as
/// the asset's own form shows every field; otherwise only filled boxes count (bulk edit).
/// Errors name the field.
fn patch_from(fields: &Fields, all: bool) -> Result<RegisterPatch, (String, String)> {
    let mut patch = RegisterPatch::default();
    for name in FIELDS {
        let key = form_name(name);
        let Some((_, value)) = fields.iter().find(|(k, _)| k == key) else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() && !all {
            continue;
        }
        let text = Some(value.to_owned());
        let date = || -> Result<Option<Option<time::Date>>, (String, String)> {
            if value.is_empty() {
                return Ok(Some(None));
            }
            iso_date::parse(value).map(|d| Some(Some(d))).map_err(|_| {
                (
                    name.to_owned(),
                    format!("{value:?} is not a date (YYYY-MM-DD)"),
                )
            })
        };
        match name {
            "asset_tag" => patch.asset_tag = text,
            "site" => patch.site = text,
            "building" => patch.building = text,
            "room" => patch.room = text,
            "assigned_user" => patch.assigned_user = text,
            "department" => patch.department = text,
            "supplier" => patch.supplier = text,
            "order_ref" => patch.order_ref = text,
            "funding" => patch.funding = text,
            "notes" => patch.notes = text,
            "disposal_ref" => patch.disposal_ref = text,
            "purchase_date" => patch.purchase_date = date()?,
            "warranty_end" => patch.warranty_end = date()?,
            "cost_pence" => {
                patch.cost_pence = if value.is_empty() {
                    Some(None)
                } else {
                    Some(Some(parse_pounds(value).ok_or_else(|| {
                        (
                            name.to_owned(),
                            format!("{value:?} is not an amount in pounds, e.g. 499.99"),
                        )
                    })?))
                }
            }
            "lifecycle" => {
                patch.lifecycle = Some(Lifecycle::parse(value).ok_or_else(|| {
                    (
                        name.to_owned(),
                        format!("{value:?} is not a lifecycle state"),
                    )
                })?)
            }
            _ => {}
        }
    }
    Ok(patch)
}

/// The "Register" section of an asset's page.
#[derive(Template)]
#[template(path = "register_section.html")]
pub struct Section {
    pub id: String,
    pub rev: u64,
    pub can_act: bool,
    pub csrf: String,
    /// `(label, value)` of every field, for reading.
    pub facts: Vec<(&'static str, String)>,
    pub form: Vec<FieldView>,
    pub lifecycles: Vec<&'static str>,
    pub notes: String,
}

fn facts(fields: &RegisterFields) -> Vec<(&'static str, String)> {
    FIELDS
        .iter()
        .filter(|n| **n != "notes")
        .map(|name| {
            let value = if *name == "cost_pence" {
                fields
                    .cost_pence
                    .map(|p| format!("£{}", pounds(p)))
                    .unwrap_or_default()
            } else {
                field_text(fields, name)
            };
            (label(name), value)
        })
        .collect()
}

/// The section for `asset` as `viewer` sees it (forms only for those who may act).
pub fn section(asset: &Asset, viewer: &Viewer) -> Section {
    Section {
        id: asset.id.clone(),
        rev: asset.register_rev,
        can_act: viewer.user.role.can_act(),
        csrf: viewer.session.csrf.clone(),
        // Only what is recorded: a row of bare labels tells the technician nothing.
        facts: facts(&asset.register)
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .collect(),
        form: field_views(&asset.register, None),
        lifecycles: lifecycles(),
        notes: asset.register.notes.clone(),
    }
}

/// An edit that could not be kept: the form again with what was typed, why, and (after a
/// conflict) the values someone else saved meanwhile.
#[derive(Template)]
#[template(path = "register_edit.html")]
struct EditPage {
    nav: Nav,
    id: String,
    name: String,
    rev: u64,
    csrf: String,
    conflict: bool,
    message: String,
    field: String,
    current: Vec<(&'static str, String)>,
    form: Vec<FieldView>,
    lifecycles: Vec<&'static str>,
}

fn logged_in(state: &ApiState, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, PageError> {
    state.web.auth.viewer(headers).ok_or_else(|| {
        PageError::Login(
            uri.path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        )
    })
}

/// Read-only users and forged forms stop here.
fn may_post(
    state: &ApiState,
    headers: &HeaderMap,
    uri: &Uri,
    fields: &Fields,
) -> Result<Viewer, PageError> {
    let viewer = logged_in(state, headers, uri)?;
    state
        .web
        .auth
        .check_post(headers, Some(&viewer), value_of(fields, "csrf"))?;
    viewer.may_act()?;
    Ok(viewer)
}

async fn load(state: &ApiState, id: &str) -> Result<Option<Asset>, PageError> {
    let store = state.store.clone();
    let key = id.to_owned();
    Ok(crate::http::blocking(move || Ok(store.asset(&key)?)).await?)
}

/// `POST /assets/{id}/register`: the asset page's register form.
pub async fn edit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(fields) = form.map_err(form_rejected)?;
    let viewer = may_post(&state, &headers, &uri, &fields)?;
    let Some(asset) = load(&state, &id).await? else {
        return Err(PageError::not_found(format!("There is no asset {id}.")));
    };
    let expected = value_of(&fields, "expected_rev").trim().parse::<u64>().ok();
    let page =
        |status: StatusCode, conflict: bool, message: String, field: String, asset: &Asset| {
            let mut response = render(&EditPage {
                nav: Nav::of(&state.web, &viewer, "assets"),
                id: asset.id.clone(),
                name: asset.name.clone(),
                rev: asset.register_rev,
                csrf: viewer.session.csrf.clone(),
                conflict,
                message,
                field,
                // Every field, an empty one as a dash, to compare with the edit below.
                current: facts(&asset.register)
                    .into_iter()
                    .chain([("Notes", asset.register.notes.clone())])
                    .map(|(k, v)| (k, if v.is_empty() { "–".to_owned() } else { v }))
                    .collect(),
                form: field_views(&asset.register, Some(&fields)),
                lifecycles: lifecycles(),
            });
            *response.status_mut() = status;
            response
        };
    let patch = match patch_from(&fields, true) {
        Ok(patch) => patch,
        Err((field, message)) => {
            return Ok(page(
                StatusCode::UNPROCESSABLE_ENTITY,
                false,
                format!("{}: {message}", label(&field)),
                field,
                &asset,
            ));
        }
    };
    let edit = RegisterEdit {
        target: EditTarget::Asset {
            asset_id: id.clone(),
            expected_rev: expected,
        },
        patch,
    };
    match run(&state, vec![edit], viewer.user.name.clone(), false).await? {
        Ok(_) => Ok(Redirect::to(&format!("/assets/{}#register", url_encode(&id))).into_response()),
        Err(error) => {
            // Show what is stored now (someone else's values after a conflict).
            let current = load(&state, &id).await?.unwrap_or(asset);
            let (status, conflict, field) = match &error {
                EditError::Conflict { .. } => (StatusCode::CONFLICT, true, String::new()),
                EditError::DuplicateTag { .. } => {
                    (StatusCode::CONFLICT, false, "asset_tag".to_owned())
                }
                EditError::NotFound { .. } => (StatusCode::NOT_FOUND, false, String::new()),
                EditError::Invalid { field, .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, false, field.clone())
                }
            };
            let message = if conflict {
                "This asset was changed by someone else since you opened it. Nothing was \
                 overwritten: below are the values saved now, and your edit to review and \
                 send again."
                    .to_owned()
            } else {
                describe_for_page(&error)
            };
            Ok(page(status, conflict, message, field, &current))
        }
    }
}

fn describe_for_page(error: &EditError) -> String {
    match error {
        EditError::Invalid { field, message, .. } => {
            let name = label(field);
            format!("{}: {message}", if name.is_empty() { field } else { name })
        }
        other => describe(other),
    }
}

// ---- New manual asset

#[derive(Template)]
#[template(path = "register_new.html")]
struct NewPage {
    nav: Nav,
    csrf: String,
    message: String,
    field: String,
    kinds: Vec<&'static str>,
    kind: String,
    name: String,
    vendor: String,
    model: String,
    serial: String,
    macs: String,
    form: Vec<FieldView>,
    lifecycles: Vec<&'static str>,
}

/// Kinds a technician records by hand first, then the rest.
fn manual_kinds() -> Vec<&'static str> {
    let first = [
        "display",
        "visualiser",
        "trolley",
        "projector",
        "laptop",
        "other",
    ];
    first
        .iter()
        .copied()
        .chain(KINDS.iter().copied().filter(|k| !first.contains(k)))
        .collect()
}

fn new_page(viewer: &Viewer, state: &ApiState, fields: Option<&Fields>) -> NewPage {
    let typed = |name: &str| {
        fields
            .map(|f| value_of(f, name).to_owned())
            .unwrap_or_default()
    };
    NewPage {
        nav: Nav::of(&state.web, viewer, "assets"),
        csrf: viewer.session.csrf.clone(),
        message: String::new(),
        field: String::new(),
        kinds: manual_kinds(),
        kind: typed("kind"),
        name: typed("name"),
        vendor: typed("vendor"),
        model: typed("model"),
        serial: typed("serial"),
        macs: typed("macs"),
        form: field_views(&RegisterFields::default(), fields),
        lifecycles: lifecycles(),
    }
}

/// `GET /assets/new`.
pub async fn new_form(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = logged_in(&state, &headers, &uri)?;
    viewer.may_act()?;
    Ok(render(&new_page(&viewer, &state, None)))
}

/// `POST /assets/new`.
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(fields) = form.map_err(form_rejected)?;
    let viewer = may_post(&state, &headers, &uri, &fields)?;
    let refuse = |status: StatusCode, field: &str, message: String| {
        let mut page = new_page(&viewer, &state, Some(&fields));
        page.message = message;
        page.field = field.to_owned();
        let mut response = render(&page);
        *response.status_mut() = status;
        response
    };
    let kind_text = value_of(&fields, "kind");
    let Ok(kind) = serde_json::from_value::<AssetKind>(serde_json::json!(kind_text)) else {
        return Ok(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind",
            format!("Kind: {kind_text:?} is not a kind of asset"),
        ));
    };
    let new = NewAsset {
        kind,
        name: value_of(&fields, "name").to_owned(),
        vendor: value_of(&fields, "vendor").to_owned(),
        model: value_of(&fields, "model").to_owned(),
        serial: value_of(&fields, "serial").to_owned(),
        macs: value_of(&fields, "macs")
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    let patch = match patch_from(&fields, false) {
        Ok(patch) => patch,
        Err((field, message)) => {
            return Ok(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                &field,
                format!("{}: {message}", label(&field)),
            ));
        }
    };
    let edit = RegisterEdit {
        target: EditTarget::New(new),
        patch,
    };
    match run(&state, vec![edit], viewer.user.name.clone(), false).await? {
        Ok(outcomes) => Ok(
            Redirect::to(&format!("/assets/{}", url_encode(&outcomes[0].asset_id))).into_response(),
        ),
        Err(error) => {
            let field = match &error {
                EditError::Invalid { field, .. } => field.clone(),
                EditError::DuplicateTag { .. } => "asset_tag".to_owned(),
                _ => String::new(),
            };
            let status = if matches!(error, EditError::DuplicateTag { .. }) {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Ok(refuse(status, &field, describe_for_page(&error)))
        }
    }
}

// ---- Bulk edit

/// The bulk edit acts on what the asset list's filters match (its sort and page are unused).
pub type BulkParams = super::pages::AssetParams;

struct BulkRow {
    id: String,
    name: String,
    kind: String,
    room: String,
    department: String,
    lifecycle: &'static str,
}

#[derive(Template)]
#[template(path = "register_bulk.html")]
struct BulkPage {
    nav: Nav,
    csrf: String,
    filter: String,
    rows: Vec<BulkRow>,
    total: usize,
    message: String,
    error: bool,
    form: Vec<FieldView>,
    lifecycles: Vec<&'static str>,
}

async fn bulk_page(
    state: &ApiState,
    viewer: &Viewer,
    p: &BulkParams,
    fields: Option<&Fields>,
) -> Result<BulkPage, PageError> {
    let (rows, total) = crate::web::query::assets(
        state,
        crate::web::query::AssetQuery {
            limit: MAX_BULK,
            ..p.filters()
        },
    )
    .await?;
    let filter = p.filter_url();
    let mut form = field_views(&RegisterFields::default(), fields);
    if fields.is_none() {
        // Nothing is preselected: a bulk edit sets only what is filled in.
        for f in &mut form {
            f.value.clear();
        }
    }
    Ok(BulkPage {
        nav: Nav::of(&state.web, viewer, "assets"),
        csrf: viewer.session.csrf.clone(),
        filter,
        rows: rows
            .into_iter()
            .map(|l| BulkRow {
                id: l.asset.id.clone(),
                name: l.asset.name.clone(),
                kind: crate::web::query::kind_name(&l.asset).to_owned(),
                room: l.asset.register.room.clone(),
                department: l.asset.register.department.clone(),
                lifecycle: l.asset.register.lifecycle.as_str(),
            })
            .collect(),
        total,
        message: String::new(),
        error: false,
        form,
        lifecycles: lifecycles(),
    })
}

/// `GET /assets/bulk?<the asset list's filters>`.
pub async fn bulk_form(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<BulkParams>,
) -> Result<Response, PageError> {
    let viewer = logged_in(&state, &headers, &uri)?;
    viewer.may_act()?;
    Ok(render(&bulk_page(&state, &viewer, &p, None).await?))
}

/// `POST /assets/bulk?<filters>`: the ticked rows get the filled-in fields, in one job.
pub async fn bulk(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<BulkParams>,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(fields) = form.map_err(form_rejected)?;
    let viewer = may_post(&state, &headers, &uri, &fields)?;
    let ids: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.clone())
        .collect();
    let mut page = bulk_page(&state, &viewer, &p, Some(&fields)).await?;
    let fail = |mut page: BulkPage, status: StatusCode, message: String| {
        page.message = message;
        page.error = true;
        let mut response = render(&page);
        *response.status_mut() = status;
        response
    };
    if ids.is_empty() {
        return Ok(fail(
            page,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Tick at least one asset.".to_owned(),
        ));
    }
    if ids.len() > MAX_BULK {
        return Ok(fail(
            page,
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("At most {MAX_BULK} assets in one edit."),
        ));
    }
    let patch = match patch_from(&fields, false) {
        Ok(patch) => patch,
        Err((field, message)) => {
            return Ok(fail(
                page,
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{}: {message}", label(&field)),
            ));
        }
    };
    if patch == RegisterPatch::default() {
        return Ok(fail(
            page,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Fill in at least one field to set.".to_owned(),
        ));
    }
    let edits = bulk_edits(&ids, &patch);
    match run(&state, edits, viewer.user.name.clone(), false).await? {
        Ok(outcomes) => {
            let changed = outcomes.iter().filter(|o| !o.changes.is_empty()).count();
            // Drawn again: the list shows the new values.
            page = bulk_page(&state, &viewer, &p, None).await?;
            page.message = format!(
                "Changed {changed} of {} selected assets (one change record per field and asset).",
                outcomes.len()
            );
            Ok(render(&page))
        }
        Err(error) => {
            let status = match error {
                EditError::Conflict { .. } | EditError::DuplicateTag { .. } => StatusCode::CONFLICT,
                EditError::NotFound { .. } => StatusCode::NOT_FOUND,
                EditError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Ok(fail(
                page,
                status,
                format!("Nothing was changed. {}", describe_for_page(&error)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pounds_read_and_write() {
        assert_eq!(parse_pounds("499.99"), Some(49_999));
        assert_eq!(parse_pounds("£1,200"), Some(120_000));
        assert_eq!(parse_pounds("12.5"), Some(1_250));
        assert_eq!(parse_pounds("-3"), Some(-300));
        assert_eq!(parse_pounds("12.345"), None);
        assert_eq!(parse_pounds("cheap"), None);
        assert_eq!(parse_pounds(""), None);
        assert_eq!(pounds(49_999), "499.99");
        assert_eq!(pounds(5), "0.05");
    }

    #[test]
    fn a_form_becomes_a_patch_naming_bad_fields() {
        let form = |pairs: &[(&str, &str)]| -> Fields {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let patch = patch_from(
            &form(&[("room", " B12 "), ("cost", "£450"), ("warranty_end", "")]),
            true,
        )
        .unwrap();
        assert_eq!(patch.room.as_deref(), Some("B12"));
        assert_eq!(patch.cost_pence, Some(Some(45_000)));
        assert_eq!(patch.warranty_end, Some(None), "an empty box clears");
        let bulk = patch_from(&form(&[("room", "B12"), ("department", "")]), false).unwrap();
        assert_eq!(
            bulk.department, None,
            "bulk: empty boxes leave fields alone"
        );
        assert_eq!(
            patch_from(&form(&[("warranty_end", "31/08/2029")]), true)
                .unwrap_err()
                .0,
            "warranty_end"
        );
        assert_eq!(
            patch_from(&form(&[("cost", "lots")]), true).unwrap_err().0,
            "cost_pence"
        );
        assert_eq!(
            patch_from(&form(&[("lifecycle", "lost")]), true)
                .unwrap_err()
                .0,
            "lifecycle"
        );
    }
}
