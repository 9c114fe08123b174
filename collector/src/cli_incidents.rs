//! `caretaker-collector incidents` and `incident ACTION ID`: the service desk from a terminal,
//! talking to the running daemon's JSON API (see `cli_api`).

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use crate::cli_api::{failure, load, request, unavailable};

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
