//! Change management: software or hardware changes outside an approved change window (and
//! not marked expected by a technician), blocklisted software present, required software
//! missing.

use serde_json::json;

use super::{Condition, Context, RulesConfig, label};
use crate::model::{Asset, Source};
use crate::observe::AssetObs;

pub(super) fn check(
    config: &RulesConfig,
    cx: &Context<'_>,
    asset: &Asset,
    obs: &AssetObs,
    out: &mut Vec<Condition>,
) {
    let rule = &config.unauthorised_change;
    if !rule.enabled || !asset.sources.contains(&Source::Agent) {
        return;
    }
    let window = time::Duration::try_from(rule.within).unwrap_or(time::Duration::MAX);
    let relevant = |field: &str| {
        field.starts_with("software:")
            || field.starts_with("hardware.")
            || field.starts_with("disk:")
            || field.starts_with("nic:")
    };
    let outside: Vec<_> = obs
        .changes
        .iter()
        .filter(|c| c.kind != "created" && relevant(&c.field) && cx.now - c.at <= window)
        .filter(|c| !cx.change_windows.iter().any(|w| w.contains(c.at)))
        .filter(|c| c.expected_by.is_none())
        .collect();
    let installed = |name: &String| obs.software.as_ref().map(|list| list.contains(name));
    let blocklisted: Vec<&String> = rule
        .blocklist
        .iter()
        .filter(|n| installed(n) == Some(true))
        .collect();
    let missing: Vec<&String> = rule
        .required
        .iter()
        .filter(|n| installed(n) == Some(false))
        .collect();
    if outside.is_empty() && blocklisted.is_empty() && missing.is_empty() {
        return;
    }
    let mut parts = Vec::new();
    if !outside.is_empty() {
        let sample: Vec<String> = outside
            .iter()
            .take(5)
            .map(|c| format!("{} {}", c.kind, c.field.trim_start_matches("software:")))
            .collect();
        parts.push(format!(
            "{} change(s) outside an approved change window: {}{}",
            outside.len(),
            sample.join(", "),
            if outside.len() > 5 { ", …" } else { "" }
        ));
    }
    if !blocklisted.is_empty() {
        parts.push(format!(
            "blocklisted software installed: {}",
            blocklisted
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !missing.is_empty() {
        parts.push(format!(
            "required software removed: {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let headline = if let Some(first) = outside.first() {
        let what = first
            .field
            .trim_start_matches("software:")
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        format!(
            "{what} {} on {} outside a change window",
            first.kind,
            label(asset)
        )
    } else if !blocklisted.is_empty() {
        format!("Blocklisted software on {}", label(asset))
    } else {
        format!("Required software missing on {}", label(asset))
    };
    out.push(Condition {
        rule: "unauthorised_change",
        asset_id: asset.id.clone(),
        title: headline,
        description: format!("{}: {}.", label(asset), parts.join("; ")),
        impact: rule.impact,
        urgency: rule.urgency,
        measured: json!({
            "changes": outside.iter().map(|c| json!({"kind": c.kind, "field": c.field, "before": c.before, "after": c.after, "at": c.at.unix_timestamp()})).collect::<Vec<_>>(),
            "blocklisted": blocklisted,
            "missing": missing,
        }),
    });
}
