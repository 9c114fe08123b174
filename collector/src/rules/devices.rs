//! Device states the network reports: printer error bits, UPSs on battery or short of
//! runtime, and devices nobody has seen before.

use serde_json::json;

use super::{Condition, Context, RulesConfig, human, label};
use crate::model::{Asset, AssetKind, Source};
use crate::observe::AssetObs;

/// `hrPrinterDetectedErrorState` bits that need a person by default.
pub(super) const DEFAULT_PRINTER_ERRORS: [&str; 7] = [
    "noToner",
    "jammed",
    "doorOpen",
    "offline",
    "serviceRequested",
    "noPaper",
    "markerSupplyMissing",
];

/// Every bit name the SNMP layer decodes.
pub(super) use crate::scan::snmp::tables::PRINTER_ERROR_BITS as ALL_PRINTER_ERRORS;

pub(super) fn check(
    config: &RulesConfig,
    cx: &Context<'_>,
    asset: &Asset,
    obs: &AssetObs,
    out: &mut Vec<Condition>,
) {
    let rule = &config.printer_error;
    if rule.enabled {
        let errors: Vec<&String> = obs
            .snmp
            .printer_errors
            .iter()
            .filter(|e| rule.errors.contains(e))
            .collect();
        if !errors.is_empty() {
            let list = errors
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Condition {
                rule: "printer_error",
                asset_id: asset.id.clone(),
                title: format!("Printer {} reports {list}", label(asset)),
                description: format!(
                    "{} reports these error states over SNMP: {list}.",
                    label(asset)
                ),
                impact: rule.impact,
                urgency: rule.urgency,
                measured: json!({"errors": errors}),
            });
        }
    }
    let rule = &config.ups_on_battery;
    if rule.enabled
        && let Some((on_battery, runtime, charge)) = obs.snmp.ups
    {
        let short = runtime.is_some_and(|r| r < rule.runtime_minutes * 60);
        if on_battery || short {
            let runtime_text = runtime.map_or("unknown".to_owned(), |r| {
                human(time::Duration::seconds(r as i64))
            });
            out.push(Condition {
                rule: "ups_on_battery",
                asset_id: asset.id.clone(),
                title: if on_battery {
                    format!("UPS {} on battery, {runtime_text} left", label(asset))
                } else {
                    format!("UPS {} runtime low ({runtime_text})", label(asset))
                },
                description: format!(
                    "{} is {}; estimated runtime {runtime_text}, charge {}.",
                    label(asset),
                    if on_battery { "running on battery: mains power is off" } else { "on mains" },
                    charge.map_or("unknown".to_owned(), |c| format!("{c:.0} %")),
                ),
                impact: rule.impact,
                urgency: rule.urgency,
                measured: json!({"on_battery": on_battery, "runtime_secs": runtime, "charge_percent": charge}),
            });
        }
    }
    unknown_device(config, cx, asset, Some(obs), out);
}

/// A device discovered on the network that is neither managed (no agent) nor identified (no
/// SNMP answer, no known kind), first seen recently.
pub(super) fn unknown_device(
    config: &RulesConfig,
    cx: &Context<'_>,
    asset: &Asset,
    _obs: Option<&AssetObs>,
    out: &mut Vec<Condition>,
) {
    let rule = &config.unknown_device;
    let window = time::Duration::try_from(rule.within).unwrap_or(time::Duration::MAX);
    // Everything the first sweep finds is the baseline, not news: no storm on installation.
    let new = cx.baseline.is_some_and(|b| asset.first_seen > b);
    let unidentified = new
        && !asset.sources.contains(&Source::Agent)
        && !asset.sources.contains(&Source::Snmp)
        && asset.kind == AssetKind::Unknown;
    if rule.enabled && unidentified && cx.now - asset.first_seen <= window {
        let mac = asset.macs.first().cloned().unwrap_or_default();
        out.push(Condition {
            rule: "unknown_device",
            asset_id: asset.id.clone(),
            title: format!(
                "New unknown device {} appeared{}",
                if mac.is_empty() { label(asset) } else { mac.clone() },
                asset.ips.first().map_or(String::new(), |ip| format!(" at {ip}")),
            ),
            description: format!(
                "A device first seen {} ago answers ping but has no agent and no SNMP answer. MAC {}, vendor {}. \
                 Identify it, then resolve this incident (or give it an agent).",
                human(cx.now - asset.first_seen),
                if mac.is_empty() { "unknown" } else { &mac },
                if asset.vendor.is_empty() { "unknown" } else { &asset.vendor },
            ),
            impact: rule.impact,
            urgency: rule.urgency,
            measured: json!({"mac": mac, "vendor": asset.vendor, "first_seen": asset.first_seen.unix_timestamp()}),
        });
    }
}
