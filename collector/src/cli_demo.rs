//! `caretaker-collector demo`: a collector on loopback plus an agent for this machine.
//!
//! The demo writes its config to `<dir>/collector.toml` (absolute paths) and runs on exactly
//! that file, so every other subcommand can be pointed at it with `--config`; it prints the
//! commands to do so. The agent is a child process that reads the enrolment token from the
//! collector's token file (never from its command line, where `ps` would show it) and is
//! stopped when the demo stops. A port that is already taken is reported with the flag that
//! moves it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use caretaker_collector::app::{App, AppError};
use caretaker_collector::config;
use tokio_util::sync::CancellationToken;

const EX_USAGE: u8 = 2;
const EX_UNAVAILABLE: u8 = 69;
const EX_IOERR: u8 = 74;
const EX_CONFIG: u8 = 78;

pub fn run(dir: &Path, grpc: SocketAddr, http: SocketAddr) -> ExitCode {
    if grpc == http && grpc.port() != 0 {
        eprintln!(
            "caretaker-collector: --grpc and --http are both {grpc}; give them different ports"
        );
        return ExitCode::from(EX_USAGE);
    }
    let dir = match std::path::absolute(dir) {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("caretaker-collector: {}: {error}", dir.display());
            return ExitCode::from(EX_IOERR);
        }
    };
    let config_path = dir.join("collector.toml");
    if let Err(error) = write_config(&dir, &config_path, grpc, http) {
        eprintln!(
            "caretaker-collector: cannot write {}: {error}",
            config_path.display()
        );
        return ExitCode::from(EX_IOERR);
    }
    let config = match config::load(&config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(serve(config, &dir, &config_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(AppError::Bind { addr, source }) if source.kind() == std::io::ErrorKind::AddrInUse => {
            let flag = if addr == grpc { "--grpc" } else { "--http" };
            eprintln!(
                "caretaker-collector: {addr} is in use; pass {flag} {ip}:PORT (or {ip}:0 for any free port)",
                ip = addr.ip()
            );
            ExitCode::from(EX_UNAVAILABLE)
        }
        Err(error) => {
            tracing::error!(%error, "Collector failed");
            eprintln!("caretaker-collector: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

/// The demo's whole configuration, as a file the other subcommands accept.
fn write_config(
    dir: &Path,
    path: &Path,
    grpc: SocketAddr,
    http: SocketAddr,
) -> std::io::Result<()> {
    let data_dir = dir.join("collector");
    let data = data_dir.to_str().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not valid UTF-8", data_dir.display()),
        )
    })?;
    std::fs::create_dir_all(dir)?;
    let text = format!(
        "# Written by `caretaker-collector demo` each time it starts (from its --dir, --grpc and\n\
         # --http flags). Other subcommands take it too, e.g.\n\
         #   caretaker-collector incidents --config {config}\n\
         # Tokens: {data_dir}/api-token (API, CLI) and {data_dir}/enroll-token (agents).\n\
         # Port 0 means \"any free port\"; the ports in use are in {data_dir}/listen.json.\n\
         data_dir = {data}\n\
         \n[grpc]\nlisten = \"{grpc}\"\n\
         \n[http]\nlisten = \"{http}\"\n\
         \n[agents]\nstatus_interval = \"30s\"\n",
        config = path.display(),
        data_dir = data_dir.display(),
        data = toml::Value::String(data.to_owned()),
    );
    let partial = path.with_extension("toml.partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

async fn serve(config: config::Config, dir: &Path, config_path: &Path) -> Result<(), AppError> {
    let shutdown = CancellationToken::new();
    super::spawn_signal_handler(shutdown.clone());
    let app = App::start(config, &shutdown).await?;
    let enroll_token_file = app.data_dir.join("enroll-token");
    let agent = match spawn_agent(&app, &enroll_token_file, &dir.join("agent")) {
        Ok(child) => Some(child),
        Err(error) => {
            eprintln!("Could not start the agent ({error:#}); the collector runs on its own.");
            None
        }
    };
    println!("{}", banner(&app, config_path, &enroll_token_file));
    let result = app.wait().await;
    if let Some(mut child) = agent {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    result
}

fn banner(app: &App, config_path: &Path, enroll_token_file: &Path) -> String {
    let http = reachable(app.http_addr);
    let api = format!("http://{http}/api/v1");
    let cli = shell_word(&command_path(
        &std::env::current_exe().unwrap_or_else(|_| "caretaker-collector".into()),
        "caretaker-collector",
    ));
    let config = shell_word(&relative_to_cwd(config_path));
    format!(
        "\nCaretaker demo is running (Ctrl-C to stop).\n\
         \n  Dashboard:    http://{http}/  (add a login: `{cli} user add NAME --role admin --config {config}`)\
         \n  API:          {api}\
         \n  API token:    {token}\
         \n  gRPC ingest:  {grpc}  (TLS only; agents pin the CA {fingerprint}...)\
         \n  Enrol token:  {enroll}  (more: {cli} token create --config {config})\
         \n  Config:       {config}\
         \n  Data:         {data}\n\
         \nTry:\
         \n  {cli} incidents --config {config}\
         \n  curl -s -H 'Authorization: Bearer {token}' {api}/assets\
         \n  curl -s -H 'Authorization: Bearer {token}' {api}/changes\n",
        token = app.api_token,
        grpc = reachable(app.grpc_addr),
        fingerprint = &app.pki.fingerprint()[..16],
        enroll = enroll_token_file.display(),
        data = app.data_dir.display(),
    )
}

/// An address a local client can connect to (`0.0.0.0` becomes `127.0.0.1`).
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// How to type `exe` here: its bare name when PATH finds this very file, else its path.
fn command_path(exe: &Path, name: &str) -> String {
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let candidate = dir.join(name);
            candidate.is_file()
                && std::fs::canonicalize(&candidate).ok() == std::fs::canonicalize(exe).ok()
        })
    });
    if on_path {
        name.to_owned()
    } else {
        relative_to_cwd(exe)
    }
}

/// `path` relative to the working directory when it lies below it, else as it is.
fn relative_to_cwd(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty());
    match relative {
        // A bare file name would be looked up on PATH: say it is here.
        Some(p) if p.components().count() == 1 && path.is_file() && is_executable(path) => {
            format!("./{}", p.display())
        }
        Some(p) => p.display().to_string(),
        None => path.display().to_string(),
    }
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.extension().is_some_and(|e| e == "exe")
    }
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn spawn_agent(
    app: &App,
    enroll_token_file: &Path,
    state_dir: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let agent: PathBuf =
        exe.with_file_name(format!("caretaker-agent{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        agent.exists(),
        "{} not found next to the collector; build it with `cargo build --bins`",
        agent.display()
    );
    let child = tokio::process::Command::new(&agent)
        .arg("run")
        .arg("--collector")
        .arg(format!("http://{}", reachable(app.grpc_addr)))
        .arg("--enroll-token-file")
        .arg(enroll_token_file)
        .arg("--state-dir")
        .arg(state_dir)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(
            shell_word("caretaker-demo/collector.toml"),
            "caretaker-demo/collector.toml"
        );
        assert_eq!(shell_word("/srv/my demo/c.toml"), "'/srv/my demo/c.toml'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_written_config_is_one_the_collector_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let demo = dir.path().join("with \"quotes\" and spaces");
        let path = demo.join("collector.toml");
        write_config(
            &demo,
            &path,
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        )
        .unwrap();
        let config = config::load(&path).unwrap();
        assert_eq!(config.data_dir, demo.join("collector"));
        assert_eq!(config.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.grpc.listen.port(), 0);
        assert_eq!(config.agents.status_interval.as_secs(), 30);
    }
}
