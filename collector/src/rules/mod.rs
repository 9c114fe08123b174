//! Proactive problem detection: each rule looks at the in-memory [`Observations`] and says
//! which assets are in trouble right now, as [`Condition`]s.
//!
//! Rules are pure and cheap (memory only): the incident engine calls [`evaluate`] every few
//! seconds and after every sweep, and turns conditions into incidents. Each rule has its own
//! `[rules.NAME]` config table with `enabled`, `impact`, `urgency` and its thresholds; an
//! unknown rule name is a config error. Files: `availability` (host down, agent silent,
//! reboots), `capacity` (disk, memory, CPU, printer supplies), `devices` (printer errors, UPS,
//! unknown devices), `changes` (unauthorised software and hardware changes), `release`
//! (outdated software, licence over-deployment, per `[[release.title]]`), `warranty` (warranty
//! expiry, `[finance] warranty_notice_days`).

mod availability;
mod capacity;
pub mod certificates;
mod changes;
mod devices;
pub mod release;
pub mod warranty;

use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::model::{Asset, AssetId};
use crate::observe::Observations;

/// A rule's verdict on one asset: something is wrong now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub rule: &'static str,
    pub asset_id: AssetId,
    pub title: String,
    pub description: String,
    pub impact: u8,
    pub urgency: u8,
    pub measured: serde_json::Value,
}

/// What every rule sees.
pub struct Context<'a> {
    pub now: OffsetDateTime,
    pub assets: &'a [Asset],
    pub obs: &'a Observations,
    pub change_windows: &'a [Window],
    /// When the first network sweep finished: devices first seen later are "new".
    pub baseline: Option<OffsetDateTime>,
}

/// An approved window, `[start, end)` in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    #[serde(default)]
    pub note: String,
}

impl Window {
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        self.start <= at && at < self.end
    }
}

macro_rules! rule_config {
    ($name:ident { $($(#[$meta:meta])* $field:ident : $ty:ty = $default:expr),* $(,)? } impact $impact:expr, urgency $urgency:expr) => {
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            pub enabled: bool,
            /// 1 (high) to 3 (low).
            pub impact: u8,
            /// 1 (high) to 3 (low).
            pub urgency: u8,
            $($(#[$meta])* pub $field: $ty,)*
        }
        impl Default for $name {
            fn default() -> Self {
                Self { enabled: true, impact: $impact, urgency: $urgency, $($field: $default,)* }
            }
        }
    };
}

rule_config!(HostDown { misses: u32 = 2 } impact 2, urgency 1);
rule_config!(AgentSilent { #[serde(with = "humantime_serde")] after: Duration = Duration::from_secs(900) } impact 3, urgency 3);
rule_config!(DiskFull { percent: f64 = 90.0, forecast_days: f64 = 14.0 } impact 2, urgency 2);
rule_config!(MemoryPressure { percent: f64 = 95.0, samples: usize = 3 } impact 3, urgency 2);
rule_config!(CpuSaturation { percent: f64 = 95.0, samples: usize = 3 } impact 3, urgency 2);
rule_config!(SupplyLow { percent: f64 = 10.0, forecast_days: f64 = 7.0 } impact 3, urgency 2);
rule_config!(PrinterError { errors: Vec<String> = devices::DEFAULT_PRINTER_ERRORS.iter().map(|s| (*s).to_owned()).collect() } impact 3, urgency 2);
rule_config!(UpsOnBattery { runtime_minutes: u64 = 10 } impact 1, urgency 1);
rule_config!(UnknownDevice { #[serde(with = "humantime_serde")] within: Duration = Duration::from_secs(24 * 3600) } impact 3, urgency 3);
rule_config!(UnauthorisedChange { blocklist: Vec<String> = Vec::new(), required: Vec<String> = Vec::new(), #[serde(with = "humantime_serde")] within: Duration = Duration::from_secs(24 * 3600) } impact 3, urgency 3);
rule_config!(Reboots { count: usize = 3, #[serde(with = "humantime_serde")] within: Duration = Duration::from_secs(24 * 3600) } impact 3, urgency 3);
rule_config!(OutdatedSoftware {} impact 3, urgency 3);
rule_config!(LicenceOverdeployed {} impact 3, urgency 2);
rule_config!(WarrantyExpiry {} impact 3, urgency 3);

/// Every rule's name, as used in `[rules.NAME]` and in incidents.
pub const NAMES: [&str; 14] = [
    "host_down",
    "agent_silent",
    "disk_full",
    "memory_pressure",
    "cpu_saturation",
    "supply_low",
    "printer_error",
    "ups_on_battery",
    "unknown_device",
    "unauthorised_change",
    "reboots",
    "outdated_software",
    "licence_overdeployed",
    "warranty_expiry",
];

/// `[rules]`: one table per rule; a name not listed here is a config error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub host_down: HostDown,
    pub agent_silent: AgentSilent,
    pub disk_full: DiskFull,
    pub memory_pressure: MemoryPressure,
    pub cpu_saturation: CpuSaturation,
    pub supply_low: SupplyLow,
    pub printer_error: PrinterError,
    pub ups_on_battery: UpsOnBattery,
    pub unknown_device: UnknownDevice,
    pub unauthorised_change: UnauthorisedChange,
    pub reboots: Reboots,
    pub outdated_software: OutdatedSoftware,
    pub licence_overdeployed: LicenceOverdeployed,
    pub warranty_expiry: WarrantyExpiry,
    /// `[[release.title]]`, copied here by the config's validation (the rules' input).
    #[serde(skip)]
    pub release: std::sync::Arc<crate::release::ReleaseConfig>,
    /// `[finance] warranty_notice_days`, copied here by the config's validation.
    #[serde(skip)]
    pub warranty_notice_days: u32,
}

impl RulesConfig {
    /// Impossible thresholds, as `(section, key, message)`.
    pub fn validate(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut issues = Vec::new();
        let levels: [(&'static str, u8, u8); 14] = [
            (
                "rules.host_down",
                self.host_down.impact,
                self.host_down.urgency,
            ),
            (
                "rules.agent_silent",
                self.agent_silent.impact,
                self.agent_silent.urgency,
            ),
            (
                "rules.disk_full",
                self.disk_full.impact,
                self.disk_full.urgency,
            ),
            (
                "rules.memory_pressure",
                self.memory_pressure.impact,
                self.memory_pressure.urgency,
            ),
            (
                "rules.cpu_saturation",
                self.cpu_saturation.impact,
                self.cpu_saturation.urgency,
            ),
            (
                "rules.supply_low",
                self.supply_low.impact,
                self.supply_low.urgency,
            ),
            (
                "rules.printer_error",
                self.printer_error.impact,
                self.printer_error.urgency,
            ),
            (
                "rules.ups_on_battery",
                self.ups_on_battery.impact,
                self.ups_on_battery.urgency,
            ),
            (
                "rules.unknown_device",
                self.unknown_device.impact,
                self.unknown_device.urgency,
            ),
            (
                "rules.unauthorised_change",
                self.unauthorised_change.impact,
                self.unauthorised_change.urgency,
            ),
            ("rules.reboots", self.reboots.impact, self.reboots.urgency),
            (
                "rules.outdated_software",
                self.outdated_software.impact,
                self.outdated_software.urgency,
            ),
            (
                "rules.licence_overdeployed",
                self.licence_overdeployed.impact,
                self.licence_overdeployed.urgency,
            ),
            (
                "rules.warranty_expiry",
                self.warranty_expiry.impact,
                self.warranty_expiry.urgency,
            ),
        ];
        for (section, impact, urgency) in levels {
            if !(1..=3).contains(&impact) {
                issues.push((
                    section,
                    "impact",
                    format!("{impact} is not 1 (high), 2 or 3 (low)"),
                ));
            }
            if !(1..=3).contains(&urgency) {
                issues.push((
                    section,
                    "urgency",
                    format!("{urgency} is not 1 (high), 2 or 3 (low)"),
                ));
            }
        }
        let percent = |section, key, value: f64, issues: &mut Vec<_>| {
            if !(value > 0.0 && value <= 100.0) {
                issues.push((
                    section,
                    key,
                    format!("{value} is not a percentage between 0 and 100"),
                ));
            }
        };
        percent(
            "rules.disk_full",
            "percent",
            self.disk_full.percent,
            &mut issues,
        );
        percent(
            "rules.memory_pressure",
            "percent",
            self.memory_pressure.percent,
            &mut issues,
        );
        percent(
            "rules.cpu_saturation",
            "percent",
            self.cpu_saturation.percent,
            &mut issues,
        );
        percent(
            "rules.supply_low",
            "percent",
            self.supply_low.percent,
            &mut issues,
        );
        if self.host_down.misses == 0 {
            issues.push(("rules.host_down", "misses", "must be at least 1".to_owned()));
        }
        if self.memory_pressure.samples == 0 {
            issues.push((
                "rules.memory_pressure",
                "samples",
                "must be at least 1".to_owned(),
            ));
        }
        if self.cpu_saturation.samples == 0 {
            issues.push((
                "rules.cpu_saturation",
                "samples",
                "must be at least 1".to_owned(),
            ));
        }
        if self.reboots.count < 2 {
            issues.push((
                "rules.reboots",
                "count",
                "must be at least 2 (one boot is normal)".to_owned(),
            ));
        }
        for (key, days) in [
            ("disk_full", self.disk_full.forecast_days),
            ("supply_low", self.supply_low.forecast_days),
        ] {
            if !(0.0..=3650.0).contains(&days) {
                let section = if key == "disk_full" {
                    "rules.disk_full"
                } else {
                    "rules.supply_low"
                };
                issues.push((
                    section,
                    "forecast_days",
                    format!("{days} is not between 0 and 3650"),
                ));
            }
        }
        for error in &self.printer_error.errors {
            if !devices::ALL_PRINTER_ERRORS.contains(&error.as_str()) {
                issues.push((
                    "rules.printer_error",
                    "errors",
                    format!(
                        "{error:?} is not an hrPrinterDetectedErrorState bit ({})",
                        devices::ALL_PRINTER_ERRORS.join(", ")
                    ),
                ));
            }
        }
        issues
    }
}

/// Every enabled rule over every asset.
pub fn evaluate(config: &RulesConfig, context: &Context<'_>) -> Vec<Condition> {
    let mut out = Vec::new();
    for asset in context.assets {
        let Some(obs) = context.obs.assets.get(&asset.id) else {
            devices::unknown_device(config, context, asset, None, &mut out);
            continue;
        };
        availability::check(config, context, asset, obs, &mut out);
        capacity::check(config, context, asset, obs, &mut out);
        devices::check(config, context, asset, obs, &mut out);
        changes::check(config, context, asset, obs, &mut out);
    }
    certificates::check(context, &mut out);
    release::check(config, context, &mut out);
    warranty::check(config, context, &mut out);
    out
}

/// `name` or, for nameless devices, their address.
fn label(asset: &Asset) -> String {
    if !asset.name.is_empty() {
        asset.name.clone()
    } else {
        asset
            .ips
            .first()
            .cloned()
            .unwrap_or_else(|| asset.id.clone())
    }
}

/// Durations as a technician reads them: "3 min", "2 h 10 min", "4 days".
pub fn human(duration: time::Duration) -> String {
    let secs = duration.whole_seconds().max(0);
    match secs {
        0..=89 => format!("{secs} s"),
        90..=5399 => format!("{} min", (secs + 30) / 60),
        5400..=172_799 => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests;
