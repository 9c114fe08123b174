//! HTTPS for the `[http]` listener (`[tls] https = true`): the same router behind
//! tokio-rustls (internal CA's server certificate, or `https_cert_file`/`https_key_file`),
//! and an optional plain listener (`http_redirect_listen`) answering every request with a
//! redirect to HTTPS. Each TLS connection gets the peer address as axum's `ConnectInfo`.
//! Both stop accepting when the token is cancelled; open connections finish their request.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{ApiState, router};

/// Serves the API over HTTPS on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    config: Arc<rustls::ServerConfig>,
    limits: crate::conn::HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // The same limits as plain HTTP; the header timeout also bounds the TLS handshake.
    let connections = crate::conn::Connections::new(limits.timeouts);
    let app = super::limited(router(state), limits, &connections);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (stream, addr) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "Accepting an HTTPS connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        let stream = connections.guard(stream, addr);
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%error, peer = %addr, "HTTPS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(addr));
                    app.clone().oneshot(request.map(axum::body::Body::new))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Answers every plain-HTTP request with a permanent redirect to `https_port`.
pub async fn redirect(
    listener: tokio::net::TcpListener,
    https_port: u16,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
        to_https(&headers, &uri, https_port)
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn to_https(headers: &HeaderMap, uri: &Uri, port: u16) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            // Drop the port (also for `[::1]:8080`).
            match h.rsplit_once(':') {
                Some((name, p)) if p.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
                _ => h.to_owned(),
            }
        })
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
        });
    let Some(host) = host else {
        return (
            StatusCode::BAD_REQUEST,
            "a Host header is needed for the redirect to HTTPS",
        )
            .into_response();
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_keeps_host_and_path_and_refuses_a_strange_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "caretaker.school:8080".parse().unwrap());
        let uri: Uri = "/assets?x=1".parse().unwrap();
        let response = to_https(&headers, &uri, 8443);
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://caretaker.school:8443/assets?x=1"
        );
        headers.insert(header::HOST, "evil.example/\"><".parse().unwrap());
        assert_eq!(
            to_https(&headers, &uri, 8443).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
