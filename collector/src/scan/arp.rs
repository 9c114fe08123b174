//! The ARP sweep of the collector's own segments: who-has requests from a raw `AF_PACKET`
//! socket (pnet_datalink, which keeps the `unsafe` inside), as `nmap -PR` and `arp-scan` do.
//!
//! An address is live only if an ARP *reply* came from it, addressed to us (our MAC, our IP),
//! while a request we sent it was still within the timeout. The kernel's neighbour table is
//! neither read nor filled: stale entries left by earlier sweeps cannot count, and a large
//! segment cannot overflow it (`gc_thresh3` is shared by every namespace of the machine).
//!
//! Requests leave in rounds, paced at the on-link rate: every target once, then, after a short
//! gap, again to the ones still silent, `rounds` times in all (a broadcast is the cheapest
//! packet to lose: switches, Wi-Fi bridges and busy hosts drop them first). After the last
//! round the sweep waits a few round-trip times (at least [`MIN_FINAL_WAIT`], at most the
//! timeout) for stragglers. Runs on a blocking thread (the channel is blocking); found hosts
//! are handed over as they answer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// One segment to sweep: the interface, our address and MAC on it, and its targets.
#[derive(Debug, Clone)]
pub struct Segment {
    pub iface: String,
    pub source: Ipv4Addr,
    pub mac: [u8; 6],
    pub targets: Vec<Ipv4Addr>,
}

/// Pacing and patience.
#[derive(Debug, Clone)]
pub struct ArpOptions {
    /// Requests per second on this segment.
    pub rate: u32,
    /// Requests per silent address.
    pub rounds: u32,
    /// The shortest pause before a silent address is asked again (longer on a slow segment:
    /// three of its round-trip times).
    pub gap: Duration,
    /// The longest we wait for a reply to a request; also the cap of the final wait.
    pub timeout: Duration,
}

/// Frames read in a row before the sender gets its turn again.
const DRAIN: usize = 64;

/// The shortest wait after the last request, whatever the replies' round-trip times were.
pub const MIN_FINAL_WAIT: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum ArpError {
    #[error("interface {0} is gone")]
    NoInterface(String),
    #[error("cannot open a raw packet socket on {0} (needs root or CAP_NET_RAW): {1}")]
    Socket(String, #[source] std::io::Error),
    #[error("{0} is not an Ethernet interface")]
    NotEthernet(String),
}

/// One reply we believe: the address, its MAC, the time since our latest request to it, and
/// how many requests it had got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpReply {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub rtt: Duration,
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    first: Instant,
    last: Instant,
    attempts: u32,
    found: bool,
    /// A late reply earned this address one more request (at most one).
    asked_again: bool,
}

/// A raw packet socket on one interface.
pub struct ArpChannel {
    #[cfg(target_os = "linux")]
    tx: Box<dyn pnet_datalink::DataLinkSender>,
    #[cfg(target_os = "linux")]
    rx: Box<dyn pnet_datalink::DataLinkReceiver>,
}

/// The receive buffer asked for (the kernel caps it at `net.core.rmem_max`): a /22's replies
/// arriving while the sweep thread waits for a CPU must not overflow it.
const RECEIVE_BUFFER: usize = 4 << 20;

impl ArpChannel {
    /// Opens the socket (root or CAP_NET_RAW) for replies to `source`; nothing is sent yet.
    pub fn open(name: &str, source: Ipv4Addr) -> Result<Self, ArpError> {
        #[cfg(target_os = "linux")]
        {
            let iface = pnet_datalink::interfaces()
                .into_iter()
                .find(|i| i.name == name)
                .ok_or_else(|| ArpError::NoInterface(name.to_owned()))?;
            let socket = reply_socket(source).map_err(|e| ArpError::Socket(name.to_owned(), e))?;
            let config = pnet_datalink::Config {
                // Short, so sending keeps its pace while nothing arrives.
                read_timeout: Some(Duration::from_millis(1)),
                promiscuous: false,
                read_buffer_size: 65_536,
                socket_fd: Some(std::os::fd::IntoRawFd::into_raw_fd(socket)),
                ..Default::default()
            };
            match pnet_datalink::channel(&iface, config) {
                Ok(pnet_datalink::Channel::Ethernet(tx, rx)) => Ok(Self { tx, rx }),
                Ok(_) => Err(ArpError::NotEthernet(name.to_owned())),
                Err(error) => Err(ArpError::Socket(name.to_owned(), error)),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = source;
            Err(ArpError::NotEthernet(format!(
                "{name} (ARP sweeps need Linux)"
            )))
        }
    }

    /// Sweeps one segment (blocking); calls `found` for every live address once, as it
    /// answers, and `probed` after each address's first request.
    pub fn sweep(
        mut self,
        segment: &Segment,
        options: &ArpOptions,
        cancel: &CancellationToken,
        found: &mut dyn FnMut(ArpReply),
        probed: &mut dyn FnMut(),
    ) {
        #[cfg(target_os = "linux")]
        {
            let (tx, rx) = (&mut self.tx, &mut self.rx);
            run(
                segment,
                options,
                cancel,
                found,
                probed,
                &mut |frame| tx.send_to(frame, None).unwrap_or(Ok(())),
                &mut || rx.next().ok().map(<[u8]>::to_vec),
            );
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (&mut self, segment, options, cancel, found, probed);
        }
    }
}

/// A raw packet socket whose kernel filter keeps only ARP replies to `source`, with a large
/// receive buffer. Without the filter the socket would also queue every other frame on the
/// segment, our own broadcast requests included, and under load the replies we wait for
/// would be the frames the kernel drops when that queue is full.
#[cfg(target_os = "linux")]
fn reply_socket(source: Ipv4Addr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, SockFilter, Socket, Type};
    const ETH_P_ARP: u16 = 0x0806;
    // Classic BPF: ethertype ARP, operation 2 (reply), target protocol address ours.
    const LD_H_ABS: u16 = 0x28;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let filter = [
        SockFilter::new(LD_H_ABS, 0, 0, 12),
        SockFilter::new(JEQ_K, 0, 5, u32::from(ETH_P_ARP)),
        SockFilter::new(LD_H_ABS, 0, 0, 20),
        SockFilter::new(JEQ_K, 0, 3, 2),
        SockFilter::new(LD_W_ABS, 0, 0, 38),
        SockFilter::new(JEQ_K, 0, 1, u32::from(source)),
        SockFilter::new(RET_K, 0, 0, 0xffff),
        SockFilter::new(RET_K, 0, 0, 0),
    ];
    let protocol = Protocol::from(i32::from(ETH_P_ARP.to_be()));
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(protocol))?;
    socket.attach_filter(&filter)?;
    if let Err(error) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::debug!(%error, "ARP socket keeps the default receive buffer");
    }
    Ok(socket)
}

/// The sweep's logic over any frame sender and receiver (so it can be tested without one).
fn run(
    segment: &Segment,
    options: &ArpOptions,
    cancel: &CancellationToken,
    found: &mut dyn FnMut(ArpReply),
    probed: &mut dyn FnMut(),
    send: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    recv: &mut dyn FnMut() -> Option<Vec<u8>>,
) {
    let mut pace = Pace::new(options.rate);
    let attempts = options.rounds.max(1);
    let mut probes: HashMap<Ipv4Addr, Probe> = HashMap::with_capacity(segment.targets.len());
    let mut queue: VecDeque<Ipv4Addr> = segment.targets.iter().copied().collect();
    // Repeats for silent addresses, due a few round-trip times after their last request,
    // interleaved with first requests (repeats first).
    let mut repeats: BinaryHeap<Reverse<(Instant, Ipv4Addr)>> = BinaryHeap::new();
    let mut next_send = Instant::now();
    let mut max_rtt = Duration::ZERO;
    let mut window = options.timeout;
    let started = Instant::now();
    let mut last_sent = started;
    let mut last_reply = started;
    let mut silent = segment.targets.len();
    let mut refused = 0u32;
    let mut frame = [0u8; 42];
    while !cancel.is_cancelled() {
        let now = Instant::now();
        // Send what is due (at most a few at once when the thread was late).
        let mut burst = 0;
        while burst < 8 && next_send <= now {
            let ip = match repeats.peek() {
                Some(Reverse((due, ip))) if *due <= now => {
                    let ip = *ip;
                    repeats.pop();
                    ip
                }
                _ => match queue.pop_front() {
                    Some(ip) => ip,
                    None => break,
                },
            };
            if probes.get(&ip).is_some_and(|p| p.found) {
                continue;
            }
            request(&mut frame, segment, ip);
            match send(&frame) {
                Ok(()) => {}
                // A full transmit queue: try this address again shortly.
                Err(error) if refused < 200 => {
                    refused += 1;
                    tracing::debug!(%ip, %error, "ARP request not sent; retrying");
                    queue.push_front(ip);
                    next_send = now + Duration::from_millis(5);
                    break;
                }
                Err(error) => {
                    tracing::warn!(iface = %segment.iface, %error, "ARP requests cannot be sent");
                    return;
                }
            }
            let probe = probes.entry(ip).or_insert(Probe {
                first: now,
                last: now,
                attempts: 0,
                found: false,
                asked_again: false,
            });
            probe.last = now;
            probe.attempts += 1;
            if probe.attempts == 1 {
                probed();
            }
            if probe.attempts < attempts {
                let after = (max_rtt * 3).clamp(options.gap, window.max(options.gap));
                repeats.push(Reverse((now + after, ip)));
            }
            last_sent = now;
            next_send += pace.interval();
            burst += 1;
        }
        pace.tick(now);
        if next_send < now.checked_sub(pace.interval() * 8).unwrap_or(now) {
            next_send = now;
        }
        if queue.is_empty() && repeats.is_empty() {
            // Done once replies have stopped coming for a few round-trip times after the last
            // request (a busy network answers late), and at the latest a timeout after it.
            let quiet = (max_rtt * 4).clamp(MIN_FINAL_WAIT, window.max(MIN_FINAL_WAIT));
            if silent == 0
                || now.duration_since(last_sent.max(last_reply)) >= quiet
                || now.duration_since(last_sent) >= window.max(MIN_FINAL_WAIT)
            {
                tracing::debug!(iface = %segment.iface, silent,
                    last_sent_ms = last_sent.duration_since(started).as_millis() as u64,
                    done_ms = now.duration_since(started).as_millis() as u64,
                    max_rtt_ms = max_rtt.as_millis() as u64,
                    rate = pace.rate as u64, "ARP sweep of the segment done");
                break;
            }
        }
        // Drain what has arrived before sending more: a reply is timed when it is read, so
        // reading promptly keeps a busy machine's replies inside their window.
        for _ in 0..DRAIN {
            let Some(bytes) = recv() else { break };
            let at = Instant::now();
            let Some((ip, mac)) = parse_reply(&bytes, segment) else {
                continue;
            };
            let Some(probe) = probes.get_mut(&ip) else {
                continue;
            };
            if probe.found {
                continue;
            }
            // Late (past the window of our latest request): not counted, but it tells the
            // pacer the segment is slow, and widens the window (as nmap's timeouts follow
            // the round-trip times it sees).
            let delay = at.duration_since(probe.last);
            if delay > window {
                pace.reply(at, delay);
                window = (delay * 2).min(options.timeout * 4);
                // The late reply is not counted, but it says someone lives there: once its
                // rounds are spent, ask it once more, to be answered within the wider window.
                if probe.attempts >= attempts && !probe.asked_again {
                    probe.asked_again = true;
                    repeats.push(Reverse((at, ip)));
                }
                continue;
            }
            probe.found = true;
            silent -= 1;
            let rtt = at.duration_since(if probe.attempts == 1 {
                probe.first
            } else {
                probe.last
            });
            max_rtt = max_rtt.max(rtt);
            last_reply = at;
            pace.reply(at, rtt);
            found(ArpReply {
                ip,
                mac,
                rtt,
                attempts: probe.attempts,
            });
        }
    }
}

/// The request rate, adapted to how fast the segment answers (delay-based, like nmap's
/// timing): it starts low, grows while replies come back quickly, and halves when they come
/// back late — a segment (or its hosts) falling behind queues our broadcasts, and answers that
/// arrive after the timeout are lost. Never above the configured rate.
struct Pace {
    max: f64,
    rate: f64,
    /// Slow replies seen since the last change, fast ones too.
    slow: bool,
    fast: bool,
    changed: Instant,
}

/// A reply slower than this means requests are queueing somewhere.
const SLOW_REPLY: Duration = Duration::from_millis(50);
/// Replies this fast let the rate grow.
const FAST_REPLY: Duration = Duration::from_millis(15);
/// The lowest rate the pacer falls to.
const MIN_RATE: f64 = 100.0;
/// How often the rate may change.
const PACE_STEP: Duration = Duration::from_millis(40);

impl Pace {
    fn new(max: u32) -> Self {
        let max = f64::from(max.max(1));
        Self {
            max,
            rate: max.min(500.0),
            slow: false,
            fast: false,
            changed: Instant::now(),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    fn reply(&mut self, at: Instant, rtt: Duration) {
        if rtt >= SLOW_REPLY {
            self.slow = true;
            // Back off at once, but only once per step: the replies of one queue arrive
            // together.
            if at.duration_since(self.changed) >= PACE_STEP {
                self.rate = (self.rate / 2.0).max(MIN_RATE.min(self.max));
                self.changed = at;
                self.slow = false;
                self.fast = false;
            }
        } else if rtt <= FAST_REPLY {
            self.fast = true;
        }
    }

    fn tick(&mut self, now: Instant) {
        if now.duration_since(self.changed) >= PACE_STEP {
            if self.fast && !self.slow {
                self.rate = (self.rate * 1.5).min(self.max);
            }
            self.changed = now;
            self.slow = false;
            self.fast = false;
        }
    }
}

const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];

/// A broadcast who-has for `target`, from our MAC and address.
fn request(frame: &mut [u8; 42], segment: &Segment, target: Ipv4Addr) {
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&segment.mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP);
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    frame[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    frame[22..28].copy_from_slice(&segment.mac);
    frame[28..32].copy_from_slice(&segment.source.octets());
    frame[32..38].copy_from_slice(&[0; 6]);
    frame[38..42].copy_from_slice(&target.octets());
}

/// The sender of an ARP reply addressed to us (our MAC and address as its target), or `None`
/// for anything else: requests (ours echoed back, or others'), gratuitous ARP, replies to
/// other hosts, other protocols.
pub(crate) fn parse_reply(frame: &[u8], segment: &Segment) -> Option<(Ipv4Addr, [u8; 6])> {
    if frame.len() < 42 || frame[12..14] != ETHERTYPE_ARP {
        return None;
    }
    let arp = &frame[14..42];
    if arp[0..8] != [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02] {
        return None;
    }
    let sender_mac: [u8; 6] = arp[8..14].try_into().ok()?;
    let sender_ip = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
    let target_mac = &arp[18..24];
    let target_ip = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
    let to_us = target_mac == segment.mac && target_ip == segment.source;
    let gratuitous = sender_ip == target_ip;
    (to_us && !gratuitous && sender_mac != [0; 6] && sender_mac[0] & 1 == 0)
        .then_some((sender_ip, sender_mac))
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const US: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

    fn segment(targets: &[Ipv4Addr]) -> Segment {
        Segment {
            iface: "lab0".into(),
            source: Ipv4Addr::new(198, 18, 0, 1),
            mac: US,
            targets: targets.to_vec(),
        }
    }

    fn reply(from: Ipv4Addr, mac: [u8; 6], to_mac: [u8; 6], to_ip: Ipv4Addr, op: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&to_mac);
        f[6..12].copy_from_slice(&mac);
        f[12..14].copy_from_slice(&ETHERTYPE_ARP);
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, op]);
        f[22..28].copy_from_slice(&mac);
        f[28..32].copy_from_slice(&from.octets());
        f[32..38].copy_from_slice(&to_mac);
        f[38..42].copy_from_slice(&to_ip.octets());
        f
    }

    /// A fake segment: `live` answer every request once; `extra` frames arrive unasked.
    fn simulate(
        targets: &[Ipv4Addr],
        live: &[(Ipv4Addr, [u8; 6])],
        extra: Vec<Vec<u8>>,
        drop_first: bool,
    ) -> (Vec<ArpReply>, usize) {
        let seg = segment(targets);
        let inbox: RefCell<VecDeque<Vec<u8>>> = RefCell::new(extra.into());
        let sent = RefCell::new(0usize);
        let dropped = RefCell::new(std::collections::HashSet::new());
        let mut send = |frame: &[u8]| {
            *sent.borrow_mut() += 1;
            let target = Ipv4Addr::new(frame[38], frame[39], frame[40], frame[41]);
            if let Some((ip, mac)) = live.iter().find(|(ip, _)| *ip == target) {
                if drop_first && dropped.borrow_mut().insert(*ip) {
                    return Ok(());
                }
                inbox
                    .borrow_mut()
                    .push_back(reply(*ip, *mac, US, seg.source, 2));
            }
            Ok(())
        };
        let mut recv = || inbox.borrow_mut().pop_front();
        let mut found = Vec::new();
        let options = ArpOptions {
            rate: 100_000,
            rounds: 3,
            gap: Duration::from_millis(5),
            timeout: Duration::from_millis(300),
        };
        run(
            &seg,
            &options,
            &CancellationToken::new(),
            &mut |r| found.push(r),
            &mut || {},
            &mut send,
            &mut recv,
        );
        let count = *sent.borrow();
        (found, count)
    }

    #[test]
    fn only_replies_to_us_from_probed_addresses_count() {
        let live = Ipv4Addr::new(198, 18, 0, 7);
        let dead = Ipv4Addr::new(198, 18, 0, 8);
        let outside = Ipv4Addr::new(198, 18, 0, 9);
        let mac = [0x00, 0x1b, 0x21, 1, 2, 3];
        let other = [0x02, 9, 9, 9, 9, 9];
        let extra = vec![
            // Unasked replies, a reply to another host, a request for us, a gratuitous ARP.
            reply(outside, mac, US, Ipv4Addr::new(198, 18, 0, 1), 2),
            reply(dead, mac, other, Ipv4Addr::new(198, 18, 0, 5), 2),
            reply(dead, mac, [0; 6], Ipv4Addr::new(198, 18, 0, 1), 1),
            reply(dead, mac, [0xff; 6], dead, 2),
        ];
        let (found, sent) = simulate(&[live, dead], &[(live, mac)], extra, false);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].ip, found[0].mac, found[0].attempts),
            (live, mac, 1)
        );
        // The silent address got all three rounds; the live one one request.
        assert_eq!(sent, 4);
    }

    #[test]
    fn a_lost_request_is_repeated_in_the_next_round() {
        let hosts: Vec<(Ipv4Addr, [u8; 6])> = (10..40)
            .map(|i| (Ipv4Addr::new(198, 18, 0, i), [0x00, 0x1b, 0x21, 0, 0, i]))
            .collect();
        let targets: Vec<Ipv4Addr> = (2..=254).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
        let (found, _) = simulate(&targets, &hosts, Vec::new(), true);
        let mut ips: Vec<Ipv4Addr> = found.iter().map(|r| r.ip).collect();
        ips.sort();
        assert_eq!(ips, hosts.iter().map(|h| h.0).collect::<Vec<_>>());
        assert!(found.iter().all(|r| r.attempts == 2));
    }

    /// A host whose answers to every round come too late is not counted for them, but is
    /// asked once more, and its prompt answer to that request counts.
    #[test]
    fn a_late_reply_earns_one_more_request() {
        let host = Ipv4Addr::new(198, 18, 0, 20);
        let mac = [0x00, 0x1b, 0x21, 0, 0, 20];
        let seg = segment(&[host]);
        let options = ArpOptions {
            rate: 10_000,
            rounds: 2,
            gap: Duration::from_millis(5),
            timeout: Duration::from_millis(100),
        };
        // Replies to the first two requests arrive 250 ms after them; the third at once.
        let pending: RefCell<Vec<(Instant, Vec<u8>)>> = RefCell::new(Vec::new());
        let requests = RefCell::new(0u32);
        let mut send = |_: &[u8]| {
            *requests.borrow_mut() += 1;
            let delay = if *requests.borrow() <= 2 { 250 } else { 0 };
            let due = Instant::now() + Duration::from_millis(delay);
            pending
                .borrow_mut()
                .push((due, reply(host, mac, US, seg.source, 2)));
            Ok(())
        };
        let mut recv = || {
            std::thread::sleep(Duration::from_millis(1));
            let mut pending = pending.borrow_mut();
            let now = Instant::now();
            let i = pending.iter().position(|(due, _)| *due <= now)?;
            Some(pending.remove(i).1)
        };
        let mut found = Vec::new();
        run(
            &seg,
            &options,
            &CancellationToken::new(),
            &mut |r| found.push(r),
            &mut || {},
            &mut send,
            &mut recv,
        );
        assert_eq!(found.len(), 1, "found once: {found:?}");
        assert_eq!(found[0].attempts, 3, "credited to the extra request");
        assert_eq!(*requests.borrow(), 3, "exactly one extra request");
    }

    #[test]
    fn requests_are_well_formed() {
        let seg = segment(&[]);
        let mut frame = [0u8; 42];
        request(&mut frame, &seg, Ipv4Addr::new(198, 18, 2, 3));
        assert_eq!(&frame[0..6], &[0xff; 6]);
        assert_eq!(&frame[12..14], &ETHERTYPE_ARP);
        assert_eq!(&frame[28..32], &[198, 18, 0, 1]);
        assert_eq!(&frame[38..42], &[198, 18, 2, 3]);
        assert_eq!(
            mac_text(&[0, 0x1b, 0x21, 0xaa, 0xbb, 0x0c]),
            "00:1b:21:aa:bb:0c"
        );
    }
}
