//! The gRPC listener's connections: TLS (with an optional client certificate) or, told apart
//! by the first byte, plaintext. Plaintext connections are passed on too, marked as such, so
//! that the handlers answer them with a clear gRPC error (or, with `[tls] plaintext = true`,
//! serve them with bearer secrets only). Handshake failures are logged with what went wrong,
//! once per source address and kind.
//!
//! [`incoming`] spawns the accept loop (each handshake in its own task, bounded by
//! `HANDSHAKE_TIMEOUT`) and hands finished connections to tonic through a bounded channel
//! (full: the accept loop waits, so the kernel's backlog holds new connections). It stops when
//! the token is cancelled.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use super::Pki;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a handler knows about the connection its request came on.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The client's certificate (end entity), when it presented one, and what it says
    /// (parsed once per connection; shared by every request on it).
    pub cert: Option<Arc<CertificateDer<'static>>>,
    pub cert_info: Option<Arc<super::CertInfo>>,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection.
pub struct Conn {
    io: Io,
    info: PeerInfo,
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Logs each kind of failure once per source address (bounded), then only counts.
#[derive(Default)]
struct Once(Mutex<HashSet<(IpAddr, &'static str)>>);

impl Once {
    fn first(&self, ip: IpAddr, kind: &'static str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 10_000 {
            seen.clear();
        }
        seen.insert((ip, kind))
    }
}

/// Accepts connections on `listener` until `shutdown` fires (see the module comment).
pub fn incoming(
    listener: TcpListener,
    pki: Arc<Pki>,
    connections: crate::conn::Connections,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<crate::conn::Guarded<Conn>>> {
    // Full: the accept loop waits for tonic to take connections.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let once = Arc::new(Once::default());
    tokio::spawn(async move {
        loop {
            let (stream, addr) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "Accepting a gRPC connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (tx, pki, once) = (tx.clone(), pki.clone(), once.clone());
            let connections = connections.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(stream, addr, &pki, &once))
                    .await
                {
                    Ok(Some(conn)) => {
                        // The idle and header timeouts (`conn`) apply from here on.
                        let _ = tx.send(Ok(connections.guard(conn, addr))).await;
                    }
                    Ok(None) => {}
                    Err(_) => {
                        if once.first(addr.ip(), "timeout") {
                            tracing::warn!(peer = %addr.ip(), "A gRPC client did not finish its TLS handshake in time (logged once per source)");
                        }
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn accept(stream: TcpStream, addr: SocketAddr, pki: &Pki, once: &Once) -> Option<Conn> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => return None,
        Ok(_) => {}
    }
    if first[0] != 0x16 {
        if !pki.settings().plaintext && once.first(addr.ip(), "plaintext") {
            tracing::warn!(peer = %addr.ip(),
                "A client spoke plaintext to the TLS-only gRPC port; it is told to use TLS with an enrolment token (logged once per source)");
        }
        return Some(Conn {
            io: Io::Plain(stream),
            info: PeerInfo {
                addr,
                tls: false,
                cert: None,
                cert_info: None,
            },
        });
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    match acceptor.accept(stream).await {
        Ok(tls) => {
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned());
            let cert_info = cert
                .as_ref()
                .and_then(|c| super::CertInfo::parse(c))
                .map(Arc::new);
            Some(Conn {
                io: Io::Tls(Box::new(tls)),
                info: PeerInfo {
                    addr,
                    tls: true,
                    cert: cert.map(Arc::new),
                    cert_info,
                },
            })
        }
        Err(error) => {
            let (kind, message) = explain(&error);
            if once.first(addr.ip(), kind) {
                tracing::warn!(peer = %addr.ip(), %error, "TLS handshake refused: {message} (logged once per source)");
            }
            None
        }
    }
}

/// A short kind and a sentence for a failed server-side handshake.
pub fn explain(error: &io::Error) -> (&'static str, &'static str) {
    use rustls::{AlertDescription, CertificateError, Error};
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return ("io", "the connection failed during the handshake");
    };
    match tls {
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => (
            "expired",
            "the agent's client certificate has expired; enrol the PC again with a new token",
        ),
        Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | Error::InvalidCertificate(CertificateError::BadSignature) => (
            "unknown-ca",
            "the client certificate was not issued by this collector's CA",
        ),
        Error::InvalidCertificate(_) => ("bad-cert", "the client certificate is not valid"),
        Error::AlertReceived(AlertDescription::UnknownCA)
        | Error::AlertReceived(AlertDescription::BadCertificate)
        | Error::AlertReceived(AlertDescription::CertificateUnknown)
        | Error::AlertReceived(AlertDescription::DecryptError)
        | Error::AlertReceived(AlertDescription::HandshakeFailure) => (
            "distrusted",
            "the client does not trust this collector's certificate (its token pins another CA?)",
        ),
        Error::InvalidMessage(_) | Error::InappropriateHandshakeMessage { .. } => {
            ("garbled", "the client did not speak TLS")
        }
        _ => ("tls", "the TLS handshake failed"),
    }
}
