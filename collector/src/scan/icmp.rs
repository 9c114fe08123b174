//! ICMP echo for addresses behind a gateway (and, when no ARP socket can be had, the rest):
//! one socket, one event loop, our own matching.
//!
//! A reply counts only when it is an echo *reply* (type 0), from the very address we sent that
//! request to, carrying this sweep's identifier, a sequence number that is in flight for that
//! address, and this sweep's random payload cookie with the address in it. A sequence number
//! is unique among the requests in flight (at most `max_in_flight` < 65,536 of them); when a
//! request's timeout passes its slot is freed, so a late reply finds no slot, or a slot of
//! another address, and is dropped. ICMP errors (host unreachable after a failed ARP, time
//! exceeded) never make an address live.
//!
//! The socket is RAW (root or CAP_NET_RAW) or, failing that, an unprivileged DGRAM "ping"
//! socket (`net.ipv4.ping_group_range`), where the kernel sets the identifier to the socket's
//! port and filters replies for us. A RAW socket sees every ICMP packet of the namespace
//! (other programs' pings too): the checks above keep them out.
//!
//! Pacing: requests leave at most `rate` per second (on-link addresses at the on-link rate),
//! retries first, with at most `max_in_flight` awaiting replies; an address gets up to
//! `retries` more requests, 0.4 × `timeout` apart, while it stays silent.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Linux's "No buffer space available".
const ENOBUFS: i32 = 105;
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
const TIME_EXCEEDED: u8 = 11;
const PAYLOAD_LEN: usize = 16;

/// An ICMP socket and what its replies look like.
pub struct IcmpSocket {
    socket: UdpSocket,
    raw: bool,
    ident: u16,
}

impl IcmpSocket {
    /// RAW when allowed, else DGRAM; a large receive buffer for bursts of replies.
    pub fn open() -> io::Result<Self> {
        let (socket, raw) = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
            Ok(s) => (s, true),
            Err(raw_error) => {
                match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)) {
                    Ok(s) => (s, false),
                    Err(_) => return Err(raw_error),
                }
            }
        };
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(1 << 20);
        socket.set_nonblocking(true)?;
        let ident = if raw {
            rand::random()
        } else {
            socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
            socket
                .local_addr()?
                .as_socket()
                .map(|a| a.port())
                .unwrap_or_default()
        };
        let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
        Ok(Self { socket, raw, ident })
    }

    pub fn is_raw(&self) -> bool {
        self.raw
    }

    fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.socket.set_ttl(ttl)
    }

    async fn send(&self, ip: Ipv4Addr, seq: u16, cookie: &[u8; 8]) -> io::Result<()> {
        let mut packet = [0u8; 8 + PAYLOAD_LEN];
        packet[0] = ECHO_REQUEST;
        packet[4..6].copy_from_slice(&self.ident.to_be_bytes());
        packet[6..8].copy_from_slice(&seq.to_be_bytes());
        packet[8..16].copy_from_slice(cookie);
        packet[16..20].copy_from_slice(&ip.octets());
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
        self.socket
            .send_to(&packet, SocketAddr::new(IpAddr::V4(ip), 0))
            .await
            .map(drop)
    }

    /// Every packet waiting on the socket, decoded, without waiting.
    fn drain(&self, buf: &mut [u8], out: &mut Vec<(Ipv4Addr, Icmp)>) {
        loop {
            match self.socket.try_recv_from(buf) {
                Ok((len, SocketAddr::V4(from))) => {
                    if let Some(icmp) = decode(&buf[..len], self.raw) {
                        out.push((*from.ip(), icmp));
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

/// What arrived: an echo reply, or a time-exceeded quoting one of our requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Icmp {
    Reply {
        ident: u16,
        seq: u16,
        payload: Vec<u8>,
    },
    TimeExceeded {
        /// The quoted request's destination, identifier and sequence.
        to: Ipv4Addr,
        ident: u16,
        seq: u16,
    },
}

/// RAW sockets deliver the IP header; DGRAM ones only the ICMP message.
pub(crate) fn decode(packet: &[u8], raw: bool) -> Option<Icmp> {
    let icmp = if raw {
        let ihl = usize::from(packet.first()? & 0x0f) * 4;
        (packet.first()? >> 4 == 4).then_some(())?;
        packet.get(ihl..)?
    } else {
        packet
    };
    if icmp.len() < 8 {
        return None;
    }
    let word = |at: usize| u16::from_be_bytes([icmp[at], icmp[at + 1]]);
    match (icmp[0], icmp[1]) {
        (ECHO_REPLY, 0) => Some(Icmp::Reply {
            ident: word(4),
            seq: word(6),
            payload: icmp[8..].to_vec(),
        }),
        (TIME_EXCEEDED, 0) => {
            let quoted = icmp.get(8..)?;
            let ihl = usize::from(quoted.first()? & 0x0f) * 4;
            let to = Ipv4Addr::new(
                *quoted.get(16)?,
                *quoted.get(17)?,
                *quoted.get(18)?,
                *quoted.get(19)?,
            );
            let echo = quoted.get(ihl..ihl + 8)?;
            (echo[0] == ECHO_REQUEST).then(|| Icmp::TimeExceeded {
                to,
                ident: u16::from_be_bytes([echo[4], echo[5]]),
                seq: u16::from_be_bytes([echo[6], echo[7]]),
            })
        }
        _ => None,
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One address, as the sweep plans it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub ip: Ipv4Addr,
    /// Time the pacer spends on this address (1 / rate).
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct IcmpOptions {
    pub timeout: Duration,
    pub retries: u32,
    pub max_in_flight: usize,
}

/// One live address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoReply {
    pub ip: Ipv4Addr,
    pub rtt: Duration,
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    ip: Ipv4Addr,
    sent: Instant,
    attempt: u32,
}

/// Per-address bookkeeping.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    sent: u32,
    found: bool,
}

/// Sweeps `targets` (in the order given) on `socket`; calls `found` once per live address and
/// `probed` after each first request. Stops early when `cancel` fires.
pub async fn sweep(
    socket: &IcmpSocket,
    targets: &[Target],
    options: &IcmpOptions,
    cancel: &CancellationToken,
    found: &mut (dyn FnMut(EchoReply) + Send),
    probed: &mut (dyn FnMut(u64) + Send),
) {
    let cookie: [u8; 8] = rand::random();
    let spacing = options.timeout.mul_f64(0.4);
    let max_in_flight = options.max_in_flight.clamp(1, 60_000);
    let mut slots: Vec<Option<Slot>> = vec![None; 65_536];
    let mut next_seq: u16 = rand::random();
    let mut in_flight = 0usize;
    // Expiries come in send order (one timeout for all): a queue is enough.
    let mut expiries: std::collections::VecDeque<(Instant, u16)> = Default::default();
    let mut retries: BinaryHeap<Reverse<(Instant, usize, u32)>> = BinaryHeap::new();
    let mut states = vec![State::default(); targets.len()];
    let index: std::collections::HashMap<Ipv4Addr, usize> =
        targets.iter().enumerate().map(|(i, t)| (t.ip, i)).collect();
    let mut next_new = 0usize;
    let mut next_send = Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut arrived = Vec::new();
    let mut first_sends = 0u64;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let now = Instant::now();
        while let Some(&(at, seq)) = expiries.front() {
            if at > now {
                break;
            }
            expiries.pop_front();
            // Answered (empty), this very request (expired now), or a newer request that
            // reused the slot after an answer (it has an expiry of its own, later).
            if slots[usize::from(seq)].is_some_and(|slot| slot.sent + options.timeout <= now) {
                slots[usize::from(seq)] = None;
                in_flight -= 1;
            }
        }
        // Send what the pacer allows: retries that are due first, then new addresses.
        while next_send <= now && in_flight < max_in_flight {
            let (i, attempt) = match retries.peek() {
                Some(Reverse((due, i, attempt))) if *due <= now => {
                    let pick = (*i, *attempt);
                    retries.pop();
                    if states[pick.0].found {
                        continue;
                    }
                    pick
                }
                _ if next_new < targets.len() => {
                    next_new += 1;
                    (next_new - 1, 0)
                }
                _ => break,
            };
            let target = targets[i];
            let mut seq = next_seq;
            while slots[usize::from(seq)].is_some() {
                seq = seq.wrapping_add(1);
            }
            next_seq = seq.wrapping_add(1);
            match socket.send(target.ip, seq, &cookie).await {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(ENOBUFS) => {
                    // The kernel's buffer is full (often ARP still resolving): again shortly.
                    retries.push(Reverse((now + Duration::from_millis(20), i, attempt)));
                    next_send = now + Duration::from_millis(2);
                    break;
                }
                Err(error) => {
                    tracing::debug!(ip = %target.ip, %error, "Echo request failed");
                    next_send += target.interval;
                    continue;
                }
            }
            let sent = Instant::now();
            slots[usize::from(seq)] = Some(Slot {
                ip: target.ip,
                sent,
                attempt,
            });
            in_flight += 1;
            expiries.push_back((sent + options.timeout, seq));
            states[i].sent += 1;
            if attempt == 0 {
                first_sends += 1;
                probed(first_sends);
            }
            if attempt < options.retries {
                retries.push(Reverse((sent + spacing, i, attempt + 1)));
            }
            next_send += target.interval;
        }
        if next_send < now.checked_sub(Duration::from_millis(5)).unwrap_or(now) {
            next_send = now;
        }
        if next_new >= targets.len() && in_flight == 0 && retries.is_empty() {
            return;
        }
        // Sleep until the next thing to do, or a packet.
        let mut wake = expiries.front().map(|e| e.0);
        let mut consider = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let Some(Reverse((due, _, _))) = retries.peek() {
            consider((*due).max(next_send));
        }
        if next_new < targets.len() && in_flight < max_in_flight {
            consider(next_send);
        }
        let wake = wake.unwrap_or(now + Duration::from_millis(10));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
            ready = socket.socket.readable() => {
                if ready.is_err() {
                    return;
                }
            }
        }
        socket.drain(&mut buf, &mut arrived);
        let at = Instant::now();
        for (from, icmp) in arrived.drain(..) {
            let Icmp::Reply {
                ident,
                seq,
                payload,
            } = icmp
            else {
                continue;
            };
            if ident != socket.ident
                || payload.len() < PAYLOAD_LEN
                || payload[..8] != cookie
                || payload[8..12] != from.octets()
            {
                continue;
            }
            let Some(slot) = slots[usize::from(seq)] else {
                continue;
            };
            if slot.ip != from || at.duration_since(slot.sent) > options.timeout {
                continue;
            }
            slots[usize::from(seq)] = None;
            in_flight -= 1;
            let Some(&i) = index.get(&from) else { continue };
            if states[i].found {
                continue;
            }
            states[i].found = true;
            found(EchoReply {
                ip: from,
                rtt: at.duration_since(slot.sent),
                attempts: slot.attempt + 1,
            });
        }
    }
}

/// The routers on the way to `ip`: echo requests with TTL 1..=`max_hops` at once, each
/// answered by the router where it expired (time exceeded) or by `ip` itself. Returns the
/// hop addresses before `ip` (`None` where a router stayed silent), or `None` when `ip` did
/// not answer at any TTL within `timeout`, or the socket cannot set TTLs (DGRAM sockets get
/// errors on a separate queue; RAW is needed).
pub async fn trace(ip: Ipv4Addr, max_hops: u8, timeout: Duration) -> Option<Vec<Option<Ipv4Addr>>> {
    let socket = IcmpSocket::open().ok().filter(IcmpSocket::is_raw)?;
    let cookie: [u8; 8] = rand::random();
    let base: u16 = rand::random();
    for ttl in 1..=max_hops {
        socket.set_ttl(u32::from(ttl)).ok()?;
        socket
            .send(ip, base.wrapping_add(u16::from(ttl)), &cookie)
            .await
            .ok()?;
    }
    let hop_of = |seq: u16| {
        let ttl = seq.wrapping_sub(base);
        (1..=u16::from(max_hops))
            .contains(&ttl)
            .then_some(ttl as u8)
    };
    let mut hops: Vec<Option<Ipv4Addr>> = vec![None; usize::from(max_hops)];
    let mut reached: Option<u8> = None;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 2048];
    let mut arrived = Vec::new();
    loop {
        if let Some(at) = reached
            && hops[..usize::from(at) - 1].iter().all(Option::is_some)
        {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            ready = socket.socket.readable() => ready.ok()?,
        }
        socket.drain(&mut buf, &mut arrived);
        for (from, icmp) in arrived.drain(..) {
            match icmp {
                Icmp::Reply {
                    ident,
                    seq,
                    payload,
                } if ident == socket.ident
                    && from == ip
                    && payload.get(..8) == Some(&cookie[..]) =>
                {
                    if let Some(ttl) = hop_of(seq) {
                        reached = Some(reached.map_or(ttl, |r| r.min(ttl)));
                    }
                }
                Icmp::TimeExceeded { to, ident, seq } if to == ip && ident == socket.ident => {
                    if let Some(ttl) = hop_of(seq) {
                        hops[usize::from(ttl) - 1] = Some(from);
                    }
                }
                _ => {}
            }
        }
    }
    let reached = reached?;
    hops.truncate(usize::from(reached) - 1);
    Some(hops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_quoted_requests_decode() {
        // IPv4 header (20 bytes) + echo reply ident 0x1234 seq 7 + payload.
        let mut raw = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 198, 19, 0, 5, 198, 18, 0, 1,
        ];
        raw.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 7, 9, 9]);
        assert_eq!(
            decode(&raw, true),
            Some(Icmp::Reply {
                ident: 0x1234,
                seq: 7,
                payload: vec![9, 9]
            })
        );
        assert_eq!(decode(&raw[20..], false), decode(&raw, true));
        // Destination unreachable quoting our request: not a reply, not a hop.
        let mut unreachable = raw[..20].to_vec();
        unreachable.extend_from_slice(&[3, 1, 0, 0, 0, 0, 0, 0]);
        unreachable.extend_from_slice(&raw[..20]);
        unreachable.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert_eq!(decode(&unreachable, true), None);
        // Time exceeded quoting it names the destination and our ident/seq.
        unreachable[20] = TIME_EXCEEDED;
        unreachable[21] = 0;
        let quoted_dst = Ipv4Addr::new(198, 18, 0, 1);
        assert_eq!(
            decode(&unreachable, true),
            Some(Icmp::TimeExceeded {
                to: quoted_dst,
                ident: 0x1234,
                seq: 7
            })
        );
        assert_eq!(decode(&[0x45], true), None);
    }

    #[test]
    fn checksum_of_an_echo_request_verifies() {
        let mut packet = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3];
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&packet), 0);
    }

    #[tokio::test]
    async fn loopback_answers_and_only_once() {
        let socket = match IcmpSocket::open() {
            Ok(s) => s,
            Err(error) => panic!("run the tests as root or allow ping sockets: {error}"),
        };
        let targets = [Target {
            ip: Ipv4Addr::LOCALHOST,
            interval: Duration::from_millis(1),
        }];
        let options = IcmpOptions {
            timeout: Duration::from_millis(500),
            retries: 2,
            max_in_flight: 16,
        };
        let mut found = Vec::new();
        sweep(
            &socket,
            &targets,
            &options,
            &CancellationToken::new(),
            &mut |r| found.push(r),
            &mut |_| {},
        )
        .await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].ip, Ipv4Addr::LOCALHOST);
        assert_eq!(found[0].attempts, 1);
    }
}
