//! The technician's dashboard and the service desk: server-rendered pages beside `/api/v1`.
//!
//! **Owns** the pages (`pages`, askama templates in `collector/templates/`, each page
//! `X.html` with its `X_partial.html` for htmx), the vendored static files (`assets`:
//! htmx 2.0.4 and one stylesheet, embedded with rust-embed), users, sessions, CSRF and
//! throttling (`auth`), the staff's `/report` form and its poster (`report`), inline SVG
//! charts (`charts`), the CSV import page and the exports for logged-in users
//! (`csv_import`, through the API's `http::csv::import_csv`), and the read-side cache both
//! the pages and the JSON API list from (`catalog`, `query`).
//!
//! **Reads** the store through `catalog`/`query` (the same functions the API handlers use);
//! **writes** nothing itself: users, sessions, incident actions, staff reports and change
//! marks are jobs for the register writer, answered once durable.
//!
//! Core pages work without JavaScript (plain links and forms, POST-redirect-GET); htmx only
//! refreshes the overview, searches as one types and fills the report form's device list.
//! Spawns no tasks; it lives inside the HTTP server and stops with it.

pub mod auth;
pub mod catalog;
mod charts;
mod csv_import;
pub mod finance;
mod pages;
pub mod query;
mod register;
pub mod releases;
pub(crate) mod report;
pub mod seed;
pub mod service_levels;
mod static_files;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::http::ApiState;
use crate::store::{Store, StoreError};

/// `[web]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// How long a login lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Wrong passwords allowed per user and per address within `login_window`.
    pub login_failures: u32,
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// Staff reports accepted per address per hour on `/report`.
    pub report_per_hour: u32,
    /// Mark cookies `Secure`. Set this (or let the HTTPS listener set it) when the dashboard
    /// is served over HTTPS.
    pub secure_cookies: bool,
    /// Shown on the staff form and its poster.
    pub school_name: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(12 * 3600),
            login_failures: 5,
            login_window: Duration::from_secs(15 * 60),
            report_per_hour: 5,
            secure_cookies: false,
            school_name: String::new(),
        }
    }
}

/// The dashboard's state, shared with the API (which lists through `catalog`).
pub struct Web {
    pub config: WebConfig,
    /// The school's time zone: every time on a page is shown in it.
    pub tz: jiff::tz::TimeZone,
    /// `smtp.base_url`, without a trailing slash: the address in emails and on the poster.
    pub base_url: Option<String>,
    pub auth: auth::Auth,
    pub catalog: catalog::Catalog,
    /// `/report` submissions per address.
    pub reports: auth::Limiter,
}

impl Web {
    /// Loads users and sessions from `store`. With no user yet, logs a one-time setup link.
    pub fn new(
        config: &crate::config::Config,
        store: Arc<dyn Store>,
        register: crate::register::Register,
        listen: SocketAddr,
    ) -> Result<Arc<Self>, StoreError> {
        let tz = config
            .school_hours
            .as_ref()
            .and_then(|h| jiff::tz::TimeZone::get(h.timezone.trim()).ok())
            .or_else(|| {
                config
                    .smtp
                    .as_ref()
                    .and_then(|s| s.time_zone.as_deref())
                    .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            })
            .unwrap_or_else(jiff::tz::TimeZone::system);
        let base_url = config
            .smtp
            .as_ref()
            .and_then(|s| s.base_url.as_ref())
            .map(|u| u.trim_end_matches('/').to_owned());
        let catalog = catalog::Catalog::new(store.clone(), register.touched());
        // Under HTTPS (`[tls] https`) session cookies are always `Secure`.
        let mut web_config = config.web.clone();
        web_config.secure_cookies |= config.tls.https;
        let auth = auth::Auth::load(store, register, &web_config)?;
        let web = Arc::new(Self {
            config: config.web.clone(),
            tz,
            base_url,
            auth,
            catalog,
            reports: auth::Limiter::new(config.web.report_per_hour, Duration::from_secs(3600)),
        });
        if let Some(token) = web.auth.first_run_token() {
            let mut addr = listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let base = web
                .base_url
                .clone()
                .unwrap_or_else(|| format!("http://{addr}"));
            tracing::warn!(
                url = %format!("{base}/setup?token={token}"),
                "No dashboard user exists yet: open this one-time link to create the first admin \
                 (or run `caretaker-collector user add NAME --role admin`)"
            );
        }
        Ok(web)
    }

    /// A time in the school's zone, `2026-12-02 14:05`.
    pub fn local(&self, at: time::OffsetDateTime) -> String {
        match jiff::Timestamp::from_second(at.unix_timestamp()) {
            Ok(ts) => ts
                .to_zoned(self.tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string(),
            Err(_) => at.to_string(),
        }
    }
}

/// The pages' routes (merged beside `/api/v1` by `http::router`).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/ui/overview", get(pages::overview_partial))
        .route("/assets", get(pages::assets))
        .route("/ui/assets", get(pages::assets_partial))
        .route("/assets/{id}", get(pages::asset))
        .route("/assets/{id}/register", post(register::edit))
        .route(
            "/assets/new",
            get(register::new_form).post(register::create),
        )
        .route(
            "/assets/bulk",
            get(register::bulk_form).post(register::bulk),
        )
        .route(
            "/assets/import",
            get(csv_import::page)
                .post(csv_import::upload)
                .layer(DefaultBodyLimit::max(csv_import::UPLOAD_LIMIT)),
        )
        .route(
            "/assets/import/confirm",
            post(csv_import::confirm).layer(DefaultBodyLimit::max(csv_import::CONFIRM_LIMIT)),
        )
        .route("/export/{file}", get(csv_import::export))
        .route("/incidents", get(pages::incidents))
        .route("/ui/incidents", get(pages::incidents_partial))
        .route("/incidents/{id}", get(pages::incident))
        .route("/incidents/{id}/{action}", post(pages::incident_action))
        .route("/problems", get(pages::problems))
        .route("/problems/{id}", post(pages::problem_update))
        .route("/changes", get(pages::changes))
        .route("/changes/expected", post(pages::change_expected))
        .route("/releases", get(releases::list))
        .route("/releases/{title}", get(releases::title))
        .route("/finance", get(finance::page))
        .route("/report", get(report::form).post(report::submit))
        .route("/ui/report/devices", get(report::devices))
        .route("/report/poster", get(report::poster))
        .route("/reports/monthly", get(service_levels::page))
        .route("/reports/monthly.pdf", get(service_levels::pdf))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/setup", get(auth::setup_form).post(auth::setup))
        .route("/static/{*file}", get(static_files::serve))
}

/// What a page handler fails with: an HTML error page (or a redirect to the login).
#[derive(Debug)]
pub enum PageError {
    Status(StatusCode, String),
    Login(String),
}

impl PageError {
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::Status(StatusCode::NOT_FOUND, what.into())
    }
    pub fn forbidden(what: impl Into<String>) -> Self {
        Self::Status(StatusCode::FORBIDDEN, what.into())
    }
    pub fn bad(what: impl Into<String>) -> Self {
        Self::Status(StatusCode::BAD_REQUEST, what.into())
    }
}

impl From<crate::errors::Failure> for PageError {
    fn from(failure: crate::errors::Failure) -> Self {
        Self::Status(failure.http_status(), failure.message)
    }
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        crate::errors::Failure::from(error).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login(next) => {
                let next = if next.starts_with('/') && !next.starts_with("//") {
                    next
                } else {
                    "/".to_owned()
                };
                Redirect::to(&format!("/login?next={}", pages::url_encode(&next))).into_response()
            }
            PageError::Status(status, message) => pages::error_page(status, &message),
        }
    }
}

/// Whether htmx sent the request (`HX-Request: true`).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers
        .get("hx-request")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "true")
}

/// htmx-only routes: a plain browser request gets 400 with a pointer to the full page.
pub fn require_htmx(headers: &HeaderMap) -> Result<(), PageError> {
    if is_htmx(headers) {
        Ok(())
    } else {
        Err(PageError::bad(
            "this address only serves page fragments to htmx; open the page itself",
        ))
    }
}

/// The 404 page for every unknown address outside `/api/`.
pub async fn not_found() -> Response {
    PageError::not_found("There is no page at this address.").into_response()
}
