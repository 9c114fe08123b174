//! Agent configuration: the TOML file (`deny_unknown_fields`, humantime durations), command-line
//! overrides, defaults in one place ([`Defaults`]), and validation into a typed [`Config`] that
//! reports every problem at once. Secrets are wrapped in [`Secret`] so `Debug` never shows them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::platform::MachineDefaults;

/// Defaults for every optional key, kept together.
pub struct Defaults;

impl Defaults {
    pub const STATUS_INTERVAL: Duration = Duration::from_secs(5 * 60);
    pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
    pub const INVENTORY_INTERVAL: Duration = Duration::from_secs(60 * 60);
    /// A full inventory is resent at least this often even when nothing changed.
    pub const INVENTORY_RESEND: Duration = Duration::from_secs(24 * 60 * 60);
    pub const JOURNAL_MAX_BYTES: u64 = 16 * 1024 * 1024;
    pub const COLLECT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Per WMI query (Windows).
    pub const WMI_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long `run --once` keeps retrying an unreachable collector.
    pub const ONCE_DEADLINE: Duration = Duration::from_secs(30);
}

/// A string that must never appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format `{other}` (expected text or json)"
            )),
        }
    }
}

/// The file as written by the administrator; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub collector: Option<String>,
    pub enroll_token: Option<Secret>,
    pub enroll_token_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub status_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub heartbeat_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub inventory_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub collect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub wmi_timeout: Option<Duration>,
    pub journal_max_bytes: Option<u64>,
    pub dpkg_admindir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Values given on the command line; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub collector: Option<String>,
    pub enroll_token: Option<Secret>,
    pub enroll_token_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub once: bool,
    pub status_interval: Option<Duration>,
    pub heartbeat_interval: Option<Duration>,
    pub inventory_interval: Option<Duration>,
    pub collect_timeout: Option<Duration>,
    pub wmi_timeout: Option<Duration>,
    pub journal_max_bytes: Option<u64>,
    pub dpkg_admindir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
}

/// Validated configuration for `run`.
#[derive(Debug, Clone)]
pub struct Config {
    pub collector: String,
    /// Needed only when the agent has no identity yet (or must re-enrol).
    pub enroll_token: Option<Secret>,
    pub state_dir: PathBuf,
    pub once: bool,
    /// Not a config key; tests shorten it.
    pub once_deadline: Duration,
    /// Set only when given explicitly (file or flag); otherwise the collector's wish at
    /// enrolment applies, then the default (see [`effective_interval`]).
    pub status_interval: Option<Duration>,
    pub heartbeat_interval: Option<Duration>,
    pub inventory_interval: Duration,
    pub inventory_resend: Duration,
    pub collect_timeout: Duration,
    pub wmi_timeout: Duration,
    pub journal_max_bytes: u64,
    pub dpkg_admindir: Option<PathBuf>,
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A syntax error, unknown key or wrong type, with the position in the file.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Every validation problem at once.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// The interval the agent runs with: an explicit setting wins, then what the collector asked
/// for at enrolment (zero means it asked for nothing), then the built-in default.
pub fn effective_interval(
    explicit: Option<Duration>,
    from_collector: Option<Duration>,
    default: Duration,
) -> Duration {
    explicit
        .or(from_collector.filter(|d| !d.is_zero()))
        .unwrap_or(default)
}

/// Reads and parses a config file.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_str(path, &text)
}

/// Parses config text; `path` is only used in error messages.
pub fn parse_str(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_column(text, s.start))
            .unwrap_or((1, 1));
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Merges file and overrides (overrides win) and validates, collecting every error.
pub fn resolve(file: FileConfig, cli: Overrides) -> Result<Config, ConfigError> {
    resolve_with(file, cli, MachineDefaults::default())
}

/// Like [`resolve`], with what the machine supplies (see `platform`) as the last resort.
pub fn resolve_with(
    file: FileConfig,
    cli: Overrides,
    machine: MachineDefaults,
) -> Result<Config, ConfigError> {
    let mut errors = Vec::new();

    let collector = cli.collector.or(file.collector).or(machine.collector);
    let collector = match collector {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => url,
        Some(url) => {
            errors.push(format!(
                "collector `{url}` must be a URL like http://server:50051"
            ));
            String::new()
        }
        None => String::new(),
    };

    let token_file = cli.enroll_token_file.or(file.enroll_token_file);
    let enroll_token = match (cli.enroll_token.or(file.enroll_token), token_file) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().is_empty() => {
                errors.push(format!("enroll_token_file {} is empty", path.display()));
                None
            }
            Ok(s) => Some(Secret::new(s.trim())),
            Err(e) => {
                errors.push(format!(
                    "enroll_token_file {}: cannot read: {e}",
                    path.display()
                ));
                None
            }
        },
        (None, None) => machine.enroll_token,
    };
    // Without a collector URL, the first address a `ct1_` token carries.
    let collector = match (collector.is_empty(), &enroll_token) {
        (false, _) => collector,
        (true, Some(token)) => match crate::tls::TokenText::decode(token.expose())
            .and_then(|t| t.addresses.into_iter().next())
        {
            Some(addr) => format!("http://{addr}"),
            None => {
                errors.push("collector is required (--collector or `collector = ...`)".into());
                String::new()
            }
        },
        (true, None) => {
            errors.push("collector is required (--collector or `collector = ...`)".into());
            String::new()
        }
    };

    let state_dir = cli
        .state_dir
        .or(file.state_dir)
        .or(machine.state_dir)
        .unwrap_or_else(|| {
            errors.push("state_dir is required (--state-dir or `state_dir = ...`)".into());
            PathBuf::new()
        });

    let mut explicit = |name: &str, v: Option<Duration>| -> Option<Duration> {
        if v.is_some_and(|v| v.is_zero()) {
            errors.push(format!("{name} must be greater than zero"));
        }
        v
    };
    let status_interval = explicit(
        "status_interval",
        cli.status_interval.or(file.status_interval),
    );
    let heartbeat_interval = explicit(
        "heartbeat_interval",
        cli.heartbeat_interval.or(file.heartbeat_interval),
    );
    let mut positive = |name: &str, v: Option<Duration>, default: Duration| -> Duration {
        let v = v.unwrap_or(default);
        if v.is_zero() {
            errors.push(format!("{name} must be greater than zero"));
        }
        v
    };
    let inventory_interval = positive(
        "inventory_interval",
        cli.inventory_interval.or(file.inventory_interval),
        Defaults::INVENTORY_INTERVAL,
    );
    let collect_timeout = positive(
        "collect_timeout",
        cli.collect_timeout.or(file.collect_timeout),
        Defaults::COLLECT_TIMEOUT,
    );
    let wmi_timeout = positive(
        "wmi_timeout",
        cli.wmi_timeout.or(file.wmi_timeout),
        Defaults::WMI_TIMEOUT,
    );

    let journal_max_bytes = cli
        .journal_max_bytes
        .or(file.journal_max_bytes)
        .unwrap_or(Defaults::JOURNAL_MAX_BYTES);
    if journal_max_bytes < 64 * 1024 {
        errors.push(format!(
            "journal_max_bytes must be at least 65536 (got {journal_max_bytes})"
        ));
    }

    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors));
    }
    Ok(Config {
        collector,
        enroll_token,
        state_dir,
        once: cli.once,
        once_deadline: Defaults::ONCE_DEADLINE,
        status_interval,
        heartbeat_interval,
        inventory_interval,
        inventory_resend: Defaults::INVENTORY_RESEND,
        collect_timeout,
        wmi_timeout,
        journal_max_bytes,
        dpkg_admindir: cli.dpkg_admindir.or(file.dpkg_admindir),
        log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        parse_str(Path::new("agent.toml"), text)
    }

    #[test]
    fn without_a_collector_url_the_tokens_address_is_used() {
        use base64::Engine;
        let json = r#"{"id":"t","s":"x","fp":"ab","a":["server.school:50051"]}"#;
        let token = format!(
            "ct1_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        );
        let cli = Overrides {
            enroll_token: Some(Secret::new(&token)),
            state_dir: Some("/tmp/s".into()),
            ..Default::default()
        };
        let c = resolve(FileConfig::default(), cli).expect("valid");
        assert_eq!(c.collector, "http://server.school:50051");
        let none = Overrides {
            enroll_token: Some(Secret::new("old-token")),
            state_dir: Some("/tmp/s".into()),
            ..Default::default()
        };
        assert!(resolve(FileConfig::default(), none).is_err());
    }

    #[test]
    fn unknown_key_reports_line_and_column() {
        let text = "collector = \"http://x:1\"\n\nstatus_intervall = \"5m\"\n";
        match parse(text) {
            Err(e @ ConfigError::Parse { .. }) => {
                let msg = e.to_string();
                assert!(msg.starts_with("agent.toml:3:1: "), "{msg}");
                assert!(msg.contains("unknown field"), "{msg}");
                assert!(msg.contains("status_intervall"), "{msg}");
            }
            other => panic!("expected parse error, got {other:?}"),
        }
    }

    #[test]
    fn mistyped_value_reports_position() {
        let text = "collector = \"http://x:1\"\n  journal_max_bytes = \"lots\"\n";
        let Err(ConfigError::Parse { line, column, .. }) = parse(text) else {
            panic!("expected a parse error");
        };
        assert_eq!(line, 2);
        assert!(column > 1);
    }

    #[test]
    fn durations_and_defaults() {
        let f = parse(
            "collector = \"http://127.0.0.1:50051\"\nstate_dir = \"/tmp/s\"\nstatus_interval = \"90s\"\ninventory_interval = \"2h 30m\"\n",
        )
        .unwrap();
        let c = resolve(f, Overrides::default()).unwrap();
        assert_eq!(c.status_interval, Some(Duration::from_secs(90)));
        assert_eq!(c.inventory_interval, Duration::from_secs(9000));
        assert_eq!(
            c.heartbeat_interval, None,
            "not given: the collector decides"
        );
        assert_eq!(c.journal_max_bytes, Defaults::JOURNAL_MAX_BYTES);
        assert!(c.enroll_token.is_none());
    }

    #[test]
    fn flags_override_file() {
        let f = parse("collector = \"http://a:1\"\nstate_dir = \"/a\"\nstatus_interval = \"1m\"\n")
            .unwrap();
        let cli = Overrides {
            collector: Some("http://b:2".into()),
            status_interval: Some(Duration::from_secs(7)),
            ..Overrides::default()
        };
        let c = resolve(f, cli).unwrap();
        assert_eq!(c.collector, "http://b:2");
        assert_eq!(c.status_interval, Some(Duration::from_secs(7)));
        assert_eq!(c.state_dir, PathBuf::from("/a"));
    }

    #[test]
    fn explicit_interval_beats_collector_beats_default() {
        let s = Duration::from_secs;
        let d = Defaults::STATUS_INTERVAL;
        assert_eq!(effective_interval(Some(s(7)), Some(s(30)), d), s(7));
        assert_eq!(effective_interval(None, Some(s(30)), d), s(30));
        assert_eq!(
            effective_interval(None, Some(s(0)), d),
            d,
            "zero: keep your own"
        );
        assert_eq!(effective_interval(None, None, d), d);
    }

    #[test]
    fn machine_defaults_fill_only_what_is_missing() {
        let machine = MachineDefaults {
            config_file: None,
            state_dir: Some("/machine/state".into()),
            collector: Some("http://from-registry:50051".into()),
            enroll_token: Some(Secret::new("registry-token")),
        };
        let c = resolve_with(FileConfig::default(), Overrides::default(), machine.clone()).unwrap();
        assert_eq!(c.collector, "http://from-registry:50051");
        assert_eq!(c.state_dir, PathBuf::from("/machine/state"));
        assert_eq!(c.enroll_token.unwrap().expose(), "registry-token");
        let f =
            parse("collector = \"http://from-file:1\"\nenroll_token = \"file-token\"\n").unwrap();
        let c = resolve_with(f, Overrides::default(), machine).unwrap();
        assert_eq!(c.collector, "http://from-file:1");
        assert_eq!(c.enroll_token.unwrap().expose(), "file-token");
    }

    #[test]
    fn every_error_is_reported() {
        let f = parse("status_interval = \"0s\"\n").unwrap();
        let Err(ConfigError::Invalid(errors)) = resolve(f, Overrides::default()) else {
            panic!("expected validation errors");
        };
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn secret_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let token_path = dir.path().join("token");
        std::fs::write(&token_path, "  s3cr3t-token\n").unwrap();
        let f = parse(&format!(
            "collector = \"http://a:1\"\nstate_dir = \"/a\"\nenroll_token_file = {:?}\n",
            token_path.to_str().unwrap()
        ))
        .unwrap();
        let c = resolve(f, Overrides::default()).unwrap();
        assert_eq!(c.enroll_token.as_ref().unwrap().expose(), "s3cr3t-token");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("***"));
        let f = parse("enroll_token = \"inline-secret\"\n").unwrap();
        assert!(!format!("{f:?}").contains("inline-secret"));
    }
}
