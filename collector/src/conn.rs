//! Connection limits for both listeners: a client that connects and sends nothing, sends
//! half a request, or sits on an idle connection is closed; one stuck request ends.
//!
//! Every accepted stream is wrapped in a [`Guarded`] that fails its reads (so hyper closes
//! the connection) once a deadline passes while no request is in flight: `header_timeout`
//! after the accept until the first request's headers have arrived, then `idle_timeout` after
//! the last request ended. Requests mark their connection busy through [`Connections::layer`],
//! which finds the connection by peer address (the only thing a request knows about it), so
//! HTTP/2 pings and half-sent headers never count as use. On top, gRPC gets HTTP/2 keepalive
//! (a peer that stops answering pings is dropped), a per-connection stream cap and a
//! per-request deadline ([`grpc_server`]); HTTP a per-request deadline and caps on the URI
//! and header sizes answered as JSON 414 / 431 ([`request_limits`]).
//!
//! TLS (when configured) sits on top of a `Guarded` stream, so a client that stalls in the
//! handshake is closed by the same `header_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// The two connection deadlines of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the accept until the first request's headers are in (and the TLS handshake done).
    pub header: Duration,
    /// With no request in flight, from the end of the last one.
    pub idle: Duration,
}

/// What one connection is doing.
#[derive(Debug)]
struct Activity {
    busy: AtomicUsize,
    /// Whether a request ever arrived, and when the last one ended.
    last: Mutex<(bool, Instant)>,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, Instant)> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The live connections of one listener by peer address, and its timeouts.
#[derive(Debug, Clone)]
pub struct Connections {
    live: Arc<Mutex<HashMap<SocketAddr, Weak<Activity>>>>,
    timeouts: Timeouts,
}

impl Connections {
    pub fn new(timeouts: Timeouts) -> Self {
        Self {
            live: Arc::default(),
            timeouts,
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Weak<Activity>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wraps an accepted stream from `peer`.
    pub fn guard<S>(&self, io: S, peer: SocketAddr) -> Guarded<S> {
        let now = Instant::now();
        let activity = Arc::new(Activity {
            busy: AtomicUsize::new(0),
            last: Mutex::new((false, now)),
        });
        self.live().insert(peer, Arc::downgrade(&activity));
        Guarded {
            io,
            peer,
            activity,
            connections: self.clone(),
            accepted: now,
            timer: Box::pin(tokio::time::sleep_until(now + self.timeouts.header)),
        }
    }

    /// A layer marking a request's connection busy while the request is handled; `peer`
    /// finds the peer address in the request's extensions (see [`grpc_peer`], [`http_peer`]).
    pub fn layer(&self, peer: fn(&axum::http::Extensions) -> Option<SocketAddr>) -> TrackLayer {
        TrackLayer {
            connections: self.clone(),
            peer,
        }
    }

    fn busy(&self, peer: SocketAddr) -> Option<Busy> {
        let activity = self.live().get(&peer)?.upgrade()?;
        activity.busy.fetch_add(1, Ordering::SeqCst);
        activity.lock().0 = true;
        Some(Busy(activity))
    }
}

/// The peer of a gRPC request (tonic's connect info).
pub fn grpc_peer(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<crate::pki::listener::PeerInfo>()
        .map(|info| info.addr)
        .or_else(|| {
            extensions
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
        })
}

/// The peer of an HTTP request (axum's connect info).
pub fn http_peer(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

/// An HTTP client's address, as axum's connect info for [`GuardedListener`] connections;
/// [`peer_as_socket_addr`] copies it to the `ConnectInfo<SocketAddr>` handlers extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Middleware: `ConnectInfo<Peer>` also as `ConnectInfo<SocketAddr>`, the one type handlers
/// and [`http_peer`] read (the HTTPS listener inserts that directly).
pub async fn peer_as_socket_addr(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(axum::extract::ConnectInfo(Peer(addr))) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<Peer>>()
        .copied()
    {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
    }
    next.run(request).await
}

/// A request in flight on a connection; ending it restarts the idle clock.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.lock() = (true, Instant::now());
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted stream whose reads fail once its connection has been silent too long (see the
/// module comment). Writes pass through.
pub struct Guarded<S> {
    io: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
    connections: Connections,
    accepted: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S> Guarded<S> {
    /// When the connection is to be closed unless a request comes or is in flight by then.
    fn deadline(&self, now: Instant) -> Instant {
        let timeouts = self.connections.timeouts;
        if self.activity.busy.load(Ordering::SeqCst) > 0 {
            return now + timeouts.idle;
        }
        match *self.activity.lock() {
            (false, _) => self.accepted + timeouts.header,
            (true, last) => last + timeouts.idle,
        }
    }

    /// Whether the deadline has passed; otherwise the timer is armed to wake the reader.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            let deadline = self.deadline(now);
            if deadline <= now {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<S> Drop for Guarded<S> {
    fn drop(&mut self) {
        let mut live = self.connections.live();
        if live
            .get(&self.peer)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.activity)))
        {
            live.remove(&self.peer);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            let served = this.activity.lock().0;
            tracing::debug!(peer = %this.peer, served,
                "Closing a connection that sent no request in time");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                if served {
                    "connection idle past idle_timeout"
                } else {
                    "no request within header_timeout"
                },
            )));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Accepts the next connection, riding out accept errors (out of file descriptors, a
/// connection reset before it was accepted) instead of stopping the server.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(error) => {
                tracing::warn!(%error, "Accepting a connection failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The gRPC listener's accepted connections, guarded (for `serve_with_incoming_shutdown`).
pub fn incoming(
    listener: TcpListener,
    connections: Connections,
) -> impl futures_util::Stream<Item = io::Result<Guarded<TcpStream>>> {
    futures_util::stream::unfold(
        (listener, connections),
        |(listener, connections)| async move {
            let (stream, peer) = accept(&listener).await;
            let guarded = connections.guard(stream, peer);
            Some((Ok(guarded), (listener, connections)))
        },
    )
}

/// The HTTP listener for `axum::serve`: guarded connections, peer addresses for connect info.
pub struct GuardedListener {
    pub listener: TcpListener,
    pub connections: Connections,
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, peer) = accept(&self.listener).await;
        (self.connections.guard(stream, peer), peer)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Settings of the gRPC listener beyond the two timeouts.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    pub timeouts: Timeouts,
    pub request_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
}

/// The gRPC server builder with the connection settings (add layers and services to it).
pub fn grpc_server(limits: &GrpcLimits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .timeout(limits.request_timeout)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .concurrency_limit_per_connection(limits.max_concurrent_streams as usize)
}

/// Settings of the HTTP listener beyond the two timeouts.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub timeouts: Timeouts,
    pub request_timeout: Duration,
}

/// Longest request target (path and query) the API reads; longer ones are 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most request header bytes (names and values) the API reads; more is 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// 414 for a request target past [`MAX_URI_BYTES`], 431 for headers past
/// [`MAX_HEADER_BYTES`], both as `{"error": …}` like every other API error. (hyper refuses
/// what is past its own, larger limits — a target over 64 KiB, more than 100 header lines,
/// a head over ~400 KiB — before any of our code runs, with an empty 414 / 431.)
pub async fn request_limits(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let uri = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        let body = serde_json::json!({
            "error": format!("request target is {uri} bytes; at most {MAX_URI_BYTES}")
        });
        return (axum::http::StatusCode::URI_TOO_LONG, axum::Json(body)).into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        let body = serde_json::json!({
            "error": format!("request headers are {headers} bytes; at most {MAX_HEADER_BYTES}")
        });
        return (
            axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            axum::Json(body),
        )
            .into_response();
    }
    next.run(request).await
}

/// Ends a request still unanswered after the HTTP `request_timeout` with 503 (a client
/// dribbling its body, a store read stuck behind a disk).
pub async fn request_deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => crate::errors::Failure::new(
            crate::errors::Kind::Overloaded,
            format!(
                "request not finished within {}",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    }
}

/// See [`Connections::layer`].
#[derive(Clone)]
pub struct TrackLayer {
    connections: Connections,
    peer: fn(&axum::http::Extensions) -> Option<SocketAddr>,
}

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tracked {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`Connections::layer`].
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    layer: TrackLayer,
}

impl<S, B> tower::Service<axum::http::Request<B>> for Tracked<S>
where
    S: tower::Service<axum::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let busy = (self.layer.peer)(request.extensions())
            .and_then(|peer| self.layer.connections.busy(peer));
        let future = self.inner.call(request);
        Box::pin(async move {
            let _busy = busy;
            future.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().expect("addr")
    }

    const TIMEOUTS: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
        let connections = Connections::new(TIMEOUTS);
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = connections.guard(server, peer());
        let mut buf = [0u8; 8];
        let error = guarded.read(&mut buf).await.expect_err("closed");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("header_timeout"));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_cut_and_idleness_counts_from_its_end() {
        let connections = Connections::new(TIMEOUTS);
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = connections.guard(server, peer());
        let busy = connections.busy(peer()).expect("registered");
        // Far past both timeouts while the request is handled: still open, bytes flow.
        tokio::time::advance(Duration::from_secs(600)).await;
        client.write_all(b"x").await.expect("write");
        let mut buf = [0u8; 1];
        guarded.read_exact(&mut buf).await.expect("still open");
        drop(busy);
        let started = Instant::now();
        let error = guarded.read(&mut buf).await.expect_err("idle");
        assert!(error.to_string().contains("idle_timeout"));
        assert!(Instant::now() - started >= TIMEOUTS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_connection_leaves_no_entry_behind() {
        let connections = Connections::new(TIMEOUTS);
        let (_client, server) = tokio::io::duplex(64);
        let guarded = connections.guard(server, peer());
        assert!(connections.busy(peer()).is_some());
        drop(guarded);
        assert!(connections.busy(peer()).is_none());
        assert!(connections.live().is_empty());
    }
}
