//! The collector's configuration: one TOML file, `deny_unknown_fields`, defaults in one place.
//!
//! `load` reads and validates the file into a typed [`Config`], collecting *every* problem
//! (with file, line and column) before returning, so a technician fixes them in one pass.
//! Exit code 78 (`EX_CONFIG`) belongs to `main.rs`; this module only describes what is wrong.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the collector keeps its store and tokens unless the config says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/caretaker";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub agents: AgentsConfig,
    pub scan: ScanConfig,
    pub snmp: SnmpConfig,
    pub smtp: Option<SmtpConfig>,
    pub rules: crate::rules::RulesConfig,
    pub incidents: crate::incidents::IncidentsConfig,
    pub maintenance: Vec<crate::incidents::Maintenance>,
    pub change_windows: Vec<crate::rules::Window>,
    pub topology: crate::incidents::topology::TopologyConfig,
    pub school_hours: Option<crate::track::SchoolHoursConfig>,
    pub retention: crate::retention::RetentionConfig,
    /// Internal CA, mTLS for agents, HTTPS (`pki`).
    pub tls: crate::pki::TlsConfig,
    /// `[web]`: the dashboard's sessions and the staff form's limits.
    pub web: crate::web::WebConfig,
    /// Daily backups; none unless the section is present.
    pub backup: Option<crate::backup::BackupConfig>,
    /// Who may scrape `/metrics`.
    pub metrics: crate::metrics::MetricsConfig,
    /// `[[release.title]]`: software titles' minimum versions and licences (`release`).
    pub release: crate::release::ReleaseConfig,
    /// `[finance]`: device lifespan and the warranty notice (`finance`).
    pub finance: crate::finance::FinanceConfig,
    /// `[[service]]`: services for Service Level Management (`sla`).
    pub service: Vec<crate::sla::ServiceConfig>,
    /// `[sla]`: response and resolution targets per priority (defaults in the report, and
    /// no warnings, when absent).
    pub sla: Option<crate::sla::SlaConfig>,
    /// `[report]`: the monthly service-level report's recipients and send time.
    pub report: crate::sla::ReportConfig,
    /// The file this was loaded from (for live reload); set by [`load`].
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// `school_hours`, validated by [`load`]; 24/7 when not configured.
    #[serde(skip)]
    pub hours: crate::track::SchoolHours,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            agents: AgentsConfig::default(),
            scan: ScanConfig::default(),
            snmp: SnmpConfig::default(),
            smtp: None,
            rules: crate::rules::RulesConfig::default(),
            incidents: crate::incidents::IncidentsConfig::default(),
            maintenance: Vec::new(),
            change_windows: Vec::new(),
            topology: crate::incidents::topology::TopologyConfig::default(),
            school_hours: None,
            retention: crate::retention::RetentionConfig::default(),
            tls: crate::pki::TlsConfig::default(),
            web: crate::web::WebConfig::default(),
            backup: None,
            metrics: crate::metrics::MetricsConfig::default(),
            release: crate::release::ReleaseConfig::default(),
            finance: crate::finance::FinanceConfig::default(),
            service: Vec::new(),
            sla: None,
            report: crate::sla::ReportConfig::default(),
            source: None,
            hours: crate::track::SchoolHours::always(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub listen: SocketAddr,
    /// Largest request the ingest accepts; larger ones get `OUT_OF_RANGE`/`RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// Requests handled at once across all connections; the rest wait their turn.
    pub max_concurrent_requests: usize,
    /// File holding the enrolment token; `<data_dir>/enroll-token` is created when unset.
    pub enroll_token_file: Option<PathBuf>,
    /// A new connection must have sent its first request's headers by then (see `conn`).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// One call unanswered for this long ends (CANCELLED; agents retry).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// HTTP/2 pings on each connection this often; a peer silent `keepalive_timeout` after
    /// one is dropped.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Calls in flight on one connection.
    pub max_concurrent_streams: u32,
}

impl GrpcConfig {
    pub fn limits(&self) -> crate::conn::GrpcLimits {
        crate::conn::GrpcLimits {
            timeouts: crate::conn::Timeouts {
                header: self.header_timeout,
                idle: self.idle_timeout,
            },
            request_timeout: self.request_timeout,
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            max_concurrent_streams: self.max_concurrent_streams,
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50051".parse().expect("valid default"),
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_requests: 2048,
            enroll_token_file: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            max_concurrent_streams: 256,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// File holding the API bearer token; `<data_dir>/api-token` is created when unset.
    pub api_token_file: Option<PathBuf>,
    /// A new connection must have sent its first request's headers by then (see `conn`).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request unanswered for this long gets 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl HttpConfig {
    pub fn limits(&self) -> crate::conn::HttpLimits {
        crate::conn::HttpLimits {
            timeouts: crate::conn::Timeouts {
                header: self.header_timeout,
                idle: self.idle_timeout,
            },
            request_timeout: self.request_timeout,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default"),
            api_token_file: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// An agent not heard from for this long shows as `unknown` (not `down`: only a failed
    /// ping says a host is down).
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Status interval suggested to agents at enrolment.
    #[serde(with = "humantime_serde")]
    pub status_interval: Duration,
    /// Heartbeat interval suggested to agents at enrolment.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Reports whose collection time is further in the future than this are flagged.
    #[serde(with = "humantime_serde")]
    pub max_clock_ahead: Duration,
    /// Reports older than this when they arrive are flagged (a journal can hold a few weeks).
    #[serde(with = "humantime_serde")]
    pub max_report_age: Duration,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(180),
            status_interval: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(60),
            max_clock_ahead: Duration::from_secs(300),
            max_report_age: Duration::from_secs(60 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// CIDR ranges to sweep. Nothing is scanned unless listed.
    pub ranges: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Echo requests per second across a sweep, to routed addresses.
    pub rate: u32,
    /// Echo requests per second to addresses on the collector's own segments (each needs an
    /// ARP broadcast first).
    pub on_link_rate: u32,
    /// Wait for each echo reply.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra passes over silent addresses.
    pub retries: u32,
    /// Echo requests awaiting replies at once.
    pub max_in_flight: usize,
    /// Known devices are re-pinged this often between full sweeps, so "down" is noticed in
    /// `watch_interval × [rules.host_down] misses`.
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
    /// A device found only by the network and silent this long gets a "removed" change.
    #[serde(with = "humantime_serde")]
    pub gone_after: Duration,
    /// Refuse ranges adding up to more addresses than this.
    pub max_addresses: u64,
    /// TCP ports probed on live hosts to help classify them; `[]` for none.
    pub tcp_ports: Vec<u16>,
    pub reverse_dns: bool,
    /// `ranges`, parsed and checked against `max_addresses` by [`load`].
    #[serde(skip)]
    pub scope: crate::scan::Scope,
}

impl Default for ScanConfig {
    fn default() -> Self {
        let sweep = crate::scan::SweepOptions::default();
        Self {
            ranges: Vec::new(),
            interval: Duration::from_secs(60),
            rate: sweep.rate,
            on_link_rate: sweep.on_link_rate,
            timeout: sweep.timeout,
            retries: sweep.retries,
            max_in_flight: sweep.max_in_flight,
            watch_interval: Duration::from_secs(10),
            gone_after: Duration::from_secs(7 * 86_400),
            max_addresses: crate::scan::targets::DEFAULT_MAX_ADDRESSES,
            tcp_ports: crate::scan::probe::DEFAULT_PORTS.to_vec(),
            reverse_dns: true,
            scope: crate::scan::Scope::default(),
        }
    }
}

/// SNMP credentials, tried in order on live hosts: every `[[snmp.v3]]` user, then the v2c
/// `communities`, then `v1_communities`. The one that answers is remembered per device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnmpConfig {
    pub communities: Vec<Secret>,
    pub v1_communities: Vec<Secret>,
    pub v3: Vec<SnmpV3User>,
    /// UDP port of the agents.
    pub port: u16,
    /// Per request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub retries: u32,
    /// SNMP sessions at once.
    pub sessions: usize,
    /// The credentials in the order they are tried, password files read, by [`load`].
    #[serde(skip)]
    pub credentials: Vec<crate::scan::snmp::Credential>,
}

impl Default for SnmpConfig {
    fn default() -> Self {
        let limits = crate::scan::snmp::Limits::default();
        Self {
            communities: Vec::new(),
            v1_communities: Vec::new(),
            v3: Vec::new(),
            port: 161,
            timeout: limits.timeout,
            retries: limits.retries,
            sessions: 64,
            credentials: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpV3User {
    pub user: String,
    pub auth_protocol: Option<crate::scan::snmp::AuthProtocol>,
    pub auth_password: Option<Secret>,
    pub auth_password_file: Option<PathBuf>,
    pub priv_protocol: Option<crate::scan::snmp::PrivProtocol>,
    pub priv_password: Option<Secret>,
    pub priv_password_file: Option<PathBuf>,
    #[serde(default)]
    pub context: String,
}

pub use crate::secret::Secret;

impl SnmpConfig {
    /// The credential list in the order it is tried, reading password files. An error names
    /// the key and says what is wrong with its file.
    pub fn resolve_credentials(
        &self,
    ) -> Result<Vec<crate::scan::snmp::Credential>, (&'static str, String)> {
        use crate::scan::snmp::Credential;
        let read = |key: &'static str, inline: &Option<Secret>, file: &Option<PathBuf>| match (
            inline, file,
        ) {
            (Some(s), _) => Ok(Some(s.expose().to_owned())),
            (None, Some(path)) => match read_secret_file(path) {
                Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
                Ok(_) => Err((key, format!("{} is empty", path.display()))),
                Err(e) => Err((key, format!("cannot read {}: {e}", path.display()))),
            },
            (None, None) => Ok(None),
        };
        let mut out = Vec::new();
        for user in &self.v3 {
            let auth_key = read(
                "auth_password_file",
                &user.auth_password,
                &user.auth_password_file,
            )?;
            let priv_key = read(
                "priv_password_file",
                &user.priv_password,
                &user.priv_password_file,
            )?;
            out.push(Credential::V3 {
                user: user.user.clone(),
                auth: user.auth_protocol.zip(auth_key),
                privacy: user.priv_protocol.zip(priv_key),
                context: user.context.clone(),
            });
        }
        out.extend(self.communities.iter().map(|c| Credential::V2c {
            community: c.expose().to_owned(),
        }));
        out.extend(self.v1_communities.iter().map(|c| Credential::V1 {
            community: c.expose().to_owned(),
        }));
        Ok(out)
    }
}

pub use crate::alerts::config::{SmtpConfig, SmtpSecurity};

/// One thing wrong with a config file, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", display_issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

fn display_issues(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Largest config file read: a real one is a few KiB; this keeps a hostile or mistaken file
/// (a 50 MB string, millions of array entries) from costing gigabytes to check.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads, parses and validates a config file, and checks what it names on disk: the data
/// directory can be written, configured token files exist.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_FILE_BYTES {
        return Err(too_big(path, size));
    }
    let bytes = std::fs::read(path).map_err(read_error)?;
    let mut config = parse_bytes(path, &bytes)?;
    config.source = Some(path.to_owned());
    let text = String::from_utf8_lossy(&bytes);
    let issues: Vec<ConfigIssue> = check_files(&config)
        .into_iter()
        .map(|(section, key, message)| {
            let (line, column) = locate_key(&text, section, key);
            ConfigIssue {
                file: path.to_owned(),
                line,
                column,
                message: format!("{}{key}: {message}", section_prefix(section)),
            }
        })
        .collect();
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

/// What the config names on disk: `data_dir` is (or can be made) a writable directory, and
/// configured token files can be read.
fn check_files(config: &Config) -> Vec<(&'static str, &'static str, String)> {
    let mut issues = Vec::new();
    if let Err(message) = writable_dir(&config.data_dir) {
        issues.push(("", "data_dir", message));
    }
    for (section, key, file) in [
        ("grpc", "enroll_token_file", &config.grpc.enroll_token_file),
        ("http", "api_token_file", &config.http.api_token_file),
        ("tls", "https_cert_file", &config.tls.https_cert_file),
        ("tls", "https_key_file", &config.tls.https_key_file),
    ] {
        let Some(file) = file else { continue };
        match std::fs::read_to_string(file) {
            Ok(text) if text.trim().is_empty() => {
                issues.push((section, key, format!("{} is empty", file.display())));
            }
            Ok(_) => {}
            Err(error) => {
                issues.push((
                    section,
                    key,
                    format!("cannot read {}: {error}", file.display()),
                ));
            }
        }
    }
    issues
}

/// `dir` is a directory we can write to, or does not exist yet under one we can.
fn writable_dir(dir: &Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => return Err(format!("{} cannot be created", dir.display())),
        }
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    // Permission bits do not stop root; a read-only mount does. Try it.
    let probe = existing.join(format!(".caretaker-write-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(error) if existing == dir => {
            Err(format!("{} cannot be written: {error}", dir.display()))
        }
        Err(error) => Err(format!(
            "{} does not exist and cannot be created in {}: {error}",
            dir.display(),
            existing.display()
        )),
    }
}

/// Largest secret file read (a password or key is a few bytes; this keeps a mistaken path
/// such as `/dev/zero` or a log file from being read without end).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads a `*_file` secret, refusing files past [`MAX_SECRET_FILE_BYTES`].
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_SECRET_FILE_BYTES} bytes; not a secret file"),
        ));
    }
    Ok(text)
}

fn too_big(path: &Path, size: u64) -> ConfigError {
    ConfigError::Invalid(vec![ConfigIssue {
        file: path.to_owned(),
        line: 1,
        column: 1,
        message: format!(
            "the file is {size} bytes; a config file is at most {MAX_FILE_BYTES} bytes"
        ),
    }])
}

/// Parses and validates the bytes of a config file (at most [`MAX_FILE_BYTES`], UTF-8), as
/// [`load`] does before it checks the files the config names. `path` only names the file in
/// errors. The `config` fuzz target calls this.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(path, bytes.len() as u64));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default();
            let (line, column) = line_column(valid, valid.len());
            return Err(ConfigError::Invalid(vec![ConfigIssue {
                file: path.to_owned(),
                line,
                column,
                message: "not UTF-8 text (is this a binary file?)".to_owned(),
            }]));
        }
    };
    parse(path, text)
}

/// Parses and validates config text; `path` is only used to name the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut config: Config = toml::from_str(text).map_err(|error| {
        let (line, column) = error
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Invalid(vec![ConfigIssue {
            file: path.to_owned(),
            line,
            column,
            message: error.message().trim().to_owned(),
        }])
    })?;
    let mut found = required_keys(text);
    found.extend(validate(&mut config));
    let mut issues = found
        .into_iter()
        .map(|(section, key, message)| {
            let (line, column) = locate_key(text, section, key);
            ConfigIssue {
                file: path.to_owned(),
                line,
                column,
                message: format!("{}{key}: {message}", section_prefix(section)),
            }
        })
        .collect::<Vec<_>>();
    // `[[release.title]]` tables repeat: each issue points into its own table.
    for (index, key, message) in config.release.validate() {
        let (line, column) = crate::release::locate(text, index, key);
        issues.push(ConfigIssue {
            file: path.to_owned(),
            line,
            column,
            message: format!("release.title[{}].{key}: {message}", index + 1),
        });
    }
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

fn section_prefix(section: &str) -> String {
    if section.is_empty() {
        String::new()
    } else {
        format!("{section}.")
    }
}

/// Keys a file must set itself: an empty or truncated file must not quietly run on defaults
/// (creating `/var/lib/caretaker`, listening on every interface).
fn required_keys(text: &str) -> Vec<(&'static str, &'static str, String)> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let mut missing = Vec::new();
    if !table.contains_key("data_dir") {
        missing.push((
            "",
            "data_dir",
            format!("missing: where the store lives, e.g. data_dir = \"{DEFAULT_DATA_DIR}\""),
        ));
    }
    missing
}

/// Semantic checks serde cannot express, and the typed values derived from the text (scan
/// scope, school hours, SNMP credentials with their password files read). Returns
/// `(section, key, problem)` triples.
fn validate(config: &mut Config) -> Vec<(&'static str, &'static str, String)> {
    let mut issues = Vec::new();
    if config.data_dir.as_os_str().is_empty() {
        issues.push(("", "data_dir", "must not be empty".to_owned()));
    }
    if config.grpc.max_message_bytes < 64 * 1024 {
        issues.push((
            "grpc",
            "max_message_bytes",
            "must be at least 65536 (an inventory with software is larger)".to_owned(),
        ));
    }
    issues.extend(config.tls.validate());
    let (grpc, http) = (config.grpc.listen, config.http.listen);
    let clash = grpc.port() != 0
        && grpc.port() == http.port()
        && (grpc.ip() == http.ip() || grpc.ip().is_unspecified() || http.ip().is_unspecified());
    if clash {
        issues.push((
            "http",
            "listen",
            format!("{http} and [grpc] listen {grpc} cannot share a port"),
        ));
    }
    for rule in &config.topology.parents {
        if rule.child.contains('/') && rule.child.parse::<crate::scan::targets::Ipv4Net>().is_err()
        {
            issues.push((
                "topology.parents",
                "child",
                format!("{:?} is not a valid IPv4 range", rule.child),
            ));
        }
    }
    for (key, problem) in config.metrics.problems() {
        issues.push(("metrics", key, problem));
    }
    issues.extend(crate::sla::config::validate(
        &config.service,
        config.sla.as_mut(),
        &config.report,
    ));
    if let Some(backup) = &config.backup {
        for (key, problem) in backup.problems() {
            issues.push(("backup", key, problem));
        }
    }
    for (section, key, value) in [
        ("grpc", "header_timeout", config.grpc.header_timeout),
        ("grpc", "idle_timeout", config.grpc.idle_timeout),
        ("grpc", "request_timeout", config.grpc.request_timeout),
        ("grpc", "keepalive_interval", config.grpc.keepalive_interval),
        ("grpc", "keepalive_timeout", config.grpc.keepalive_timeout),
        ("http", "header_timeout", config.http.header_timeout),
        ("http", "idle_timeout", config.http.idle_timeout),
        ("http", "request_timeout", config.http.request_timeout),
    ] {
        if value.is_zero() {
            issues.push((section, key, "must be longer than 0s".to_owned()));
        }
    }
    if config.grpc.max_concurrent_streams == 0 {
        issues.push((
            "grpc",
            "max_concurrent_streams",
            "must be at least 1".to_owned(),
        ));
    }
    if config.grpc.max_concurrent_requests == 0 {
        issues.push((
            "grpc",
            "max_concurrent_requests",
            "must be at least 1".to_owned(),
        ));
    }
    for (key, value) in [
        ("stale_after", config.agents.stale_after),
        ("status_interval", config.agents.status_interval),
        ("heartbeat_interval", config.agents.heartbeat_interval),
    ] {
        if value.is_zero() {
            issues.push(("agents", key, "must be longer than 0s".to_owned()));
        }
    }
    if config.agents.stale_after < config.agents.heartbeat_interval {
        issues.push((
            "agents",
            "stale_after",
            "must be at least heartbeat_interval, or every agent flaps to unknown".to_owned(),
        ));
    }
    match crate::scan::Scope::parse(&config.scan.ranges, config.scan.max_addresses) {
        Ok(scope) => config.scan.scope = scope,
        Err(errors) => {
            for error in errors {
                issues.push(("scan", "ranges", error.to_string()));
            }
        }
    }
    if config.scan.on_link_rate == 0 {
        issues.push((
            "scan",
            "on_link_rate",
            "must be at least 1 packet per second".to_owned(),
        ));
    }
    if config.scan.rate == 0 {
        issues.push((
            "scan",
            "rate",
            "must be at least 1 packet per second".to_owned(),
        ));
    }
    if config.scan.timeout.is_zero() || config.scan.timeout > Duration::from_secs(30) {
        issues.push(("scan", "timeout", "must be between 1ms and 30s".to_owned()));
    }
    if config.scan.max_in_flight == 0 {
        issues.push(("scan", "max_in_flight", "must be at least 1".to_owned()));
    }
    if config.scan.tcp_ports.contains(&0) {
        issues.push(("scan", "tcp_ports", "port 0 cannot be probed".to_owned()));
    }
    if config.snmp.sessions == 0 {
        issues.push(("snmp", "sessions", "must be at least 1".to_owned()));
    }
    if config.snmp.timeout.is_zero() {
        issues.push(("snmp", "timeout", "must be longer than 0s".to_owned()));
    }
    for user in &config.snmp.v3 {
        if user.user.trim().is_empty() {
            issues.push(("snmp.v3", "user", "must not be empty".to_owned()));
        }
        let has_auth_key = user.auth_password.is_some() || user.auth_password_file.is_some();
        if user.auth_protocol.is_some() != has_auth_key {
            issues.push((
                "snmp.v3",
                "auth_protocol",
                format!(
                    "user {:?} needs both auth_protocol and auth_password(_file)",
                    user.user
                ),
            ));
        }
        let has_priv_key = user.priv_password.is_some() || user.priv_password_file.is_some();
        if user.priv_protocol.is_some() != has_priv_key {
            issues.push((
                "snmp.v3",
                "priv_protocol",
                format!(
                    "user {:?} needs both priv_protocol and priv_password(_file)",
                    user.user
                ),
            ));
        }
        if user.priv_protocol.is_some() && user.auth_protocol.is_none() {
            issues.push((
                "snmp.v3",
                "priv_protocol",
                format!(
                    "user {:?}: privacy needs authentication (authPriv)",
                    user.user
                ),
            ));
        }
    }
    match config.snmp.resolve_credentials() {
        Ok(credentials) => config.snmp.credentials = credentials,
        Err((key, message)) => issues.push(("snmp.v3", key, message)),
    }
    if config.scan.interval < Duration::from_secs(5) {
        issues.push(("scan", "interval", "must be at least 5s".to_owned()));
    }
    if let Some(smtp) = &config.smtp {
        issues.extend(smtp.validate());
        if smtp.password_file.is_some()
            && let Err(message) = smtp.password(|_| None)
        {
            issues.push(("smtp", "password_file", message));
        }
    }
    issues.extend(config.rules.validate());
    for (key, message) in config.finance.validate() {
        issues.push(("finance", key, message));
    }
    // The rules read these two from their own config.
    config.rules.release = std::sync::Arc::new(config.release.clone());
    config.rules.warranty_notice_days = config.finance.warranty_notice_days;
    match config.school_hours.as_ref().map(|h| h.validate()) {
        Some(Ok(hours)) => config.hours = hours,
        Some(Err(errors)) => {
            for (key, message) in errors {
                issues.push(("school_hours", key, message));
            }
        }
        None => {}
    }
    if config.retention.raw_status < Duration::from_secs(86_400) {
        issues.push((
            "retention",
            "raw_status",
            "must be at least 1d (forecasts need the raw points)".to_owned(),
        ));
    }
    if config.retention.every < Duration::from_secs(60) {
        issues.push(("retention", "every", "must be at least 1m".to_owned()));
    }
    if config.scan.watch_interval < Duration::from_secs(1) {
        issues.push(("scan", "watch_interval", "must be at least 1s".to_owned()));
    }
    if config.incidents.evaluate_every < Duration::from_secs(1) {
        issues.push((
            "incidents",
            "evaluate_every",
            "must be at least 1s".to_owned(),
        ));
    }
    if config.incidents.flap_transitions < 2 {
        issues.push((
            "incidents",
            "flap_transitions",
            "must be at least 2".to_owned(),
        ));
    }
    if let Some((a, b)) = crate::incidents::overlapping(&config.change_windows) {
        let message = if a == b {
            format!("window {} ends before it starts", a + 1)
        } else {
            format!("windows {} and {} overlap", a + 1, b + 1)
        };
        issues.push(("change_windows", "start", message));
    }
    for (i, m) in config.maintenance.iter().enumerate() {
        if m.end <= m.start {
            issues.push((
                "maintenance",
                "end",
                format!("maintenance window {} ends before it starts", i + 1),
            ));
        }
        for rule in &m.rules {
            if !crate::rules::NAMES.contains(&rule.as_str()) {
                issues.push((
                    "maintenance",
                    "rules",
                    format!(
                        "{rule:?} is not a rule ({})",
                        crate::rules::NAMES.join(", ")
                    ),
                ));
            }
        }
    }
    issues
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Finds where `key` is set inside `[section]` (or at top level for ""), for semantic errors.
/// Falls back to the section header, then to line 1.
fn locate_key(text: &str, section: &str, key: &str) -> (usize, usize) {
    let mut current = String::new();
    let mut header_line = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if let Some(rest) = line.strip_prefix('[') {
            current = rest
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            if current == section {
                header_line = Some(index + 1);
            }
            continue;
        }
        if current != section {
            continue;
        }
        let Some((lhs, _)) = line.split_once('=') else {
            continue;
        };
        if lhs.trim().trim_matches('"') == key {
            return (index + 1, raw.len() - line.len() + 1);
        }
    }
    (header_line.unwrap_or(1), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(text: &str) -> Vec<ConfigIssue> {
        match parse(Path::new("caretaker.toml"), text) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(issues)) => issues,
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn a_secret_file_that_never_ends_is_refused_not_read_forever() {
        let text = "data_dir = \"/tmp/x\"\n[[snmp.v3]]\nuser = \"u\"\nauth_protocol = \"sha256\"\nauth_password_file = \"/dev/zero\"\n";
        let found = issues(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("not a secret file"), "{found:?}");
    }

    #[test]
    fn bytes_that_are_not_text_get_a_position() {
        let Err(ConfigError::Invalid(found)) =
            parse_bytes(Path::new("c.toml"), b"data_dir = \"/x\"\n\xff\xfe")
        else {
            panic!("binary accepted");
        };
        assert_eq!((found[0].line, found[0].column), (2, 1), "{found:?}");
    }

    #[test]
    fn the_contract_example_parses() {
        let text = r#"
data_dir = "/var/lib/caretaker"
[grpc]
listen = "0.0.0.0:50051"
[http]
listen = "127.0.0.1:8080"
[scan]
ranges = ["10.20.0.0/22"]
interval = "60s"
[snmp]
communities = ["public"]
[smtp]
server = "mail.school.example"
port = 587
security = "starttls"
from = "caretaker@school.example"
to = ["technician@school.example"]
"#;
        let config = parse(Path::new("x.toml"), text).expect("valid");
        assert_eq!(config.scan.interval, Duration::from_secs(60));
        assert_eq!(config.smtp.expect("smtp").security, SmtpSecurity::Starttls);
    }

    #[test]
    fn a_mistyped_key_names_file_line_column_and_key() {
        let found = issues("data_dir = \"/tmp/x\"\n[grpc]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n");
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].column), (4, 1));
        assert!(found[0].message.contains("listne"), "{}", found[0].message);
        assert!(found[0].to_string().starts_with("caretaker.toml:4:1: "));
    }

    #[test]
    fn semantic_errors_are_all_reported_with_their_lines() {
        let found = issues(
            "[agents]\nheartbeat_interval = \"0s\"\n[scan]\nranges = [\"10.0.0.0/40\"]\n\
             [smtp]\nserver = \"m\"\nfrom = \"nobody\"\nto = [\"a@b.c\"]\nsecurity = \"tls\"\n",
        );
        let lines: Vec<_> = found.iter().map(|i| (i.line, i.message.clone())).collect();
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == 2 && m.starts_with("agents.heartbeat_interval"))
        );
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == 4 && m.contains("10.0.0.0/40"))
        );
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == 7 && m.starts_with("smtp.from"))
        );
    }

    #[test]
    fn an_unknown_security_mode_is_rejected_with_its_line() {
        let found = issues(
            "[smtp]\nserver = \"m\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\"]\nsecurity = \"ssl\"\n",
        );
        assert_eq!(found[0].line, 5);
        assert!(found[0].message.contains("ssl"));
    }

    #[test]
    fn an_empty_file_names_the_keys_it_must_have() {
        let found = issues("");
        let messages: Vec<&str> = found.iter().map(|i| i.message.as_str()).collect();
        assert!(
            messages.iter().any(|m| m.starts_with("data_dir: missing")),
            "{messages:?}"
        );
    }

    #[test]
    fn one_port_for_both_listeners_and_a_bad_parent_range_are_refused() {
        let found = issues(
            "data_dir = \"/tmp/x\"\n[grpc]\nlisten = \"0.0.0.0:8080\"\n[http]\nlisten = \"127.0.0.1:8080\"\n\
             [[topology.parents]]\nchild = \"10.0.0.0/33\"\nparent = \"core\"\n",
        );
        assert!(
            found
                .iter()
                .any(|i| i.line == 5 && i.message.contains("cannot share a port")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|i| i.line == 7 && i.message.contains("10.0.0.0/33")),
            "{found:?}"
        );
    }

    #[test]
    fn a_binary_or_huge_file_is_refused_with_a_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = dir.path().join("binary.toml");
        std::fs::write(&binary, b"data_dir = \"/tmp/x\"\n\x7fELF\xff\xfe").expect("write");
        match load(&binary) {
            Err(ConfigError::Invalid(found)) => {
                assert_eq!((found[0].line, found[0].column), (2, 5), "{found:?}");
                assert!(found[0].message.contains("not UTF-8"));
            }
            other => panic!("{other:?}"),
        }
        let huge = dir.path().join("huge.toml");
        let text = format!("data_dir = \"{}\"\n", "x".repeat(2 << 20));
        std::fs::write(&huge, text).expect("write");
        match load(&huge) {
            Err(ConfigError::Invalid(found)) => assert!(found[0].message.contains("at most")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_data_dir_that_is_a_file_or_a_missing_token_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").expect("write");
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n\
                 enroll_token_file = {:?}\n",
                file.join("data").display().to_string(),
                dir.path()
                    .join("nowhere/enroll-token")
                    .display()
                    .to_string()
            ),
        )
        .expect("write");
        match load(&config) {
            Err(ConfigError::Invalid(found)) => {
                assert!(
                    found
                        .iter()
                        .any(|i| i.line == 1 && i.message.contains("is not a directory")),
                    "{found:?}"
                );
                assert!(
                    found
                        .iter()
                        .any(|i| i.line == 4 && i.message.contains("cannot read")),
                    "{found:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_duration_is_located() {
        let found = issues("[scan]\ninterval = \"sixty\"\n");
        assert_eq!(found[0].line, 2);
    }
}

#[cfg(test)]
mod deploy_tests {
    #[test]
    fn the_shipped_example_config_is_valid() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/collector.toml"
        ));
        let config = super::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.grpc.listen.port(), 50051);
        assert!(
            config.scan.ranges.is_empty(),
            "the example must scan nothing until ranges are listed"
        );
    }
}
