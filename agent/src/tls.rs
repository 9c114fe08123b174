//! TLS to the collector: the enrolment token (`ct1_…`) pins the collector's CA by the SHA-256
//! fingerprint of its certificate; the agent's key is made here (rcgen) and only a CSR leaves
//! the PC; every call after enrolment presents the client certificate (mTLS).
//!
//! The server is verified against the CA (pinned, then the CA certificates the collector
//! handed over at enrolment) and the fixed name `caretaker-collector`, whatever address the
//! agent dials: only the collector's own CA issues certificates for that name. A plaintext
//! channel is used only for a token that pins nothing (an old collector), with a warning.

use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;
use tokio_rustls::rustls;
use tonic::transport::{Channel, Endpoint};

use crate::identity::Identity;

/// The name in every collector server certificate.
pub const SERVER_NAME: &str = "caretaker-collector";
/// Marks a verifier failure as a pin mismatch, so the agent can say so.
const PIN_MISMATCH: &str = "caretaker: CA pin mismatch";

/// What a `ct1_` token carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TokenText {
    pub id: String,
    #[serde(rename = "fp")]
    pub fingerprint: String,
    #[serde(rename = "a", default)]
    pub addresses: Vec<String>,
}

impl TokenText {
    pub fn decode(text: &str) -> Option<Self> {
        let body = text.trim().strip_prefix("ct1_")?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// How the agent trusts the collector.
#[derive(Clone)]
pub enum Trust {
    /// No pin (an old-style token): plaintext HTTP/2.
    Plaintext,
    /// The CA whose certificate has this SHA-256 (hex), from the token.
    Pinned(String),
    /// The CA certificates stored at enrolment.
    Roots(Vec<CertificateDer<'static>>),
}

impl Trust {
    /// What to trust for `identity` (its stored CAs) or, before enrolment, the token.
    pub fn for_identity(identity: Option<&Identity>, token: Option<&str>) -> Self {
        if let Some(id) = identity
            && !id.ca_pem.is_empty()
        {
            let roots: Vec<_> = CertificateDer::pem_slice_iter(id.ca_pem.as_bytes())
                .filter_map(Result::ok)
                .collect();
            if !roots.is_empty() {
                return Self::Roots(roots);
            }
        }
        match token.and_then(TokenText::decode) {
            Some(text) => Self::Pinned(text.fingerprint.to_ascii_lowercase()),
            None => Self::Plaintext,
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug)]
struct Verifier {
    pin: Option<String>,
    roots: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut store = rustls::RootCertStore::empty();
        match &self.pin {
            Some(pin) => {
                let pinned = intermediates
                    .iter()
                    .find(|c| hex::encode(sha2::Sha256::digest(c.as_ref())) == *pin)
                    .ok_or_else(|| rustls::Error::General(PIN_MISMATCH.to_owned()))?;
                store.add(pinned.clone().into_owned())?;
            }
            None => {
                for root in &self.roots {
                    store.add(root.clone())?;
                }
            }
        }
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let name = ServerName::try_from(SERVER_NAME).expect("valid name");
        inner.verify_server_cert(end_entity, intermediates, &name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("collector URL is invalid")]
    BadUrl(#[source] tonic::transport::Error),
    #[error("the stored client certificate or key is unusable: {0}")]
    BadIdentity(String),
    #[error("cannot make a key: {0}")]
    Key(String),
}

/// A lazily connecting channel to `collector` with `trust`, presenting `identity`'s
/// certificate when it has one.
pub fn channel(
    collector: &str,
    trust: &Trust,
    identity: Option<&Identity>,
    connect_timeout: std::time::Duration,
    request_timeout: std::time::Duration,
) -> Result<Channel, TlsError> {
    let endpoint = Endpoint::from_shared(collector.to_owned())
        .map_err(TlsError::BadUrl)?
        .connect_timeout(connect_timeout)
        .timeout(request_timeout);
    let (pin, roots) = match trust {
        Trust::Plaintext => return Ok(endpoint.connect_lazy()),
        Trust::Pinned(pin) => (Some(pin.clone()), Vec::new()),
        Trust::Roots(roots) => (None, roots.clone()),
    };
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadIdentity(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            pin,
            roots,
            provider,
        }));
    let mut config = match identity.filter(|i| !i.certificate_pem.is_empty()) {
        Some(id) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(id.certificate_pem.as_bytes())
                .filter_map(Result::ok)
                .collect();
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
                .map_err(|e| TlsError::BadIdentity(e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::BadIdentity(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let service = tower::service_fn(move |uri: tonic::codegen::http::Uri| {
        let connector = connector.clone();
        async move {
            let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(50051);
            let tcp = tokio::net::TcpStream::connect((host, port)).await?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(SERVER_NAME).expect("valid name");
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(service))
}

/// A new key (P-256, made here) and a CSR for it: `(key PEM, CSR PEM)`.
pub fn new_key_and_csr() -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Key(e.to_string()))?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| TlsError::Key(e.to_string()))?;
    Ok((key.serialize_pem(), csr))
}

/// What went wrong with TLS, in words a technician can act on, found in an error's chain.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::{AlertDescription, Error};
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let tls = e.downcast_ref::<Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<Error>())
        });
        if let Some(tls) = tls {
            return Some(match tls {
                Error::General(text) if text == PIN_MISMATCH => PINNED.to_owned(),
                Error::AlertReceived(AlertDescription::CertificateExpired) => EXPIRED.to_owned(),
                Error::AlertReceived(
                    AlertDescription::BadCertificate
                    | AlertDescription::UnknownCA
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::CertificateRequired,
                ) => REFUSED.to_owned(),
                Error::InvalidCertificate(reason) => {
                    format!("the collector's certificate is not valid: {reason:?}")
                }
                Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
                    "the collector did not answer with TLS (an old plaintext collector?)".to_owned()
                }
                other => format!("TLS with the collector failed: {other}"),
            });
        }
        // h2 keeps I/O errors without a source: read what they say.
        let text = e.to_string();
        if let Some(alert) = text
            .split("received fatal alert: ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_alphanumeric()).next())
        {
            return Some(match alert {
                "CertificateExpired" => EXPIRED.to_owned(),
                "BadCertificate"
                | "UnknownCA"
                | "CertificateUnknown"
                | "CertificateRevoked"
                | "CertificateRequired" => REFUSED.to_owned(),
                other => format!("the collector ended the TLS handshake: {other}"),
            });
        }
        if text.contains(PIN_MISMATCH) {
            return Some(PINNED.to_owned());
        }
        current = e.source();
    }
    None
}

const EXPIRED: &str = "the collector refused this PC's client certificate: it has expired; \
                       enrol the PC again with a new token";
const REFUSED: &str = "the collector refused this PC's client certificate (issued by another \
                       CA?); enrol the PC again with a new token";
const PINNED: &str = "the collector's certificate authority does not match the fingerprint in \
                      the enrolment token: a wrong collector address, a re-installed collector \
                      (make a new token), or someone intercepting the connection";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_string_yields_its_pin_and_an_old_token_none() {
        let json = r#"{"id":"tok-1","s":"secret","fp":"AB12","a":["server:50051"]}"#;
        let token = format!(
            "ct1_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        );
        let text = TokenText::decode(&token).expect("decodes");
        assert_eq!(text.addresses, ["server:50051"]);
        assert!(matches!(Trust::for_identity(None, Some(&token)), Trust::Pinned(p) if p == "ab12"));
        assert!(matches!(
            Trust::for_identity(None, Some("good-token")),
            Trust::Plaintext
        ));
    }

    #[test]
    fn a_csr_is_made_for_a_fresh_key() {
        let (key, csr) = new_key_and_csr().expect("csr");
        assert!(key.contains("PRIVATE KEY"));
        assert!(csr.contains("CERTIFICATE REQUEST"));
    }
}
