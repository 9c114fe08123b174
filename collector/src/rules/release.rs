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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::observe::Observations;
    use crate::release::ReleaseConfig;
    use crate::rules::tests::{NOW, asset};
    use crate::rules::{Condition, evaluate};

    fn policy(name: &str, minimum: Option<&str>, licences: Option<u64>) -> TitlePolicy {
        TitlePolicy {
            name: name.to_owned(),
            matches: None,
            minimum_version: minimum.map(str::to_owned),
            licences,
            incident: true,
        }
    }

    fn config(policies: Vec<TitlePolicy>) -> RulesConfig {
        RulesConfig {
            release: Arc::new(ReleaseConfig { title: policies }),
            ..RulesConfig::default()
        }
    }

    /// Assets `pc0`, `pc1`, … with these `(install name, version)` lists.
    fn school(installs: &[&[(&str, &str)]]) -> (Vec<crate::model::Asset>, Observations) {
        let mut obs = Observations::default();
        let assets = installs
            .iter()
            .enumerate()
            .map(|(i, list)| {
                let id = format!("pc{i}");
                let software: Vec<caretaker_proto::v1::Software> = list
                    .iter()
                    .map(|(name, version)| caretaker_proto::v1::Software {
                        name: (*name).to_owned(),
                        version: (*version).to_owned(),
                        ..Default::default()
                    })
                    .collect();
                obs.entry(&id).versions = crate::observe::versions(&software);
                asset(&id, &[])
            })
            .collect();
        (assets, obs)
    }

    fn conditions(
        config: &RulesConfig,
        assets: &[crate::model::Asset],
        obs: &Observations,
    ) -> Vec<Condition> {
        let cx = Context {
            now: NOW,
            assets,
            obs,
            change_windows: &[],
            baseline: None,
        };
        evaluate(config, &cx)
            .into_iter()
            .filter(|c| c.rule == OUTDATED || c.rule == OVERDEPLOYED)
            .collect()
    }

    /// The assets `outdated_software` lists for a title with `minimum` and one install at
    /// each of `installed`.
    fn outdated(minimum: &str, installed: &[&str]) -> Vec<String> {
        let lists: Vec<Vec<(&str, &str)>> = installed.iter().map(|v| vec![("app", *v)]).collect();
        let refs: Vec<&[(&str, &str)]> = lists.iter().map(Vec::as_slice).collect();
        let (assets, obs) = school(&refs);
        let found = conditions(
            &config(vec![policy("App", Some(minimum), None)]),
            &assets,
            &obs,
        );
        assert!(found.len() <= 1, "one incident per title: {found:?}");
        found
            .first()
            .map(|c| {
                c.measured["outdated"]
                    .as_array()
                    .expect("outdated list")
                    .iter()
                    .map(|o| o["version"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn installs_below_the_minimum_are_one_incident_on_the_title() {
        let (assets, obs) = school(&[
            &[("bash", "5.2.15-2+b2")],
            &[("bash", "5.2.21-2")],
            &[("coreutils", "9.1-1")],
        ]);
        let found = conditions(
            &config(vec![policy("Bash", Some("5.2.21"), None)]),
            &assets,
            &obs,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let c = &found[0];
        assert_eq!(c.rule, OUTDATED);
        assert_eq!(c.asset_id, "software:bash");
        assert_eq!(c.title, "Bash older than 5.2.21 on 1 asset(s)");
        assert!(
            c.description.contains("PC0 (5.2.15-2+b2)"),
            "{}",
            c.description
        );
        assert!(!c.description.contains("PC1"), "{}", c.description);
        assert_eq!(c.measured["outdated"][0]["asset_id"], "pc0");
        assert_eq!((c.impact, c.urgency), (3, 3));

        // Every install at or above the minimum: nothing.
        let met = conditions(
            &config(vec![policy("Bash", Some("5.2.15"), None)]),
            &assets,
            &obs,
        );
        assert!(met.is_empty(), "{met:?}");
    }

    #[test]
    fn the_minimum_compares_as_versions_not_text() {
        assert!(
            outdated("1.9", &["1.10"]).is_empty(),
            "1.10 is newer than 1.9"
        );
        assert_eq!(outdated("1.10", &["1.9"]), ["1.9"]);
        assert_eq!(
            outdated(
                "124.0.6367.118",
                &["124.0.6367.91", "124.0.6367.118", "125.0.1"]
            ),
            ["124.0.6367.91"]
        );
        assert!(outdated("124.0.6367.9", &["124.0.6367.91"]).is_empty());
        assert!(
            outdated("3.0", &["1:2.0"]).is_empty(),
            "an epoch outranks the rest"
        );
        assert_eq!(outdated("2.3", &["2.3~rc1", "2.3"]), ["2.3~rc1"]);
        assert_eq!(
            outdated("5.2.15-3", &["5.2.15-2+b2", "5.2.15-10"]),
            ["5.2.15-2+b2"],
            "Debian revisions count after the upstream version"
        );
        assert!(outdated("1.2", &["v1.2"]).is_empty(), "a tag's leading v");
        assert!(
            outdated("2.0", &[""]).is_empty(),
            "an unknown version is not old"
        );
    }

    #[test]
    fn a_title_matched_by_pattern_counts_the_oldest_install_per_asset() {
        let (assets, obs) = school(&[
            &[
                ("Mozilla Firefox (x64 en-GB)", "128.3.1"),
                ("firefox-esr", "115.5.0esr-1"),
            ],
            &[("firefox-esr", "128.3.1esr-1")],
        ]);
        let mut firefox = policy("Firefox", Some("128.0"), Some(2));
        firefox.matches = Some("FireFox".to_owned());
        let found = conditions(&config(vec![firefox]), &assets, &obs);
        assert_eq!(found.len(), 1, "two installs, two licences: {found:?}");
        assert_eq!(found[0].rule, OUTDATED);
        assert_eq!(found[0].measured["outdated"][0]["version"], "115.5.0esr-1");
    }

    #[test]
    fn outdated_installs_are_only_an_incident_when_the_policy_says_so() {
        let (assets, obs) = school(&[&[("bash", "5.0")]]);
        let mut quiet = policy("bash", Some("6.0"), None);
        quiet.incident = false;
        assert!(conditions(&config(vec![quiet]), &assets, &obs).is_empty());
        let mut off = config(vec![policy("bash", Some("6.0"), Some(0))]);
        off.outdated_software.enabled = false;
        off.licence_overdeployed.enabled = false;
        assert!(conditions(&off, &assets, &obs).is_empty(), "both rules off");
    }

    #[test]
    fn more_installs_than_licences_is_an_over_deployment() {
        let (assets, obs) = school(&[
            &[("SMART Notebook", "22.1")],
            &[("smart notebook", "23.0")],
            &[("bash", "5.2")],
        ]);
        let licences = |n: Option<u64>| {
            conditions(
                &config(vec![policy("SMART Notebook", None, n)]),
                &assets,
                &obs,
            )
        };
        let zero = licences(Some(0));
        assert_eq!(zero.len(), 1, "{zero:?}");
        assert_eq!(zero[0].rule, OVERDEPLOYED);
        assert_eq!(zero[0].asset_id, "software:smart notebook");
        assert_eq!(
            zero[0].title,
            "SMART Notebook installed on 2 assets, 0 licence(s) owned"
        );
        assert!(zero[0].description.contains("remove 2 install(s)"));
        assert_eq!(
            zero[0].measured["assets"],
            serde_json::json!(["pc0", "pc1"])
        );
        let one = licences(Some(1));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].measured["licences"], 1);
        assert!(licences(Some(2)).is_empty(), "as many licences as installs");
        assert!(licences(None).is_empty(), "licences not tracked");

        // Nobody has it: zero licences is not over-deployed.
        let (assets, obs) = school(&[&[("bash", "5.2")]]);
        assert!(
            conditions(
                &config(vec![policy("SMART Notebook", None, Some(0))]),
                &assets,
                &obs
            )
            .is_empty()
        );
    }

    #[test]
    fn an_asset_counts_once_and_only_with_observations() {
        let (mut assets, obs) = school(&[&[("bash", "5.2"), ("BASH", "5.1")]]);
        // Registered but never reported (no observations): not an install.
        assets.push(asset("manual", &[]));
        let found = conditions(
            &config(vec![policy("bash", Some("5.2"), Some(0))]),
            &assets,
            &obs,
        );
        let rules: Vec<_> = found.iter().map(|c| c.rule).collect();
        assert_eq!(rules, [OUTDATED, OVERDEPLOYED], "{found:?}");
        assert_eq!(found[1].measured["installs"], 1);
    }
}
