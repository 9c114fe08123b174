//! `caretaker-collector`: command-line entry point. Parses arguments, sets up logging, maps
//! failures to exit codes (0 ok, 1 runtime, 2 usage, 69 unavailable, 74 store I/O, 78 config).

use std::path::PathBuf;
use std::process::ExitCode;

use caretaker_collector::app::App;
use caretaker_collector::config::{self, Config, ConfigError};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "caretaker-collector",
    version,
    about = "Caretaker collector: asset register, discovery and incidents for a school network"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector daemon.
    Run {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or 78 with file:line:column and the reason.
    CheckConfig {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
    },
    /// Sweep CIDR ranges once (ICMP, then SNMP with --snmp) and print what answered.
    /// Works without a running daemon; sends nothing outside the given ranges.
    Scan {
        /// Ranges like 10.20.0.0/22 (IPv4).
        #[arg(required = true)]
        ranges: Vec<String>,
        /// Ask live hosts over SNMP (communities from --community or the config).
        #[arg(long)]
        snmp: bool,
        /// One JSON object per live host on stdout.
        #[arg(long)]
        json: bool,
        /// Take [scan] and [snmp] settings from this config file.
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: Option<PathBuf>,
        /// SNMP v2c community (repeatable); default "public" when the config has none.
        #[arg(long = "community")]
        communities: Vec<String>,
        /// Echo requests per second to routed addresses.
        #[arg(long)]
        rate: Option<u32>,
        /// Echo requests per second to addresses on this machine's own segments.
        #[arg(long)]
        on_link_rate: Option<u32>,
        /// Wait for each reply, e.g. 1s or 500ms.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Extra passes over silent addresses.
        #[arg(long)]
        retries: Option<u32>,
        /// TCP ports to probe on live hosts, comma separated; "" to skip.
        #[arg(long, value_parser = parse_ports)]
        ports: Option<Ports>,
        /// Skip reverse DNS.
        #[arg(long)]
        no_dns: bool,
    },
    /// Send a test email with the [smtp] settings and print exactly what the server said.
    TestEmail {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
        /// Send to this address instead of the configured recipients.
        #[arg(long)]
        to: Option<String>,
    },
    /// List incidents from the running collector.
    Incidents {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
        /// open, resolved or all.
        #[arg(long, default_value = "open")]
        status: String,
        #[arg(long)]
        json: bool,
    },
    /// Act on an incident in the running collector: ack, resolve or note.
    Incident {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
        #[arg(value_parser = ["ack", "resolve", "note", "show"])]
        action: String,
        /// The incident's number (INC0000042) or id.
        id: String,
        /// Note text (required for `note`, optional for `resolve`).
        #[arg(long)]
        text: Option<String>,
        /// Who is acting (shown in the incident's notes).
        #[arg(long, env = "USER", default_value = "technician")]
        by: String,
    },
    /// Export the register (or incidents, changes, software) as CSV from the running
    /// collector, to stdout or --out.
    Export {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
        #[arg(value_parser = ["assets", "incidents", "changes", "software"])]
        what: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import assets from a CSV file (ours or Snipe-IT's export) into the running collector:
    /// all rows or none; --dry-run shows what would change.
    Import {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
        #[arg(value_parser = ["assets"])]
        what: String,
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
    /// Dashboard accounts in the running collector: add, list, disable, passwd.
    User {
        #[arg(long, env = "CARETAKER_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Write a point-in-time backup of everything the collector keeps to FILE (from the
    /// running collector, or from the store when none runs).
    Backup {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        to: PathBuf,
        /// Encrypt with the passphrase in this file (default: [backup] passphrase_file).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Make the running collector read its config again (rules, windows, school hours, SMTP,
    /// scan ranges); a bad file keeps the old config (exit 78 with the reason).
    Reload {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
    },
    /// Check this machine for what the collector needs (raw sockets, neighbour table, disk,
    /// agents' clocks, SMTP, SNMP coverage, certificates): OK/WARN/FAIL, exit 0/1/2.
    Doctor {
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: PathBuf,
    },
    /// Restore a backup into a new or empty data directory.
    Restore {
        #[arg(long)]
        from: PathBuf,
        /// Where to restore (default: the config's data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "CARETAKER_CONFIG")]
        config: Option<PathBuf>,
        /// The passphrase of an encrypted backup.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Enrolment tokens of the running collector: create, list, revoke.
    Token {
        #[arg(long, env = "CARETAKER_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Agents of the running collector: `agent revoke ID` (takes effect at once).
    Agent {
        #[arg(long, env = "CARETAKER_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: AgentAction,
    },
    /// The collector's CA: `ca show`, `ca rotate [--finish]`.
    Ca {
        #[arg(long, env = "CARETAKER_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: CaAction,
    },
    /// The monthly service-level report from the running collector: `report monthly
    /// --month YYYY-MM --out F.pdf` (PDF), or `--json`.
    Report {
        #[arg(long, env = "CARETAKER_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// Only `monthly`.
        kind: String,
        /// `YYYY-MM`; last month when absent.
        #[arg(long)]
        month: Option<String>,
        /// Where to write the PDF.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report's figures as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Seed a known service-level month into an empty data directory (the SLA test).
    #[command(hide = true)]
    SeedSla {
        #[arg(long)]
        data_dir: PathBuf,
        /// `YYYY-MM`.
        #[arg(long)]
        month: String,
    },
    /// Fill an empty data directory with a synthetic school (for `caretaker-bench dashboard`).
    #[command(hide = true)]
    BenchSeed {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 3000)]
        assets: usize,
        #[arg(long, default_value_t = 150)]
        programs: usize,
        #[arg(long, default_value_t = 100_000)]
        incidents: usize,
        #[arg(long, default_value_t = 1_000_000)]
        changes: usize,
    },
    /// Start a collector and an agent for this machine on embedded defaults (loopback only);
    /// writes DIR/collector.toml for the other subcommands' --config.
    Demo {
        /// Where the demo keeps its store, tokens and agent state.
        #[arg(long, default_value = "caretaker-demo")]
        dir: PathBuf,
        /// Where agents connect (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:50051")]
        grpc: std::net::SocketAddr,
        /// Where the JSON API (and later the dashboard) listens (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user; without --password-file, prints a one-time link to set the password.
    Add {
        name: String,
        #[arg(long, value_parser = ["admin", "technician", "read-only"])]
        role: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    List,
    /// Disable a user and end their sessions.
    Disable {
        name: String,
    },
    /// Set a user's password (from --password-file or the first line of standard input).
    Passwd {
        name: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// A new token (printed once on stdout).
    Create {
        /// How many PCs it may enrol (default: any number).
        #[arg(long)]
        uses: Option<u32>,
        /// How long it is valid, e.g. 30d (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        label: Option<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Revoke {
        id: String,
    },
}

#[derive(Subcommand)]
enum AgentAction {
    /// Revoke an agent and its certificates.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum CaAction {
    Show,
    /// Start moving agents to a new CA (`--finish`: stop trusting the old one).
    Rotate {
        #[arg(long)]
        finish: bool,
    },
}

const EX_CONFIG: u8 = 78;

#[derive(Clone)]
struct Ports(Vec<u16>);

fn parse_ports(text: &str) -> Result<Ports, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{p:?} is not a TCP port"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Ports)
}

mod cli_api;
mod cli_backup;
mod cli_csv;
mod cli_demo;
mod cli_doctor;
mod cli_incidents;
mod cli_ops;
mod cli_pki;
mod cli_report;
mod cli_scan;
mod cli_users;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::CheckConfig { config } => match config::load(&config) {
            Ok(_) => {
                println!("{}: OK", config.display());
                ExitCode::SUCCESS
            }
            Err(error) => config_failure(&error),
        },
        Command::Run { config } => {
            let config = match config::load(&config) {
                Ok(config) => config,
                Err(error) => return config_failure(&error),
            };
            run_async(async move {
                let shutdown = CancellationToken::new();
                spawn_signal_handler(shutdown.clone());
                let app = App::start(config, &shutdown).await?;
                app.wait().await
            })
        }
        Command::Backup {
            config,
            to,
            passphrase_file,
        } => cli_backup::backup(&config, &to, passphrase_file.as_deref()),
        Command::Reload { config } => cli_ops::reload(&config),
        Command::Doctor { config } => cli_doctor::run(&config),
        Command::Restore {
            from,
            data_dir,
            config,
            passphrase_file,
        } => cli_backup::restore(
            &from,
            data_dir,
            config.as_deref(),
            passphrase_file.as_deref(),
        ),
        Command::Demo { dir, grpc, http } => cli_demo::run(&dir, grpc, http),
        Command::TestEmail { config, to } => {
            let config = match config::load(&config) {
                Ok(config) => config,
                Err(error) => return config_failure(&error),
            };
            let Some(smtp) = config.smtp else {
                eprintln!("caretaker-collector: the config has no [smtp] section");
                return ExitCode::from(EX_CONFIG);
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(caretaker_collector::alerts::test_email(
                &smtp,
                to.as_deref(),
            )) {
                Ok(reply) => {
                    println!("The mail server accepted the test message: {reply}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("caretaker-collector: test email failed: {error}");
                    ExitCode::from(69)
                }
            }
        }
        Command::Incidents {
            config,
            status,
            json,
        } => cli_incidents::list(&config, &status, json),
        Command::Export { config, what, out } => cli_csv::export(&config, &what, out.as_deref()),
        Command::Import {
            config,
            what: _,
            file,
            dry_run,
        } => cli_csv::import(&config, &file, dry_run),
        Command::Incident {
            config,
            action,
            id,
            text,
            by,
        } => cli_incidents::act(&config, &action, &id, text, &by),
        Command::Report {
            config,
            kind,
            month,
            out,
            json,
        } => cli_report::run(
            config.as_deref(),
            &kind,
            month.as_deref(),
            out.as_deref(),
            json,
        ),
        Command::SeedSla { data_dir, month } => cli_report::seed(&data_dir, &month),
        Command::BenchSeed {
            data_dir,
            assets,
            programs,
            incidents,
            changes,
        } => {
            let store = match caretaker_collector::store::SledStore::open(&data_dir.join("store")) {
                Ok(store) => store,
                Err(error) => {
                    eprintln!("caretaker-collector: {error}");
                    return ExitCode::from(74);
                }
            };
            let mut progress = |what: &str| eprintln!("seeded {what}");
            match caretaker_collector::web::seed::seed(
                &store,
                assets,
                programs,
                incidents,
                changes,
                &mut progress,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("caretaker-collector: {error}");
                    ExitCode::from(74)
                }
            }
        }
        Command::User { config, action } => {
            let Some(config) = config else {
                eprintln!("caretaker-collector: user commands need --config (or CARETAKER_CONFIG)");
                return ExitCode::from(2);
            };
            match action {
                UserAction::Add {
                    name,
                    role,
                    password_file,
                } => cli_users::add(&config, &name, &role, password_file.as_deref()),
                UserAction::List => cli_users::list(&config),
                UserAction::Disable { name } => cli_users::disable(&config, &name),
                UserAction::Passwd {
                    name,
                    password_file,
                } => cli_users::passwd(&config, &name, password_file.as_deref()),
            }
        }
        Command::Token { config, action } => {
            let Some(config) = config else {
                return missing_config();
            };
            match action {
                TokenAction::Create {
                    uses,
                    expires,
                    label,
                } => cli_pki::token_create(&config, uses, expires, label),
                TokenAction::List { json } => cli_pki::token_list(&config, json),
                TokenAction::Revoke { id } => cli_pki::token_revoke(&config, &id),
            }
        }
        Command::Agent { config, action } => {
            let Some(config) = config else {
                return missing_config();
            };
            match action {
                AgentAction::Revoke { id } => cli_pki::agent_revoke(&config, &id),
            }
        }
        Command::Ca { config, action } => {
            let Some(config) = config else {
                return missing_config();
            };
            match action {
                CaAction::Show => cli_pki::ca_show(&config),
                CaAction::Rotate { finish } => cli_pki::ca_rotate(&config, finish),
            }
        }
        Command::Scan {
            ranges,
            snmp,
            json,
            config,
            communities,
            rate,
            on_link_rate,
            timeout,
            retries,
            ports,
            no_dns,
        } => {
            let mut base = match config {
                Some(path) => match config::load(&path) {
                    Ok(config) => config,
                    Err(error) => return config_failure(&error),
                },
                None => Config::default(),
            };
            if !communities.is_empty() {
                base.snmp.credentials = communities
                    .into_iter()
                    .map(|community| caretaker_collector::scan::snmp::Credential::V2c { community })
                    .collect();
            }
            let mut options = caretaker_collector::app::scan_options(&base);
            if snmp && options.snmp_credentials.is_empty() {
                options.snmp_credentials = vec![caretaker_collector::scan::snmp::Credential::V2c {
                    community: "public".to_owned(),
                }];
            }
            if !snmp {
                options.snmp_credentials.clear();
            }
            options.sweep.rate = rate.unwrap_or(options.sweep.rate);
            options.sweep.on_link_rate = on_link_rate.unwrap_or(options.sweep.on_link_rate);
            options.sweep.timeout = timeout.unwrap_or(options.sweep.timeout);
            options.sweep.retries = retries.unwrap_or(options.sweep.retries);
            if let Some(Ports(ports)) = ports {
                options.tcp_ports = ports;
            }
            options.reverse_dns &= !no_dns;
            let scope =
                match caretaker_collector::scan::Scope::parse(&ranges, base.scan.max_addresses) {
                    Ok(scope) => scope,
                    Err(errors) => {
                        for error in errors {
                            eprintln!("caretaker-collector: {error}");
                        }
                        return ExitCode::from(2);
                    }
                };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(cli_scan::run(scope, options, json))
        }
    }
}

fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(EX_CONFIG)
}

fn run_async(
    work: impl std::future::Future<Output = Result<(), caretaker_collector::app::AppError>>,
) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Collector failed");
            eprintln!("caretaker-collector: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

fn init_logging(format: LogFormat) {
    // sled reports every failed buffer write at ERROR; the register writer already says once,
    // rate-limited, what failed and what it means, so sled's own lines stay out unless asked.
    let directives = std::env::var("CARETAKER_LOG").unwrap_or_else(|_| "info".to_owned());
    let directives = if directives.contains("sled") {
        directives
    } else {
        format!("{directives},sled=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=off"));
    // Colour only on a terminal: log files and pipes get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// SIGINT and SIGTERM both take the same path: cancel the root token and drain. A second
/// signal while draining exits at once (nothing unacknowledged is lost: agents resend).
fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!(
            deadline_secs = caretaker_collector::app::SHUTDOWN_DEADLINE.as_secs(),
            "Shutting down (a second Ctrl-C or SIGTERM stops at once)"
        );
        token.cancel();
        stop_signal().await;
        tracing::warn!("Second stop signal: exiting without waiting");
        std::process::exit(130);
    });
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn missing_config() -> ExitCode {
    eprintln!("caretaker-collector: --config PATH (or CARETAKER_CONFIG) is required");
    ExitCode::from(2)
}
