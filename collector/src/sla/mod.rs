//! Service Level Management: services (sets of assets and rules), response and resolution
//! targets per priority, the SLA clocks, warnings before a breach and the monthly report.
//!
//! - [`config`]: `[[service]]`, `[sla]`, `[report]`, checked by `config`.
//! - [`clock`]: pure maths — per incident the response and resolution time on the agreed
//!   clock (school hours or 24×7) with time on hold left out; met, breached or at risk.
//! - [`report`]: the monthly report model, built once ([`report::build`], pure) from what
//!   [`report::gather`] reads from the store, rendered three ways: the printable page
//!   (`web::service_levels`), the PDF ([`pdf`]) and the monthly email ([`mail`]).
//! - [`mail`]: outbox entries for the warnings and the monthly email, planned by the alerts
//!   task (which writes only outbox entries and its cursors: a warning's id is deterministic,
//!   the monthly email commits with the `report.monthly.sent` key, so each goes once).
//! - [`seed`]: the hidden `seed-sla` command's timeline for the end-to-end test.
//!
//! Spawns no task and writes nothing itself.

pub mod clock;
pub mod config;
pub mod mail;
pub mod pdf;
pub mod report;
pub mod seed;

pub use config::{Clock, ReportConfig, ServiceConfig, SlaConfig, Targets};

/// What the report, the warnings and the incident page need from the config, in one value
/// (reloaded with the alerts task).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub services: Vec<ServiceConfig>,
    pub sla: SlaConfig,
    /// `[sla]` is configured: warnings are mailed (never on the defaults alone).
    pub warn: bool,
    pub report: ReportConfig,
    pub hours: crate::track::SchoolHours,
    /// The school's name for the report's title.
    pub school_name: String,
    /// The school's time zone name (`[school_hours] timezone`), UTC when absent.
    pub timezone: String,
    /// `[school_hours] terms`, for "warranty expiries next term".
    pub terms: Vec<(String, String)>,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        let school_name = if config.report.school_name.trim().is_empty() {
            config.web.school_name.clone()
        } else {
            config.report.school_name.clone()
        };
        Self {
            services: config.service.clone(),
            sla: config.sla.clone().unwrap_or_default(),
            warn: config.sla.is_some(),
            report: config.report.clone(),
            hours: config.hours.clone(),
            school_name,
            timezone: config
                .school_hours
                .as_ref()
                .map(|h| h.timezone.trim().to_owned())
                .unwrap_or_else(|| "UTC".to_owned()),
            terms: config
                .school_hours
                .as_ref()
                .map(|h| h.terms.clone())
                .unwrap_or_default(),
        }
    }

    pub fn tz(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}
