//! The vendored static files (htmx 2.0.4, the stylesheet), embedded in the binary: a school
//! server may have no internet, so nothing is loaded from a CDN.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Files;

pub async fn serve(Path(file): Path<String>) -> Response {
    let Some(content) = Files::get(&file) else {
        return super::pages::error_page(StatusCode::NOT_FOUND, "There is no such file.");
    };
    let mime = match file.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            // Names do not carry versions; an hour keeps reloads cheap and updates visible.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        content.data.into_owned(),
    )
        .into_response()
}
