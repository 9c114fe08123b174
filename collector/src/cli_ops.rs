//! `reload` (and, below it, `doctor`): operations commands that talk to the running collector.

use std::path::Path;
use std::process::ExitCode;

/// Checks the file here first (so a bad one is reported with file:line and exit 78 even
/// before the daemon sees it), then asks the daemon to reload it.
pub fn reload(config_path: &Path) -> ExitCode {
    let config = match crate::cli_api::load(config_path) {
        Ok(config) => config,
        Err(code) => {
            eprintln!("caretaker-collector: not reloaded; the running collector keeps its config");
            return code;
        }
    };
    match crate::cli_api::request(&config, "POST", "/api/v1/reload", None) {
        Ok((200, body)) => {
            let outcome: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let list = |key: &str| {
                outcome[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let applied = list("applied");
            println!(
                "Reloaded {}: {}",
                config_path.display(),
                if applied.is_empty() {
                    "nothing changed".to_owned()
                } else {
                    format!("now in force: {applied}")
                }
            );
            let restart = list("restart_needed");
            if !restart.is_empty() {
                println!("Changed but only after a restart: {restart}");
            }
            ExitCode::SUCCESS
        }
        Ok((400, body)) => {
            crate::cli_api::failure(400, &body);
            ExitCode::from(78)
        }
        Ok((status, body)) => crate::cli_api::failure(status, &body),
        Err(error) => crate::cli_api::unavailable(&config, &error),
    }
}
