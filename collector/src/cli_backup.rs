//! `backup --to FILE` and `restore --from FILE --data-dir DIR`.
//!
//! `backup` asks the running collector for a point-in-time snapshot (`POST /api/v1/backup`,
//! streamed, never held in memory whole) and writes it — encrypted when a passphrase file is
//! given or `[backup] passphrase_file` is set — to `FILE.partial`, syncs it, reads it back
//! to check it, and renames it. With no collector running it reads the store itself.
//! `restore` needs no collector and no config (`backup::restore` says what it checks).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use caretaker_collector::backup::{self, BackupError, Passphrase};
use caretaker_collector::config::Config;

fn fail(error: &BackupError) -> ExitCode {
    eprintln!("caretaker-collector: {error}");
    ExitCode::from(error.exit_code())
}

fn passphrase(
    explicit: Option<&Path>,
    config: Option<&Config>,
) -> Result<Option<Passphrase>, BackupError> {
    let configured = config
        .and_then(|c| c.backup.as_ref())
        .and_then(|b| b.passphrase_file.as_deref());
    explicit.or(configured).map(Passphrase::read).transpose()
}

pub fn backup(config_path: &Path, to: &Path, passphrase_file: Option<&Path>) -> ExitCode {
    let config = match crate::cli_api::load(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let passphrase = match passphrase(passphrase_file, Some(&config)) {
        Ok(p) => p,
        Err(error) => return fail(&error),
    };
    let encrypted = if passphrase.is_some() {
        ", encrypted"
    } else {
        ""
    };
    match stream_from_daemon(&config) {
        Ok(Ok(body)) => match backup::save_stream(body, to, passphrase.as_ref()) {
            Ok(header) => {
                let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
                println!(
                    "Backup of the running collector written to {} ({bytes} bytes{encrypted}, taken {})",
                    to.display(),
                    header.created_at
                );
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
        Ok(Err(code)) => code,
        Err(error) if daemon_absent(&error) => {
            let skip: Vec<PathBuf> = config
                .backup
                .iter()
                .map(|b| b.dir(&config.data_dir))
                .collect();
            match backup::write_offline(&config.data_dir, &skip, to, passphrase.as_ref()) {
                Ok(summary) => {
                    println!(
                        "No collector running: backup of {} written to {} ({} records, {} files, {} bytes{encrypted})",
                        config.data_dir.display(),
                        to.display(),
                        summary.records,
                        summary.files,
                        summary.bytes
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
        Err(error) => crate::cli_api::unavailable(&config, &error),
    }
}

fn daemon_absent(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
    )
}

/// `POST /api/v1/backup`; the body as a reader of exactly its length, or the exit code of a
/// refusal (already printed).
fn stream_from_daemon(config: &Config) -> std::io::Result<Result<impl Read, ExitCode>> {
    let addr = crate::cli_api::api_addr(config);
    let token = crate::cli_api::token(config)?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    write!(
        stream,
        "POST /api/v1/backup HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream);
    let mut status = 0u16;
    let mut length: Option<u64> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the collector closed the connection",
            ));
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        if status == 0 {
            status = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        } else if let Some((name, value)) = text.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
    if status != 200 {
        let mut body = String::new();
        let _ = reader.take(64 * 1024).read_to_string(&mut body);
        return Ok(Err(crate::cli_api::failure(status, &body)));
    }
    let length = length.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the backup answer has no length",
        )
    })?;
    Ok(Ok(reader.take(length)))
}

pub fn restore(
    from: &Path,
    data_dir: Option<PathBuf>,
    config_path: Option<&Path>,
    passphrase_file: Option<&Path>,
) -> ExitCode {
    let config = match config_path.map(crate::cli_api::load).transpose() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Some(data_dir) = data_dir.or_else(|| config.as_ref().map(|c| c.data_dir.clone())) else {
        eprintln!(
            "caretaker-collector: restore needs --data-dir DIR (or --config naming data_dir)"
        );
        return ExitCode::from(2);
    };
    let passphrase = match passphrase(passphrase_file, config.as_ref()) {
        Ok(p) => p,
        Err(error) => return fail(&error),
    };
    match backup::restore(from, &data_dir, passphrase.as_ref()) {
        Ok(summary) => {
            println!(
                "Restored {} into {} ({} store records in {} trees, {} files); start the collector \
                 with data_dir = {:?}",
                from.display(),
                data_dir.display(),
                summary.records,
                summary.trees,
                summary.files,
                data_dir.display().to_string()
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}
