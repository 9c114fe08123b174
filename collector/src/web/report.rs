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

/// The form as posted (every field optional: a missing one is caught by [`check`]).
#[derive(Deserialize)]
pub struct ReportForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub room: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub text: String,
}

/// A form's fields, trimmed; `error` says what to fix (empty: acceptable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub name: String,
    pub email: String,
    pub room: String,
    pub device: String,
    pub text: String,
    pub error: String,
}

/// The most bytes each field may hold.
pub const MAX_NAME: usize = 200;
pub const MAX_EMAIL: usize = 254;
pub const MAX_TEXT: usize = 10_000;

/// Trims the fields and checks them, as `submit` does before anything is stored.
pub fn check(form: &ReportForm) -> Checked {
    let name = form.name.trim().to_owned();
    let email = form.email.trim().to_owned();
    let room = form.room.trim().to_owned();
    let text = form.text.trim().to_owned();
    let device = form.device.trim().to_owned();
    let error = if name.is_empty() || name.len() > MAX_NAME {
        "Please give your name (at most 200 characters)."
    } else if email.len() > MAX_EMAIL
        || !email.contains('@')
        || email.contains(char::is_whitespace)
        || email.contains(char::is_control)
    {
        "Please give an email address we can reply to."
    } else if text.is_empty() || text.len() > MAX_TEXT {
        "Please say what is wrong (at most 10,000 characters)."
    } else if room.len() > MAX_NAME || device.len() > MAX_NAME {
        "The room and device are limited to 200 characters."
    } else {
        ""
    };
    Checked {
        name,
        email,
        room,
        device,
        text,
        error: error.to_owned(),
    }
}

/// One device the picker may choose: `(id, name, hostname, room)`.
pub type Candidate<'a> = (&'a str, &'a str, &'a str, &'a str);

/// The device a typed `device` (and `room`) means, for the form without JavaScript: an exact
/// id, name or hostname first; else the one device whose name or hostname contains what was
/// typed (in the room typed, if any); several or none is an error saying so.
pub fn pick_device<'a>(
    candidates: &[Candidate<'a>],
    device: &str,
    room: &str,
) -> Result<&'a str, String> {
    if let Some((id, ..)) = candidates.iter().find(|(id, name, host, _)| {
        *id == device || name.eq_ignore_ascii_case(device) || host.eq_ignore_ascii_case(device)
    }) {
        return Ok(id);
    }
    let needle = device.to_lowercase();
    let room = room.to_lowercase();
    let partial = |(_, name, host, _): &&Candidate<'a>| {
        name.to_lowercase().contains(&needle) || host.to_lowercase().contains(&needle)
    };
    let mut found: Vec<&Candidate<'a>> = candidates.iter().filter(partial).collect();
    if found.len() > 1 && !room.is_empty() {
        let here: Vec<_> = found
            .iter()
            .copied()
            .filter(|(.., r)| r.to_lowercase().contains(&room))
            .collect();
        if !here.is_empty() {
            found = here;
        }
    }
    match found.as_slice() {
        [] => Err(format!(
            "No device is called {device:?}. Leave it empty if you are not sure."
        )),
        [(id, ..)] => Ok(id),
        many => {
            let mut names: Vec<&str> = many.iter().take(5).map(|(_, name, ..)| *name).collect();
            if many.len() > 5 {
                names.push("…");
            }
            Err(format!(
                "{} devices match {device:?}: {}. Type more of the name, or leave it empty.",
                many.len(),
                names.join(", ")
            ))
        }
    }
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
    let Checked {
        name,
        email,
        room,
        device,
        text,
        mut error,
    } = check(&form);
    let asset_id = if device.is_empty() || !error.is_empty() {
        None
    } else {
        let (found, _) = query::assets(&state, AssetQuery::default()).await?;
        let candidates: Vec<Candidate<'_>> = found
            .iter()
            .map(|l| {
                (
                    l.asset.id.as_str(),
                    l.asset.name.as_str(),
                    l.asset.hostname.as_str(),
                    l.location.as_str(),
                )
            })
            .collect();
        match pick_device(&candidates, &device, &room) {
            Ok(id) => Some(id.to_owned()),
            Err(why) => {
                error = why;
                None
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICES: &[Candidate<'static>] = &[
        ("a1", "B12-PC01", "b12-pc01", "B12"),
        ("a2", "B12-PC02", "b12-pc02", "B12"),
        ("a3", "Projector B12", "", "B12"),
        ("a4", "LIB-PC01", "lib-pc01", "Library"),
    ];

    #[test]
    fn a_partial_name_picks_the_one_device_it_names() {
        assert_eq!(pick_device(DEVICES, "b12-pc02", ""), Ok("a2"), "exact");
        assert_eq!(pick_device(DEVICES, "projector", ""), Ok("a3"));
        assert_eq!(pick_device(DEVICES, "lib-pc", ""), Ok("a4"));
        // "PC01" is in two rooms; the room typed decides.
        assert_eq!(pick_device(DEVICES, "pc01", "library"), Ok("a4"));
        let many = pick_device(DEVICES, "pc0", "").unwrap_err();
        assert!(many.starts_with("3 devices match"), "{many}");
        let none = pick_device(DEVICES, "scanner", "").unwrap_err();
        assert!(none.starts_with("No device is called"), "{none}");
    }

    #[test]
    fn the_form_is_trimmed_and_checked() {
        let form = |name: &str, email: &str, text: &str| ReportForm {
            csrf: String::new(),
            name: name.to_owned(),
            email: email.to_owned(),
            room: " B12 ".to_owned(),
            device: String::new(),
            text: text.to_owned(),
        };
        let ok = check(&form(" Ann ", "ann@school.example", "No picture"));
        assert_eq!((ok.name.as_str(), ok.room.as_str()), ("Ann", "B12"));
        assert!(ok.error.is_empty());
        assert!(!check(&form("", "a@b", "x")).error.is_empty());
        assert!(!check(&form("Ann", "no-at-sign", "x")).error.is_empty());
        assert!(!check(&form("Ann", "a@b\u{0}", "x")).error.is_empty());
        assert!(!check(&form("Ann", "a@b", "  ")).error.is_empty());
    }
}
