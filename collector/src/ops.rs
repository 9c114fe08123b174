//! What the operations endpoints share (backups, and later metrics and live reload), in one
//! handle the API state carries, so adding an operations feature does not touch `ApiState`.

use std::sync::Arc;

/// Shared by `http::ops` and the tasks `app` spawns for operations.
pub struct Ops {
    /// Point-in-time backups through the register writer.
    pub snapshots: Arc<crate::backup::Snapshots>,
    /// Who may scrape `/metrics`.
    pub metrics: crate::metrics::MetricsConfig,
}
