//! `token create|list|revoke`, `agent revoke ID` and `ca show|rotate [--finish]`: the running
//! daemon's PKI from a terminal, through its JSON API (see `cli_api`).

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli_api::{failure, load, request, unavailable};

fn call(
    config_path: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, ExitCode> {
    let config = load(config_path)?;
    let body = body.map(|b| b.to_string());
    match request(&config, method, path, body.as_deref()) {
        Ok((200, text)) => Ok(serde_json::from_str(&text).unwrap_or(Value::Null)),
        Ok((status, text)) => Err(failure(status, &text)),
        Err(error) => Err(unavailable(&config, &error)),
    }
}

fn done(result: Result<Value, ExitCode>, print: impl FnOnce(&Value)) -> ExitCode {
    match result {
        Ok(value) => {
            print(&value);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn token_line(t: &Value) -> String {
    let uses = match t["max_uses"].as_u64() {
        Some(max) => format!("{}/{max}", t["used"]),
        None => format!("{}/any", t["used"]),
    };
    format!(
        "{:<14} {:<8} uses {:<9} expires {:<22} {}",
        t["id"].as_str().unwrap_or_default(),
        t["state"].as_str().unwrap_or_default(),
        uses,
        t["expires_at"].as_str().unwrap_or("never"),
        t["label"].as_str().unwrap_or_default()
    )
}

pub fn token_create(
    config: &Path,
    uses: Option<u32>,
    expires: Option<String>,
    label: Option<String>,
) -> ExitCode {
    let body = json!({"uses": uses, "expires": expires, "label": label.unwrap_or_default()});
    done(call(config, "POST", "/api/v1/tokens", Some(body)), |t| {
        eprintln!("{}", token_line(t));
        eprintln!("Give this token to the agents (it is shown only once):");
        println!("{}", t["token"].as_str().unwrap_or_default());
    })
}

pub fn token_list(config: &Path, json: bool) -> ExitCode {
    done(call(config, "GET", "/api/v1/tokens", None), |list| {
        if json {
            println!("{list}");
            return;
        }
        let list = list.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("No enrolment tokens.");
        }
        for t in &list {
            println!("{}", token_line(t));
        }
    })
}

pub fn token_revoke(config: &Path, id: &str) -> ExitCode {
    done(
        call(config, "POST", &format!("/api/v1/tokens/{id}/revoke"), None),
        |t| println!("Revoked: {}", token_line(t)),
    )
}

pub fn agent_revoke(config: &Path, id: &str) -> ExitCode {
    done(
        call(config, "POST", &format!("/api/v1/agents/{id}/revoke"), None),
        |v| {
            println!(
                "Agent {id} revoked ({} certificate(s)); its next call is refused.",
                v["certificates"]
            )
        },
    )
}

pub fn ca_show(config: &Path) -> ExitCode {
    done(call(config, "GET", "/api/v1/ca", None), |v| {
        for ca in v["cas"].as_array().cloned().unwrap_or_default() {
            println!(
                "{}  expires {}  {}",
                ca["fingerprint"].as_str().unwrap_or_default(),
                ca["not_after"].as_str().unwrap_or_default(),
                ca["subject"].as_str().unwrap_or_default()
            );
        }
        if v["rotating"].as_bool() == Some(true) {
            println!("A rotation is under way (the second CA is the old one, still trusted).");
        }
    })
}

pub fn ca_rotate(config: &Path, finish: bool) -> ExitCode {
    done(
        call(
            config,
            "POST",
            "/api/v1/ca/rotate",
            Some(json!({"finish": finish})),
        ),
        |v| {
            let fp = v["fingerprint"].as_str().unwrap_or_default();
            if finish {
                println!("Rotation finished: only CA {fp} is trusted now.");
            } else {
                println!(
                    "New CA {fp}. Agents move to it at their next contact; both CAs are trusted \
                     until `ca rotate --finish`. New tokens pin the new CA."
                );
            }
        },
    )
}
