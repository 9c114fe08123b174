//! The ICMP echo sweep: every address in scope, paced, bounded, with retries.
//!
//! A small pool of surge-ping clients (each one socket: a DGRAM "ping" socket when the kernel
//! allows it, RAW otherwise) serves the whole sweep; several sockets because on the
//! collector's own segment every probe to an address without a neighbour entry waits for ARP
//! in the kernel and counts against its socket's send buffer. A send refused for lack of
//! buffer space (ENOBUFS: full socket buffer or neighbour table) is retried after a pause,
//! never counted as a dead host. Probes leave at most `rate` per second (a token bucket
//! checked before each send) with at most `max_in_flight` awaiting replies, in random order;
//! retries of a silent address are spread over its timeout (see [`sweep`]). Every address is
//! checked against the [`Scope`] before a packet is sent.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier, PingSequence, SurgeError};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::targets::Scope;

/// ICMP sockets per sweep (each has its own kernel send buffer).
const SOCKETS: usize = 16;
/// Linux's "No buffer space available".
const ENOBUFS: i32 = 105;
/// How often, and how long apart, a refused send is retried (~3 s in all: ARP's give-up time).
const MAX_REFUSALS: u32 = 150;
const REFUSAL_PAUSE: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Echo requests per second, across the whole sweep, to routed addresses.
    pub rate: u32,
    /// Echo requests per second to addresses on the collector's own segments, each of which
    /// makes the kernel broadcast an ARP request first: every device on the segment has to
    /// look at every one of them, and replies lost in a broadcast storm cost a whole ARP
    /// retransmission (a second).
    pub on_link_rate: u32,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// Extra passes over the addresses that stayed silent.
    pub retries: u32,
    /// Probes awaiting a reply at once.
    pub max_in_flight: usize,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            rate: 20_000,
            on_link_rate: 2_000,
            timeout: Duration::from_secs(1),
            retries: 1,
            max_in_flight: 16_384,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(
        "cannot open an ICMP socket (needs root, CAP_NET_RAW or net.ipv4.ping_group_range): {0}"
    )]
    Socket(#[source] std::io::Error),
}

/// One address that answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alive {
    pub ip: Ipv4Addr,
    pub rtt: Duration,
    /// 1 when the first probe was answered.
    pub attempts: u32,
}

/// Progress callbacks: addresses probed so far (all passes) and hosts found.
pub trait Progress: Send + Sync {
    fn probed(&self, _count: u64) {}
    fn found(&self, _alive: &Alive) {}
}

impl Progress for () {}

/// Sweeps `targets` (already shuffled, all inside `scope`). Returns the live hosts in the
/// order they answered. Stops early (returning what it has) when `cancel` fires.
///
/// Each address gets its first echo request when the pacer allows, and up to `retries` more,
/// 0.4 × `timeout` apart, while it stays silent; each waits `timeout` for its reply. A sweep
/// therefore takes about the sending time plus 1.4 timeouts (one retry), not a timeout per
/// retry.
pub async fn sweep(
    scope: &Scope,
    targets: Vec<Ipv4Addr>,
    options: &SweepOptions,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Vec<Alive>, PingError> {
    let config = Config::builder().kind(ICMP::V4).build();
    let clients = (0..SOCKETS)
        .map(|_| Client::new(&config))
        .collect::<Result<Vec<_>, _>>()
        .map_err(PingError::Socket)?;
    let ident = PingIdentifier(rand::random());
    let permits = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
    let on_link_interval = Duration::from_secs_f64(1.0 / f64::from(options.on_link_rate.max(1)));
    let on_link = super::targets::on_link_networks();
    // Retries leave 40 % of a timeout apart, each waiting a full timeout: an address whose
    // first request is held up by ARP (answered ~1 s later by the kernel's retransmission)
    // still answers one of them, and a dead address costs timeout × (1 + 0.4 × retries).
    let spacing = options.timeout.mul_f64(0.4);
    let (tx, mut rx) = mpsc::channel::<(Ipv4Addr, Option<(Duration, u32)>)>(4096);
    let start = Instant::now();
    let sender = async {
        let mut sent: u64 = 0;
        let mut due = start;
        for ip in targets {
            if !scope.contains(ip) {
                tracing::error!(%ip, "Refusing to probe an address outside the scan ranges");
                continue;
            }
            due += if on_link.iter().any(|net| net.contains(ip)) {
                on_link_interval
            } else {
                interval
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep_until(due) => {}
            }
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            sent += 1;
            progress.probed(sent);
            let client = clients[(sent % clients.len() as u64) as usize].clone();
            let tx = tx.clone();
            let (timeout, retries) = (options.timeout, options.retries);
            tokio::spawn(async move {
                let result = probe(&client, ident, ip, timeout, retries, spacing).await;
                drop(permit);
                let _ = tx.send((ip, result)).await;
            });
        }
        drop(tx);
    };
    let mut alive = Vec::new();
    let receiver = async {
        while let Some((ip, result)) = rx.recv().await {
            if let Some((rtt, attempts)) = result {
                let found = Alive { ip, rtt, attempts };
                progress.found(&found);
                alive.push(found);
            }
        }
    };
    tokio::join!(sender, receiver);
    Ok(alive)
}

/// One address: echo requests at 0, `spacing`, 2×`spacing`…, the first answer wins; `None`
/// once every request has waited `timeout` in vain.
async fn probe(
    client: &Client,
    ident: PingIdentifier,
    ip: Ipv4Addr,
    timeout: Duration,
    retries: u32,
    spacing: Duration,
) -> Option<(Duration, u32)> {
    use futures_util::StreamExt;
    let payload = *b"caretaker-sweep!";
    let mut attempts = futures_util::stream::FuturesUnordered::new();
    for attempt in 0..=retries {
        let mut pinger = client.pinger(IpAddr::V4(ip), ident).await;
        let delay = spacing * attempt;
        pinger.timeout(timeout);
        attempts.push(async move {
            tokio::time::sleep(delay).await;
            let mut refused = 0;
            loop {
                match pinger.ping(PingSequence(attempt as u16), &payload).await {
                    Ok((packet, rtt)) if is_echo_reply(&packet) => return Some((rtt, attempt + 1)),
                    // surge-ping also hands over ICMP errors quoting our request, such as the
                    // kernel's own "host unreachable" once ARP for the address has failed
                    // (within the timeout when a recent sweep left a FAILED neighbour entry):
                    // that address did not answer.
                    Ok((packet, _)) => {
                        if let IcmpPacket::V4(p) = &packet {
                            tracing::debug!(%ip, icmp_type = p.get_icmp_type().0,
                                icmp_code = p.get_icmp_code().0, "An ICMP error came back instead of a reply");
                        }
                        return None;
                    }
                    Err(SurgeError::Timeout { .. }) => return None,
                    Err(SurgeError::IOError(error))
                        if error.raw_os_error() == Some(ENOBUFS) && refused < MAX_REFUSALS =>
                    {
                        refused += 1;
                        tokio::time::sleep(REFUSAL_PAUSE).await;
                    }
                    Err(error) => {
                        tracing::debug!(%ip, %error, "Echo request failed");
                        return None;
                    }
                }
            }
        });
    }
    while let Some(result) = attempts.next().await {
        if result.is_some() {
            return result;
        }
    }
    None
}

/// An echo reply, not an error message about our echo request.
fn is_echo_reply(packet: &IcmpPacket) -> bool {
    const ECHO_REPLY: u8 = 0;
    matches!(packet, IcmpPacket::V4(p) if p.get_icmp_type().0 == ECHO_REPLY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_answers_and_out_of_scope_addresses_are_never_probed() {
        let scope = Scope::parse(&["127.0.0.0/30".to_owned()], 1024).expect("scope");
        let targets = vec![
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(127, 0, 0, 2),
            Ipv4Addr::new(198, 18, 0, 1),
        ];
        let options = SweepOptions {
            timeout: Duration::from_millis(500),
            retries: 0,
            ..Default::default()
        };
        let found = match sweep(&scope, targets, &options, &(), &CancellationToken::new()).await {
            Ok(found) => found,
            Err(error) => panic!("run the tests as root or allow ping sockets: {error}"),
        };
        let ips: Vec<_> = found.iter().map(|a| a.ip).collect();
        assert!(ips.contains(&Ipv4Addr::new(127, 0, 0, 1)));
        assert!(
            !ips.contains(&Ipv4Addr::new(198, 18, 0, 1)),
            "outside the scope: never probed, never found"
        );
    }
}
