//! What the operations endpoints share (backups, and later metrics and live reload), in one
//! handle the API state carries, so adding an operations feature does not touch `ApiState`.

use std::sync::Arc;

/// Shared by `http::ops` and the tasks `app` spawns for operations.
pub struct Ops {
    /// Point-in-time backups through the register writer.
    pub snapshots: Arc<crate::backup::Snapshots>,
    /// Live reload (SIGHUP and `POST /api/v1/reload`).
    pub reloader: Arc<crate::reload::Reloader>,
    /// School hours as last (re)loaded, for availability figures.
    pub school_hours: Arc<std::sync::RwLock<Arc<crate::track::SchoolHours>>>,
    /// Who may scrape `/metrics`.
    pub metrics: crate::metrics::MetricsConfig,
}

impl Ops {
    /// The school hours in force now.
    pub fn school_hours(&self) -> Arc<crate::track::SchoolHours> {
        self.school_hours
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
