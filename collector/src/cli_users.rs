//! `caretaker-collector user add|list|disable|passwd`: the dashboard's accounts, managed
//! through the running daemon's JSON API (see `cli_api`), which stores them through the
//! register writer. Passwords come from `--password-file` or standard input (first line).

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli_api::{failure, load, request, unavailable};

/// The first line of `file`, or of standard input when `file` is `None`.
fn read_password(file: Option<&Path>) -> Result<String, ExitCode> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|error| {
            eprintln!(
                "caretaker-collector: cannot read {}: {error}",
                path.display()
            );
            ExitCode::from(74)
        })?,
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("New password (shown as you type): ");
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|error| {
                    eprintln!("caretaker-collector: cannot read the password: {error}");
                    ExitCode::from(74)
                })?;
            line
        }
    };
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        eprintln!("caretaker-collector: the password is empty");
        return Err(ExitCode::from(2));
    }
    Ok(password)
}

pub fn add(config_path: &Path, name: &str, role: &str, password_file: Option<&Path>) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let password = match password_file.map(|f| read_password(Some(f))).transpose() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let body = json!({"name": name, "role": role, "password": password}).to_string();
    match request(&config, "POST", "/api/v1/users", Some(&body)) {
        Ok((200, body)) => {
            let reply: Value = serde_json::from_str(&body).unwrap_or_default();
            println!("Added {name} ({role}).");
            if let Some(link) = reply["setup_link"].as_str() {
                let link = if link.starts_with('/') {
                    format!("http://{}{link}", crate::cli_api::api_addr(&config))
                } else {
                    link.to_owned()
                };
                println!("One-time link to set the password (valid 24 hours): {link}");
            }
            ExitCode::SUCCESS
        }
        Ok((status, body)) => failure(status, &body),
        Err(error) => unavailable(&config, &error),
    }
}

pub fn list(config_path: &Path) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match request(&config, "GET", "/api/v1/users", None) {
        Ok((200, body)) => {
            let users: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
            if users.is_empty() {
                println!("No users.");
            }
            for u in &users {
                println!(
                    "{:<24} {:<11} {}{}",
                    u["name"].as_str().unwrap_or_default(),
                    u["role"].as_str().unwrap_or_default(),
                    if u["disabled"].as_bool() == Some(true) {
                        "disabled"
                    } else {
                        "active"
                    },
                    if u["has_password"].as_bool() == Some(true) {
                        ""
                    } else {
                        ", no password yet"
                    },
                );
            }
            ExitCode::SUCCESS
        }
        Ok((status, body)) => failure(status, &body),
        Err(error) => unavailable(&config, &error),
    }
}

pub fn disable(config_path: &Path, name: &str) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match request(
        &config,
        "POST",
        &format!("/api/v1/users/{name}/disable"),
        Some(""),
    ) {
        Ok((200, _)) => {
            println!("Disabled {name}; their sessions are ended.");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => failure(status, &body),
        Err(error) => unavailable(&config, &error),
    }
}

pub fn passwd(config_path: &Path, name: &str, password_file: Option<&Path>) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let password = match read_password(password_file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let body = json!({ "password": password }).to_string();
    match request(
        &config,
        "POST",
        &format!("/api/v1/users/{name}/password"),
        Some(&body),
    ) {
        Ok((200, _)) => {
            println!("Password of {name} changed; their other sessions are ended.");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => failure(status, &body),
        Err(error) => unavailable(&config, &error),
    }
}
