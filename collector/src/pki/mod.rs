//! The collector's own PKI: an internal CA made on first start, the collector's server
//! certificate, client certificates issued from agents' CSRs, enrolment tokens, revocation and
//! CA rotation.
//!
//! Everything lives in `<data_dir>/pki/` (keys 0600): `ca.pem`/`ca.key` (the current CA),
//! `previous-ca.pem`/`previous-ca.key` and `cross.pem` while a rotation is under way,
//! `server.pem`/`server.key`, `tokens.json` (token hashes, never the secrets) and `certs.json`
//! (issued certificates and revocations). [`Pki`] holds all of it in memory behind one mutex,
//! rewrites a file atomically (temp file, fsync, rename) on every change, and keeps a
//! read-mostly copy of what every RPC checks (revoked serials and agents) behind an `RwLock`.
//!
//! Trust: agents pin the CA by the SHA-256 fingerprint of its certificate (DER) carried in the
//! token; the server presents `[server, (cross), ca]`, so the pin is found in the chain. A
//! rotation makes a new CA, cross-signs it with the old one (agents that trust only the old CA
//! still verify the server) and trusts client certificates of both until `ca rotate --finish`;
//! agents whose certificate the old CA issued are told to renew at their next contact.
//!
//! Below `ingest` and `http` (both hold an `Arc<Pki>`); knows nothing of the register.

pub mod listener;
pub mod tokens;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_rustls::rustls;

pub use tokens::{TokenError, TokenRecord};

/// A name (agent id or CA subject) and when its certificate expires.
pub type Expiry = (String, OffsetDateTime);

/// The name every collector server certificate carries; agents verify the server against it
/// whatever address they dial (only this CA issues certificates with serverAuth).
pub const SERVER_NAME: &str = "caretaker-collector";

/// The `[tls]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Also accept plaintext gRPC (bearer secret only). Off by default; logged loudly.
    pub plaintext: bool,
    /// Lifetime of the client certificates issued to agents (they renew at two thirds).
    #[serde(with = "humantime_serde")]
    pub client_cert_lifetime: Duration,
    /// Lifetime of a CA made on first start or by `ca rotate`.
    #[serde(with = "humantime_serde")]
    pub ca_lifetime: Duration,
    /// Names and addresses put in the server certificate besides `caretaker-collector`,
    /// `localhost`, the host name and loopback (browsers check them for HTTPS).
    pub server_names: Vec<String>,
    /// Collector addresses (`host:port`) written into new tokens; default: this host's name
    /// with the gRPC port (or the listen address when it is a specific one).
    pub advertise: Vec<String>,
    /// How long before an agent certificate or the CA expires an incident warns.
    #[serde(with = "humantime_serde")]
    pub warn_before: Duration,
    /// Serve the HTTP listener (API, dashboard) over HTTPS.
    pub https: bool,
    /// A supplied certificate chain and key (PEM) for HTTPS instead of the internal CA's.
    pub https_cert_file: Option<PathBuf>,
    pub https_key_file: Option<PathBuf>,
    /// A plain HTTP listener that redirects every request to the HTTPS one.
    pub http_redirect_listen: Option<std::net::SocketAddr>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            plaintext: false,
            client_cert_lifetime: Duration::from_secs(90 * 24 * 3600),
            ca_lifetime: Duration::from_secs(10 * 365 * 24 * 3600),
            server_names: Vec::new(),
            advertise: Vec::new(),
            warn_before: Duration::from_secs(30 * 24 * 3600),
            https: false,
            https_cert_file: None,
            https_key_file: None,
            http_redirect_listen: None,
        }
    }
}

impl TlsConfig {
    /// Impossible settings, as `(section, key, message)`.
    pub fn validate(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut issues = Vec::new();
        if self.https_cert_file.is_some() != self.https_key_file.is_some() {
            issues.push((
                "tls",
                if self.https_cert_file.is_some() {
                    "https_cert_file"
                } else {
                    "https_key_file"
                },
                "https_cert_file and https_key_file go together".to_owned(),
            ));
        }
        if self.http_redirect_listen.is_some() && !self.https {
            issues.push((
                "tls",
                "http_redirect_listen",
                "needs https = true (it redirects to the HTTPS listener)".to_owned(),
            ));
        }
        if self.client_cert_lifetime < Duration::from_secs(1) {
            issues.push((
                "tls",
                "client_cert_lifetime",
                "must be at least 1s".to_owned(),
            ));
        }
        if self.ca_lifetime < Duration::from_secs(24 * 3600) {
            issues.push(("tls", "ca_lifetime", "must be at least 1 day".to_owned()));
        }
        issues
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not usable: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("the certificate signing request is not usable: {0}")]
    BadCsr(String),
    #[error("no rotation is under way")]
    NoRotation,
    #[error("a rotation is already under way; finish it first (`ca rotate --finish`)")]
    RotationUnderWay,
}

/// A CA: its certificate, key and what we check against.
struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
    fingerprint: String,
    subject: String,
    not_after: OffsetDateTime,
}

impl Ca {
    fn create(lifetime: Duration) -> Result<Self, PkiError> {
        Ok(Self::create_with_params(lifetime)?.0)
    }

    fn create_with_params(lifetime: Duration) -> Result<(Self, CertificateParams), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Caretaker");
        dn.push(
            DnType::CommonName,
            format!("Caretaker collector CA {}", crate::secret::random_hex(4)),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + lifetime;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok((Self::from_parts(cert.pem(), key.serialize_pem())?, params))
    }

    fn from_parts(pem: String, key_pem: String) -> Result<Self, PkiError> {
        let der = first_cert(&pem).ok_or_else(|| PkiError::Tls("no certificate in PEM".into()))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_der(&der, key)?;
        let info =
            CertInfo::parse(&der).ok_or_else(|| PkiError::Tls("bad CA certificate".into()))?;
        Ok(Self {
            fingerprint: fingerprint(&der),
            subject: info.subject,
            not_after: info.not_after,
            pem,
            der,
            issuer,
            key_pem,
        })
    }

    fn load(dir: &Path, stem: &str) -> Result<Option<Self>, PkiError> {
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        let Some(pem) = read_optional(&cert_path)? else {
            return Ok(None);
        };
        let key_pem = read_optional(&key_path)?.ok_or_else(|| PkiError::Corrupt {
            path: key_path.clone(),
            message: "the CA key is missing".into(),
        })?;
        Self::from_parts(pem, key_pem)
            .map(Some)
            .map_err(|e| PkiError::Corrupt {
                path: cert_path,
                message: e.to_string(),
            })
    }

    fn save(&self, dir: &Path, stem: &str) -> Result<(), PkiError> {
        write_atomic(
            &dir.join(format!("{stem}.key")),
            self.key_pem.as_bytes(),
            true,
        )?;
        write_atomic(&dir.join(format!("{stem}.pem")), self.pem.as_bytes(), false)
    }
}

/// What we read out of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name (an agent id for client certificates).
    pub common_name: String,
    pub subject: String,
    pub issuer: String,
    /// Hex serial number.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        Some(Self {
            common_name,
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: hex::encode(cert.raw_serial()),
            not_before: OffsetDateTime::from_unix_timestamp(cert.validity().not_before.timestamp())
                .ok()?,
            not_after: OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
                .ok()?,
        })
    }
}

/// One issued client certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedCert {
    pub serial: String,
    pub agent_id: String,
    /// Fingerprint of the CA that issued it.
    pub ca: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CertsFile {
    certs: Vec<IssuedCert>,
    /// Revoked agents and when.
    #[serde(default)]
    revoked_agents: HashMap<String, String>,
}

/// What every RPC checks, read-mostly.
#[derive(Default)]
struct Revocations {
    serials: HashSet<String>,
    agents: HashMap<String, String>,
}

struct State {
    current: Ca,
    previous: Option<Ca>,
    cross_pem: Option<String>,
    certs: CertsFile,
    tokens: Vec<TokenRecord>,
}

/// A certificate issued for an agent, as the agent receives it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certificate_pem: String,
    /// CA certificates the agent should trust from now on.
    pub ca_pem: String,
    pub not_after: OffsetDateTime,
    pub serial: String,
}

/// Why a client certificate is refused after the TLS layer accepted it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertRefusal {
    #[error(
        "this call needs the client certificate issued at enrolment, and the connection has none (enrol again with a token if the agent's state was lost)"
    )]
    Missing,
    #[error("the client certificate is for agent {cert}, not {claimed}")]
    WrongAgent { cert: String, claimed: String },
    #[error(
        "agent {0} was revoked on this collector at {1}; enrol the PC again with a new token if it should report"
    )]
    AgentRevoked(String, String),
    #[error(
        "the client certificate {0} was revoked ({1}); enrol the PC again with a new token if it should report"
    )]
    CertRevoked(String, String),
    #[error("the client certificate cannot be read")]
    Unreadable,
}

/// The collector's PKI (see the module comment). Cheap to share as `Arc<Pki>`.
pub struct Pki {
    dir: PathBuf,
    settings: TlsConfig,
    grpc_port: u16,
    state: Mutex<State>,
    revoked: RwLock<Revocations>,
    server_config: RwLock<Arc<rustls::ServerConfig>>,
    /// The internal CA's server certificate as HTTPS serves it (swapped on rotation).
    https_cert: Arc<HttpsCert>,
    /// The current CA's subject, to tell agents on an older CA to renew.
    current_subject: RwLock<String>,
    /// Notified when certificates are issued or revoked, or the CA changes.
    pub changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads `<data_dir>/pki`, creating the CA and server certificate on first start (and a
    /// new server certificate when the old one is a third from its end or from another CA).
    pub fn open(data_dir: &Path, settings: TlsConfig, grpc_port: u16) -> Result<Self, PkiError> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir).map_err(|source| PkiError::Io {
            path: dir.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| PkiError::Io {
                    path: dir.clone(),
                    source,
                },
            )?;
        }
        let current = match Ca::load(&dir, "ca")? {
            Some(ca) => ca,
            None => {
                let ca = Ca::create(settings.ca_lifetime)?;
                ca.save(&dir, "ca")?;
                tracing::info!(fingerprint = %ca.fingerprint, dir = %dir.display(),
                    "Created the collector's certificate authority");
                ca
            }
        };
        let previous = Ca::load(&dir, "previous-ca")?;
        let cross_pem = read_optional(&dir.join("cross.pem"))?;
        let certs: CertsFile = read_json(&dir.join("certs.json"))?.unwrap_or_default();
        let tokens: Vec<TokenRecord> = read_json(&dir.join("tokens.json"))?.unwrap_or_default();
        let revoked = Revocations {
            serials: certs
                .certs
                .iter()
                .filter(|c| c.revoked_at.is_some())
                .map(|c| c.serial.clone())
                .collect(),
            agents: certs.revoked_agents.clone(),
        };
        let state = State {
            current,
            previous,
            cross_pem,
            certs,
            tokens,
        };
        let config = Self::build_server_config(&dir, &settings, &state, false)?;
        let https_cert = Arc::new(HttpsCert(RwLock::new(certified_key(&dir)?)));
        let subject = state.current.subject.clone();
        Ok(Self {
            https_cert,
            dir,
            settings,
            grpc_port,
            state: Mutex::new(state),
            revoked: RwLock::new(revoked),
            server_config: RwLock::new(config),
            current_subject: RwLock::new(subject),
            changed: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> &TlsConfig {
        &self.settings
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SHA-256 of the current CA certificate (DER), lowercase hex: what tokens pin.
    pub fn fingerprint(&self) -> String {
        self.lock().current.fingerprint.clone()
    }

    /// The CA certificates agents should trust (current first), PEM.
    pub fn ca_bundle(&self) -> String {
        let state = self.lock();
        bundle(&state)
    }

    /// The rustls server configuration in force (it changes on rotation).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The HTTP listener's TLS (`http/1.1` ALPN): the supplied certificate and key, or the
    /// internal CA's server certificate, read at each handshake so that after `ca rotate`
    /// the listener serves the new one without a restart.
    pub fn https_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(e.to_string()))?
            .with_no_client_auth();
        let mut config = match (
            &self.settings.https_cert_file,
            &self.settings.https_key_file,
        ) {
            (Some(cert), Some(key)) => builder
                .with_single_cert(read_chain(cert)?, read_key(key)?)
                .map_err(|e| PkiError::Tls(e.to_string()))?,
            _ => builder.with_cert_resolver(self.https_cert.clone()),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn build_server_config(
        dir: &Path,
        settings: &TlsConfig,
        state: &State,
        force_new: bool,
    ) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let cert_path = dir.join("server.pem");
        let key_path = dir.join("server.key");
        let existing = read_optional(&cert_path)?
            .zip(read_optional(&key_path)?)
            .filter(|(pem, _)| {
                let Some(info) = first_cert(pem).and_then(|d| CertInfo::parse(&d)) else {
                    return false;
                };
                let life = info.not_after - info.not_before;
                let left = info.not_after - OffsetDateTime::now_utc();
                info.issuer == state.current.subject && left > life / 3
            });
        let (chain_pem, key_pem) = match existing {
            Some(pair) if !force_new => pair,
            _ => {
                let key = KeyPair::generate()?;
                let mut names = vec![SERVER_NAME.to_owned(), "localhost".to_owned()];
                if let Ok(host) = hostname() {
                    names.push(host);
                }
                names.extend(settings.server_names.iter().cloned());
                let mut params = CertificateParams::new(names)?;
                params
                    .subject_alt_names
                    .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
                params
                    .subject_alt_names
                    .push(SanType::IpAddress("::1".parse().expect("ip")));
                params.distinguished_name = DistinguishedName::new();
                params
                    .distinguished_name
                    .push(DnType::CommonName, SERVER_NAME);
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                let now = OffsetDateTime::now_utc();
                params.not_before = now - time::Duration::hours(1);
                params.not_after = (now + time::Duration::days(365)).min(state.current.not_after);
                params.serial_number = Some(random_serial());
                let cert = params.signed_by(&key, &state.current.issuer)?;
                let mut chain = cert.pem();
                if let Some(cross) = &state.cross_pem {
                    chain.push_str(cross);
                }
                chain.push_str(&state.current.pem);
                // The old CA too, so that tokens made before the rotation (which pin it)
                // still find their pin in the chain and enrol.
                if let Some(previous) = &state.previous {
                    chain.push_str(&previous.pem);
                }
                write_atomic(&key_path, key.serialize_pem().as_bytes(), true)?;
                write_atomic(&cert_path, chain.as_bytes(), false)?;
                (chain, key.serialize_pem())
            }
        };
        let chain: Vec<CertificateDer<'static>> = certs_of(&chain_pem);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            KeyPair::from_pem(&key_pem)?.serialize_der(),
        ));
        let mut roots = rustls::RootCertStore::empty();
        for ca in std::iter::once(&state.current).chain(state.previous.as_ref()) {
            roots
                .add(ca.der.clone())
                .map_err(|e| PkiError::Tls(e.to_string()))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// Signs `csr_pem` as agent `agent_id`'s client certificate and records it.
    pub fn issue(&self, agent_id: &str, csr_pem: &str) -> Result<Issued, PkiError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Caretaker agent");
        dn.push(DnType::CommonName, agent_id);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        let lifetime = time::Duration::try_from(self.settings.client_cert_lifetime)
            .unwrap_or(time::Duration::days(90));
        let mut state = self.lock();
        params.not_after = (now + lifetime).min(state.current.not_after);
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        csr.params = params;
        let cert = csr.signed_by(&state.current.issuer)?;
        let info = CertInfo::parse(cert.der()).ok_or_else(|| PkiError::Tls("issued".into()))?;
        let record = IssuedCert {
            serial: info.serial.clone(),
            agent_id: agent_id.to_owned(),
            ca: state.current.fingerprint.clone(),
            not_after: info.not_after,
            revoked_at: None,
            reason: String::new(),
        };
        debug_assert_eq!(
            serial_hex.trim_start_matches('0'),
            info.serial.trim_start_matches('0')
        );
        state.certs.certs.retain(|c| c.not_after > now);
        state.certs.certs.push(record);
        self.save_certs(&state)?;
        self.changed.notify_one();
        Ok(Issued {
            certificate_pem: cert.pem(),
            ca_pem: bundle(&state),
            not_after: info.not_after,
            serial: info.serial,
        })
    }

    /// Checks a peer certificate presented for `claimed` (an agent id): it names that agent,
    /// and neither it nor the agent is revoked. Returns the certificate and whether it should
    /// be renewed now (issued by a CA the collector is moving away from).
    pub fn check_client(
        &self,
        cert: Option<&CertificateDer<'_>>,
        claimed: &str,
    ) -> Result<(CertInfo, bool), CertRefusal> {
        let der = cert.ok_or(CertRefusal::Missing)?;
        let info = CertInfo::parse(der).ok_or(CertRefusal::Unreadable)?;
        let renew = self.check_info(Some(&info), claimed)?;
        Ok((info, renew))
    }

    /// [`Pki::check_client`] for a certificate parsed once per connection (the listener does).
    pub fn check_info(&self, info: Option<&CertInfo>, claimed: &str) -> Result<bool, CertRefusal> {
        let info = info.ok_or(CertRefusal::Missing)?;
        if info.common_name != claimed {
            return Err(CertRefusal::WrongAgent {
                cert: info.common_name.clone(),
                claimed: claimed.to_owned(),
            });
        }
        {
            let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = revoked.agents.get(claimed) {
                return Err(CertRefusal::AgentRevoked(claimed.to_owned(), at.clone()));
            }
            if revoked.serials.contains(&info.serial) {
                let reason = self
                    .lock()
                    .certs
                    .certs
                    .iter()
                    .find(|c| c.serial == info.serial)
                    .map(|c| c.reason.clone())
                    .unwrap_or_default();
                return Err(CertRefusal::CertRevoked(info.serial.clone(), reason));
            }
        }
        let renew = info.issuer
            != *self
                .current_subject
                .read()
                .unwrap_or_else(|p| p.into_inner());
        Ok(renew)
    }

    /// When `agent_id` was revoked, if it was.
    pub fn agent_revoked(&self, agent_id: &str) -> Option<String> {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .agents
            .get(agent_id)
            .cloned()
    }

    /// Revokes agent `agent_id` and every certificate issued to it, at once.
    pub fn revoke_agent(&self, agent_id: &str) -> Result<usize, PkiError> {
        let now = OffsetDateTime::now_utc();
        let at = rfc3339(now);
        let mut state = self.lock();
        let mut count = 0;
        for cert in state
            .certs
            .certs
            .iter_mut()
            .filter(|c| c.agent_id == agent_id)
        {
            if cert.revoked_at.is_none() {
                cert.revoked_at = Some(now);
                cert.reason = format!("agent {agent_id} revoked");
                count += 1;
            }
        }
        state
            .certs
            .revoked_agents
            .insert(agent_id.to_owned(), at.clone());
        self.save_certs(&state)?;
        let mut revoked = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        revoked.agents.insert(agent_id.to_owned(), at);
        revoked.serials.extend(
            state
                .certs
                .certs
                .iter()
                .filter(|c| c.agent_id == agent_id)
                .map(|c| c.serial.clone()),
        );
        self.changed.notify_one();
        tracing::warn!(%agent_id, certificates = count, "Agent revoked");
        Ok(count)
    }

    /// Revokes the certificates of `agent_id` (a PC enrolled again: `reason` says by whom),
    /// without revoking the agent id itself.
    pub fn revoke_certs_of(&self, agent_id: &str, reason: &str) -> Result<usize, PkiError> {
        let now = OffsetDateTime::now_utc();
        let mut state = self.lock();
        let mut serials = Vec::new();
        for cert in state
            .certs
            .certs
            .iter_mut()
            .filter(|c| c.agent_id == agent_id)
        {
            if cert.revoked_at.is_none() {
                cert.revoked_at = Some(now);
                cert.reason = reason.to_owned();
                serials.push(cert.serial.clone());
            }
        }
        if serials.is_empty() {
            return Ok(0);
        }
        self.save_certs(&state)?;
        let count = serials.len();
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .serials
            .extend(serials);
        Ok(count)
    }

    /// Issued certificates (newest last), for the API and expiry warnings.
    pub fn issued(&self) -> Vec<IssuedCert> {
        self.lock().certs.certs.clone()
    }

    /// For expiry warnings: each agent's newest valid certificate expiry (revoked agents and
    /// certificates left out), and each trusted CA's `(subject, not_after)`.
    pub fn expiries(&self) -> (Vec<Expiry>, Vec<Expiry>) {
        let state = self.lock();
        let mut newest: HashMap<&str, OffsetDateTime> = HashMap::new();
        for cert in state.certs.certs.iter().filter(|c| c.revoked_at.is_none()) {
            if state.certs.revoked_agents.contains_key(&cert.agent_id) {
                continue;
            }
            let entry = newest.entry(&cert.agent_id).or_insert(cert.not_after);
            *entry = (*entry).max(cert.not_after);
        }
        let agents = newest
            .into_iter()
            .map(|(agent, at)| (agent.to_owned(), at))
            .collect();
        let cas = std::iter::once(&state.current)
            .chain(state.previous.as_ref())
            .map(|ca| (ca.subject.clone(), ca.not_after))
            .collect();
        (agents, cas)
    }

    /// The current (and previous, during a rotation) CA: `(fingerprint, subject, not_after)`.
    pub fn cas(&self) -> Vec<(String, String, OffsetDateTime)> {
        let state = self.lock();
        std::iter::once(&state.current)
            .chain(state.previous.as_ref())
            .map(|ca| (ca.fingerprint.clone(), ca.subject.clone(), ca.not_after))
            .collect()
    }

    /// Starts a CA rotation: a new CA (cross-signed by the current one) signs the server
    /// certificate and new client certificates; client certificates of both are trusted, and
    /// agents on the old one are told to renew. `finish` ends it: the old CA is no longer
    /// trusted.
    pub fn rotate(&self, finish: bool) -> Result<String, PkiError> {
        let mut state = self.lock();
        if finish {
            if state.previous.take().is_none() {
                return Err(PkiError::NoRotation);
            }
            state.cross_pem = None;
            for path in ["previous-ca.pem", "previous-ca.key", "cross.pem"] {
                let path = self.dir.join(path);
                if let Err(source) = std::fs::remove_file(&path)
                    && source.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(PkiError::Io { path, source });
                }
            }
            tracing::info!(fingerprint = %state.current.fingerprint, "CA rotation finished; the old CA is no longer trusted");
        } else {
            if state.previous.is_some() {
                return Err(PkiError::RotationUnderWay);
            }
            let (new, mut params) = Ca::create_with_params(self.settings.ca_lifetime)?;
            // The new CA's subject and key, signed by the old CA: agents that trust only the
            // old CA still verify a server certificate the new one signed.
            params.serial_number = Some(random_serial());
            let new_key = KeyPair::from_pem(&new.key_pem)?;
            let cross = params.signed_by(&new_key, &state.current.issuer)?;
            let old = std::mem::replace(&mut state.current, new);
            old.save(&self.dir, "previous-ca")?;
            write_atomic(&self.dir.join("cross.pem"), cross.pem().as_bytes(), false)?;
            state.current.save(&self.dir, "ca")?;
            state.cross_pem = Some(cross.pem());
            state.previous = Some(old);
            tracing::warn!(fingerprint = %state.current.fingerprint,
                "CA rotation started: agents move to the new CA at their next contact");
        }
        let config = Self::build_server_config(&self.dir, &self.settings, &state, true)?;
        *self
            .server_config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config;
        *self.https_cert.0.write().unwrap_or_else(|p| p.into_inner()) = certified_key(&self.dir)?;
        *self
            .current_subject
            .write()
            .unwrap_or_else(|p| p.into_inner()) = state.current.subject.clone();
        self.changed.notify_one();
        Ok(state.current.fingerprint.clone())
    }

    /// The addresses new tokens carry.
    pub fn advertised(&self) -> Vec<String> {
        if !self.settings.advertise.is_empty() {
            return self.settings.advertise.clone();
        }
        match hostname() {
            Ok(host) => vec![format!("{host}:{}", self.grpc_port)],
            Err(_) => Vec::new(),
        }
    }

    fn save_certs(&self, state: &State) -> Result<(), PkiError> {
        let text = serde_json::to_vec_pretty(&state.certs).expect("plain records serialise");
        write_atomic(&self.dir.join("certs.json"), &text, true)
    }

    fn save_tokens(&self, tokens: &[TokenRecord]) -> Result<(), PkiError> {
        let text = serde_json::to_vec_pretty(tokens).expect("plain records serialise");
        write_atomic(&self.dir.join("tokens.json"), &text, true)
    }
}

fn bundle(state: &State) -> String {
    let mut pem = state.current.pem.clone();
    if let Some(previous) = &state.previous {
        pem.push_str(&previous.pem);
    }
    pem
}

/// The one crypto provider (ring: no C toolchain beyond what ring needs, same on Windows).
/// The internal CA's server certificate for HTTPS: every handshake takes the one in force,
/// which [`Pki::rotate`] swaps.
#[derive(Debug)]
struct HttpsCert(RwLock<Arc<rustls::sign::CertifiedKey>>);

impl rustls::server::ResolvesServerCert for HttpsCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// `server.pem` + `server.key` in `dir`, ready to serve.
fn certified_key(dir: &Path) -> Result<Arc<rustls::sign::CertifiedKey>, PkiError> {
    let chain = read_chain(&dir.join("server.pem"))?;
    let key = provider()
        .key_provider
        .load_private_key(read_key(&dir.join("server.key"))?)
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, key)))
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a certificate's DER, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(crate::secret::sha256(der))
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x10; // no leading zero byte, so the hex form is stable
    SerialNumber::from_slice(&bytes)
}

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn hostname() -> std::io::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("COMPUTERNAME").map_err(std::io::Error::other))?;
    Ok(name.trim().to_owned())
}

pub fn certs_of(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn first_cert(pem: &str) -> Option<CertificateDer<'static>> {
    certs_of(pem).into_iter().next()
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let text = read_optional(path)?.ok_or_else(|| PkiError::Corrupt {
        path: path.to_owned(),
        message: "missing".into(),
    })?;
    let chain = certs_of(&text);
    if chain.is_empty() {
        return Err(PkiError::Corrupt {
            path: path.to_owned(),
            message: "no PEM certificate in it".into(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path).map_err(|e| PkiError::Corrupt {
        path: path.to_owned(),
        message: format!("no usable PEM private key: {e}"),
    })
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, PkiError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| PkiError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename); `private` files are 0600.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), PkiError> {
    let err = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    let _ = private;
    let mut file = options.open(&partial).map_err(err)?;
    std::io::Write::write_all(&mut file, bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&partial, path).map_err(err)?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> (KeyPair, String) {
        let key = KeyPair::generate().expect("key");
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .expect("csr");
        (key, csr.pem().expect("pem"))
    }

    #[test]
    fn first_start_makes_a_private_ca_and_a_second_start_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::open(dir.path(), TlsConfig::default(), 50051).expect("open");
        let fp = pki.fingerprint();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("pki/ca.key"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(pki);
        let again = Pki::open(dir.path(), TlsConfig::default(), 50051).expect("reopen");
        assert_eq!(again.fingerprint(), fp);
        assert_eq!(fp.len(), 64);
    }

    #[test]
    fn an_issued_certificate_names_the_agent_and_revocation_applies_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::open(dir.path(), TlsConfig::default(), 50051).expect("open");
        let (_key, csr) = csr();
        let issued = pki.issue("agent1", &csr).expect("issue");
        let der = first_cert(&issued.certificate_pem).expect("cert");
        let (info, renew) = pki.check_client(Some(&der), "agent1").expect("valid");
        assert_eq!(info.common_name, "agent1");
        assert!(!renew);
        assert!(matches!(
            pki.check_client(Some(&der), "agent2"),
            Err(CertRefusal::WrongAgent { .. })
        ));
        assert_eq!(pki.check_client(None, "agent1"), Err(CertRefusal::Missing));
        pki.revoke_agent("agent1").expect("revoke");
        assert!(matches!(
            pki.check_client(Some(&der), "agent1"),
            Err(CertRefusal::AgentRevoked(..))
        ));
        // Survives a restart.
        drop(pki);
        let pki = Pki::open(dir.path(), TlsConfig::default(), 50051).expect("reopen");
        assert!(pki.check_client(Some(&der), "agent1").is_err());
    }

    #[test]
    fn a_rotation_trusts_both_cas_and_asks_old_certificates_to_renew() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::open(dir.path(), TlsConfig::default(), 50051).expect("open");
        let old_fp = pki.fingerprint();
        let (_key, csr) = csr();
        let old = first_cert(&pki.issue("a", &csr).expect("issue").certificate_pem).expect("c");
        let new_fp = pki.rotate(false).expect("rotate");
        assert_ne!(old_fp, new_fp);
        assert!(pki.rotate(false).is_err(), "one rotation at a time");
        let (_, renew) = pki.check_client(Some(&old), "a").expect("still trusted");
        assert!(renew);
        let issued = pki.issue("a", &csr).expect("issue");
        assert!(issued.ca_pem.contains("BEGIN CERTIFICATE"));
        assert_eq!(certs_of(&issued.ca_pem).len(), 2);
        let new = first_cert(&issued.certificate_pem).expect("c");
        assert!(!pki.check_client(Some(&new), "a").expect("valid").1);
        pki.rotate(true).expect("finish");
        assert_eq!(certs_of(&pki.ca_bundle()).len(), 1);
    }

    #[test]
    fn no_secret_of_the_config_shows_in_its_debug_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "smtp-pa55word\n").expect("file");
        let text = format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:1\"\n[http]\nlisten = \"127.0.0.1:2\"\n\
             [snmp]\ncommunities = [\"c0mmunity-s3cret\"]\n\
             [[snmp.v3]]\nuser = \"u\"\nauth_protocol = \"sha256\"\nauth_password = \"v3-auth-s3cret\"\n\
             [smtp]\nserver = \"mail.example\"\nfrom = \"a@example\"\nto = [\"b@example\"]\nusername = \"u\"\npassword_file = {:?}\n",
            dir.path().display().to_string(),
            pass.display().to_string()
        );
        let config = crate::config::parse(&dir.path().join("c.toml"), &text).expect("valid");
        let shown = format!("{config:?}");
        for secret in ["c0mmunity-s3cret", "v3-auth-s3cret", "smtp-pa55word"] {
            assert!(!shown.contains(secret), "{secret} in Debug output");
        }
        assert!(shown.contains("***"));
        // The SMTP password is read when it is needed, into a type that hides it too.
        let smtp = config.smtp.as_ref().expect("smtp");
        let password = smtp.password(|_| None).expect("read").expect("some");
        assert!(!format!("{password:?}").contains("smtp-pa55word"));
    }

    #[test]
    fn a_garbage_csr_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::open(dir.path(), TlsConfig::default(), 50051).expect("open");
        assert!(matches!(
            pki.issue(
                "a",
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            ),
            Err(PkiError::BadCsr(_))
        ));
    }
}
