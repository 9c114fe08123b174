//! The technician's pages: overview, assets, one asset, incidents, one incident (with its
//! actions), problems, changes. Each page is `X.html` (the whole page, extending
//! `base.html`) and, where htmx refreshes part of it, `X_partial.html`, served alone at
//! `/ui/X` to htmx requests only. Askama escapes every value; the SVG charts are built by
//! `charts`, which escapes its own text.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::auth::Viewer;
use super::query::{self, AssetQuery, IncidentQuery, status_name};
use super::{PageError, Web, charts, require_htmx};
use crate::http::{ApiState, blocking};
use crate::incidents::Action;
use crate::model::{Change, Incident, IncidentState};
use crate::register::Job;
use crate::store::ChangeQuery;

const PER_PAGE: usize = 50;

/// What the layout shows: who is logged in, their form token, the active section.
pub struct Nav {
    pub user: String,
    pub role: String,
    pub csrf: String,
    pub can_act: bool,
    pub active: &'static str,
    pub school: String,
}

impl Nav {
    pub fn anonymous(web: &Web) -> Self {
        Self {
            user: String::new(),
            role: String::new(),
            csrf: String::new(),
            can_act: false,
            active: "",
            school: web.config.school_name.clone(),
        }
    }

    pub fn of(web: &Web, viewer: &Viewer, active: &'static str) -> Self {
        Self {
            user: viewer.user.name.clone(),
            role: viewer.user.role.name().to_owned(),
            csrf: viewer.session.csrf.clone(),
            can_act: viewer.user.role.can_act(),
            active,
            school: web.config.school_name.clone(),
        }
    }
}

/// Renders a template as an HTML response (500 if the template fails).
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "A dashboard template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Nav,
    status: u16,
    reason: String,
    message: String,
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        nav: Nav {
            user: String::new(),
            role: String::new(),
            csrf: String::new(),
            can_act: false,
            active: "",
            school: String::new(),
        },
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error").to_owned(),
        message: message.to_owned(),
    };
    let mut response = render(&page);
    *response.status_mut() = status;
    response
}

/// A form that could not be read: too large → 413, anything else → 400.
pub fn form_rejected(rejection: axum::extract::rejection::FormRejection) -> PageError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        PageError::Status(
            status,
            "The form is larger than the collector accepts (64 KiB).".to_owned(),
        )
    } else {
        PageError::Status(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

pub fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The logged-in user, or a redirect to the login page that comes back here.
pub(super) fn viewer(
    state: &ApiState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Viewer, PageError> {
    state.web.auth.viewer(headers).ok_or_else(|| {
        PageError::Login(
            uri.path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        )
    })
}

/// "3 d 4 h", "5 h 12 min", "7 min".
pub fn age(now: OffsetDateTime, at: OffsetDateTime) -> String {
    let secs = (now - at).whole_seconds().max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    }
}

fn state_name(state: IncidentState) -> &'static str {
    match state {
        IncidentState::New => "new",
        IncidentState::InProgress => "in progress",
        IncidentState::OnHold => "on hold",
        IncidentState::Resolved => "resolved",
        IncidentState::Closed => "closed",
    }
}

fn kind_of(kind: crate::model::AssetKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

// ---- Overview

struct KindRow {
    kind: String,
    up: usize,
    down: usize,
    unknown: usize,
}

struct PriorityRow {
    priority: u8,
    count: usize,
    oldest: String,
}

pub struct IncidentRow {
    id: String,
    number: String,
    priority: u8,
    title: String,
    asset_id: String,
    asset_name: String,
    state: &'static str,
    opened: String,
    age: String,
    assigned: String,
}

fn incident_row(web: &Web, now: OffsetDateTime, i: &Incident) -> IncidentRow {
    IncidentRow {
        id: i.id.clone(),
        number: i.number.clone(),
        priority: i.priority,
        title: i.title.clone(),
        asset_id: i.asset_id.clone(),
        asset_name: i.asset_name.clone(),
        state: state_name(i.state),
        opened: web.local(i.opened_at),
        age: age(now, i.opened_at),
        assigned: i.desk.assigned_to.clone().unwrap_or_default(),
    }
}

struct ChangeRow {
    id: String,
    millis: i64,
    asset_id: String,
    at: String,
    kind: String,
    field: String,
    before: String,
    after: String,
    expected_by: String,
    author: String,
}

fn change_row(web: &Web, c: &Change) -> ChangeRow {
    ChangeRow {
        id: c.id.clone(),
        millis: crate::model::unix_millis(c.at),
        asset_id: c.asset_id.clone(),
        at: web.local(c.at),
        kind: c.kind.clone(),
        field: c.field.clone(),
        before: c.before.clone().unwrap_or_default(),
        after: c.after.clone().unwrap_or_default(),
        expected_by: c.expected_by.clone().unwrap_or_default(),
        author: c.author.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "overview_partial.html")]
struct OverviewPartial {
    kinds: Vec<KindRow>,
    totals: (usize, usize, usize),
    priorities: Vec<PriorityRow>,
    urgent: Vec<IncidentRow>,
    capacity: Vec<(String, String, String)>,
    changes: Vec<ChangeRow>,
    last_sweep: String,
    agents: (usize, usize),
    problems: Vec<String>,
    updated: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: Nav,
    body: OverviewPartial,
}

async fn overview_body(state: &ApiState) -> Result<OverviewPartial, PageError> {
    let web = &state.web;
    let figures = query::overview(state).await?;
    let store = state.store.clone();
    let changes = blocking(move || {
        Ok(store.changes(&ChangeQuery {
            asset: None,
            since: None,
            limit: 10,
        })?)
    })
    .await?;
    let now = OffsetDateTime::now_utc();
    Ok(OverviewPartial {
        kinds: figures
            .by_kind
            .into_iter()
            .map(|(kind, up, down, unknown)| KindRow {
                kind,
                up,
                down,
                unknown,
            })
            .collect(),
        totals: figures.totals,
        priorities: figures
            .by_priority
            .into_iter()
            .map(|(priority, count, oldest)| PriorityRow {
                priority,
                count,
                oldest: oldest.map(|o| age(now, o)).unwrap_or_default(),
            })
            .collect(),
        urgent: figures
            .urgent
            .iter()
            .map(|i| incident_row(web, now, i))
            .collect(),
        capacity: figures.capacity,
        changes: changes.iter().map(|c| change_row(web, c)).collect(),
        last_sweep: figures
            .last_sweep
            .map(|at| format!("{} ({} ago)", web.local(at), age(now, at)))
            .unwrap_or_else(|| "none yet".to_owned()),
        agents: figures.agents,
        problems: state
            .health
            .problems()
            .into_iter()
            .map(|(component, since, reason)| {
                format!("{component}: {reason} (since {})", web.local(since))
            })
            .collect(),
        updated: web.local(now),
    })
}

pub async fn overview(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let body = overview_body(&state).await?;
    Ok(render(&OverviewPage {
        nav: Nav::of(&state.web, &viewer, "overview"),
        body,
    }))
}

pub async fn overview_partial(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    require_htmx(&headers)?;
    viewer(&state, &headers, &uri)?;
    Ok(render(&overview_body(&state).await?))
}

// ---- Assets

#[derive(Deserialize, Default)]
pub struct AssetParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    pub(super) room: String,
    #[serde(default)]
    pub(super) department: String,
    #[serde(default)]
    pub(super) lifecycle: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    desc: Option<String>,
    page: Option<usize>,
}

impl AssetParams {
    /// The list's filters as a catalog query (no sort, no paging).
    pub(super) fn filters(&self) -> AssetQuery {
        AssetQuery {
            q: self.q.clone(),
            kind: self.kind.clone(),
            status: self.status.clone(),
            source: self.source.clone(),
            location: self.location.clone(),
            room: self.room.clone(),
            department: self.department.clone(),
            lifecycle: self.lifecycle.clone(),
            ..AssetQuery::default()
        }
    }

    /// The filters as URL query text, for links that keep them.
    pub(super) fn filter_url(&self) -> String {
        format!(
            "q={}&kind={}&status={}&source={}&location={}&room={}&department={}&lifecycle={}",
            url_encode(&self.q),
            url_encode(&self.kind),
            url_encode(&self.status),
            url_encode(&self.source),
            url_encode(&self.location),
            url_encode(&self.room),
            url_encode(&self.department),
            url_encode(&self.lifecycle),
        )
    }
}

struct AssetRow {
    id: String,
    name: String,
    kind: String,
    status: &'static str,
    ip: String,
    mac: String,
    os: String,
    model: String,
    location: String,
    users: String,
    last_seen: String,
}

#[derive(Template)]
#[template(path = "assets_partial.html")]
struct AssetsPartial {
    rows: Vec<AssetRow>,
    total: usize,
    page: usize,
    pages: usize,
    /// The query string without `page` (for the pager links).
    base: String,
    /// The filters alone, for the bulk edit link: it is in the fragment htmx swaps, so it
    /// always edits what the list shows now.
    filter: String,
    can_act: bool,
}

#[derive(Template)]
#[template(path = "assets.html")]
struct AssetsPage {
    nav: Nav,
    q: String,
    kind: String,
    status: String,
    source: String,
    location: String,
    room: String,
    department: String,
    lifecycle: String,
    lifecycles: Vec<&'static str>,
    sort: String,
    desc: bool,
    kinds: Vec<&'static str>,
    body: AssetsPartial,
}

pub const KINDS: [&str; 16] = [
    "pc",
    "server",
    "laptop",
    "printer",
    "switch",
    "router",
    "access-point",
    "ups",
    "nas",
    "projector",
    "phone",
    "display",
    "visualiser",
    "trolley",
    "other",
    "unknown",
];

async fn assets_body(
    state: &ApiState,
    p: &AssetParams,
    viewer: &Viewer,
) -> Result<AssetsPartial, PageError> {
    let page = p.page.unwrap_or(1).max(1);
    let (rows, total) = query::assets(
        state,
        AssetQuery {
            sort: p.sort.clone(),
            desc: p.desc.is_some(),
            offset: (page - 1) * PER_PAGE,
            limit: PER_PAGE,
            ..p.filters()
        },
    )
    .await?;
    let web = &state.web;
    let base = format!(
        "{}&sort={}{}",
        p.filter_url(),
        url_encode(&p.sort),
        if p.desc.is_some() { "&desc=1" } else { "" }
    );
    Ok(AssetsPartial {
        rows: rows
            .into_iter()
            .map(|l| AssetRow {
                id: l.asset.id.clone(),
                name: l.asset.name.clone(),
                kind: kind_of(l.asset.kind),
                status: status_name(l.status),
                ip: l.asset.ips.join(", "),
                mac: l.asset.macs.first().cloned().unwrap_or_default(),
                os: l.asset.os.clone(),
                model: [l.asset.vendor.as_str(), l.asset.model.as_str()]
                    .join(" ")
                    .trim()
                    .to_owned(),
                location: l.location,
                users: l.users.join(", "),
                last_seen: l.last_seen.map(|t| web.local(t)).unwrap_or_default(),
            })
            .collect(),
        total,
        page,
        pages: total.div_ceil(PER_PAGE).max(1),
        base,
        filter: p.filter_url(),
        can_act: viewer.user.role.can_act(),
    })
}

pub async fn assets(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<AssetParams>,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let body = assets_body(&state, &p, &viewer).await?;
    Ok(render(&AssetsPage {
        nav: Nav::of(&state.web, &viewer, "assets"),
        desc: p.desc.is_some(),
        lifecycles: crate::model::Lifecycle::ALL
            .iter()
            .map(|l| l.as_str())
            .collect(),
        room: p.room,
        department: p.department,
        lifecycle: p.lifecycle,
        q: p.q,
        kind: p.kind,
        status: p.status,
        source: p.source,
        location: p.location,
        sort: p.sort,
        kinds: KINDS.to_vec(),
        body,
    }))
}

pub async fn assets_partial(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<AssetParams>,
) -> Result<Response, PageError> {
    require_htmx(&headers)?;
    let viewer = viewer(&state, &headers, &uri)?;
    Ok(render(&assets_body(&state, &p, &viewer).await?))
}

// ---- One asset

#[derive(Deserialize, Default)]
pub struct AssetPageParams {
    #[serde(default)]
    window: String,
    #[serde(default)]
    sw: String,
}

struct Software {
    name: String,
    version: String,
    publisher: String,
}

struct Iface {
    name: String,
    mac: String,
    addresses: String,
    speed: String,
    state: String,
}

struct Bar {
    name: String,
    percent: f64,
    low: bool,
}

#[derive(Template)]
#[template(path = "asset.html")]
struct AssetPage {
    nav: Nav,
    id: String,
    register: super::register::Section,
    name: String,
    facts: Vec<(&'static str, String)>,
    notes: Vec<String>,
    hardware: Vec<(String, String)>,
    software: Vec<Software>,
    software_total: usize,
    sw: String,
    interfaces: Vec<Iface>,
    supplies: Vec<Bar>,
    window: String,
    timeline: String,
    timeline_note: String,
    disk_chart: String,
    disk_notes: Vec<String>,
    supply_chart: String,
    supply_notes: Vec<String>,
    changes: Vec<ChangeRow>,
    incidents: Vec<IncidentRow>,
    ports: Vec<Iface>,
    fdb: Vec<(String, String, String)>,
    lldp: Vec<(String, String, String, String)>,
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

pub async fn asset(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(p): Query<AssetPageParams>,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let web = state.web.clone();
    let window = match p.window.as_str() {
        "7d" => "7d",
        "30d" => "30d",
        _ => "24h",
    };
    let span = match window {
        "7d" => time::Duration::days(7),
        "30d" => time::Duration::days(30),
        _ => time::Duration::hours(24),
    };
    let now = OffsetDateTime::now_utc();
    let from = now - span;
    let store = state.store.clone();
    let key = id.clone();
    let loaded = blocking(move || {
        let Some(asset) = store.asset(&key)? else {
            return Ok(None);
        };
        let far = now + time::Duration::days(1);
        let month = now - time::Duration::days(30);
        Ok(Some((
            asset,
            store.inventory(&key)?,
            store.snmp(&key)?,
            store.reach(&key, from, far, 50_000)?,
            store.samples(&key, month, far, 5_000)?,
            store.levels(&key, month, far)?,
            store.changes(&ChangeQuery {
                asset: Some(key.clone()),
                since: None,
                limit: 50,
            })?,
        )))
    })
    .await?;
    let Some((asset, inventory, snmp, reach, samples, levels, changes)) = loaded else {
        return Err(PageError::not_found(format!("There is no asset {id}.")));
    };
    let (incidents, _) = query::incidents(
        &state,
        IncidentQuery {
            status: "all".to_owned(),
            asset: Some(asset.id.clone()),
            limit: 20,
            ..Default::default()
        },
    )
    .await?;
    let (listed, _) = query::assets(
        &state,
        AssetQuery {
            q: asset.id.clone(),
            ..Default::default()
        },
    )
    .await?;
    let status = listed
        .iter()
        .find(|l| l.asset.id == asset.id)
        .map(|l| (status_name(l.status), l.last_seen));

    let inv = inventory.map(|r| r.inventory).unwrap_or_default();
    let sources: Vec<String> = asset
        .sources
        .iter()
        .filter_map(|s| {
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        })
        .collect();
    let mut facts: Vec<(&'static str, String)> = vec![
        ("Status", status.map_or("unknown", |s| s.0).to_owned()),
        ("Kind", kind_of(asset.kind)),
        ("Hostname", asset.hostname.clone()),
        ("IP addresses", asset.ips.join(", ")),
        ("MAC addresses", asset.macs.join(", ")),
        (
            "Vendor / model",
            format!("{} {}", asset.vendor, asset.model)
                .trim()
                .to_owned(),
        ),
        ("Serial", asset.serial.clone()),
        ("Operating system", asset.os.clone()),
        ("Sources", sources.join(", ")),
        ("First seen", web.local(asset.first_seen)),
        (
            "Last seen",
            status
                .and_then(|s| s.1)
                .map(|t| web.local(t))
                .unwrap_or_default(),
        ),
        ("Classification", asset.classification.clone()),
        ("Asset id", asset.id.clone()),
    ];
    if let Some(snmp) = &snmp {
        facts.push(("Location", snmp.system.location.clone()));
        facts.push(("Contact", snmp.system.contact.clone()));
    }
    facts.retain(|(_, v)| !v.is_empty());
    let notes = asset
        .identity_notes
        .iter()
        .map(|n| {
            format!(
                "{}: agent {} joined (score {}): {}",
                web.local(n.at),
                n.agent_id,
                n.score,
                n.reasons.join(", ")
            )
        })
        .collect();

    let mut hardware: Vec<(String, String)> = Vec::new();
    if let Some(hw) = &inv.hardware {
        hardware.push((
            "CPU".into(),
            format!(
                "{} ({} cores, {} threads)",
                hw.cpu_model, hw.cpu_cores, hw.cpu_threads
            ),
        ));
        hardware.push(("Memory".into(), bytes(hw.ram_bytes)));
        hardware.push((
            "BIOS".into(),
            format!("{} {} {}", hw.bios_vendor, hw.bios_version, hw.bios_date),
        ));
        hardware.push((
            "Board".into(),
            format!("{} {}", hw.board_vendor, hw.board_model),
        ));
        hardware.push(("Chassis".into(), hw.chassis.clone()));
    }
    if let Some(sys) = &inv.system {
        hardware.push((
            "OS".into(),
            format!("{} {} {}", sys.os_name, sys.os_version, sys.os_build),
        ));
        hardware.push(("Kernel".into(), sys.kernel.clone()));
        hardware.push(("Domain".into(), sys.domain.clone()));
    }
    for disk in &inv.disks {
        hardware.push((
            format!("Disk {}", disk.name),
            format!("{} {} {}", disk.model, bytes(disk.size_bytes), disk.kind),
        ));
    }
    for volume in &inv.volumes {
        let used = volume.total_bytes.saturating_sub(volume.free_bytes);
        hardware.push((
            format!("Volume {}", volume.mount),
            format!(
                "{} of {} used ({})",
                bytes(used),
                bytes(volume.total_bytes),
                volume.file_system
            ),
        ));
    }
    if let Some(snmp) = &snmp {
        if !snmp.firmware.is_empty() {
            hardware.push(("Firmware".into(), snmp.firmware.clone()));
        }
        if !snmp.system.descr.is_empty() {
            hardware.push(("sysDescr".into(), snmp.system.descr.clone()));
        }
        if let Some(pages) = snmp.page_count {
            hardware.push(("Pages printed".into(), pages.to_string()));
        }
    }
    hardware.retain(|(_, v)| !v.trim().is_empty());

    let needle = p.sw.trim().to_lowercase();
    let mut software: Vec<Software> = inv
        .software
        .iter()
        .map(|s| Software {
            name: s.name.clone(),
            version: s.version.clone(),
            publisher: s.publisher.clone(),
        })
        .chain(snmp.iter().flat_map(|d| {
            d.software.iter().map(|s| Software {
                name: s.clone(),
                version: String::new(),
                publisher: String::new(),
            })
        }))
        .collect();
    let software_total = software.len();
    if !needle.is_empty() {
        software.retain(|s| {
            s.name.to_lowercase().contains(&needle) || s.publisher.to_lowercase().contains(&needle)
        });
    }
    software.sort_by_key(|s| s.name.to_lowercase());

    let interfaces: Vec<Iface> = inv
        .interfaces
        .iter()
        .map(|n| Iface {
            name: n.name.clone(),
            mac: n.mac.clone(),
            addresses: n
                .ipv4
                .iter()
                .chain(&n.ipv6)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            speed: if n.speed_mbps > 0 {
                format!("{} Mb/s", n.speed_mbps)
            } else {
                String::new()
            },
            state: if n.up { "up" } else { "down" }.to_owned(),
        })
        .collect();
    let ports: Vec<Iface> = snmp
        .iter()
        .flat_map(|d| &d.interfaces)
        .map(|i| Iface {
            name: if i.name.is_empty() {
                i.descr.clone()
            } else {
                format!("{} {}", i.name, i.alias).trim().to_owned()
            },
            mac: i.mac.clone().unwrap_or_default(),
            addresses: i.index.to_string(),
            speed: i
                .speed_mbps
                .map(|s| format!("{s} Mb/s"))
                .unwrap_or_default(),
            state: match (i.admin_up, i.oper_up) {
                (Some(false), _) => "disabled".to_owned(),
                (_, Some(true)) => "up".to_owned(),
                (_, Some(false)) => "down".to_owned(),
                _ => String::new(),
            },
        })
        .collect();
    let fdb = snmp
        .iter()
        .flat_map(|d| &d.fdb)
        .take(500)
        .map(|f| {
            (
                f.mac.clone(),
                f.port.to_string(),
                f.vlan.map(|v| v.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let lldp = snmp
        .iter()
        .flat_map(|d| &d.lldp)
        .map(|l| {
            (
                l.local_port.to_string(),
                l.sys_name.clone(),
                format!("{} {}", l.port_id, l.port_descr).trim().to_owned(),
                l.mgmt_addr.clone().unwrap_or_default(),
            )
        })
        .collect();
    let supplies = snmp
        .iter()
        .flat_map(|d| &d.supplies)
        .filter_map(|s| {
            s.percent.map(|p| Bar {
                name: s.description.clone(),
                percent: f64::from(p).clamp(0.0, 100.0),
                low: p <= 15.0,
            })
        })
        .collect();

    // Availability: ping verdicts and the agent's status reports (each one proves the
    // device was up then), in time order.
    let mut points: Vec<(OffsetDateTime, bool)> = reach.iter().map(|r| (r.at, r.up)).collect();
    points.extend(
        samples
            .iter()
            .filter(|s| s.at >= from)
            .map(|s| (s.at, true)),
    );
    points.sort_by_key(|p| p.0);
    let hold = time::Duration::minutes(15);
    // Without configured school hours every hour counts; nothing is shaded then.
    let school = if state.school_hours.is_always() {
        Vec::new()
    } else {
        state.school_hours.school_intervals(from, now)
    };
    let up_secs: f64 = points
        .iter()
        .enumerate()
        .filter(|(_, (_, up))| *up)
        .map(|(i, (at, _))| {
            let end = points.get(i + 1).map_or(now, |n| n.0).min(*at + hold);
            (end - *at).as_seconds_f64().max(0.0)
        })
        .sum();
    let observed = points.first().map_or(0.0, |(first, _)| {
        (now - (*first).max(from)).as_seconds_f64()
    });
    let timeline = charts::availability(
        &points,
        from,
        now,
        &school,
        hold,
        &format!("Availability over the last {window}"),
    );
    let timeline_note = format!(
        "Up {:.1}% of the observed time in the last {window} ({} observations){}.",
        up_secs / observed.max(1.0) * 100.0,
        points.len(),
        if school.is_empty() {
            ""
        } else {
            "; shaded: school hours"
        }
    );

    // Disks and supplies over 30 days with the forecast line.
    let month = now - time::Duration::days(30);
    let horizon = now + time::Duration::days(15);
    let params = crate::track::ForecastParams::default();
    let mut volumes: std::collections::BTreeMap<String, Vec<(OffsetDateTime, f64)>> =
        Default::default();
    for sample in &samples {
        for (mount, used, _) in crate::observe::status_point(sample.at, &sample.status).volumes {
            volumes.entry(mount).or_default().push((sample.at, used));
        }
    }
    let volumes: Vec<(String, Vec<(OffsetDateTime, f64)>)> = volumes.into_iter().collect();
    let mut disk_notes = Vec::new();
    let disk_forecast: Vec<_> = volumes
        .iter()
        .map(|(mount, pts)| {
            let f = crate::track::days_until(
                pts,
                100.0,
                crate::track::Direction::Rising,
                now,
                &params,
            )?;
            disk_notes.push(format!("{mount}: full in about {:.0} days", f.days));
            let end = (now + time::Duration::seconds_f64(f.days * 86_400.0)).min(horizon);
            let days = (end - now).as_seconds_f64() / 86_400.0;
            Some(((now, f.level), (end, f.level + f.slope_per_day * days)))
        })
        .collect();
    let disk_chart = if volumes.is_empty() {
        String::new()
    } else {
        charts::lines(
            &volumes,
            &disk_forecast,
            month,
            horizon,
            "Disk use, 30 days",
        )
    };
    let supply_series = super::catalog::supply_points(&levels);
    let mut supply_notes = Vec::new();
    let supply_forecast: Vec<_> = supply_series
        .iter()
        .map(|(name, pts)| {
            let f =
                crate::track::days_until(pts, 0.0, crate::track::Direction::Falling, now, &params)?;
            supply_notes.push(format!("{name}: empty in about {:.0} days", f.days));
            let end = (now + time::Duration::seconds_f64(f.days * 86_400.0)).min(horizon);
            let days = (end - now).as_seconds_f64() / 86_400.0;
            Some(((now, f.level), (end, f.level + f.slope_per_day * days)))
        })
        .collect();
    let supply_chart = if supply_series.is_empty() {
        String::new()
    } else {
        charts::lines(
            &supply_series,
            &supply_forecast,
            month,
            horizon,
            "Supply levels, 30 days",
        )
    };

    Ok(render(&AssetPage {
        nav: Nav::of(&web, &viewer, "assets"),
        id: asset.id.clone(),
        register: super::register::section(&asset, &viewer),
        name: asset.name.clone(),
        facts,
        notes,
        hardware,
        software,
        software_total,
        sw: p.sw,
        interfaces,
        supplies,
        window: window.to_owned(),
        timeline,
        timeline_note,
        disk_chart,
        disk_notes,
        supply_chart,
        supply_notes,
        changes: changes.iter().map(|c| change_row(&web, c)).collect(),
        incidents: incidents
            .iter()
            .map(|i| incident_row(&web, now, i))
            .collect(),
        ports,
        fdb,
        lldp,
    }))
}

// ---- Incidents

#[derive(Deserialize, Default)]
pub struct IncidentParams {
    #[serde(default)]
    status: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    q: String,
    page: Option<usize>,
}

#[derive(Template)]
#[template(path = "incidents_partial.html")]
struct IncidentsPartial {
    rows: Vec<IncidentRow>,
    total: usize,
    page: usize,
    pages: usize,
    base: String,
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    nav: Nav,
    status: String,
    priority: String,
    q: String,
    body: IncidentsPartial,
}

async fn incidents_body(
    state: &ApiState,
    p: &IncidentParams,
) -> Result<IncidentsPartial, PageError> {
    let page = p.page.unwrap_or(1).max(1);
    let (found, total) = query::incidents(
        state,
        IncidentQuery {
            status: p.status.clone(),
            asset: None,
            priority: p.priority.parse().ok(),
            q: p.q.clone(),
            offset: (page - 1) * PER_PAGE,
            limit: PER_PAGE,
        },
    )
    .await?;
    let now = OffsetDateTime::now_utc();
    Ok(IncidentsPartial {
        rows: found
            .iter()
            .map(|i| incident_row(&state.web, now, i))
            .collect(),
        total,
        page,
        pages: total.div_ceil(PER_PAGE).max(1),
        base: format!(
            "status={}&priority={}&q={}",
            url_encode(&p.status),
            url_encode(&p.priority),
            url_encode(&p.q)
        ),
    })
}

pub async fn incidents(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<IncidentParams>,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let body = incidents_body(&state, &p).await?;
    Ok(render(&IncidentsPage {
        nav: Nav::of(&state.web, &viewer, "incidents"),
        status: p.status,
        priority: p.priority,
        q: p.q,
        body,
    }))
}

pub async fn incidents_partial(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<IncidentParams>,
) -> Result<Response, PageError> {
    require_htmx(&headers)?;
    viewer(&state, &headers, &uri)?;
    Ok(render(&incidents_body(&state, &p).await?))
}

struct TimelineEntry {
    at: String,
    author: String,
    text: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    nav: Nav,
    row: IncidentRow,
    description: String,
    facts: Vec<(&'static str, String)>,
    timeline: Vec<TimelineEntry>,
    open: bool,
    acknowledged: bool,
    resolved: bool,
    /// On hold: the page offers "Resume" instead of "Put on hold".
    held: bool,
    /// The linked problem `(id, number)` and its workaround, if it has one.
    problem: Option<(String, String)>,
    workaround: String,
    technicians: Vec<String>,
    message: String,
}

#[derive(Deserialize, Default)]
pub struct IncidentView {
    #[serde(default)]
    done: String,
}

pub async fn incident(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(view): Query<IncidentView>,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let found = query::incident(&state, id.clone()).await?;
    let incident =
        found.ok_or_else(|| PageError::not_found(format!("There is no incident {id}.")))?;
    let web = &state.web;
    let now = OffsetDateTime::now_utc();
    let mut facts: Vec<(&'static str, String)> = vec![
        (
            "Priority",
            format!(
                "P{} (impact {}, urgency {})",
                incident.priority, incident.impact, incident.urgency
            ),
        ),
        ("State", state_name(incident.state).to_owned()),
        ("Rule", incident.rule.clone()),
        (
            "Opened",
            format!(
                "{} ({} ago)",
                web.local(incident.opened_at),
                age(now, incident.opened_at)
            ),
        ),
        ("Occurrences", incident.occurrences.to_string()),
        (
            "Assigned to",
            incident.desk.assigned_to.clone().unwrap_or_default(),
        ),
        (
            "On hold because",
            incident
                .desk
                .hold_reason
                .clone()
                .filter(|_| incident.state == IncidentState::OnHold)
                .unwrap_or_default(),
        ),
        (
            "Acknowledged",
            incident
                .acknowledged_at
                .map(|t| web.local(t))
                .unwrap_or_default(),
        ),
        (
            "Resolved",
            incident
                .resolved_at
                .map(|t| web.local(t))
                .unwrap_or_default(),
        ),
    ];
    if let Some(r) = &incident.desk.reporter {
        facts.push(("Reported by", format!("{} <{}>", r.name, r.email)));
        facts.push(("Room", r.room.clone()));
    }
    if !incident.affected.is_empty() {
        facts.push(("Devices affected", incident.affected.len().to_string()));
    }
    if incident.flapping {
        facts.push(("Flapping", "yes: opened and cleared repeatedly".to_owned()));
    }
    facts.retain(|(_, v)| !v.is_empty());
    facts.extend(super::service_levels::incident_facts(&state, &incident, now).await);
    let mut timeline = vec![TimelineEntry {
        at: web.local(incident.opened_at),
        author: if incident.desk.reporter.is_some() {
            "staff".to_owned()
        } else {
            "caretaker".to_owned()
        },
        text: "Opened.".to_owned(),
    }];
    timeline.extend(incident.notes.iter().map(|n| TimelineEntry {
        at: web.local(n.at),
        author: n.author.clone(),
        text: n.text.clone(),
    }));
    let linked = match incident.problem_id.clone() {
        Some(id) => {
            let store = state.store.clone();
            blocking(move || Ok(store.problems()?.into_iter().find(|p| p.id == id))).await?
        }
        None => None,
    };
    let technicians = web
        .auth
        .users()
        .into_iter()
        .filter(|u| !u.disabled && u.role.can_act())
        .map(|u| u.name)
        .collect();
    let message = match view.done.as_str() {
        "ack" => "Acknowledged.",
        "assign" => "Assignment saved.",
        "note" => "Note added.",
        "hold" => "Put on hold.",
        "resume" => "Taken off hold.",
        "resolve" => "Resolved.",
        "reopen" => "Reopened.",
        _ => "",
    }
    .to_owned();
    Ok(render(&IncidentPage {
        nav: Nav::of(web, &viewer, "incidents"),
        row: incident_row(web, now, &incident),
        description: incident.description.clone(),
        facts,
        timeline,
        open: incident.state.is_open(),
        acknowledged: incident.acknowledged_at.is_some(),
        resolved: incident.state == IncidentState::Resolved,
        held: incident.state == IncidentState::OnHold,
        problem: linked.as_ref().map(|p| (p.id.clone(), p.number.clone())),
        workaround: linked.map(|p| p.workaround).unwrap_or_default(),
        technicians,
        message,
    }))
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    to: String,
}

/// `POST /incidents/{id}/{ack|assign|note|hold|resume|resolve|reopen}`: the same incident actions
/// the API and CLI use, by the logged-in user; then back to the incident (POST-redirect-GET).
pub async fn incident_action(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, action)): Path<(String, String)>,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(form_rejected)?;
    let viewer = viewer(&state, &headers, &uri)?;
    state
        .web
        .auth
        .check_post(&headers, Some(&viewer), &form.csrf)?;
    viewer.may_act()?;
    let by = viewer.user.name.clone();
    let text = form.text.trim().to_owned();
    let optional = (!text.is_empty()).then(|| text.clone());
    let action_value = match action.as_str() {
        "ack" => Action::Acknowledge { by },
        "assign" => Action::Assign { by, to: form.to },
        "note" => Action::Note { by, text },
        "hold" => Action::Hold { by, reason: text },
        "resume" => Action::Resume { by, text: optional },
        "resolve" => Action::Resolve { by, text: optional },
        "reopen" => Action::Reopen { by, text: optional },
        _ => {
            return Err(PageError::not_found(format!(
                "There is no action {action}."
            )));
        }
    };
    let outcome = state
        .register
        .ask(|reply| Job::Act {
            id: id.clone(),
            action: action_value,
            reply,
        })
        .await
        .map_err(crate::errors::Failure::from)?;
    match outcome {
        Ok(incident) => Ok(Redirect::to(&format!(
            "/incidents/{}?done={action}",
            url_encode(&incident.id)
        ))
        .into_response()),
        Err(crate::incidents::ActionError::NotFound(_)) => {
            Err(PageError::not_found(format!("There is no incident {id}.")))
        }
        Err(error) => Err(crate::errors::Failure::from(error).into()),
    }
}

// ---- Problems

struct ProblemRow {
    id: String,
    number: String,
    title: String,
    pattern: String,
    root_cause: String,
    workaround: String,
    known_error: bool,
    incidents: Vec<(String, String)>,
    assets: usize,
    updated: String,
}

#[derive(Template)]
#[template(path = "problems.html")]
struct ProblemsPage {
    nav: Nav,
    rows: Vec<ProblemRow>,
}

pub async fn problems(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let store = state.store.clone();
    let mut problems = blocking(move || Ok(store.problems()?)).await?;
    problems.sort_by_key(|p| std::cmp::Reverse(p.updated_at));
    let web = state.web.clone();
    let ids: Vec<Vec<String>> = problems.iter().map(|p| p.incident_ids.clone()).collect();
    let numbers = blocking(move || {
        Ok(web.catalog.read(|data| {
            ids.iter()
                .map(|list| {
                    list.iter()
                        .take(50)
                        .map(|id| {
                            (
                                id.clone(),
                                data.incidents
                                    .get(id)
                                    .map_or_else(|| id.clone(), |i| i.number.clone()),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })?)
    })
    .await?;
    let rows = problems
        .iter()
        .zip(numbers)
        .map(|(p, incidents)| ProblemRow {
            id: p.id.clone(),
            number: p.number.clone(),
            title: p.title.clone(),
            pattern: p.pattern.clone(),
            root_cause: p.root_cause.clone(),
            workaround: p.workaround.clone(),
            known_error: p.known_error,
            incidents,
            assets: p.asset_ids.len(),
            updated: state.web.local(p.updated_at),
        })
        .collect();
    Ok(render(&ProblemsPage {
        nav: Nav::of(&state.web, &viewer, "problems"),
        rows,
    }))
}

#[derive(Deserialize)]
pub struct ProblemForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    root_cause: String,
    #[serde(default)]
    workaround: String,
    known_error: Option<String>,
}

pub async fn problem_update(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    form: Result<Form<ProblemForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(form_rejected)?;
    let viewer = viewer(&state, &headers, &uri)?;
    state
        .web
        .auth
        .check_post(&headers, Some(&viewer), &form.csrf)?;
    viewer.may_act()?;
    let outcome = state
        .register
        .ask(|reply| Job::Problem {
            id: id.clone(),
            update: crate::incidents::ProblemUpdate {
                root_cause: Some(form.root_cause),
                workaround: Some(form.workaround),
                known_error: Some(form.known_error.is_some()),
            },
            reply,
        })
        .await
        .map_err(crate::errors::Failure::from)?;
    match outcome {
        Ok(_) => Ok(Redirect::to("/problems").into_response()),
        Err(crate::incidents::ActionError::NotFound(_)) => {
            Err(PageError::not_found(format!("There is no problem {id}.")))
        }
        Err(error) => Err(crate::errors::Failure::from(error).into()),
    }
}

// ---- Changes

#[derive(Deserialize, Default)]
pub struct ChangeParams {
    #[serde(default)]
    asset: String,
    #[serde(default)]
    kind: String,
    /// `YYYY-MM-DD`, in the school's zone.
    #[serde(default)]
    since: String,
    page: Option<usize>,
}

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    nav: Nav,
    asset: String,
    kind: String,
    since: String,
    rows: Vec<ChangeRow>,
    page: usize,
    more: bool,
    base: String,
}

/// The most change records a filtered page looks through.
const CHANGE_SCAN: usize = 20_000;

pub async fn changes(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(p): Query<ChangeParams>,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let web = state.web.clone();
    let since = if p.since.trim().is_empty() {
        None
    } else {
        let date: jiff::civil::Date = p
            .since
            .trim()
            .parse()
            .map_err(|_| PageError::bad("The date must look like 2026-12-01."))?;
        let zoned = date
            .to_zoned(web.tz.clone())
            .map_err(|_| PageError::bad("That date does not exist in the school's time zone."))?;
        Some(
            OffsetDateTime::from_unix_timestamp(zoned.timestamp().as_second())
                .map_err(|_| PageError::bad("That date is out of range."))?,
        )
    };
    let page = p.page.unwrap_or(1).clamp(1, 100);
    let wanted = page * PER_PAGE + 1;
    let asset = (!p.asset.trim().is_empty()).then(|| p.asset.trim().to_owned());
    let kind = p.kind.trim().to_owned();
    let store = state.store.clone();
    let found = blocking(move || {
        // A kind alone is answered from the store's index by kind; a field prefix, or a
        // kind within one asset's history, by looking through at most CHANGE_SCAN records.
        let mut list = if !kind.is_empty() && !kind.contains(':') && asset.is_none() {
            store.changes_of_kind(&kind, since, wanted)?
        } else {
            let limit = if kind.is_empty() { wanted } else { CHANGE_SCAN };
            let mut list = store.changes(&ChangeQuery {
                asset,
                since,
                limit,
            })?;
            if !kind.is_empty() {
                list.retain(|c| c.kind == kind || c.field.starts_with(&kind));
            }
            list
        };
        list.truncate(wanted);
        Ok(list)
    })
    .await?;
    let more = found.len() > page * PER_PAGE;
    let rows = found
        .iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|c| change_row(&web, c))
        .collect();
    Ok(render(&ChangesPage {
        nav: Nav::of(&web, &viewer, "changes"),
        base: format!(
            "asset={}&kind={}&since={}",
            url_encode(&p.asset),
            url_encode(&p.kind),
            url_encode(&p.since)
        ),
        asset: p.asset,
        kind: p.kind,
        since: p.since,
        rows,
        page,
        more,
    }))
}

#[derive(Deserialize)]
pub struct ExpectedForm {
    #[serde(default)]
    csrf: String,
    id: String,
    asset: String,
    millis: i64,
}

/// Marks a change as expected (planned): the record is written again with who said so.
pub async fn change_expected(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<ExpectedForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(form_rejected)?;
    let viewer = viewer(&state, &headers, &uri)?;
    state
        .web
        .auth
        .check_post(&headers, Some(&viewer), &form.csrf)?;
    viewer.may_act()?;
    let store = state.store.clone();
    let at = crate::model::from_unix_millis(form.millis);
    let (asset, id) = (form.asset.clone(), form.id.clone());
    let change = blocking(move || {
        Ok(store
            .changes(&ChangeQuery {
                asset: Some(asset),
                since: Some(at),
                limit: 10_000,
            })?
            .into_iter()
            .find(|c| c.id == id))
    })
    .await?;
    let mut change = change.ok_or_else(|| PageError::not_found("There is no such change."))?;
    change.expected_by = Some(viewer.user.name.clone());
    state
        .register
        .ask(|reply| Job::Records {
            set: Box::new(crate::register::WebRecords {
                changes: vec![change],
                ..Default::default()
            }),
            reply,
        })
        .await
        .map_err(crate::errors::Failure::from)?;
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/changes").map(|i| r[i..].to_owned()))
        .unwrap_or_else(|| "/changes".to_owned());
    Ok(Redirect::to(&back).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incident_list_escapes_what_rules_and_staff_wrote() {
        let partial = IncidentsPartial {
            rows: vec![IncidentRow {
                id: "1".to_owned(),
                number: "INC0000001".to_owned(),
                priority: 2,
                title: "<img src=x onerror=alert(1)>".to_owned(),
                asset_id: "a\"b".to_owned(),
                asset_name: "<b>pc</b>".to_owned(),
                state: "new",
                opened: String::new(),
                age: "1 min".to_owned(),
                assigned: String::new(),
            }],
            total: 1,
            page: 1,
            pages: 1,
            base: String::new(),
        };
        let html = partial.render().expect("render");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&#60;img src=x onerror=alert(1)&#62;"),
            "{html}"
        );
        assert!(html.contains("&#60;b&#62;pc&#60;/b&#62;"), "{html}");
        assert!(!html.contains("a\"b"), "{html}");
    }

    #[test]
    fn ages_read_naturally() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(10);
        assert_eq!(age(now, now - time::Duration::minutes(7)), "7 min");
        assert_eq!(age(now, now - time::Duration::minutes(125)), "2 h 5 min");
        assert_eq!(age(now, now - time::Duration::hours(52)), "2 d 4 h");
    }
}
