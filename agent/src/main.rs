//! `caretaker-agent`: command-line parsing, logging, signals and exit codes. The work is in
//! the library (`caretaker_agent::run`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::fmt::Write as _;

use anyhow::Context;
use caretaker_agent::config::{self, ConfigError, FileConfig, LogFormat, Overrides, Secret};
use caretaker_agent::{RunError, inventory, json, logfile, platform};
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
        /// Per WMI query (Windows); a query past it marks its part missing.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        wmi_timeout: Duration,
        /// dpkg database directory (dpkg-query --admindir).
        #[arg(long)]
        dpkg_admindir: Option<PathBuf>,
    },
    /// Manage the Windows service (install, uninstall, start, stop, status).
    Service {
        #[command(subcommand)]
        action: ServiceCommand,
    },
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Install (or update) the CaretakerAgent service for this exe, started at boot as
    /// LocalSystem, with the collector and token stored where the service finds them.
    Install {
        /// Collector URL, e.g. http://server:50051 (kept in HKLM\SOFTWARE\Caretaker\Agent).
        #[arg(long)]
        collector: Option<String>,
        /// Enrolment token (prefer --enroll-token-file or the environment).
        #[arg(long, env = "CARETAKER_ENROLL_TOKEN", hide_env_values = true)]
        enroll_token: Option<String>,
        /// File holding the enrolment token.
        #[arg(long)]
        enroll_token_file: Option<PathBuf>,
    },
    /// Stop and remove the service (state in %ProgramData%\Caretaker is kept).
    Uninstall,
    /// Start the service and wait until it runs.
    Start,
    /// Stop the service and wait until it has stopped.
    Stop,
    /// Print the service's state.
    Status,
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
    #[arg(long, value_parser = humantime::parse_duration)]
    wmi_timeout: Option<Duration>,
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
            wmi_timeout,
            dpkg_admindir,
        } => {
            init_logging(LogFormat::Text, None);
            let opts = inventory::CollectOptions {
                timeout: collect_timeout,
                wmi_timeout,
                dpkg_admindir,
            };
            match print_inventory(json, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("caretaker-agent: {error:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        Command::Service { action } => service(action),
    }
}

#[cfg(windows)]
fn service(action: ServiceCommand) -> ExitCode {
    use caretaker_agent::service;
    let result = match action {
        ServiceCommand::Install {
            collector,
            enroll_token,
            enroll_token_file,
        } => {
            if let Some(c) = &collector
                && !(c.starts_with("http://") || c.starts_with("https://"))
            {
                eprintln!(
                    "caretaker-agent: collector `{c}` must be a URL like http://server:50051"
                );
                return ExitCode::from(EXIT_USAGE);
            }
            let token = match (enroll_token, enroll_token_file) {
                (Some(t), _) => Some(Secret::new(t)),
                (None, Some(path)) => match std::fs::read_to_string(&path) {
                    Ok(t) if !t.trim().is_empty() => Some(Secret::new(t.trim())),
                    Ok(_) => {
                        eprintln!("caretaker-agent: {} is empty", path.display());
                        return ExitCode::from(EXIT_USAGE);
                    }
                    Err(e) => {
                        eprintln!("caretaker-agent: {}: {e}", path.display());
                        return ExitCode::from(EXIT_USAGE);
                    }
                },
                (None, None) => None,
            };
            match std::env::current_exe() {
                Ok(exe) => service::install(&exe, collector.as_deref(), token.as_ref()).map(|()| {
                    format!(
                        "Installed the {} service for {}",
                        service::SERVICE_NAME,
                        exe.display()
                    )
                }),
                Err(e) => {
                    eprintln!("caretaker-agent: cannot find this program's path: {e}");
                    return ExitCode::from(EXIT_RUNTIME);
                }
            }
        }
        ServiceCommand::Uninstall => service::uninstall().map(|()| "Service removed".to_owned()),
        ServiceCommand::Start => service::start().map(|()| "Service running".to_owned()),
        ServiceCommand::Stop => service::stop().map(|()| "Service stopped".to_owned()),
        ServiceCommand::Status => service::state().map(|s| format!("{s:?}")),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("caretaker-agent: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

#[cfg(not(windows))]
fn service(_action: ServiceCommand) -> ExitCode {
    eprintln!(
        "caretaker-agent: `service` manages the Windows service; on Linux use the systemd unit \
         (deploy/caretaker-agent.service)"
    );
    ExitCode::from(EXIT_USAGE)
}

/// A resolved `run` config, or the lines to report and the exit code.
type Resolved = Result<config::Config, (Vec<String>, u8)>;

fn resolve(args: RunArgs) -> Resolved {
    let machine = platform::machine_defaults();
    // An explicit --config must exist; the machine's default one only if present.
    let config_path = args.config.clone().or_else(|| machine.config_file.clone());
    let file = match &config_path {
        Some(path) => match config::read_file(path) {
            Ok(f) => f,
            Err(e) => return Err((vec![e.to_string()], EXIT_CONFIG)),
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
        wmi_timeout: args.wmi_timeout,
        journal_max_bytes: args.journal_max_bytes,
        dpkg_admindir: args.dpkg_admindir,
        log_format: args.log_format,
    };
    match config::resolve_with(file, overrides, machine) {
        Ok(c) => Ok(c),
        Err(ConfigError::Invalid(errors)) => {
            let origin = config_path
                .as_ref()
                .map_or_else(|| "caretaker-agent".to_owned(), |p| p.display().to_string());
            // Without a config file, a missing value is a usage error.
            let code = if config_path.is_some() {
                EXIT_CONFIG
            } else {
                EXIT_USAGE
            };
            Err((
                errors.iter().map(|e| format!("{origin}: {e}")).collect(),
                code,
            ))
        }
        Err(e) => Err((vec![e.to_string()], EXIT_CONFIG)),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let resolved = resolve(args);
    #[cfg(windows)]
    {
        use caretaker_agent::service::{self, Dispatch};
        let work = Box::new(move |shutdown| agent(resolved, shutdown, true));
        // Offered to the SCM first; a console start comes straight back.
        match service::dispatch(work) {
            Dispatch::Ran(code) => ExitCode::from(code),
            Dispatch::Console(work) => ExitCode::from(work(CancellationToken::new())),
        }
    }
    #[cfg(not(windows))]
    ExitCode::from(agent(resolved, CancellationToken::new(), false))
}

/// Runs the agent until `shutdown` (service Stop) or Ctrl-C / SIGTERM; returns the exit code.
/// Under the service manager (`in_service` and the SCM really started us) logs go to
/// `<state_dir>/logs`, as nobody reads stderr there.
fn agent(resolved: Resolved, shutdown: CancellationToken, in_service: bool) -> u8 {
    let as_service = in_service && caretaker_agent::running_as_service();
    let config = match resolved {
        Ok(c) => c,
        Err((lines, code)) => {
            if as_service {
                let dir = platform::machine_defaults()
                    .state_dir
                    .unwrap_or_else(|| PathBuf::from("."));
                init_logging(LogFormat::Text, Some(&dir.join("logs")));
                for l in &lines {
                    tracing::error!(problem = %l, "Bad configuration; the service stops");
                }
            } else {
                for l in &lines {
                    eprintln!("{l}");
                }
            }
            return code;
        }
    };
    let log_dir = config.state_dir.join("logs");
    init_logging(config.log_format, as_service.then_some(log_dir.as_path()));

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "Cannot start the async runtime");
            return EXIT_RUNTIME;
        }
    };
    let result = runtime.block_on(async {
        // One shutdown path: the SCM's Stop and Ctrl-C / SIGTERM cancel the same token.
        tokio::spawn(wait_for_signal(shutdown.clone()));
        caretaker_agent::run(config, shutdown).await
    });
    match result {
        Ok(()) => 0,
        Err(error @ RunError::Unavailable { .. }) => {
            tracing::error!(error = %anyhow::Error::from(error), "Giving up for now");
            EXIT_UNAVAILABLE
        }
        Err(error) => {
            tracing::error!(error = %format!("{:#}", anyhow::Error::from(error)), "Agent failed");
            EXIT_RUNTIME
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

/// Logs to stderr, or to a rolling file in `dir` (10 MiB × 5) for the service.
fn init_logging(format: LogFormat, dir: Option<&std::path::Path>) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter =
        EnvFilter::try_from_env("CARETAKER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let file = dir.and_then(|d| match logfile::RollingFile::open(d, 10 << 20, 4) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!(
                "caretaker-agent: cannot open a log file in {}: {e}",
                d.display()
            );
            None
        }
    });
    let (writer, ansi) = match file {
        Some(f) => (BoxMakeWriter::new(f), false),
        // Colour only on a terminal: log files and pipes get plain text.
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn print_inventory(as_json: bool, opts: inventory::CollectOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
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
        match (sys.domain.is_empty(), sys.domain_type.as_str()) {
            (true, _) => String::new(),
            (false, "") => format!(" ({})", sys.domain),
            (false, kind) => format!(" ({kind} {})", sys.domain),
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
    for a in &inv.antivirus {
        writeln!(
            out,
            "Antivirus: {} ({}, {})",
            a.name,
            if a.enabled { "on" } else { "off" },
            if a.up_to_date {
                "up to date"
            } else {
                "out of date"
            }
        )?;
    }
    for f in &inv.firewalls {
        writeln!(
            out,
            "Firewall:  {}{} {}",
            f.name,
            if f.profile.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.profile)
            },
            if f.enabled { "on" } else { "off" }
        )?;
    }
    for e in &inv.encryption {
        writeln!(
            out,
            "Encrypted: {} {} protection {} {}",
            e.mount, e.method, e.protection, e.conversion
        )?;
    }
    for b in &inv.batteries {
        writeln!(
            out,
            "Battery:   {} {} health {} % ({} cycles)",
            b.name, b.chemistry, b.health_percent, b.cycle_count
        )?;
    }
    if !inv.hotfixes.is_empty() {
        writeln!(out, "Hotfixes:  {}", inv.hotfixes.len())?;
    }
    if let Some(t) = &sys.last_update_at {
        writeln!(
            out,
            "Updated:   {}",
            json::ts(Some(t)).as_str().unwrap_or_default()
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
