//! `[[service]]`, `[sla]` and `[report]`: what a service is, the targets it is held to, and
//! who gets the monthly report when. Checked by `config::validate` (every problem named by
//! key, exit 78) and reloaded live with the alerts task, which plans the warnings and the
//! monthly email.

use std::time::Duration;

use serde::Deserialize;

use crate::model::{Asset, AssetKind, Incident};

/// One `[[service]]`: a set of assets and the rules whose incidents count against it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// Asset kinds that belong, e.g. `["switch", "access-point"]`.
    #[serde(default)]
    pub kinds: Vec<AssetKind>,
    /// Rooms (`asset.register.room`, case-insensitive).
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Asset tags (`asset.register.asset_tag`, case-insensitive).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Asset ids.
    #[serde(default)]
    pub assets: Vec<String>,
    /// Asset names, `*` matching any run of characters (`"core-*"`), case-insensitive.
    #[serde(default)]
    pub names: Vec<String>,
    /// Rules whose incidents count against the service; empty: every rule.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Availability within school hours the school agreed to, in percent (e.g. `99.5`).
    pub availability_target: f64,
}

impl ServiceConfig {
    /// Whether `asset` belongs: it matches any of the selectors given.
    pub fn has(&self, asset: &Asset) -> bool {
        let eq = |list: &[String], value: &str| {
            !value.trim().is_empty()
                && list
                    .iter()
                    .any(|v| v.trim().eq_ignore_ascii_case(value.trim()))
        };
        self.kinds.contains(&asset.kind)
            || self.assets.contains(&asset.id)
            || eq(&self.rooms, &asset.register.room)
            || eq(&self.tags, &asset.register.asset_tag)
            || self.names.iter().any(|p| glob(p, &asset.name))
    }

    /// Whether `incident` counts against the service, given whether its asset is a member.
    pub fn counts(&self, incident: &Incident, member: bool) -> bool {
        member && (self.rules.is_empty() || self.rules.contains(&incident.rule))
    }

    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.name.trim().is_empty() {
            out.push(("name", "must not be empty".to_owned()));
        }
        if !(self.availability_target > 0.0 && self.availability_target <= 100.0) {
            out.push((
                "availability_target",
                format!(
                    "{} is not a percentage between 0 (exclusive) and 100",
                    self.availability_target
                ),
            ));
        }
        if self.kinds.is_empty()
            && self.rooms.is_empty()
            && self.tags.is_empty()
            && self.assets.is_empty()
            && self.names.is_empty()
        {
            out.push((
                "name",
                format!(
                    "service {:?} has no members: give kinds, rooms, tags, assets or names",
                    self.name
                ),
            ));
        }
        out
    }
}

/// `*` matches any run of characters; everything else itself, case-insensitively.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.trim().to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    if pattern.is_empty() {
        return false;
    }
    // Iterative wildcard matching with one backtrack point.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] != '*' && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Which clock the response and resolution targets run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Clock {
    /// Only school time counts (`[school_hours]`; around the clock when that is absent).
    #[default]
    #[serde(rename = "school_hours")]
    SchoolHours,
    #[serde(rename = "24x7")]
    Always,
}

/// `[sla]`: response and resolution targets per priority.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    pub clock: Clock,
    /// Five entries, P1 first: opened → first acknowledge or assignment. `""`: no target.
    pub response: Vec<String>,
    /// Five entries, P1 first: opened → resolved. `""`: no target.
    pub resolution: Vec<String>,
    /// An open incident past this percentage of a target gets one warning email.
    pub warn_at_percent: f64,
    /// Who gets the warnings; empty: `[smtp] to`.
    pub warn_to: Vec<String>,
    /// Parsed by [`SlaConfig::targets`].
    #[serde(skip)]
    pub parsed: Targets,
}

impl Default for SlaConfig {
    fn default() -> Self {
        let list = |v: [&str; 5]| v.iter().map(|s| (*s).to_owned()).collect();
        let mut config = Self {
            clock: Clock::SchoolHours,
            response: list(["30m", "1h", "4h", "1d", "3d"]),
            resolution: list(["4h", "1d", "3d", "5d", "10d"]),
            warn_at_percent: 75.0,
            warn_to: Vec::new(),
            parsed: Targets::default(),
        };
        config.parsed = config.targets().unwrap_or_default();
        config
    }
}

/// The targets in typed form; index 0 is P1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Targets {
    pub response: [Option<Duration>; 5],
    pub resolution: [Option<Duration>; 5],
    /// `warn_at_percent / 100`.
    pub warn_fraction: f64,
    pub clock: Clock,
}

impl Targets {
    fn index(priority: u8) -> Option<usize> {
        usize::from(priority).checked_sub(1).filter(|i| *i < 5)
    }
    pub fn response(&self, priority: u8) -> Option<Duration> {
        Self::index(priority).and_then(|i| self.response[i])
    }
    pub fn resolution(&self, priority: u8) -> Option<Duration> {
        Self::index(priority).and_then(|i| self.resolution[i])
    }
}

impl SlaConfig {
    /// The typed targets, or every problem as `(key, message)`.
    pub fn targets(&self) -> Result<Targets, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let mut parse = |key: &'static str, list: &[String]| {
            let mut out = [None; 5];
            if list.len() != 5 {
                problems.push((
                    key,
                    format!(
                        "needs 5 entries, P1 first (\"\" for none), not {}",
                        list.len()
                    ),
                ));
                return out;
            }
            for (i, text) in list.iter().enumerate() {
                if text.trim().is_empty() {
                    continue;
                }
                match humantime::parse_duration(text.trim()) {
                    Ok(d) if !d.is_zero() => out[i] = Some(d),
                    Ok(_) => problems.push((key, format!("P{}: must be longer than 0s", i + 1))),
                    Err(e) => {
                        problems.push((key, format!("P{}: {text:?} is not a duration: {e}", i + 1)))
                    }
                }
            }
            out
        };
        let response = parse("response", &self.response);
        let resolution = parse("resolution", &self.resolution);
        if !(self.warn_at_percent > 0.0 && self.warn_at_percent < 100.0) {
            problems.push((
                "warn_at_percent",
                format!(
                    "{} must be between 0 and 100 (exclusive)",
                    self.warn_at_percent
                ),
            ));
        }
        for to in &self.warn_to {
            if !to.contains('@') || to.trim() != to {
                problems.push(("warn_to", format!("{to:?} is not an email address")));
            }
        }
        if problems.is_empty() {
            Ok(Targets {
                response,
                resolution,
                warn_fraction: self.warn_at_percent / 100.0,
                clock: self.clock,
            })
        } else {
            Err(problems)
        }
    }
}

/// `[report]`: the monthly service-level report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Who gets the monthly email with the PDF (the governors' pack); empty: nobody.
    pub to: Vec<String>,
    /// Day of the month (1–28) from which last month's report is sent, school time zone.
    pub day: u8,
    /// Hour of that day (0–23).
    pub hour: u8,
    /// On the report's title; `[web] school_name` when empty.
    pub school_name: String,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            to: Vec::new(),
            day: 1,
            hour: 7,
            school_name: String::new(),
        }
    }
}

impl ReportConfig {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=28).contains(&self.day) {
            out.push(("day", format!("{} is not a day between 1 and 28", self.day)));
        }
        if self.hour > 23 {
            out.push((
                "hour",
                format!("{} is not an hour between 0 and 23", self.hour),
            ));
        }
        for to in &self.to {
            if !to.contains('@') || to.trim() != to {
                out.push(("to", format!("{to:?} is not an email address")));
            }
        }
        out
    }
}

/// Checks the three sections, filling `sla.parsed`; `(section, key, message)` triples.
pub fn validate(
    services: &[ServiceConfig],
    sla: Option<&mut SlaConfig>,
    report: &ReportConfig,
) -> Vec<(&'static str, &'static str, String)> {
    let mut issues = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for service in services {
        for (key, message) in service.problems() {
            issues.push(("service", key, message));
        }
        if !names.insert(service.name.trim().to_lowercase()) {
            issues.push((
                "service",
                "name",
                format!("service {:?} is named twice", service.name),
            ));
        }
    }
    if let Some(sla) = sla {
        match sla.targets() {
            Ok(targets) => sla.parsed = targets,
            Err(problems) => issues.extend(problems.into_iter().map(|(k, m)| ("sla", k, m))),
        }
    }
    issues.extend(report.problems().into_iter().map(|(k, m)| ("report", k, m)));
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("core-*", "CORE-SW1"));
        assert!(glob("*-ap", "b12-ap"));
        assert!(glob("rm*pc*", "rm02-pc007"));
        assert!(!glob("core-*", "edge-sw1"));
        assert!(!glob("", "anything"));
        assert!(glob("exact", "Exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn targets_parse_and_complain_by_key() {
        let mut sla = SlaConfig::default();
        let t = sla.targets().expect("defaults are valid");
        assert_eq!(t.response(1), Some(Duration::from_secs(1800)));
        assert_eq!(t.resolution(5), Some(Duration::from_secs(10 * 86_400)));
        assert_eq!(t.response(0), None);
        assert_eq!(t.response(6), None);
        sla.response = vec!["1h".into(), "soon".into()];
        sla.warn_at_percent = 100.0;
        let problems = sla.targets().expect_err("bad");
        assert!(
            problems
                .iter()
                .any(|(k, m)| *k == "response" && m.contains("5 entries"))
        );
        assert!(problems.iter().any(|(k, _)| *k == "warn_at_percent"));
        sla.response = vec![
            "1h".into(),
            "soon".into(),
            "".into(),
            "0s".into(),
            "2h".into(),
        ];
        let problems = sla.targets().expect_err("bad");
        assert!(problems.iter().any(|(_, m)| m.starts_with("P2: \"soon\"")));
        assert!(
            problems
                .iter()
                .any(|(_, m)| m.starts_with("P4: must be longer"))
        );
    }
}
