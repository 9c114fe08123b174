//! `/report`: the staff's single point of contact. No login: name, email, room, what is
//! wrong, and optionally the device (picked by room or name). Each address may send
//! `[web] report_per_hour` reports an hour (then 429, others unaffected). A report becomes an
//! incident at the desk, its number shown as the reference; the reporter is emailed when it
//! is resolved (`alerts`). `/report/poster` is a printable page with the address and a QR code.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::form_token;
use super::pages::{Nav, form_rejected, render};
use super::query::{self, AssetQuery};
use super::{PageError, require_htmx};
use crate::http::ApiState;
use crate::incidents::StaffReport;
use crate::register::Job;

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    nav: Nav,
    csrf: String,
    name: String,
    email: String,
    room: String,
    device: String,
    text: String,
    error: String,
}

#[derive(Template)]
#[template(path = "report_done.html")]
struct ReportDone {
    nav: Nav,
    number: String,
    name: String,
}

pub async fn form(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let (csrf, set) = form_token(&headers);
    let mut response = render(&ReportPage {
        nav: Nav::anonymous(&state.web),
        csrf,
        name: String::new(),
        email: String::new(),
        room: String::new(),
        device: String::new(),
        text: String::new(),
        error: String::new(),
    });
    if let Some(cookie) = set {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
pub struct ReportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    room: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    text: String,
}

pub async fn submit(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<ReportForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(form_rejected)?;
    let web = &state.web;
    let viewer = web.auth.viewer(&headers);
    // A technician's session token, or the form cookie for everyone else.
    web.auth
        .check_post(&headers, None, &form.csrf)
        .or_else(|e| {
            viewer.as_ref().map_or(Err(e), |v| {
                web.auth.check_post(&headers, Some(v), &form.csrf)
            })
        })?;
    let addr = peer.ip().to_string();
    if let Some(wait) = web.reports.blocked(&addr) {
        tracing::warn!(%addr, "Staff reports from one address over the hourly limit");
        return Err(PageError::Status(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many reports from this computer. Try again in {} minutes, or phone the ICT office.",
                wait.as_secs().div_ceil(60).max(1)
            ),
        ));
    }
    let name = form.name.trim().to_owned();
    let email = form.email.trim().to_owned();
    let room = form.room.trim().to_owned();
    let text = form.text.trim().to_owned();
    let device = form.device.trim().to_owned();
    let mut error = String::new();
    if name.is_empty() || name.len() > 200 {
        error = "Please give your name (at most 200 characters).".to_owned();
    } else if email.len() > 254 || !email.contains('@') || email.contains(char::is_whitespace) {
        error = "Please give an email address we can reply to.".to_owned();
    } else if text.is_empty() || text.len() > 10_000 {
        error = "Please say what is wrong (at most 10,000 characters).".to_owned();
    } else if room.len() > 200 || device.len() > 200 {
        error = "The room and device are limited to 200 characters.".to_owned();
    }
    let asset_id = if device.is_empty() || !error.is_empty() {
        None
    } else {
        let (found, _) = query::assets(&state, AssetQuery::default()).await?;
        let found = found.into_iter().find(|l| {
            l.asset.id == device
                || l.asset.name.eq_ignore_ascii_case(&device)
                || l.asset.hostname.eq_ignore_ascii_case(&device)
        });
        if found.is_none() {
            error = format!("No device is called {device:?}. Leave it empty if you are not sure.");
        }
        found.map(|l| l.asset.id)
    };
    if !error.is_empty() {
        let mut response = render(&ReportPage {
            nav: Nav::anonymous(web),
            csrf: form.csrf,
            name,
            email,
            room,
            device,
            text,
            error,
        });
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    web.reports.hit(&addr);
    let incident = state
        .register
        .ask(|reply| Job::Report {
            report: StaffReport {
                name: name.clone(),
                email,
                room,
                text,
                asset_id,
            },
            reply,
        })
        .await
        .map_err(crate::errors::Failure::from)?;
    tracing::info!(number = %incident.number, %addr, "Staff report received");
    Ok(render(&ReportDone {
        nav: Nav::anonymous(web),
        number: incident.number,
        name,
    }))
}

#[derive(Deserialize, Default)]
pub struct DeviceParams {
    #[serde(default)]
    room: String,
    #[serde(default)]
    device: String,
}

#[derive(Template)]
#[template(path = "report_devices_partial.html")]
struct DevicesPartial {
    devices: Vec<(String, String)>,
}

/// htmx: devices matching the room or name typed so far (at most 20).
pub async fn devices(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(p): Query<DeviceParams>,
) -> Result<Response, PageError> {
    require_htmx(&headers)?;
    let (room, name) = (p.room.trim().to_owned(), p.device.trim().to_owned());
    if room.len() < 2 && name.len() < 2 {
        return Ok(render(&DevicesPartial {
            devices: Vec::new(),
        }));
    }
    let (found, _) = query::assets(
        &state,
        AssetQuery {
            location: room,
            limit: 20,
            ..Default::default()
        },
    )
    .await?;
    let needle = name.to_lowercase();
    let devices = found
        .into_iter()
        .filter(|l| {
            needle.is_empty()
                || l.asset.name.to_lowercase().contains(&needle)
                || l.asset.hostname.to_lowercase().contains(&needle)
        })
        .map(|l| (l.asset.name.clone(), l.location))
        .collect();
    Ok(render(&DevicesPartial { devices }))
}

#[derive(Template)]
#[template(path = "poster.html")]
struct Poster {
    nav: Nav,
    url: String,
    qr: String,
}

pub async fn poster(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let base = state.web.base_url.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("caretaker");
        let scheme = if state.web.auth.secure {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}")
    });
    let url = format!("{base}/report");
    let qr = match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    };
    render(&Poster {
        nav: Nav::anonymous(&state.web),
        url,
        qr,
    })
    .into_response()
}
