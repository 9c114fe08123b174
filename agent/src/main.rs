//! `caretaker-agent`: command-line parsing, logging, signals and exit codes. The work is in
//! the library (`caretaker_agent::run`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::fmt::Write as _;

use anyhow::Context;
use caretaker_agent::config::{self, ConfigError, FileConfig, LogFormat, Overrides, Secret};
use caretaker_agent::{RunError, inventory, json};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNAVAILABLE: u8 = 69;
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "caretaker-agent",
    version,
    about = "Caretaker agent: reports this PC's inventory and status to the collector"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (until stopped, or one round with --once).
    Run(Box<RunArgs>),
    /// Print this machine's inventory and send nothing.
    Inventory {
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
        /// Per-source timeout.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        collect_timeout: Duration,
        /// dpkg database directory (dpkg-query --admindir).
        #[arg(long)]
        dpkg_admindir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// TOML config file; flags override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Collector URL, e.g. http://server:50051.
    #[arg(long)]
    collector: Option<String>,
    /// Enrolment token (prefer --enroll-token-file or the environment).
    #[arg(long, env = "CARETAKER_ENROLL_TOKEN", hide_env_values = true)]
    enroll_token: Option<String>,
    /// File holding the enrolment token.
    #[arg(long)]
    enroll_token_file: Option<PathBuf>,
    /// Directory for the identity and the journal.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Collect once, deliver everything pending, and exit.
    #[arg(long)]
    once: bool,
    #[arg(long, value_parser = humantime::parse_duration)]
    status_interval: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration)]
    heartbeat_interval: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration)]
    inventory_interval: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration)]
    collect_timeout: Option<Duration>,
    #[arg(long)]
    journal_max_bytes: Option<u64>,
    #[arg(long)]
    dpkg_admindir: Option<PathBuf>,
    /// text or json
    #[arg(long)]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Inventory {
            json,
            collect_timeout,
            dpkg_admindir,
        } => {
            init_logging(LogFormat::Text);
            match print_inventory(json, collect_timeout, dpkg_admindir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("caretaker-agent: {error:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let file = match &args.config {
        Some(path) => match config::read_file(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => FileConfig::default(),
    };
    let overrides = Overrides {
        collector: args.collector,
        enroll_token: args.enroll_token.map(Secret::new),
        enroll_token_file: args.enroll_token_file,
        state_dir: args.state_dir,
        once: args.once,
        status_interval: args.status_interval,
        heartbeat_interval: args.heartbeat_interval,
        inventory_interval: args.inventory_interval,
        collect_timeout: args.collect_timeout,
        journal_max_bytes: args.journal_max_bytes,
        dpkg_admindir: args.dpkg_admindir,
        log_format: args.log_format,
    };
    let config = match config::resolve(file, overrides) {
        Ok(c) => c,
        Err(ConfigError::Invalid(errors)) => {
            let origin = args
                .config
                .as_ref()
                .map_or_else(|| "caretaker-agent".to_owned(), |p| p.display().to_string());
            for e in &errors {
                eprintln!("{origin}: {e}");
            }
            // Without a config file, a missing value is a usage error.
            let code = if args.config.is_some() {
                EXIT_CONFIG
            } else {
                EXIT_USAGE
            };
            return ExitCode::from(code);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(config.log_format);

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "Cannot start the async runtime");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        tokio::spawn(wait_for_signal(shutdown.clone()));
        caretaker_agent::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ RunError::Unavailable { .. }) => {
            tracing::error!(error = %anyhow::Error::from(error), "Giving up for now");
            ExitCode::from(EXIT_UNAVAILABLE)
        }
        Err(error) => {
            tracing::error!(error = %format!("{:#}", anyhow::Error::from(error)), "Agent failed");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// SIGINT / SIGTERM (Ctrl-C / Ctrl-Break on Windows) cancel the root token.
async fn wait_for_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                    () = shutdown.cancelled() => return,
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; Ctrl-C only");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = shutdown.cancelled() => return,
    }
    tracing::info!("Stop requested");
    shutdown.cancel();
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("CARETAKER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: log files and pipes get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn print_inventory(
    as_json: bool,
    timeout: Duration,
    dpkg_admindir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let opts = inventory::CollectOptions {
        timeout,
        dpkg_admindir,
    };
    let report = runtime.block_on(inventory::collect(&opts));
    let mut out = String::new();
    if as_json {
        let text = serde_json::to_string_pretty(&json::report(&report))?;
        writeln!(out, "{text}")?;
        return write_stdout(&out);
    }
    let Some(caretaker_proto::v1::report::Body::Inventory(inv)) = &report.body else {
        anyhow::bail!("collection returned no inventory");
    };
    let sys = inv.system.clone().unwrap_or_default();
    let hw = inv.hardware.clone().unwrap_or_default();
    writeln!(
        out,
        "Host:      {}{}",
        sys.hostname,
        if sys.domain.is_empty() {
            String::new()
        } else {
            format!(" ({})", sys.domain)
        }
    )?;
    writeln!(
        out,
        "OS:        {} {} ({}), kernel {}, {}",
        sys.os_name, sys.os_version, sys.os_build, sys.kernel, sys.arch
    )?;
    writeln!(
        out,
        "Hardware:  {} {} serial {:?} uuid {:?} chassis {:?}",
        hw.vendor, hw.model, hw.serial, hw.smbios_uuid, hw.chassis
    )?;
    writeln!(
        out,
        "CPU:       {} ({} cores, {} threads)",
        hw.cpu_model, hw.cpu_cores, hw.cpu_threads
    )?;
    writeln!(
        out,
        "RAM:       {:.1} GiB",
        hw.ram_bytes as f64 / (1u64 << 30) as f64
    )?;
    for d in &inv.disks {
        writeln!(
            out,
            "Disk:      {} {} {:.1} GB {}{}",
            d.name,
            d.model,
            d.size_bytes as f64 / 1e9,
            d.kind,
            if d.removable { " removable" } else { "" }
        )?;
    }
    for v in &inv.volumes {
        writeln!(
            out,
            "Volume:    {} ({}, {}) {:.1}/{:.1} GB free",
            v.mount,
            v.device,
            v.file_system,
            v.free_bytes as f64 / 1e9,
            v.total_bytes as f64 / 1e9
        )?;
    }
    for n in &inv.interfaces {
        writeln!(
            out,
            "Interface: {} {} {} {}{}",
            n.name,
            if n.mac.is_empty() { "-" } else { &n.mac },
            n.ipv4
                .iter()
                .chain(&n.ipv6)
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            if n.up { "up" } else { "down" },
            if n.r#virtual { " virtual" } else { "" }
        )?;
    }
    writeln!(out, "Software:  {} packages", inv.software.len())?;
    if !report.missing.is_empty() {
        writeln!(out, "Missing:   {}", report.missing.join(", "))?;
    }
    write_stdout(&out)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
