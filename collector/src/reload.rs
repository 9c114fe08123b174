//! Live reload (SIGHUP, `caretaker-collector reload`): the config file is read and validated
//! again; only if it is valid are the new settings applied, section by section:
//!
//! - rules, incidents, `[[maintenance]]`, `[[change_windows]]`, topology → the register
//!   writer rebuilds its detector with them (`Job::Reconfigure`);
//! - `[school_hours]` → the availability figures the API computes;
//! - `[smtp]` (routes, recipients, quiet hours, …) → the alerts task restarts with it (the
//!   outbox is durable, so nothing is lost or sent twice);
//! - `[[service]]`, `[sla]`, `[report]` → the alerts task (SLA warnings, monthly email)
//!   restarts with them; the report pages read the config in force ([`Reloader::current`]);
//! - `[scan]`, `[snmp]` (ranges, rates, credentials) → the sweep and watch tasks restart.
//!
//! A bad file changes nothing: the old config stays and the error says why (file, line and
//! key). Sections that need a restart (`data_dir`, listeners, `[agents]`, `[retention]`,
//! `[backup]`, `[metrics]`) are reported, not applied.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError};
use crate::incidents::Detection;
use crate::register::{Job, Register, RegisterError};
use crate::track::SchoolHours;

/// Starts a task set (sweeps, alerts) for a config under a token that stops it.
pub type Spawn = Box<dyn Fn(&Config, CancellationToken) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the collector was not started from a config file; nothing to reload")]
    NoFile,
    #[error("the new config is not valid; the old one stays in force:\n{0}")]
    Invalid(#[source] ConfigError),
    #[error("the register writer did not take the new rules: {0}")]
    Register(#[from] RegisterError),
}

/// What a reload did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    /// Sections whose new settings are in force now.
    pub applied: Vec<&'static str>,
    /// Sections that changed but only take effect after a restart.
    pub restart_needed: Vec<&'static str>,
}

/// The rules' part of the config, as the register writer takes it.
pub fn detection(config: &Config) -> Detection {
    Detection {
        rules: config.rules.clone(),
        incidents: config.incidents.clone(),
        maintenance: config.maintenance.clone(),
        topology: config.topology.clone(),
        change_windows: config.change_windows.clone(),
    }
}

struct Running {
    config: Config,
    scan: CancellationToken,
    alerts: CancellationToken,
}

pub struct Reloader {
    source: Option<PathBuf>,
    running: tokio::sync::Mutex<Running>,
    register: Register,
    hours: Arc<RwLock<Arc<SchoolHours>>>,
    spawn_scan: Spawn,
    spawn_alerts: Spawn,
    shutdown: CancellationToken,
}

fn text<T: std::fmt::Debug>(value: &T) -> String {
    format!("{value:?}")
}

impl Reloader {
    /// Starts the sweep and alert tasks for `config` and keeps what reloads need.
    pub fn start(
        config: Config,
        register: Register,
        hours: Arc<RwLock<Arc<SchoolHours>>>,
        spawn_scan: Spawn,
        spawn_alerts: Spawn,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let scan = shutdown.child_token();
        let alerts = shutdown.child_token();
        spawn_scan(&config, scan.clone());
        spawn_alerts(&config, alerts.clone());
        Arc::new(Self {
            source: config.source.clone(),
            running: tokio::sync::Mutex::new(Running {
                config,
                scan,
                alerts,
            }),
            register,
            hours,
            spawn_scan,
            spawn_alerts,
            shutdown,
        })
    }

    /// `[release]` and `[finance]` as in force now (the pages and the API read them).
    pub async fn release_finance(
        &self,
    ) -> (crate::release::ReleaseConfig, crate::finance::FinanceConfig) {
        let running = self.running.lock().await;
        (
            running.config.release.clone(),
            running.config.finance.clone(),
        )
    }

    /// The config in force now (the service-level pages read their settings from it).
    pub async fn current(&self) -> Config {
        self.running.lock().await.config.clone()
    }

    /// Reads the config file again and applies what changed (see the module comment).
    pub async fn reload(&self) -> Result<Outcome, ReloadError> {
        let path = self.source.clone().ok_or(ReloadError::NoFile)?;
        let new = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| {
                ReloadError::Invalid(ConfigError::Read {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })
            })?
            .map_err(ReloadError::Invalid)?;
        let mut running = self.running.lock().await;
        let old = running.config.clone();
        let old = &old;
        let mut outcome = Outcome::default();
        if text(&detection(old)) != text(&detection(&new)) {
            self.register
                .ask(|reply| Job::Reconfigure {
                    detection: Box::new(detection(&new)),
                    reply,
                })
                .await?;
            outcome.applied.push("rules");
        }
        if text(&old.hours) != text(&new.hours) {
            *self.hours.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new.hours.clone());
            outcome.applied.push("school_hours");
        }
        let service_levels = |c: &Config| text(&(&c.service, &c.sla, &c.report, &c.hours));
        if text(&old.smtp) != text(&new.smtp) || service_levels(old) != service_levels(&new) {
            running.alerts.cancel();
            running.alerts = self.shutdown.child_token();
            (self.spawn_alerts)(&new, running.alerts.clone());
            if text(&old.smtp) != text(&new.smtp) {
                outcome.applied.push("smtp");
            }
            if service_levels(old) != service_levels(&new) {
                outcome.applied.push("service_levels");
            }
        }
        if text(&(&old.scan, &old.snmp)) != text(&(&new.scan, &new.snmp)) {
            running.scan.cancel();
            running.scan = self.shutdown.child_token();
            (self.spawn_scan)(&new, running.scan.clone());
            outcome.applied.push("scan");
        }
        for (section, changed) in [
            ("data_dir", old.data_dir != new.data_dir),
            ("grpc", text(&old.grpc) != text(&new.grpc)),
            ("http", text(&old.http) != text(&new.http)),
            ("agents", text(&old.agents) != text(&new.agents)),
            ("retention", text(&old.retention) != text(&new.retention)),
            ("backup", text(&old.backup) != text(&new.backup)),
            ("metrics", text(&old.metrics) != text(&new.metrics)),
        ] {
            if changed {
                outcome.restart_needed.push(section);
            }
        }
        // Sections needing a restart keep their old values in force, so the next reload
        // reports them again until the restart.
        let mut kept = new;
        kept.data_dir.clone_from(&old.data_dir);
        kept.grpc = old.grpc.clone();
        kept.http = old.http.clone();
        kept.agents = old.agents.clone();
        kept.retention = old.retention.clone();
        kept.backup = old.backup.clone();
        kept.metrics = old.metrics.clone();
        running.config = kept;
        tracing::info!(applied = ?outcome.applied, restart_needed = ?outcome.restart_needed,
            "Config reloaded");
        Ok(outcome)
    }
}
