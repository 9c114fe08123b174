//! `caretaker-collector report monthly [--month YYYY-MM] (--out F.pdf | --json)`: the
//! running daemon builds the report (`GET /api/v1/reports/monthly`, the config in force),
//! this side renders the PDF from that model with the same `sla::pdf` the dashboard uses.
//! Also the hidden `seed-sla` command for the end-to-end test.

use std::path::Path;
use std::process::ExitCode;

use caretaker_collector::sla::report::{Month, MonthlyReport};

pub fn run(
    config: Option<&Path>,
    kind: &str,
    month: Option<&str>,
    out: Option<&Path>,
    json: bool,
) -> ExitCode {
    let Some(config) = config else {
        eprintln!("caretaker-collector: report needs --config (or CARETAKER_CONFIG)");
        return ExitCode::from(2);
    };
    if kind != "monthly" {
        eprintln!("caretaker-collector: unknown report {kind:?}; the one report is `monthly`");
        return ExitCode::from(2);
    }
    if let Some(m) = month
        && let Err(message) = Month::parse(m)
    {
        eprintln!("caretaker-collector: {message}");
        return ExitCode::from(2);
    }
    if out.is_none() && !json {
        eprintln!("caretaker-collector: give --out FILE.pdf or --json");
        return ExitCode::from(2);
    }
    let config = match crate::cli_api::load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let path = format!("/api/v1/reports/monthly?month={}", month.unwrap_or(""));
    let (status, body) = match crate::cli_api::request(&config, "GET", &path, None) {
        Ok(r) => r,
        Err(error) => return crate::cli_api::unavailable(&config, &error),
    };
    if status != 200 {
        return crate::cli_api::failure(status, &body);
    }
    let report: MonthlyReport = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(error) => {
            eprintln!("caretaker-collector: the collector's report could not be read: {error}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{body}");
    }
    if let Some(out) = out {
        let pdf = caretaker_collector::sla::pdf::render(&report);
        if let Err(error) = std::fs::write(out, &pdf) {
            eprintln!(
                "caretaker-collector: cannot write {}: {error}",
                out.display()
            );
            return ExitCode::from(74);
        }
        eprintln!(
            "Wrote the {} report to {} ({} bytes)",
            report.title,
            out.display(),
            pdf.len()
        );
    }
    ExitCode::SUCCESS
}

pub fn seed(data_dir: &Path, month: &str) -> ExitCode {
    let month = match Month::parse(month) {
        Ok(m) => m,
        Err(message) => {
            eprintln!("caretaker-collector: {message}");
            return ExitCode::from(2);
        }
    };
    let store = match caretaker_collector::store::SledStore::open(&data_dir.join("store")) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("caretaker-collector: {error}");
            return ExitCode::from(74);
        }
    };
    match caretaker_collector::sla::seed::seed(&store, month, time::OffsetDateTime::now_utc()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("caretaker-collector: {error}");
            ExitCode::from(74)
        }
    }
}
