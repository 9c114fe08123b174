//! Release Management's rules over `[[release.title]]`: `outdated_software` (a title with
//! `incident = true` has installs older than its `minimum_version`: one incident per title,
//! listing the assets) and `licence_overdeployed` (more installs than `licences`: one
//! incident per title naming installs and licences). Both are about a title, not one asset,
//! so their conditions are on the pseudo-asset `software:{title}`.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Condition, Context, RulesConfig, label};
use crate::release::{TitlePolicy, version};

pub const OUTDATED: &str = "outdated_software";
pub const OVERDEPLOYED: &str = "licence_overdeployed";

/// The pseudo-asset a title's incidents are on.
pub fn subject(policy: &TitlePolicy) -> String {
    format!("software:{}", policy.key())
}

pub(super) fn check(config: &RulesConfig, cx: &Context<'_>, out: &mut Vec<Condition>) {
    let policies = &config.release.title;
    let outdated_on = config.outdated_software.enabled;
    let licences_on = config.licence_overdeployed.enabled;
    if policies.is_empty() || !(outdated_on || licences_on) {
        return;
    }
    // Per policy: every asset with it installed, and its oldest version there.
    let mut found: Vec<BTreeMap<&str, (&crate::model::Asset, &str)>> =
        vec![BTreeMap::new(); policies.len()];
    for asset in cx.assets {
        let Some(obs) = cx.obs.assets.get(&asset.id) else {
            continue;
        };
        for (i, policy) in policies.iter().enumerate() {
            let candidates: Vec<&str> = match &policy.matches {
                None => obs
                    .versions
                    .get(&policy.key())
                    .map(String::as_str)
                    .into_iter()
                    .collect(),
                Some(pattern) => {
                    let pattern = pattern.to_lowercase();
                    obs.versions
                        .iter()
                        .filter(|(name, _)| name.contains(&pattern))
                        .map(|(_, v)| v.as_str())
                        .collect()
                }
            };
            if let Some(v) = crate::release::oldest(candidates) {
                found[i].insert(asset.id.as_str(), (asset, v));
            }
        }
    }
    for (policy, installs) in policies.iter().zip(&found) {
        if outdated_on
            && policy.incident
            && let Some(minimum) = policy.minimum_version.as_deref()
        {
            let old: Vec<_> = installs
                .values()
                .filter(|(_, v)| !v.is_empty() && version::older_than(v, minimum))
                .collect();
            if !old.is_empty() {
                let names: Vec<String> = old
                    .iter()
                    .map(|(a, v)| format!("{} ({v})", label(a)))
                    .collect();
                let rule = &config.outdated_software;
                out.push(Condition {
                    rule: OUTDATED,
                    asset_id: subject(policy),
                    title: format!(
                        "{} older than {minimum} on {} asset(s)",
                        policy.name,
                        old.len()
                    ),
                    description: format!(
                        "The school requires {} {minimum} or newer; these run an older version: {}{}.",
                        policy.name,
                        names.iter().take(20).cloned().collect::<Vec<_>>().join(", "),
                        if names.len() > 20 { ", …" } else { "" }
                    ),
                    impact: rule.impact,
                    urgency: rule.urgency,
                    measured: json!({
                        "title": policy.name,
                        "minimum_version": minimum,
                        "outdated": old.iter().map(|(a, v)| json!({"asset_id": a.id, "asset": label(a), "version": v})).collect::<Vec<_>>(),
                    }),
                });
            }
        }
        if licences_on
            && let Some(licences) = policy.licences
            && installs.len() as u64 > licences
        {
            let rule = &config.licence_overdeployed;
            out.push(Condition {
                rule: OVERDEPLOYED,
                asset_id: subject(policy),
                title: format!(
                    "{} installed on {} assets, {licences} licence(s) owned",
                    policy.name,
                    installs.len()
                ),
                description: format!(
                    "{} is installed on {} assets but the school owns {licences} licence(s): \
                     remove {} install(s) or buy more licences (then raise `licences` in \
                     [[release.title]]).",
                    policy.name,
                    installs.len(),
                    installs.len() as u64 - licences
                ),
                impact: rule.impact,
                urgency: rule.urgency,
                measured: json!({
                    "title": policy.name,
                    "installs": installs.len(),
                    "licences": licences,
                    "assets": installs.values().map(|(a, _)| a.id.clone()).collect::<Vec<_>>(),
                }),
            });
        }
    }
}
