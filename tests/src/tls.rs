//! TLS for tests that play agents: mTLS gRPC channels, keys and CSRs, and the enrolling proxy
//! that lets the plaintext gRPC clients of older tests talk to a TLS-only collector.
//!
//! The collector accepts only TLS, with every call after enrolment carrying the agent's own
//! client certificate. Tests that speak gRPC themselves ([`crate::grpc_client`], raw
//! `tonic::client::Grpc`) connect to [`Proxy`] in plaintext instead; the proxy does what an
//! agent does: on `Enroll` it makes a key, adds a CSR to the request (protobuf field 8) and
//! keeps the certificate the answer carries; every later call naming that agent id (field 1
//! of the request) goes out over that agent's own mTLS connection. Bytes are forwarded as
//! they are (garbled requests reach the collector garbled), and answers come back with their
//! trailers. A connection that starts with a TLS handshake (a real agent) is relayed to the
//! collector untouched, so `Collector::url()` serves both.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls;
use tonic::transport::{Channel, Endpoint};

/// The name in every collector server certificate.
pub const SERVER_NAME: &str = "caretaker-collector";

/// The CA certificates in `pem`.
pub fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// A client config trusting `roots_pem` for `caretaker-collector`, presenting `client`
/// (certificate PEM, key PEM) when given.
pub fn client_config(roots_pem: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(roots_pem) {
        roots.add(cert).expect("CA certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certs(cert),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A lazily connecting gRPC channel to `addr` over TLS with `config`.
pub fn channel(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Channel {
    let connector = tokio_rustls::TlsConnector::from(config);
    let service = tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        async move {
            let tls = connect_tls(addr, &connector).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect_with_connector_lazy(service)
}

/// A TCP connection to `addr` with Nagle off (gRPC calls are small).
async fn connect_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// TLS to the collector at `addr`, checked against [`SERVER_NAME`].
async fn connect_tls(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = ServerName::try_from(SERVER_NAME).expect("name");
    connector.connect(name, connect_tcp(addr).await?).await
}

/// A gRPC connection driven straight through hyper's HTTP/2 client, for load generators: the
/// caller's task hands each request to the connection task (tonic's [`Channel`] puts a
/// buffer task in between, a second hop per call that a benchmark's simulated agents pay for
/// on the same cores as the collector they measure). Same bytes on the wire: HTTP/2 over TLS
/// (with `config`) or plaintext. Clones share the connection.
#[derive(Clone)]
pub struct Direct {
    send: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
}

impl Direct {
    /// Connects to `addr` and completes the TLS and HTTP/2 handshakes.
    pub async fn connect(
        addr: SocketAddr,
        config: Option<Arc<rustls::ClientConfig>>,
    ) -> std::io::Result<Self> {
        let send = match config {
            Some(config) => {
                let connector = tokio_rustls::TlsConnector::from(config);
                Self::handshake(connect_tls(addr, &connector).await?).await?
            }
            None => Self::handshake(connect_tcp(addr).await?).await?,
        };
        Ok(Self { send })
    }

    /// HTTP/2 over `io`; the connection runs on its own task.
    async fn handshake<T>(
        io: T,
    ) -> std::io::Result<hyper::client::conn::http2::SendRequest<tonic::body::Body>>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        tokio::spawn(connection);
        Ok(send)
    }

    /// The `Uri` origin to give tonic's generated client (`with_origin`): HTTP/2 needs
    /// `:scheme` and `:authority`.
    pub fn origin(addr: SocketAddr, tls: bool) -> http::Uri {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{addr}").parse().expect("origin")
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Direct {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.send.send_request(request))
    }
}

/// A fresh key and a CSR for it: `(key PEM, CSR PEM)`.
pub fn key_and_csr() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (key.serialize_pem(), csr)
}

/// The CA certificates a collector's data directory trusts (current and, during a rotation,
/// the previous one).
pub fn collector_cas(data_dir: &std::path::Path) -> String {
    ["pki/ca.pem", "pki/previous-ca.pem"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(data_dir.join(p)).ok())
        .collect()
}

/// The enrolling proxy (see the module comment), on its own thread and runtime.
pub struct Proxy {
    pub addr: SocketAddr,
}

struct Shared {
    upstream: SocketAddr,
    data_dir: PathBuf,
    agents: Mutex<HashMap<String, Channel>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, data_dir: PathBuf) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            upstream,
            data_dir,
            agents: Mutex::default(),
        });
        std::thread::Builder::new()
            .name("enrolling-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(serve(stream, shared.clone()));
                    }
                });
            })
            .expect("proxy thread");
        Self { addr }
    }
}

async fn serve(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut first = [0u8; 1];
    if !matches!(stream.peek(&mut first).await, Ok(1)) {
        return;
    }
    if first[0] == 0x16 {
        // A real agent's TLS: relay untouched.
        let Ok(mut upstream) = tokio::net::TcpStream::connect(shared.upstream).await else {
            return;
        };
        let mut stream = stream;
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
        return;
    }
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(forward(request, &shared).await) }
    });
    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, tonic::Status>;

fn grpc_error(code: tonic::Code, message: &str) -> http::Response<ProxyBody> {
    let mut response = http::Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    let headers = response.headers_mut();
    headers.insert("content-type", "application/grpc".parse().expect("header"));
    headers.insert("grpc-status", (code as i32).into());
    if let Ok(value) = message.parse() {
        headers.insert("grpc-message", value);
    }
    response
}

/// The message of a one-message gRPC body (5-byte prefix), if it is one.
fn message(body: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(body.get(1..5)?.try_into().ok()?) as usize;
    body.get(5..5 + len)
}

fn frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

/// Field 1 of a protobuf message when it is a string (the agent id of every request).
fn field_one(mut msg: &[u8]) -> Option<String> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(&mut msg)?;
            }
            1 => msg = msg.get(8..)?,
            5 => msg = msg.get(4..)?,
            2 => {
                let len = varint(&mut msg)? as usize;
                let value = msg.get(..len)?;
                if field == 1 {
                    return String::from_utf8(value.to_vec()).ok();
                }
                msg = &msg[len..];
            }
            _ => return None,
        }
    }
    None
}

async fn forward(
    request: http::Request<hyper::body::Incoming>,
    shared: &Shared,
) -> http::Response<ProxyBody> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await else {
        return grpc_error(tonic::Code::Unavailable, "proxy: request body lost");
    };
    let mut body = body.to_bytes();
    let path = parts.uri.path().to_owned();
    let enrol = path.ends_with("/Enroll");
    let mut key_pem = String::new();
    let channel = if enrol {
        // Add a CSR (field 8, length-delimited) for a key made here.
        if let Some(msg) = message(&body) {
            let (key, csr) = key_and_csr();
            key_pem = key;
            let mut msg = msg.to_vec();
            msg.push(0x42);
            let mut len = csr.len();
            while len >= 0x80 {
                msg.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            msg.push(len as u8);
            msg.extend_from_slice(csr.as_bytes());
            body = frame(&msg);
        }
        None
    } else {
        message(&body)
            .and_then(field_one)
            .and_then(|id| shared.agents.lock().expect("agents").get(&id).cloned())
    };
    let channel = channel.unwrap_or_else(|| {
        channel_for(
            shared.upstream,
            client_config(&collector_cas(&shared.data_dir), None),
        )
    });
    let mut upstream = http::Request::builder()
        .method(parts.method)
        .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            upstream = upstream.header(name, value);
        }
    }
    let upstream = upstream
        .body(tonic::body::Body::new(
            http_body_util::Full::new(body).map_err(|never| match never {}),
        ))
        .expect("request");
    let response = match tower::ServiceExt::oneshot(channel, upstream).await {
        Ok(response) => response,
        Err(error) => {
            return grpc_error(
                tonic::Code::Unavailable,
                &format!("proxy: the collector is unreachable: {error}"),
            );
        }
    };
    let (parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return grpc_error(tonic::Code::Unavailable, "proxy: answer lost");
    };
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    if enrol
        && let Some(msg) = message(&data)
        && let Ok(answer) = <crate::v1::EnrollResponse as prost::Message>::decode(msg)
        && !answer.certificate_pem.is_empty()
    {
        let config = client_config(&answer.ca_pem, Some((&answer.certificate_pem, &key_pem)));
        shared.agents.lock().expect("agents").insert(
            answer.agent_id.clone(),
            channel_for(shared.upstream, config),
        );
    }
    let body = http_body_util::Full::new(data)
        .map_err(|never| match never {})
        .with_trailers(async move { trailers.map(Ok) })
        .boxed_unsync();
    http::Response::from_parts(parts, body)
}

fn channel_for(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Channel {
    channel(addr, config)
}
