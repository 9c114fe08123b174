//! `caretaker-collector export assets|incidents|changes|software [--out F]` and
//! `caretaker-collector import assets FILE [--dry-run]`: CSV through the running daemon's
//! API (see `cli_api`), so every import is one register job like the dashboard's.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use crate::cli_api::{failure, load, request_bytes, unavailable};

pub fn export(config_path: &Path, what: &str, out: Option<&Path>) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match request_bytes(
        &config,
        "GET",
        &format!("/api/v1/export/{what}.csv"),
        "text/plain",
        b"",
    ) {
        Ok((200, body)) => {
            let written = match out {
                Some(path) => std::fs::write(path, &body),
                None => std::io::stdout().write_all(&body),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("caretaker-collector: writing the export failed: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Ok((status, body)) => failure(status, &String::from_utf8_lossy(&body)),
        Err(error) => unavailable(&config, &error),
    }
}

pub fn import(config_path: &Path, file: &Path, dry_run: bool) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let size = std::fs::metadata(file).map(|m| m.len());
    match size {
        Ok(size) if size > caretaker_collector::csv::MAX_IMPORT_BYTES as u64 => {
            eprintln!(
                "caretaker-collector: {} is {} MiB; the collector imports at most {} MiB at once: split it",
                file.display(),
                size / (1024 * 1024),
                caretaker_collector::csv::MAX_IMPORT_BYTES / (1024 * 1024)
            );
            return ExitCode::from(65);
        }
        Ok(_) => {}
        Err(error) => {
            eprintln!("caretaker-collector: {}: {error}", file.display());
            return ExitCode::from(66);
        }
    }
    let body = match std::fs::read(file) {
        Ok(body) => body,
        Err(error) => {
            eprintln!("caretaker-collector: {}: {error}", file.display());
            return ExitCode::from(66);
        }
    };
    let path = format!("/api/v1/import/assets?dry_run={dry_run}");
    match request_bytes(&config, "POST", &path, "text/csv", &body) {
        Ok((200, body)) => {
            let report: Value = serde_json::from_slice(&body).unwrap_or_default();
            for row in report["rows"].as_array().into_iter().flatten() {
                let action = row["action"].as_str().unwrap_or_default();
                println!(
                    "row {:<5} {:<9} {}",
                    row["row"],
                    action,
                    row["asset_id"].as_str().unwrap_or_default()
                );
                for change in row["changes"].as_array().into_iter().flatten() {
                    println!(
                        "            {}: {:?} -> {:?}",
                        change["field"].as_str().unwrap_or_default(),
                        change["before"].as_str().unwrap_or_default(),
                        change["after"].as_str().unwrap_or_default()
                    );
                }
            }
            let t = &report["totals"];
            println!(
                "{} {} rows: {} created, {} changed, {} unchanged",
                if dry_run { "Would import" } else { "Imported" },
                t["rows"],
                t["created"],
                t["changed"],
                t["unchanged"]
            );
            ExitCode::SUCCESS
        }
        Ok((422, body)) => {
            let report: Value = serde_json::from_slice(&body).unwrap_or_default();
            eprintln!("caretaker-collector: nothing was imported:");
            for line in report["messages"].as_array().into_iter().flatten() {
                eprintln!("  {}", line.as_str().unwrap_or_default());
            }
            ExitCode::from(65)
        }
        Ok((status, body)) => failure(status, &String::from_utf8_lossy(&body)),
        Err(error) => unavailable(&config, &error),
    }
}
