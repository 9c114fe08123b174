//! The command line's client for the running collector: every CLI command that acts on the
//! daemon (`incidents`, `incident …`, and the admin commands) talks to its JSON API over
//! loopback, with the API token from the data directory, at the address the daemon wrote to
//! `listen.json` (so a config with port 0 works). One place for the address, the token,
//! the request and how failures are reported (exit 69 when the daemon is unreachable).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use caretaker_collector::app::Listening;
use caretaker_collector::config::{self, Config};
use serde_json::Value;

const EX_UNAVAILABLE: u8 = 69;

pub fn load(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(78)
    })
}

pub fn failure(status: u16, body: &str) -> ExitCode {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    eprintln!("caretaker-collector: {message} (HTTP {status})");
    let _ = status;
    ExitCode::FAILURE
}

pub fn unavailable(config: &Config, error: &std::io::Error) -> ExitCode {
    eprintln!(
        "caretaker-collector: cannot reach the collector's API at {}: {error} (is `caretaker-collector run` running?)",
        api_addr(config)
    );
    ExitCode::from(EX_UNAVAILABLE)
}

/// Where the daemon's API listens: what the running collector wrote to its data directory
/// (so a config with port 0, like the demo's, works), else the configured address.
pub fn api_addr(config: &Config) -> SocketAddr {
    let mut addr =
        Listening::read(&config.data_dir).map_or(config.http.listen, |listening| listening.http);
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// The API token the daemon uses, from its file.
pub fn token(config: &Config) -> std::io::Result<String> {
    let token_path = config
        .http
        .api_token_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("api-token"));
    let token = std::fs::read_to_string(&token_path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", token_path.display())))?;
    Ok(token.trim().to_owned())
}

/// One HTTP/1.1 request to the daemon's API with its bearer token.
pub fn request(
    config: &Config,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let (status, body) = request_bytes(
        config,
        method,
        path,
        "application/json",
        body.unwrap_or("").as_bytes(),
    )?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// [`request`] with any content type and a byte body, answering the body's bytes (CSV
/// import and export).
pub fn request_bytes(
    config: &Config,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let token_path = config
        .http
        .api_token_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("api-token"));
    let token = std::fs::read_to_string(&token_path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", token_path.display())))?;
    let addr = api_addr(config);
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut stream: Box<dyn ReadWrite> = if config.tls.https {
        Box::new(https_stream(config, tcp)?)
    } else {
        Box::new(tcp)
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        token.trim(),
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(parse_response_bytes(&response))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// TLS to the daemon's HTTPS API on loopback, trusting exactly the certificate the daemon
/// serves (the supplied `https_cert_file`, or the internal CA's `pki/server.pem`).
fn https_stream(
    config: &Config,
    tcp: TcpStream,
) -> std::io::Result<
    tokio_rustls::rustls::StreamOwned<tokio_rustls::rustls::ClientConnection, TcpStream>,
> {
    use tokio_rustls::rustls;
    let path = config
        .tls
        .https_cert_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("pki/server.pem"));
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let leaf = caretaker_collector::pki::certs_of(&pem)
        .into_iter()
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{}: no certificate", path.display())))?;
    let provider = caretaker_collector::pki::provider();
    let verifier = Arc::new(PinnedLeaf {
        leaf,
        provider: provider.clone(),
    });
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connection =
        rustls::ClientConnection::new(Arc::new(client), name).map_err(std::io::Error::other)?;
    Ok(rustls::StreamOwned::new(connection, tcp))
}

#[derive(Debug)]
struct PinnedLeaf {
    leaf: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    provider: Arc<tokio_rustls::rustls::crypto::CryptoProvider>,
}

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[tokio_rustls::rustls::pki_types::CertificateDer<'_>],
        _name: &tokio_rustls::rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: tokio_rustls::rustls::pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error>
    {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(tokio_rustls::rustls::Error::General(
                "the API's certificate is not the one this collector serves".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Status and body of a raw HTTP/1.1 response. The framing is undone on bytes and only the
/// body is decoded (lossily): a chunk boundary may fall inside a UTF-8 character.
#[cfg(test)]
fn parse_response(raw: &[u8]) -> (u16, String) {
    let (status, body) = parse_response_bytes(raw);
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn parse_response_bytes(raw: &[u8]) -> (u16, Vec<u8>) {
    let (head, rest) = match find(raw, b"\r\n\r\n") {
        Some(end) => (&raw[..end], &raw[end + 4..]),
        None => (raw, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    (status, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(body, b"\r\n") {
        let line = String::from_utf8_lossy(&body[..eol]);
        // A size line may carry extensions after ';'.
        let size = line.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            break;
        };
        let rest = &body[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&[u8]]) -> Vec<u8> {
        let mut raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n"
            .to_vec();
        for part in parts {
            raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            raw.extend_from_slice(part);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        raw
    }

    #[test]
    fn a_chunk_boundary_inside_a_character_keeps_the_character() {
        let body = r#"[{"title":"Disk nearly full — C:\\ on R12-PC03 (Café)"}]"#.as_bytes();
        // Split every body at every byte: some splits fall inside "—" (3 bytes) and "é" (2).
        for at in 1..body.len() {
            let (status, text) = parse_response(&chunked(&[&body[..at], &body[at..]]));
            assert_eq!(status, 200);
            assert_eq!(text.as_bytes(), body, "split at byte {at}");
        }
    }

    #[test]
    fn invalid_utf8_in_a_body_is_replaced_not_a_panic() {
        let (status, text) = parse_response(&chunked(&[b"{\"error\":\"bad \xff", b"\xfe byte\"}"]));
        assert_eq!(status, 200);
        assert_eq!(text, "{\"error\":\"bad \u{fffd}\u{fffd} byte\"}");
        let plain = b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nn\xc3o \xe2";
        assert_eq!(
            parse_response(plain),
            (404, "n\u{fffd}o \u{fffd}".to_owned())
        );
    }
}
