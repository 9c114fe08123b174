//! `caretaker-collector incidents` and `incident ACTION ID`: the service desk from a terminal,
//! talking to the running daemon's JSON API (address and token from its config).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use caretaker_collector::config::{self, Config};
use serde_json::Value;

const EX_UNAVAILABLE: u8 = 69;

pub fn list(config_path: &Path, status: &str, json: bool) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match request(
        &config,
        "GET",
        &format!("/api/v1/incidents?status={status}"),
        None,
    ) {
        Ok((200, body)) if json => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((200, body)) => {
            let list: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
            if list.is_empty() {
                println!("No {status} incidents.");
            }
            for i in &list {
                println!(
                    "{}  P{}  {:<11}  {}  {}",
                    i["number"].as_str().unwrap_or_default(),
                    i["priority"],
                    i["state"].as_str().unwrap_or_default(),
                    i["opened_at"].as_str().unwrap_or_default(),
                    i["title"].as_str().unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Ok((status, body)) => failure(status, &body),
        Err(error) => unavailable(&config, &error),
    }
}

pub fn act(config_path: &Path, action: &str, id: &str, text: Option<String>, by: &str) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if action == "note" && text.is_none() {
        eprintln!("caretaker-collector: a note needs --text");
        return ExitCode::from(2);
    }
    let (method, path, body) = match action {
        "show" => ("GET", format!("/api/v1/incidents/{id}"), None),
        _ => (
            "POST",
            format!("/api/v1/incidents/{id}/{action}"),
            Some(serde_json::json!({"by": by, "text": text}).to_string()),
        ),
    };
    match request(&config, method, &path, body.as_deref()) {
        Ok((200, body)) => {
            let incident: Value = serde_json::from_str(&body).unwrap_or_default();
            println!(
                "{} is {}: {}",
                incident["number"].as_str().unwrap_or(id),
                incident["state"].as_str().unwrap_or_default(),
                incident["title"].as_str().unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok((status, body)) => failure(status, &body),
        Err(error) => unavailable(&config, &error),
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(78)
    })
}

fn failure(status: u16, body: &str) -> ExitCode {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    eprintln!("caretaker-collector: {message} (HTTP {status})");
    let _ = status;
    ExitCode::FAILURE
}

fn unavailable(config: &Config, error: &std::io::Error) -> ExitCode {
    eprintln!(
        "caretaker-collector: cannot reach the collector's API at {}: {error} (is `caretaker-collector run` running?)",
        config.http.listen
    );
    ExitCode::from(EX_UNAVAILABLE)
}

/// One HTTP/1.1 request to the daemon's API with its bearer token.
fn request(
    config: &Config,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let token_path = config
        .http
        .api_token_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("api-token"));
    let token = std::fs::read_to_string(&token_path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", token_path.display())))?;
    let mut addr = config.http.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token.trim(),
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
