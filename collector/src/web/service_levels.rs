//! Service levels on the dashboard: the monthly report as a printable page
//! (`/reports/monthly?month=YYYY-MM`, print CSS) and as a PDF (`/reports/monthly.pdf`), the
//! same two for the API (`/api/v1/reports/monthly[.pdf]`, used by `caretaker-collector report
//! monthly`), and the SLA lines on an incident's page.
//!
//! Every rendering comes from one `sla::report::MonthlyReport` built by `sla::report::build`
//! from the config in force (`Reloader::current`); reads run in `spawn_blocking`.

use askama::Template;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::PageError;
use super::pages::{Nav, render, viewer};
use crate::errors::Failure;
use crate::http::{ApiState, blocking};
use crate::model::{Incident, IncidentEvent};
use crate::sla::Settings;
use crate::sla::clock::{self, State as SlaState, human};
use crate::sla::report::{self, Month, MonthlyReport};

#[derive(Deserialize)]
pub struct MonthParams {
    #[serde(default)]
    month: String,
}

#[derive(Template)]
#[template(path = "sla_report.html")]
struct ReportPage {
    nav: Nav,
    r: MonthlyReport,
    previous: String,
    next: String,
}

/// The month asked for, or last month by default.
fn month_of(text: &str, settings: &Settings, now: OffsetDateTime) -> Result<Month, Failure> {
    if text.trim().is_empty() {
        Ok(Month::of(now, &settings.tz()).previous())
    } else {
        Month::parse(text).map_err(Failure::invalid)
    }
}

/// Builds the report for `month` from the config in force.
pub async fn build(state: &ApiState, month: &str) -> Result<MonthlyReport, Failure> {
    let settings = Settings::from_config(&state.ops.reloader.current().await);
    let now = OffsetDateTime::now_utc();
    let month = month_of(month, &settings, now)?;
    let store = state.store.clone();
    blocking(move || {
        let input = report::gather(store.as_ref(), &settings, month, now)?;
        Ok(report::build(&settings, &input))
    })
    .await
}

fn pdf_response(r: &MonthlyReport) -> Response {
    let bytes = crate::sla::pdf::render(r);
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"service-levels-{}.pdf\"", r.month),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /reports/monthly?month=YYYY-MM`.
pub async fn page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(params): Query<MonthParams>,
) -> Result<Response, PageError> {
    let viewer = viewer(&state, &headers, &uri)?;
    let r = build(&state, &params.month).await?;
    let month = Month::parse(&r.month).map_err(PageError::bad)?;
    Ok(render(&ReportPage {
        nav: Nav::of(&state.web, &viewer, "reports"),
        previous: month.previous().to_string(),
        next: month.next().to_string(),
        r,
    }))
}

/// `GET /reports/monthly.pdf?month=YYYY-MM`.
pub async fn pdf(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Query(params): Query<MonthParams>,
) -> Result<Response, PageError> {
    viewer(&state, &headers, &uri)?;
    let r = build(&state, &params.month).await?;
    Ok(pdf_response(&r))
}

/// `GET /api/v1/reports/monthly?month=YYYY-MM`: the report model as JSON.
pub async fn api_json(
    State(state): State<ApiState>,
    Query(params): Query<MonthParams>,
) -> Result<Json<MonthlyReport>, Failure> {
    Ok(Json(build(&state, &params.month).await?))
}

/// `GET /api/v1/reports/monthly.pdf?month=YYYY-MM`.
pub async fn api_pdf(
    State(state): State<ApiState>,
    Query(params): Query<MonthParams>,
) -> Result<Response, Failure> {
    Ok(pdf_response(&build(&state, &params.month).await?))
}

/// One incident's SLA clocks at `now`, from its events and the current config.
pub async fn assess(
    state: &ApiState,
    incident: &Incident,
    now: OffsetDateTime,
) -> clock::Assessment {
    let settings = Settings::from_config(&state.ops.reloader.current().await);
    let store = state.store.clone();
    let id = incident.id.clone();
    let events = blocking(move || {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let batch = store.incident_events(after, 5_000)?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            after = last;
            let full = batch.len() == 5_000;
            out.extend(batch.into_iter().filter(|e| e.incident_id == id));
            if !full {
                break;
            }
        }
        Ok(out)
    })
    .await
    .unwrap_or_default();
    let refs: Vec<&IncidentEvent> = events.iter().collect();
    clock::assess(incident, &refs, now, &settings.sla.parsed, &settings.hours)
}

/// The incident page's SLA lines: each clock's state, time counted and time left.
pub async fn incident_facts(
    state: &ApiState,
    incident: &Incident,
    now: OffsetDateTime,
) -> Vec<(&'static str, String)> {
    let a = assess(state, incident, now).await;
    let line = |m: clock::Measure| match (m.state, m.target) {
        (SlaState::NoTarget, _) | (_, None) => "no target".to_owned(),
        (SlaState::Met, Some(t)) => format!("met: {} of {}", human(m.elapsed), human(t)),
        (SlaState::Breached, Some(t)) => format!("breached: {} of {}", human(m.elapsed), human(t)),
        (s, Some(t)) => format!(
            "{}: {} left of {} ({} counted)",
            s.label(),
            human(m.left().unwrap_or_default()),
            human(t),
            human(m.elapsed)
        ),
    };
    let mut facts = vec![
        ("SLA response", line(a.response)),
        ("SLA resolution", line(a.resolution)),
    ];
    if !a.on_hold.is_zero() {
        facts.push(("Time on hold (not counted)", human(a.on_hold)));
    }
    facts
}
