//! Network discovery: find every live device in the configured ranges and describe it.
//!
//! One scan ([`run`]) is: an ICMP sweep of the [`Scope`] (`ping`), then, for the hosts that
//! answered and at bounded concurrency, the neighbour table and OUI vendor (`neighbors`),
//! reverse DNS (`dns`), SNMP credentials and inventory (`snmp`) and optional TCP port probes
//! (`probe`). Nothing is ever sent outside the scope: the sweep only targets it, and every
//! later stage only talks to hosts the sweep found in it. The result, a [`Sweep`], is what
//! the `scan` CLI prints and what the daemon (`app::discovery`) hands the register writer.
//! `targets` owns CIDR parsing, caps and route checks. A library: it knows nothing of the
//! register or the store.

pub mod arp;
pub mod dns;
pub mod icmp;
pub mod neighbors;
pub mod ping;
pub mod probe;
pub mod snmp;
pub mod targets;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::model::AssetKind;
pub use ping::{Alive, Method, Progress, SweepOptions};
pub use targets::{LocalAddresses, Scope, TargetError};

/// How a scan behaves beyond the sweep itself.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub sweep: SweepOptions,
    /// Credential sets tried in order on live hosts; empty = no SNMP.
    pub snmp_credentials: Vec<snmp::Credential>,
    pub snmp_limits: snmp::Limits,
    /// SNMP sessions at once.
    pub snmp_sessions: usize,
    /// UDP port SNMP agents listen on (161; tests may use another).
    pub snmp_port: u16,
    /// TCP ports probed on every live host; empty = none.
    pub tcp_ports: Vec<u16>,
    pub tcp_timeout: Duration,
    pub reverse_dns: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            sweep: SweepOptions::default(),
            snmp_credentials: Vec::new(),
            snmp_limits: snmp::Limits::default(),
            snmp_sessions: 64,
            snmp_port: 161,
            tcp_ports: probe::DEFAULT_PORTS.to_vec(),
            tcp_timeout: Duration::from_millis(800),
            reverse_dns: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Ping(#[from] ping::PingError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Targets(Vec<TargetError>),
}

/// One live host, as the scan saw it.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveredHost {
    pub ip: Ipv4Addr,
    pub rtt_ms: f64,
    /// How it answered: `arp` (the collector's own segments) or `icmp`.
    pub found_by: Method,
    /// From its ARP reply, for hosts on the collector's own segment.
    pub mac: Option<String>,
    /// The MAC's registered vendor, or "(locally administered MAC)".
    pub vendor: String,
    /// Reverse DNS name.
    pub dns_name: Option<String>,
    /// SNMP's answer when it had one, else a guess from ports and vendor.
    pub kind: AssetKind,
    pub open_ports: Vec<u16>,
    pub snmp: Option<snmp::SnmpSnapshot>,
    /// Which configured credential answered (index into the options' list).
    #[serde(skip)]
    pub snmp_credential: Option<usize>,
}

impl DiscoveredHost {
    /// The best name we have: sysName, then reverse DNS.
    pub fn name(&self) -> Option<String> {
        self.snmp
            .as_ref()
            .map(|d| d.system.name.trim().to_owned())
            .filter(|n| !n.is_empty())
            .or_else(|| self.dns_name.clone())
    }
}

/// The outcome of one scan.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
    pub scope: Scope,
    pub probed: u64,
    pub hosts: Vec<DiscoveredHost>,
    /// This machine's own addresses in scope: never probed, never listed.
    pub own: Vec<Ipv4Addr>,
}

/// Which credential worked for which address, so the next scan tries it first.
pub type CredentialMemory = Mutex<HashMap<Ipv4Addr, usize>>;

/// Runs one scan of `scope`.
pub async fn run(
    scope: &Scope,
    options: &ScanOptions,
    memory: &CredentialMemory,
    dns: &dns::ReverseDns,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Sweep, ScanError> {
    let started_at = OffsetDateTime::now_utc();
    scope.check_routes().map_err(ScanError::Targets)?;
    let targets = scope.shuffled_hosts();
    let probed = targets.len() as u64;
    let plan = ping::plan(
        scope,
        &targets,
        &options.sweep,
        &targets::Routes::read(),
        &ping::ether_interfaces(),
        &LocalAddresses::read(),
    );
    let mut own = plan.own.clone();
    own.sort();
    let fulls_before = neighbors::table_fulls();
    let kernel_arp = !plan.icmp.is_empty();
    let alive = ping::run_plan(plan, &options.sweep, progress, cancel).await?;
    if kernel_arp
        && let (Some(before), Some(after)) = (fulls_before, neighbors::table_fulls())
        && after > before
    {
        tracing::warn!(
            overflows = after - before,
            "The kernel's neighbour (ARP) table overflowed during the sweep, so some hosts may have been missed; \
             raise net.ipv4.neigh.default.gc_thresh1/2/3 on this server for large ranges on its own segment"
        );
    }
    let ips: Vec<Ipv4Addr> = alive.iter().map(|a| a.ip).collect();

    let names = async {
        if options.reverse_dns {
            dns.names(&ips, 64).await
        } else {
            HashMap::new()
        }
    };
    let snmp = snmp_all(&ips, options, memory, cancel);
    let ports = async {
        if options.tcp_ports.is_empty() {
            Vec::new()
        } else {
            probe::open_ports(scope, &ips, &options.tcp_ports, options.tcp_timeout, 256).await
        }
    };
    let (names, mut snmp, ports) = tokio::join!(names, snmp, ports);
    let ports: HashMap<Ipv4Addr, Vec<u16>> = ports.into_iter().collect();
    let arp = neighbors::arp_table();

    let mut hosts: Vec<DiscoveredHost> = alive
        .iter()
        .map(|a| {
            let mac = a.mac.clone().or_else(|| arp.get(&a.ip).cloned());
            let vendor = mac
                .as_deref()
                .map(|m| neighbors::vendor_of(m).label())
                .unwrap_or_default();
            let open_ports = ports.get(&a.ip).cloned().unwrap_or_default();
            let (snmp_credential, device) = match snmp.remove(&a.ip) {
                Some((index, device)) => (Some(index), Some(device)),
                None => (None, None),
            };
            let kind = match &device {
                Some(d) if d.kind != AssetKind::Unknown => d.kind,
                _ => probe::guess_kind(&open_ports, &vendor),
            };
            DiscoveredHost {
                ip: a.ip,
                rtt_ms: a.rtt.as_secs_f64() * 1000.0,
                found_by: a.method,
                mac,
                vendor,
                dns_name: names.get(&a.ip).cloned(),
                kind,
                open_ports,
                snmp: device,
                snmp_credential,
            }
        })
        .collect();
    hosts.sort_by_key(|h| h.ip);
    Ok(Sweep {
        started_at,
        finished_at: OffsetDateTime::now_utc(),
        scope: scope.clone(),
        probed,
        hosts,
        own,
    })
}

/// SNMP on every live host: the remembered credential first, then the rest in order; then a
/// full inventory with the one that answered.
async fn snmp_all(
    ips: &[Ipv4Addr],
    options: &ScanOptions,
    memory: &CredentialMemory,
    cancel: &CancellationToken,
) -> HashMap<Ipv4Addr, (usize, snmp::SnmpSnapshot)> {
    if options.snmp_credentials.is_empty() {
        return HashMap::new();
    }
    let permits = Arc::new(Semaphore::new(options.snmp_sessions.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for &ip in ips {
        let remembered = memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ip)
            .copied();
        let mut order: Vec<usize> = (0..options.snmp_credentials.len()).collect();
        if let Some(first) = remembered.filter(|i| *i < order.len()) {
            order.retain(|i| *i != first);
            order.insert(0, first);
        }
        let credentials: Vec<snmp::Credential> = order
            .iter()
            .map(|i| options.snmp_credentials[*i].clone())
            .collect();
        let limits = options.snmp_limits.clone();
        let permits = permits.clone();
        let target = SocketAddr::from((ip, options.snmp_port));
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore is never closed");
            let work = async {
                let (tried, _) = snmp::probe(target, &credentials, &limits).await.ok()?;
                match snmp::inventory(target, &credentials[tried], &limits).await {
                    Ok(device) => Some((order[tried], device)),
                    Err(error) => {
                        tracing::debug!(%ip, %error, "SNMP inventory failed after the device answered");
                        None
                    }
                }
            };
            let result = tokio::select! {
                () = cancel.cancelled() => None,
                r = work => r,
            };
            (ip, result)
        });
    }
    let mut found = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((ip, Some((index, device)))) => {
                memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(ip, index);
                found.insert(ip, (index, device));
            }
            Ok((_, None)) => {}
            Err(error) => tracing::error!(%error, "An SNMP task failed"),
        }
    }
    found
}
