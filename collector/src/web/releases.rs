//! Release Management's pages: `/releases` (every software title with its version spread,
//! searchable) and `/releases/{title}` (each version and the assets running it, the
//! outdated installs, licences against installs). The query, [`titles`], is the one the
//! JSON API (`/api/v1/software`) answers from.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::Deserialize;

use super::PageError;
use super::catalog::Data;
use super::pages::{Nav, render, url_encode, viewer};
use crate::errors::Failure;
use crate::http::{ApiState, blocking};
use crate::release::{Install, ReleaseConfig, TitleSpread, spread};

/// Every title in the catalog, grouped by `config`'s policies.
pub fn titles(data: &Data, config: &ReleaseConfig) -> Vec<TitleSpread> {
    let installs = data.assets.values().flat_map(|entry| {
        entry.versions.iter().filter_map(move |(id, version)| {
            let title = data.title_names.get(usize::try_from(*id).ok()?)?;
            Some(Install {
                title,
                asset_id: &entry.asset.id,
                asset_name: &entry.asset.name,
                version,
            })
        })
    });
    spread(installs, config)
}

/// The titles as of now (the policies in force after any reload).
pub async fn current(state: &ApiState) -> Result<Vec<TitleSpread>, Failure> {
    let (release, _) = state.ops.reloader.release_finance().await;
    let web = state.web.clone();
    blocking(move || Ok(web.catalog.read(|data| titles(data, &release))?)).await
}

/// One title by its key (lower-case name), or by any name it groups.
pub fn find<'a>(titles: &'a [TitleSpread], key: &str) -> Option<&'a TitleSpread> {
    let key = key.trim().to_lowercase();
    titles.iter().find(|t| t.key == key).or_else(|| {
        titles
            .iter()
            .find(|t| t.names.iter().any(|n| n.to_lowercase() == key))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListParams {
    pub q: String,
    /// Only titles with a policy (`managed=1`).
    pub managed: Option<String>,
}

struct TitleRow {
    name: String,
    href: String,
    installs: usize,
    versions: usize,
    newest: String,
    minimum: String,
    outdated: usize,
    licences: String,
    over: u64,
}

#[derive(Template)]
#[template(path = "release_list.html")]
struct ListPage {
    nav: Nav,
    q: String,
    managed: bool,
    rows: Vec<TitleRow>,
    total: usize,
    shown: usize,
}

/// The most rows the list shows (search narrows it).
const MAX_ROWS: usize = 500;

pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<ListParams>,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let all = current(&state).await?;
    let managed = p
        .managed
        .as_deref()
        .is_some_and(|m| !m.is_empty() && m != "0");
    let found: Vec<&TitleSpread> = crate::release::search(&all, &p.q)
        .into_iter()
        .filter(|t| !managed || t.minimum_version.is_some() || t.licences.is_some())
        .collect();
    let rows = found
        .iter()
        .take(MAX_ROWS)
        .map(|t| TitleRow {
            name: t.name.clone(),
            href: format!("/releases/{}", url_encode(&t.key)),
            installs: t.installs,
            versions: t.versions.len(),
            newest: t
                .versions
                .first()
                .map(|v| v.version.clone())
                .unwrap_or_default(),
            minimum: t.minimum_version.clone().unwrap_or_default(),
            outdated: t.outdated.len(),
            licences: t.licences.map(|l| l.to_string()).unwrap_or_default(),
            over: t.over_deployed.unwrap_or(0),
        })
        .collect();
    Ok(render(&ListPage {
        nav: Nav::of(&state.web, &viewer, "releases"),
        q: p.q.clone(),
        managed,
        shown: found.len().min(MAX_ROWS),
        total: found.len(),
        rows,
    }))
}

struct VersionRow {
    version: String,
    count: usize,
    outdated: bool,
    assets: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "release_title.html")]
struct TitlePage {
    nav: Nav,
    name: String,
    names: String,
    installs: usize,
    minimum: String,
    licences: String,
    over: u64,
    incident: bool,
    versions: Vec<VersionRow>,
    outdated: Vec<(String, String, String)>,
}

pub async fn title(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let all = current(&state).await?;
    let t = find(&all, &key)
        .ok_or_else(|| PageError::not_found(format!("No software title is called {key:?}.")))?;
    let version_of = |asset: &str| {
        t.versions
            .iter()
            .filter(|v| v.outdated && v.assets.iter().any(|h| h.asset_id == asset))
            .map(|v| v.version.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(render(&TitlePage {
        nav: Nav::of(&state.web, &viewer, "releases"),
        name: t.name.clone(),
        names: t.names.join(", "),
        installs: t.installs,
        minimum: t.minimum_version.clone().unwrap_or_default(),
        licences: t.licences.map(|l| l.to_string()).unwrap_or_default(),
        over: t.over_deployed.unwrap_or(0),
        incident: t.incident,
        versions: t
            .versions
            .iter()
            .map(|v| VersionRow {
                version: if v.version.is_empty() {
                    "(not reported)".to_owned()
                } else {
                    v.version.clone()
                },
                count: v.count,
                outdated: v.outdated,
                assets: v
                    .assets
                    .iter()
                    .map(|h| (h.asset_id.clone(), display(&h.asset_name, &h.asset_id)))
                    .collect(),
            })
            .collect(),
        outdated: t
            .outdated
            .iter()
            .map(|h| {
                (
                    h.asset_id.clone(),
                    display(&h.asset_name, &h.asset_id),
                    version_of(&h.asset_id),
                )
            })
            .collect(),
    }))
}

fn display(name: &str, id: &str) -> String {
    if name.is_empty() {
        id.to_owned()
    } else {
        name.to_owned()
    }
}
