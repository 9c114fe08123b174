//! Release Management: the software titles the agents report, which version runs where, and
//! the school's policy per title from `[[release.title]]` (a minimum version, the licences
//! owned, whether an outdated install is an incident).
//!
//! Pure: [`spread`] groups installs (from the dashboard's catalog) into titles; the rules
//! `outdated_software` and `licence_overdeployed` (`rules/release.rs`) use [`TitlePolicy`]
//! over the writer's observations. Versions compare with [`version::compare`].

pub mod version;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// `[release]`: one `[[release.title]]` per title the school manages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseConfig {
    pub title: Vec<TitlePolicy>,
}

/// What the school decided about one title.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TitlePolicy {
    /// The title as shown; without `match`, installs named exactly this (any case) count.
    pub name: String,
    /// Installs whose name contains this text (any case) count as this title, e.g.
    /// `match = "firefox"` for "Mozilla Firefox (x64 en-GB)" and "firefox-esr".
    #[serde(default, rename = "match")]
    pub matches: Option<String>,
    /// Installs older than this are outdated ([`version::compare`]).
    #[serde(default)]
    pub minimum_version: Option<String>,
    /// Licences owned; more installs than this is an over-deployment.
    #[serde(default)]
    pub licences: Option<u64>,
    /// Whether outdated installs raise an incident (rule `outdated_software`).
    #[serde(default)]
    pub incident: bool,
}

impl TitlePolicy {
    /// Whether an install named `lower` (lower case) is this title.
    pub fn covers(&self, lower: &str) -> bool {
        match &self.matches {
            Some(pattern) => lower.contains(&pattern.to_lowercase()),
            None => lower == self.name.to_lowercase(),
        }
    }

    /// The key this title's pages and incidents use: its name in lower case.
    pub fn key(&self) -> String {
        self.name.to_lowercase()
    }
}

impl ReleaseConfig {
    /// The first policy covering an install named `lower` (lower case).
    pub fn policy_for(&self, lower: &str) -> Option<&TitlePolicy> {
        self.title.iter().find(|p| p.covers(lower))
    }

    /// Impossible settings as `(title index, key, message)`.
    pub fn validate(&self) -> Vec<(usize, &'static str, String)> {
        let mut issues = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, policy) in self.title.iter().enumerate() {
            if policy.name.trim().is_empty() {
                issues.push((i, "name", "must not be empty".to_owned()));
            } else if !seen.insert(policy.key()) {
                issues.push((i, "name", format!("{:?} is configured twice", policy.name)));
            }
            if policy
                .matches
                .as_deref()
                .is_some_and(|m| m.trim().is_empty())
            {
                issues.push((
                    i,
                    "match",
                    "must not be empty (leave it out to match the name)".to_owned(),
                ));
            }
            match policy.minimum_version.as_deref() {
                Some(v) if v.trim().is_empty() || !v.bytes().any(|b| b.is_ascii_digit()) => {
                    issues.push((
                        i,
                        "minimum_version",
                        format!("{v:?} is not a version (it has no number)"),
                    ));
                }
                None if policy.incident => issues.push((
                    i,
                    "incident",
                    "needs a minimum_version (an incident is raised for installs older than it)"
                        .to_owned(),
                )),
                _ => {}
            }
        }
        issues
    }
}

/// The line and column of `key` in the `index`-th `[[release.title]]` table of `text` (the
/// table's header when the key is not there), for config errors.
pub fn locate(text: &str, index: usize, key: &str) -> (usize, usize) {
    let mut table = None;
    let mut header = 1;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.starts_with('[') {
            let name: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if name.starts_with("[[release.title]]") {
                table = Some(table.map_or(0, |t: usize| t + 1));
                if table == Some(index) {
                    header = n + 1;
                }
            } else if table == Some(index) {
                break;
            } else if table.is_some() && !name.starts_with("[[release.title") {
                // Another section between title tables.
            }
            continue;
        }
        if table != Some(index) {
            continue;
        }
        if let Some((lhs, _)) = line.split_once('=')
            && lhs.trim().trim_matches('"') == key
        {
            return (n + 1, raw.len() - line.len() + 1);
        }
    }
    (header, 1)
}

/// One install: a title on an asset, at a version ("" when the source does not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install<'a> {
    pub title: &'a str,
    pub asset_id: &'a str,
    pub asset_name: &'a str,
    pub version: &'a str,
}

/// An asset in a title's lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct Holder {
    pub asset_id: String,
    pub asset_name: String,
}

/// One version of a title and the assets running it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionCount {
    pub version: String,
    pub count: usize,
    pub assets: Vec<Holder>,
    /// Older than the title's minimum version.
    pub outdated: bool,
}

/// A title with its version spread and what its policy makes of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TitleSpread {
    pub name: String,
    /// Lower-case name: the title's address (`/releases/{key}`, `/api/v1/software/{key}`).
    pub key: String,
    /// Assets with the title installed (an asset counts once, whatever its versions).
    pub installs: usize,
    /// Newest version first.
    pub versions: Vec<VersionCount>,
    pub minimum_version: Option<String>,
    pub licences: Option<u64>,
    pub incident: bool,
    /// Assets running a version older than the minimum.
    pub outdated: Vec<Holder>,
    /// Installs beyond the licences owned.
    pub over_deployed: Option<u64>,
    /// Install names grouped into this title (more than one with `match`).
    pub names: Vec<String>,
}

/// Groups installs into titles: one per configured policy (every install it covers) and one
/// per other install name. Sorted by name; a policy with no installs is still listed.
pub fn spread<'a>(
    installs: impl IntoIterator<Item = Install<'a>>,
    config: &ReleaseConfig,
) -> Vec<TitleSpread> {
    struct Group<'p> {
        name: String,
        policy: Option<&'p TitlePolicy>,
        names: BTreeSet<String>,
        versions: BTreeMap<String, BTreeSet<Holder>>,
    }
    let mut groups: BTreeMap<String, Group<'_>> = BTreeMap::new();
    for policy in &config.title {
        groups.entry(policy.key()).or_insert_with(|| Group {
            name: policy.name.clone(),
            policy: Some(policy),
            names: BTreeSet::new(),
            versions: BTreeMap::new(),
        });
    }
    for install in installs {
        let lower = install.title.to_lowercase();
        let (key, name, policy) = match config.policy_for(&lower) {
            Some(p) => (p.key(), p.name.clone(), Some(p)),
            None => (lower, install.title.to_owned(), None),
        };
        let group = groups.entry(key).or_insert_with(|| Group {
            name,
            policy,
            names: BTreeSet::new(),
            versions: BTreeMap::new(),
        });
        group.names.insert(install.title.to_owned());
        group
            .versions
            .entry(install.version.trim().to_owned())
            .or_default()
            .insert(Holder {
                asset_id: install.asset_id.to_owned(),
                asset_name: install.asset_name.to_owned(),
            });
    }
    groups
        .into_iter()
        .map(|(key, group)| {
            let minimum = group.policy.and_then(|p| p.minimum_version.clone());
            let mut everyone = BTreeSet::new();
            let mut outdated = BTreeSet::new();
            let mut versions: Vec<VersionCount> = group
                .versions
                .into_iter()
                .map(|(version, holders)| {
                    let old = minimum
                        .as_deref()
                        .is_some_and(|m| !version.is_empty() && version::older_than(&version, m));
                    everyone.extend(holders.iter().cloned());
                    if old {
                        outdated.extend(holders.iter().cloned());
                    }
                    VersionCount {
                        count: holders.len(),
                        assets: holders.into_iter().collect(),
                        version,
                        outdated: old,
                    }
                })
                .collect();
            versions.sort_by(|a, b| {
                version::compare(&b.version, &a.version).then_with(|| a.version.cmp(&b.version))
            });
            let installs = everyone.len();
            let licences = group.policy.and_then(|p| p.licences);
            TitleSpread {
                name: group.name,
                key,
                installs,
                versions,
                minimum_version: minimum,
                licences,
                incident: group.policy.is_some_and(|p| p.incident),
                outdated: outdated.into_iter().collect(),
                over_deployed: licences
                    .and_then(|l| (installs as u64).checked_sub(l))
                    .filter(|over| *over > 0),
                names: group.names.into_iter().collect(),
            }
        })
        .collect()
}

/// Titles whose name contains `needle` (any case); all for an empty one.
pub fn search<'a>(titles: &'a [TitleSpread], needle: &str) -> Vec<&'a TitleSpread> {
    let needle = needle.trim().to_lowercase();
    titles
        .iter()
        .filter(|t| {
            needle.is_empty()
                || t.key.contains(&needle)
                || t.names.iter().any(|n| n.to_lowercase().contains(&needle))
        })
        .collect()
}

/// The oldest of some versions (for an asset with a title installed twice).
pub fn oldest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions
        .into_iter()
        .min_by(|a, b| version::compare(a, b).then(Ordering::Equal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install<'a>(title: &'a str, asset: &'a str, version: &'a str) -> Install<'a> {
        Install {
            title,
            asset_id: asset,
            asset_name: asset,
            version,
        }
    }

    fn config(text: &str) -> ReleaseConfig {
        toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| t.get("release").cloned())
            .map(|r| r.try_into().expect("release config"))
            .unwrap_or_default()
    }

    #[test]
    fn versions_spread_newest_first_with_outdated_and_licences() {
        let config = config(
            r#"
            [[release.title]]
            name = "Firefox"
            match = "firefox"
            minimum_version = "128.0"
            licences = 2
            incident = true
            "#,
        );
        let titles = spread(
            [
                install("firefox-esr", "pc1", "115.5.0esr-1"),
                install("Mozilla Firefox (x64 en-GB)", "pc2", "128.3.1"),
                install("firefox-esr", "pc3", "128.3.1"),
                install("LibreOffice", "pc1", "7.4"),
                install("libreoffice", "pc2", "7.6"),
            ],
            &config,
        );
        assert_eq!(titles.len(), 2);
        let firefox = &titles[0];
        assert_eq!(firefox.key, "firefox");
        assert_eq!(firefox.installs, 3);
        assert_eq!(
            firefox
                .versions
                .iter()
                .map(|v| (v.version.as_str(), v.count, v.outdated))
                .collect::<Vec<_>>(),
            [("128.3.1", 2, false), ("115.5.0esr-1", 1, true)]
        );
        assert_eq!(
            firefox
                .outdated
                .iter()
                .map(|h| h.asset_id.as_str())
                .collect::<Vec<_>>(),
            ["pc1"]
        );
        assert_eq!(firefox.over_deployed, Some(1));
        let office = &titles[1];
        assert_eq!(office.key, "libreoffice");
        assert_eq!(office.installs, 2, "titles group by name in any case");
        assert_eq!(office.over_deployed, None);
        assert!(office.outdated.is_empty());
        assert_eq!(search(&titles, "OFFICE").len(), 1);
        assert_eq!(search(&titles, "").len(), 2);
        assert_eq!(
            search(&titles, "x64").len(),
            1,
            "matches the install names too"
        );
    }

    #[test]
    fn a_policy_without_installs_is_listed_and_zero_licences_over_deploy_at_once() {
        let config = config(
            "[[release.title]]\nname = \"SMART Notebook\"\nlicences = 0\n[[release.title]]\nname = \"bash\"\nlicences = 0\n",
        );
        let titles = spread([install("bash", "pc1", "5.2.15-2+b2")], &config);
        assert_eq!(titles.len(), 2);
        assert_eq!(titles[0].key, "bash");
        assert_eq!(titles[0].over_deployed, Some(1));
        assert_eq!(titles[1].installs, 0);
        assert_eq!(titles[1].over_deployed, None);
    }

    #[test]
    fn bad_policies_are_named_with_their_key_and_place() {
        let text = "data_dir = \"/x\"\n[[release.title]]\nname = \"A\"\n[[release.title]]\nname = \"a\"\nminimum_version = \"latest\"\n[[release.title]]\nname = \"\"\nincident = true\n";
        let config = config(text);
        let issues = config.validate();
        let keys: Vec<_> = issues.iter().map(|(i, k, _)| (*i, *k)).collect();
        assert_eq!(
            keys,
            [
                (1, "name"),
                (1, "minimum_version"),
                (2, "name"),
                (2, "incident")
            ]
        );
        assert_eq!(locate(text, 1, "minimum_version"), (6, 1));
        assert_eq!(locate(text, 2, "incident"), (9, 1));
        assert_eq!(locate(text, 2, "licences"), (7, 1), "the table's header");
    }
}
