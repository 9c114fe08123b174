//! Capacity: volumes filling up (now, or forecast within N days), sustained memory pressure
//! and CPU saturation, printer supplies running out (now, or forecast).

use serde_json::json;

use super::{Condition, Context, RulesConfig, label};
use crate::model::Asset;
use crate::observe::AssetObs;

pub(super) fn check(
    config: &RulesConfig,
    cx: &Context<'_>,
    asset: &Asset,
    obs: &AssetObs,
    out: &mut Vec<Condition>,
) {
    if let Some(latest) = obs.status.back() {
        let rule = &config.disk_full;
        if rule.enabled {
            for (mount, used, total) in &latest.volumes {
                let days = obs.days_until(&format!("volume:{mount}"), cx.now);
                let full_soon = days.is_some_and(|d| d <= rule.forecast_days);
                if *used >= rule.percent || full_soon {
                    let when = days.map_or(String::new(), |d| {
                        format!(", full in about {:.0} days", d.max(0.0))
                    });
                    out.push(Condition {
                        rule: "disk_full",
                        asset_id: asset.id.clone(),
                        title: format!("Disk {mount} on {} is {used:.0} % full{when}", label(asset)),
                        description: format!(
                            "Volume {mount} on {} ({:.1} GiB) is {used:.1} % used{when}. Threshold {} %, forecast horizon {} days.",
                            label(asset),
                            *total as f64 / (1u64 << 30) as f64,
                            rule.percent,
                            rule.forecast_days
                        ),
                        impact: rule.impact,
                        urgency: if full_soon && days.is_some_and(|d| d <= 2.0) { 1 } else { rule.urgency },
                        measured: json!({"mount": mount, "used_percent": used, "days_until_full": days}),
                    });
                    // One incident per asset and rule: the fullest volume speaks for the rest.
                    break;
                }
            }
        }
        let sustained = |samples: usize,
                         value: &dyn Fn(&crate::observe::StatusPoint) -> Option<f64>,
                         limit: f64| {
            obs.status.len() >= samples
                && obs
                    .status
                    .iter()
                    .rev()
                    .take(samples)
                    .all(|p| value(p).is_some_and(|v| v >= limit))
        };
        let rule = &config.memory_pressure;
        if rule.enabled && sustained(rule.samples, &|p| p.memory_percent, rule.percent) {
            let now = latest.memory_percent.unwrap_or_default();
            out.push(Condition {
                rule: "memory_pressure",
                asset_id: asset.id.clone(),
                title: format!("{} is short of memory ({now:.0} % used)", label(asset)),
                description: format!(
                    "Memory use on {} has been at or above {} % for the last {} status reports.",
                    label(asset),
                    rule.percent,
                    rule.samples
                ),
                impact: rule.impact,
                urgency: rule.urgency,
                measured: json!({"memory_percent": now}),
            });
        }
        let rule = &config.cpu_saturation;
        if rule.enabled && sustained(rule.samples, &|p| Some(p.cpu_percent), rule.percent) {
            out.push(Condition {
                rule: "cpu_saturation",
                asset_id: asset.id.clone(),
                title: format!(
                    "{} CPU saturated ({:.0} %)",
                    label(asset),
                    latest.cpu_percent
                ),
                description: format!(
                    "CPU use on {} has been at or above {} % for the last {} status reports.",
                    label(asset),
                    rule.percent,
                    rule.samples
                ),
                impact: rule.impact,
                urgency: rule.urgency,
                measured: json!({"cpu_percent": latest.cpu_percent}),
            });
        }
    }

    let rule = &config.supply_low;
    if rule.enabled {
        let mut worst: Option<(String, f64, Option<f64>)> = None;
        for (description, points) in &obs.supplies {
            let Some(&(_, level)) = points.back() else {
                continue;
            };
            let days = obs.days_until(&format!("supply:{description}"), cx.now);
            let low = level <= rule.percent || days.is_some_and(|d| d <= rule.forecast_days);
            // Waste containers fill up rather than run out; their percent is not a level left.
            let waste = description.to_ascii_lowercase().contains("waste");
            if low && !waste && worst.as_ref().is_none_or(|w| level < w.1) {
                worst = Some((description.clone(), level, days));
            }
        }
        if let Some((description, level, days)) = worst {
            let when = days.map_or(String::new(), |d| {
                format!(", empty in about {:.0} days", d.max(0.0))
            });
            out.push(Condition {
                rule: "supply_low",
                asset_id: asset.id.clone(),
                title: format!("Printer {} {} at {level:.0} %{when}", label(asset), description.to_lowercase()),
                description: format!(
                    "{description} in {} is at {level:.0} %{when}. Order a replacement (threshold {} %).",
                    label(asset), rule.percent
                ),
                impact: rule.impact,
                urgency: rule.urgency,
                measured: json!({"supply": description, "percent": level, "days_until_empty": days}),
            });
        }
    }
}
