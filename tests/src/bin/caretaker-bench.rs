//! `caretaker-bench`: load and footprint benchmarks against the real binaries, on loopback.
//!
//! - `collector`: N simulated agents enrol, send one inventory each, then M status reports each
//!   (timed) against a real `caretaker-collector` process; prints throughput, latency, the
//!   collector's CPU and peak RSS, and store bytes per asset and per status report.
//! - `agent`: runs the real `caretaker-agent` against a real collector for S seconds and
//!   prints its RSS, CPU share, `inventory --json` time and binary size.
//!
//! - `discovery` (root; network-namespace labs in 198.18.0.0/15): the collector's sweeps of a
//!   /22 and a routed /16 and its SNMP inventory, side by side with nmap, fping, snmpbulkwalk.
//!
//! - `flood`: agents send inventories of 150,000 programs, then at the collector's cap; prints
//!   the collector's peak RSS and store growth (target: peak RSS ≤ 400 MiB).
//!
//! - `dashboard`: every dashboard page's p50/p99 and first-load bytes on a seeded store
//!   (3,000 assets, 100,000 incidents, 1,000,000 changes), against the targets.
//! - `year`: the store of a 1,500-asset school after a year (as retention leaves it): size on
//!   disk, the cost of one retention pass, and the real collector's start-up time on it.
//!
//! `collector` and `agent` start their peers in a temp dir, stop them with SIGTERM and remove the dir; every wait
//! is bounded. Exit codes: 0 measured, 1 errors during the run (or a peer failed), 2 usage.
//! Build the peers first, e.g. `cargo build --release -p caretaker-collector -p caretaker-agent
//! -p caretaker-tests --bins`, then `target/release/caretaker-bench collector`.

#[path = "bench/agent.rs"]
mod agent;
#[path = "bench/collector.rs"]
mod collector;
#[path = "bench/dashboard.rs"]
mod dashboard;
#[path = "bench/discovery.rs"]
mod discovery;
#[path = "bench/flood.rs"]
mod flood;
#[path = "bench/harness.rs"]
mod harness;
#[path = "bench/year.rs"]
mod year;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "caretaker-bench",
    about = "Benchmarks the real Caretaker binaries on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulated agents against a real collector: throughput, latency, CPU, RSS, store size.
    Collector {
        #[arg(long, default_value_t = 2000)]
        agents: usize,
        /// Status reports each agent sends in the timed phase (one per Submit).
        #[arg(long, default_value_t = 20)]
        reports_per_agent: u64,
        /// RPCs in flight at most, across all agents.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Default: `caretaker-collector` next to this executable.
        #[arg(long)]
        collector_bin: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// `both` (default: plaintext, then mTLS, and the ratio), `mtls` or `plaintext`.
        #[arg(long, default_value = "both", value_parser = ["both", "mtls", "plaintext"])]
        transport: String,
    },
    /// The real agent against a real collector: RSS, CPU, inventory time, binary size.
    Agent {
        /// How long to watch the running agent (the first 10 s count as start-up).
        #[arg(long, default_value_t = 180)]
        seconds: u64,
        /// Default: `caretaker-agent` next to this executable.
        #[arg(long)]
        agent_bin: Option<PathBuf>,
        /// Default: `caretaker-collector` next to this executable.
        #[arg(long)]
        collector_bin: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Huge inventories from many agents at once: the collector's peak RSS and store growth.
    Flood {
        #[arg(long, default_value_t = 6)]
        agents: usize,
        /// Programs per inventory in the first phase.
        #[arg(long, default_value_t = 150_000)]
        programs: usize,
        /// Programs per inventory in the second phase (what the collector accepts).
        #[arg(long, default_value_t = 20_000)]
        at_cap: usize,
        #[arg(long, default_value_t = 3)]
        rounds: u64,
        /// Default: `caretaker-collector` next to this executable.
        #[arg(long)]
        collector_bin: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Dashboard pages on a seeded store: p50/p99 per page and first-load bytes vs targets.
    Dashboard {
        #[arg(long, default_value_t = 3000)]
        assets: usize,
        #[arg(long, default_value_t = 100_000)]
        incidents: usize,
        #[arg(long, default_value_t = 1_000_000)]
        changes: usize,
        /// Timed requests per page (after 3 warm-up requests).
        #[arg(long, default_value_t = 100)]
        rounds: usize,
        /// Default: `caretaker-collector` next to this executable.
        #[arg(long)]
        collector_bin: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The store after a year of a school, and the collector's start-up time on it.
    Year {
        #[arg(long, default_value_t = 1500)]
        assets: usize,
        /// Share of the assets that are PCs with agents (the rest: network devices).
        #[arg(long, default_value_t = 0.73)]
        agent_share: f64,
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Programs in each PC's inventory.
        #[arg(long, default_value_t = 300)]
        programs: usize,
        #[arg(long, default_value_t = 20)]
        incidents_per_day: usize,
        /// Default: `caretaker-collector` next to this executable.
        #[arg(long)]
        collector_bin: Option<PathBuf>,
        /// Keep the store in this (new) directory instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Sweeps and SNMP inventory in a namespace lab, side by side with nmap, fping, snmpbulkwalk.
    Discovery {
        /// Default: `caretaker-collector` next to this executable.
        #[arg(long)]
        collector_bin: Option<PathBuf>,
        /// Extrapolate nmap and fping over the /16 from 4 random /24s (else minutes each).
        #[arg(long)]
        skip_slow: bool,
        /// Print one JSON object instead of the table (progress goes to stderr).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("caretaker-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("caretaker-bench: the run had errors (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("caretaker-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Collector {
            agents,
            reports_per_agent,
            concurrency,
            collector_bin,
            json,
            transport,
        } => {
            collector::run(collector::Options {
                agents,
                reports_per_agent,
                concurrency,
                collector_bin: harness::sibling_binary(collector_bin, "caretaker-collector")?,
                json,
                transport,
            })
            .await
        }
        Command::Agent {
            seconds,
            agent_bin,
            collector_bin,
            json,
        } => {
            agent::run(agent::Options {
                seconds,
                agent_bin: harness::sibling_binary(agent_bin, "caretaker-agent")?,
                collector_bin: harness::sibling_binary(collector_bin, "caretaker-collector")?,
                json,
            })
            .await
        }
        Command::Flood {
            agents,
            programs,
            at_cap,
            rounds,
            collector_bin,
            json,
        } => {
            flood::run(flood::Options {
                agents,
                programs,
                at_cap,
                rounds,
                collector_bin: harness::sibling_binary(collector_bin, "caretaker-collector")?,
                json,
            })
            .await
        }
        Command::Dashboard {
            assets,
            incidents,
            changes,
            rounds,
            collector_bin,
            json,
        } => {
            let options = dashboard::Options {
                collector_bin: harness::sibling_binary(collector_bin, "caretaker-collector")?,
                assets,
                incidents,
                changes,
                rounds,
                json,
            };
            tokio::task::spawn_blocking(move || dashboard::run(&options)).await?
        }
        Command::Discovery {
            collector_bin,
            skip_slow,
            json,
        } => {
            let options = discovery::Options {
                collector_bin: harness::sibling_binary(collector_bin, "caretaker-collector")?,
                json,
                skip_slow,
            };
            tokio::task::spawn_blocking(move || discovery::run(&options)).await?
        }
        Command::Year {
            assets,
            agent_share,
            days,
            programs,
            incidents_per_day,
            collector_bin,
            keep,
            json,
        } => {
            let options = year::Options {
                assets,
                agent_share,
                days,
                programs,
                incidents_per_day,
                collector_bin,
                keep,
                json,
            };
            tokio::task::spawn_blocking(move || year::run(options)).await?
        }
    }
}
