//! The `[smtp]` section: where alert emails go, how they get there, and how storms are tamed.
//!
//! Serde reads the raw section (`deny_unknown_fields`, humantime durations, defaults in the
//! `default_*` functions below); [`SmtpConfig::validate`] reports every problem at once as
//! `(section, key, message)`, which the config loader places at file:line (exit 78).
//! [`SmtpConfig::policy`] turns a validated section into the planner's typed [`Policy`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Environment variable holding the SMTP password when `password_file` is not set.
pub const PASSWORD_ENV: &str = "CARETAKER_SMTP_PASSWORD";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub server: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub from: String,
    /// Gets every alert no route claims.
    pub to: Vec<String>,
    /// AUTH user; the password comes from `password_file` or `CARETAKER_SMTP_PASSWORD`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file with the school's CA; otherwise the system trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Per SMTP command (connect, each reply).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Web UI base for links, e.g. `http://caretaker.school.example:8080`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Mails per recipient per rolling hour; 0 = unlimited. P1 mail is never held back.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_hour: u32,
    /// Incidents opening within this window are grouped...
    #[serde(default = "default_digest_window", with = "humantime_serde")]
    pub digest_window: Duration,
    /// ...when there are more than this many of them.
    #[serde(default = "default_digest_threshold")]
    pub digest_threshold: usize,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Priorities from this number down (P4, P5) wait for the end of quiet hours.
    #[serde(default = "default_quiet_min_priority")]
    pub quiet_min_priority: u8,
    /// IANA zone for quiet hours (e.g. `Europe/Amsterdam`); the system zone when unset.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Response targets by priority (`p1` = "15m", ...; "0s" disables); merged over the defaults.
    #[serde(default)]
    pub escalate_after: BTreeMap<String, humantime_serde::Serde<Duration>>,
    /// Who gets escalations; the incident's own recipients when empty.
    #[serde(default)]
    pub escalate_to: Vec<String>,
    /// First retry delay after a failed send; doubles up to `retry_max`.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// How often the alerting task looks for new incident events and due mail.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
}

/// Extra recipients for incidents matching a priority and/or rule list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub to: Vec<String>,
    #[serde(default)]
    pub priorities: Vec<u8>,
    #[serde(default)]
    pub rules: Vec<String>,
}

impl Route {
    /// Both lists must match when both are given; an empty list matches anything.
    pub fn matches(&self, priority: u8, rule: &str) -> bool {
        (self.priorities.is_empty() || self.priorities.contains(&priority))
            && (self.rules.is_empty() || self.rules.iter().any(|r| r == rule))
    }
}

/// `start = "18:00"`, `end = "07:30"`: the span may cross midnight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
}

pub(crate) fn default_smtp_port() -> u16 {
    587
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_rate_limit() -> u32 {
    30
}
fn default_digest_window() -> Duration {
    Duration::from_secs(60)
}
fn default_digest_threshold() -> usize {
    3
}
fn default_quiet_min_priority() -> u8 {
    4
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(30)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
/// Response targets (ITIL-style): P1 15 min, P2 1 h, P3 4 h, P4 1 day, P5 none.
fn default_escalation(priority: u8) -> Option<Duration> {
    match priority {
        1 => Some(Duration::from_secs(15 * 60)),
        2 => Some(Duration::from_secs(3600)),
        3 => Some(Duration::from_secs(4 * 3600)),
        4 => Some(Duration::from_secs(24 * 3600)),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    None,
    #[default]
    Starttls,
    Tls,
}

/// A password that `Debug` never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Minutes after local midnight.
pub type MinuteOfDay = u16;

/// The validated, typed form of the section that the planner works with.
#[derive(Debug, Clone)]
pub struct Policy {
    pub to: Vec<String>,
    pub routes: Vec<Route>,
    pub rate_limit_per_hour: u32,
    pub digest_window: Duration,
    pub digest_threshold: usize,
    pub quiet: Option<(MinuteOfDay, MinuteOfDay)>,
    pub quiet_min_priority: u8,
    pub time_zone: jiff::tz::TimeZone,
    /// Index 0 is P1.
    pub escalate_after: [Option<Duration>; 5],
    pub escalate_to: Vec<String>,
    pub base_url: Option<String>,
    pub from: String,
}

impl SmtpConfig {
    /// Problems as `(section, key, message)`, located in the file by `config`.
    pub fn validate(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut issues = Vec::new();
        if self.server.trim().is_empty() {
            issues.push(("smtp", "server", "must not be empty".to_owned()));
        }
        if !is_plausible_address(&self.from) {
            issues.push((
                "smtp",
                "from",
                format!("{:?} is not an email address", self.from),
            ));
        }
        if self.to.is_empty() {
            issues.push(("smtp", "to", "needs at least one recipient".to_owned()));
        }
        for to in &self.to {
            if !is_plausible_address(to) {
                issues.push(("smtp", "to", format!("{to:?} is not an email address")));
            }
        }
        for to in &self.escalate_to {
            if !is_plausible_address(to) {
                issues.push((
                    "smtp",
                    "escalate_to",
                    format!("{to:?} is not an email address"),
                ));
            }
        }
        if self
            .username
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            issues.push(("smtp", "username", "must not be empty".to_owned()));
        }
        if self.password_file.is_some() && self.username.is_none() {
            issues.push((
                "smtp",
                "password_file",
                "needs a username to authenticate with".to_owned(),
            ));
        }
        if self.timeout.is_zero() {
            issues.push(("smtp", "timeout", "must be more than 0s".to_owned()));
        }
        if let Some(url) = &self.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            issues.push((
                "smtp",
                "base_url",
                format!("{url:?} must start with http:// or https://"),
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.to.is_empty() {
                issues.push((
                    "smtp.routes",
                    "to",
                    format!("route {} has no recipients", i + 1),
                ));
            }
            for to in &route.to {
                if !is_plausible_address(to) {
                    issues.push((
                        "smtp.routes",
                        "to",
                        format!("{to:?} is not an email address"),
                    ));
                }
            }
            if route.priorities.is_empty() && route.rules.is_empty() {
                issues.push((
                    "smtp.routes",
                    "priorities",
                    format!(
                        "route {} needs `priorities` and/or `rules` (the top-level `to` gets the rest)",
                        i + 1
                    ),
                ));
            }
            for p in &route.priorities {
                if !(1..=5).contains(p) {
                    issues.push((
                        "smtp.routes",
                        "priorities",
                        format!("{p} is not a priority (1 to 5)"),
                    ));
                }
            }
        }
        if self.digest_threshold == 0 {
            issues.push(("smtp", "digest_threshold", "must be at least 1".to_owned()));
        }
        if !(2..=5).contains(&self.quiet_min_priority) {
            issues.push((
                "smtp",
                "quiet_min_priority",
                format!(
                    "{} is not allowed: 2 to 5 (P1 never waits)",
                    self.quiet_min_priority
                ),
            ));
        }
        if let Some(quiet) = &self.quiet_hours {
            let start = parse_hhmm(&quiet.start);
            let end = parse_hhmm(&quiet.end);
            if start.is_none() {
                issues.push((
                    "smtp.quiet_hours",
                    "start",
                    format!("{:?} is not a time of day (HH:MM)", quiet.start),
                ));
            }
            if end.is_none() {
                issues.push((
                    "smtp.quiet_hours",
                    "end",
                    format!("{:?} is not a time of day (HH:MM)", quiet.end),
                ));
            }
            if start.is_some() && start == end {
                issues.push((
                    "smtp.quiet_hours",
                    "end",
                    "must differ from start (an empty or all-day span)".to_owned(),
                ));
            }
        }
        if let Some(zone) = &self.time_zone
            && jiff::tz::TimeZone::get(zone).is_err()
        {
            issues.push((
                "smtp",
                "time_zone",
                format!("{zone:?} is not a known time zone"),
            ));
        }
        for key in self.escalate_after.keys() {
            if priority_key(key).is_none() {
                issues.push((
                    "smtp.escalate_after",
                    "escalate_after",
                    format!("{key:?} is not a priority (p1 to p5)"),
                ));
            }
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            issues.push((
                "smtp",
                "retry_max",
                "retry_initial must be more than 0s and at most retry_max".to_owned(),
            ));
        }
        if self.poll_interval.is_zero() {
            issues.push(("smtp", "poll_interval", "must be more than 0s".to_owned()));
        }
        issues
    }

    /// The planner's view; call after [`validate`](Self::validate) found nothing.
    pub fn policy(&self) -> Policy {
        let quiet = self
            .quiet_hours
            .as_ref()
            .and_then(|q| Some((parse_hhmm(&q.start)?, parse_hhmm(&q.end)?)));
        let mut escalate_after = [1, 2, 3, 4, 5].map(default_escalation);
        for (key, value) in &self.escalate_after {
            if let Some(p) = priority_key(key) {
                let d = **value;
                escalate_after[usize::from(p - 1)] = (!d.is_zero()).then_some(d);
            }
        }
        let time_zone = self
            .time_zone
            .as_deref()
            .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            .unwrap_or_else(jiff::tz::TimeZone::system);
        Policy {
            to: self.to.clone(),
            routes: self.routes.clone(),
            rate_limit_per_hour: self.rate_limit_per_hour,
            digest_window: self.digest_window,
            digest_threshold: self.digest_threshold.max(1),
            quiet,
            quiet_min_priority: self.quiet_min_priority.clamp(2, 5),
            time_zone,
            escalate_after,
            escalate_to: self.escalate_to.clone(),
            base_url: self
                .base_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            from: self.from.clone(),
        }
    }

    /// The AUTH password: `password_file` (trimmed), else `CARETAKER_SMTP_PASSWORD` from `env`.
    pub fn password(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Password>, String> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read smtp.password_file {}: {e}", path.display()))?;
            return Ok(Some(Password(
                text.trim_end_matches(['\r', '\n']).to_owned(),
            )));
        }
        Ok(env(PASSWORD_ENV).map(Password))
    }
}

/// `p1`..`p5` or `1`..`5`.
fn priority_key(key: &str) -> Option<u8> {
    let digits = key
        .strip_prefix('p')
        .or_else(|| key.strip_prefix('P'))
        .unwrap_or(key);
    digits.parse().ok().filter(|p| (1..=5).contains(p))
}

/// `HH:MM` (24 h) as minutes after midnight.
pub fn parse_hhmm(text: &str) -> Option<MinuteOfDay> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// `local@domain` without spaces or angle brackets; the server has the final word.
pub fn is_plausible_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',' || c == '"')
        && address.parse::<lettre::Address>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> SmtpConfig {
        toml::from_str(&format!(
            "server = \"mail.school.example\"\nfrom = \"caretaker@school.example\"\nto = [\"ict@school.example\"]\n{extra}"
        ))
        .expect("parse")
    }

    fn keys(config: &SmtpConfig) -> Vec<(&'static str, &'static str)> {
        config
            .validate()
            .into_iter()
            .map(|(s, k, _)| (s, k))
            .collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = parse("");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.port, 587);
        assert_eq!(config.security, SmtpSecurity::Starttls);
        assert_eq!(config.rate_limit_per_hour, 30);
        assert_eq!(config.digest_window, Duration::from_secs(60));
        assert_eq!(config.digest_threshold, 3);
        let policy = config.policy();
        assert_eq!(policy.escalate_after[0], Some(Duration::from_secs(900)));
        assert_eq!(policy.escalate_after[3], Some(Duration::from_secs(86400)));
        assert_eq!(policy.escalate_after[4], None);
        assert_eq!(policy.quiet, None);
    }

    #[test]
    fn a_full_section_parses_into_a_policy() {
        let config = parse(
            "username = \"caretaker\"\nca_file = \"/etc/caretaker/school-ca.pem\"\ntimeout = \"10s\"\n\
             base_url = \"http://caretaker.school.example:8080/\"\nrate_limit_per_hour = 10\n\
             digest_window = \"2m\"\ndigest_threshold = 5\nquiet_min_priority = 3\ntime_zone = \"Europe/Amsterdam\"\n\
             escalate_to = [\"head@school.example\"]\n\
             [quiet_hours]\nstart = \"18:00\"\nend = \"07:30\"\n\
             [escalate_after]\np1 = \"5m\"\np5 = \"2d\"\np4 = \"0s\"\n\
             [[routes]]\nto = [\"network@school.example\"]\nrules = [\"host_down\"]\npriorities = [1, 2]\n",
        );
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let policy = config.policy();
        assert_eq!(policy.quiet, Some((18 * 60, 7 * 60 + 30)));
        assert_eq!(policy.escalate_after[0], Some(Duration::from_secs(300)));
        assert_eq!(policy.escalate_after[3], None);
        assert_eq!(
            policy.escalate_after[4],
            Some(Duration::from_secs(2 * 86400))
        );
        assert_eq!(
            policy.base_url.as_deref(),
            Some("http://caretaker.school.example:8080")
        );
        assert!(policy.routes[0].matches(2, "host_down"));
        assert!(!policy.routes[0].matches(3, "host_down"));
        assert!(!policy.routes[0].matches(1, "disk_full"));
    }

    #[test]
    fn bad_values_are_all_reported_with_their_keys() {
        let config = parse(
            "escalate_to = [\"not-an-address\"]\nquiet_min_priority = 1\nbase_url = \"caretaker:8080\"\n\
             [quiet_hours]\nstart = \"25:00\"\nend = \"7\"\n\
             [escalate_after]\np7 = \"1h\"\n\
             [[routes]]\nto = [\"a b@c.d\"]\npriorities = [0]\n",
        );
        let found = keys(&config);
        for expected in [
            ("smtp", "escalate_to"),
            ("smtp", "quiet_min_priority"),
            ("smtp", "base_url"),
            ("smtp.quiet_hours", "start"),
            ("smtp.quiet_hours", "end"),
            ("smtp.escalate_after", "escalate_after"),
            ("smtp.routes", "to"),
            ("smtp.routes", "priorities"),
        ] {
            assert!(
                found.contains(&expected),
                "{expected:?} missing from {found:?}"
            );
        }
    }

    #[test]
    fn equal_quiet_hours_and_unknown_zones_are_rejected() {
        let config = parse(
            "time_zone = \"Mars/Olympus\"\n[quiet_hours]\nstart = \"18:00\"\nend = \"18:00\"\n",
        );
        let found = keys(&config);
        assert!(found.contains(&("smtp.quiet_hours", "end")), "{found:?}");
        assert!(found.contains(&("smtp", "time_zone")), "{found:?}");
    }

    #[test]
    fn unknown_keys_and_security_modes_do_not_parse() {
        let bad: Result<SmtpConfig, _> = toml::from_str(
            "server = \"m\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\"]\nsecurity = \"ssl\"\n",
        );
        assert!(bad.is_err());
        let bad: Result<SmtpConfig, _> = toml::from_str(
            "server = \"m\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\"]\npasword_file = \"/x\"\n",
        );
        assert!(bad.is_err());
    }

    #[test]
    fn the_password_comes_from_the_file_then_the_environment_and_is_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("smtp-password");
        std::fs::write(&file, "s3cret\n").expect("write");
        let mut config = parse("username = \"caretaker\"");
        let from_env = config
            .password(|k| (k == PASSWORD_ENV).then(|| "env-secret".to_owned()))
            .expect("password")
            .expect("some");
        assert_eq!(from_env.expose(), "env-secret");
        config.password_file = Some(file);
        let from_file = config.password(|_| None).expect("password").expect("some");
        assert_eq!(from_file.expose(), "s3cret");
        assert_eq!(format!("{from_file:?}"), "***");
        assert!(config.password(|_| None).is_ok());
    }

    #[test]
    fn addresses_are_checked() {
        assert!(is_plausible_address("ict@school.example"));
        assert!(!is_plausible_address("ict"));
        assert!(!is_plausible_address("ict@"));
        assert!(!is_plausible_address("a b@school.example"));
        assert!(!is_plausible_address("<ict@school.example>"));
    }
}
