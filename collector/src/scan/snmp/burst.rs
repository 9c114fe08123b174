//! The SNMP probe burst: one small GET (sysDescr, sysObjectID, sysName, sysServices) per
//! community to every live host, from one UDP socket, paced, with answers collected within one
//! timeout (and one repeat to hosts still silent at 40 % of it); for SNMPv3 credentials one
//! engine-discovery request instead, whose report says an SNMPv3 agent is there. Hosts arrive
//! as the sweep finds them, so the burst runs alongside the sweep; each host's verdict is
//! handed on as soon as it is known (its first-choice credential answered, or its window
//! closed), and only hosts that answered get a full inventory. A silent host costs two small
//! datagrams and nothing else: no session, no per-host timeouts in series.
//!
//! An answer counts only from the host's own address and port, with a request id (v1/v2c) or
//! message id (v3) we sent that host, and (v1/v2c) the community we sent.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::value::{Val, copy_varbinds, oid_string, text, uint};
use super::{Credential, SystemInfo};

/// What one host said to the burst.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heard {
    /// Indexes (into the credential list) of the communities that got an answer.
    pub communities: Vec<usize>,
    /// An SNMPv3 engine answered discovery.
    pub v3_engine: bool,
    /// The system group from the first community answer.
    pub system: Option<SystemInfo>,
}

impl Heard {
    pub fn any(&self) -> bool {
        !self.communities.is_empty() || self.v3_engine
    }
}

/// How the burst behaves.
#[derive(Debug, Clone)]
pub struct BurstOptions {
    pub port: u16,
    pub timeout: Duration,
    /// Requests per second.
    pub rate: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Asked {
    Community(usize),
    Engine,
}

struct Pending {
    started: Instant,
    repeated: bool,
    /// The credential the host is asked with first (remembered or configured first).
    first: Option<usize>,
    heard: Heard,
}

/// Runs the burst over the hosts arriving on `hosts` (closed when the sweep is done), with
/// `order(ip)` giving the credential indexes to try for a host, best first. Calls `done` for
/// every host once, with what it heard (possibly nothing).
pub async fn run(
    mut hosts: mpsc::Receiver<Ipv4Addr>,
    credentials: &[Credential],
    order: &(dyn Fn(Ipv4Addr) -> Vec<usize> + Sync),
    options: &BurstOptions,
    cancel: &CancellationToken,
    done: &mut (dyn FnMut(Ipv4Addr, Heard) + Send),
) {
    let socket = match UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "No SNMP probe socket; SNMP skipped this scan");
            while let Some(ip) = hosts.recv().await {
                done(ip, Heard::default());
            }
            return;
        }
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
    let has_v3 = credentials
        .iter()
        .any(|c| matches!(c, Credential::V3 { .. }));
    let mut next_id: i32 = rand::random::<i32>() & 0x3fff_ffff;
    let mut asked: HashMap<i32, (Ipv4Addr, Asked)> = HashMap::new();
    let mut pending: HashMap<Ipv4Addr, Pending> = HashMap::new();
    let mut open = true;
    let mut buf = vec![0u8; 65_536];
    let mut next_send = Instant::now();
    // Requests waiting for the pacer: (host, what, request id).
    let mut outbox: std::collections::VecDeque<(Ipv4Addr, Asked, i32)> = Default::default();
    let mut enqueue = |ip: Ipv4Addr,
                       outbox: &mut std::collections::VecDeque<(Ipv4Addr, Asked, i32)>,
                       asked: &mut HashMap<i32, (Ipv4Addr, Asked)>,
                       order: &[usize]| {
        for &index in order {
            if matches!(credentials[index], Credential::V3 { .. }) {
                continue;
            }
            next_id = (next_id + 1) & 0x3fff_ffff;
            asked.insert(next_id, (ip, Asked::Community(index)));
            outbox.push_back((ip, Asked::Community(index), next_id));
        }
        if has_v3 {
            next_id = (next_id + 1) & 0x3fff_ffff;
            asked.insert(next_id, (ip, Asked::Engine));
            outbox.push_back((ip, Asked::Engine, next_id));
        }
    };
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let now = Instant::now();
        // Pace the outbox.
        while next_send <= now
            && let Some((ip, what, id)) = outbox.pop_front()
        {
            let packet = match what {
                Asked::Community(index) => get_request(&credentials[index], id),
                Asked::Engine => Some(discovery_request(id)),
            };
            if let Some(packet) = packet {
                let _ = socket
                    .send_to(&packet, SocketAddr::from((ip, options.port)))
                    .await;
            }
            next_send += interval;
        }
        if next_send < now {
            next_send = now;
        }
        // Windows: a repeat at 40 %, a verdict at the end.
        let mut closed = Vec::new();
        for (ip, p) in &mut pending {
            let age = now.duration_since(p.started);
            if !p.repeated && !p.heard.any() && age >= options.timeout.mul_f64(0.4) {
                p.repeated = true;
                let o = order(*ip);
                enqueue(*ip, &mut outbox, &mut asked, &o);
            }
            let window = if p.repeated {
                options.timeout.mul_f64(1.4)
            } else {
                options.timeout
            };
            let first_answered = p.first.is_some_and(|f| p.heard.communities.contains(&f));
            if first_answered || age >= window {
                closed.push(*ip);
            }
        }
        for ip in closed {
            if let Some(p) = pending.remove(&ip) {
                asked.retain(|_, (host, _)| *host != ip);
                done(ip, p.heard);
            }
        }
        if !open && pending.is_empty() && outbox.is_empty() {
            return;
        }
        let wake = if outbox.is_empty() {
            now + Duration::from_millis(20)
        } else {
            next_send.max(now)
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            host = hosts.recv(), if open => match host {
                Some(ip) => {
                    let o = order(ip);
                    let first = o.first().copied().filter(|i| !matches!(credentials[*i], Credential::V3 { .. }));
                    pending.insert(ip, Pending { started: Instant::now(), repeated: false, first, heard: Heard::default() });
                    enqueue(ip, &mut outbox, &mut asked, &o);
                }
                None => open = false,
            },
            () = tokio::time::sleep_until(wake) => {}
            received = socket.recv_from(&mut buf) => {
                let Ok((len, SocketAddr::V4(from))) = received else { continue };
                if from.port() != options.port {
                    continue;
                }
                let Some((id, answer)) = decode(&buf[..len], credentials, &asked) else { continue };
                let Some(&(ip, what)) = asked.get(&id) else { continue };
                if ip != *from.ip() {
                    continue;
                }
                let Some(p) = pending.get_mut(&ip) else { continue };
                match (what, answer) {
                    (Asked::Community(index), Answer::Get(system)) => {
                        if !p.heard.communities.contains(&index) {
                            p.heard.communities.push(index);
                        }
                        if p.heard.system.is_none() {
                            p.heard.system = Some(system);
                        }
                    }
                    (Asked::Engine, Answer::Engine) => p.heard.v3_engine = true,
                    _ => {}
                }
            }
        }
    }
}

pub(crate) enum Answer {
    Get(SystemInfo),
    Engine,
}

const SYS_OIDS: [&[u32]; 4] = [
    &[1, 3, 6, 1, 2, 1, 1, 1, 0],
    &[1, 3, 6, 1, 2, 1, 1, 2, 0],
    &[1, 3, 6, 1, 2, 1, 1, 5, 0],
    &[1, 3, 6, 1, 2, 1, 1, 7, 0],
];

/// A v1/v2c GetRequest of the four system objects.
fn get_request(credential: &Credential, id: i32) -> Option<Vec<u8>> {
    let (version, community) = match credential {
        Credential::V1 { community } => (0, community),
        Credential::V2c { community } => (1, community),
        Credential::V3 { .. } => return None,
    };
    let varbinds: Vec<u8> = SYS_OIDS
        .iter()
        .flat_map(|oid| {
            tlv(
                0x30,
                &[tlv(0x06, &encode_oid(oid)), vec![0x05, 0x00]].concat(),
            )
        })
        .collect();
    let pdu = tlv(
        0xa0,
        &[int(i64::from(id)), int(0), int(0), tlv(0x30, &varbinds)].concat(),
    );
    Some(tlv(
        0x30,
        &[int(version), tlv(0x04, community.as_bytes()), pdu].concat(),
    ))
}

/// An SNMPv3 engine-discovery request (noAuthNoPriv, reportable, empty user).
fn discovery_request(id: i32) -> Vec<u8> {
    let global = tlv(
        0x30,
        &[int(i64::from(id)), int(65_507), tlv(0x04, &[0x04]), int(3)].concat(),
    );
    let usm = tlv(
        0x30,
        &[
            tlv(0x04, &[]),
            int(0),
            int(0),
            tlv(0x04, &[]),
            tlv(0x04, &[]),
            tlv(0x04, &[]),
        ]
        .concat(),
    );
    let pdu = tlv(
        0xa0,
        &[int(i64::from(id)), int(0), int(0), tlv(0x30, &[])].concat(),
    );
    let scoped = tlv(0x30, &[tlv(0x04, &[]), tlv(0x04, &[]), pdu].concat());
    tlv(0x30, &[int(3), global, tlv(0x04, &usm), scoped].concat())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn int(n: i64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(0x02, &bytes[start..])
}

fn encode_oid(arcs: &[u32]) -> Vec<u8> {
    let mut out = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    out
}

/// One BER element: `(tag, content, rest)`.
fn element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = data
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let content = data.get(head..head.checked_add(len)?)?;
    Some((tag, content, &data[head + len..]))
}

fn integer(content: &[u8]) -> Option<i64> {
    if content.is_empty() || content.len() > 8 {
        return None;
    }
    let negative = content[0] & 0x80 != 0;
    Some(
        content
            .iter()
            .fold(if negative { -1 } else { 0 }, |acc, b| {
                (acc << 8) | i64::from(*b)
            }),
    )
}

/// The id an answer carries and what it says; `None` for anything that is not a response to
/// a request of ours (a wrong community included).
pub(crate) fn decode(
    packet: &[u8],
    credentials: &[Credential],
    asked: &HashMap<i32, (Ipv4Addr, Asked)>,
) -> Option<(i32, Answer)> {
    let (tag, message, _) = element(packet)?;
    if tag != 0x30 {
        return None;
    }
    let (_, version, rest) = element(message)?;
    if integer(version)? == 3 {
        let (tag, global, _) = element(rest)?;
        if tag != 0x30 {
            return None;
        }
        let (_, id, _) = element(global)?;
        let id = i32::try_from(integer(id)?).ok()?;
        return matches!(asked.get(&id), Some((_, Asked::Engine))).then_some((id, Answer::Engine));
    }
    let pdu = snmp2::Pdu::from_bytes(packet).ok()?;
    if pdu.message_type != snmp2::MessageType::Response {
        return None;
    }
    let id = pdu.req_id;
    let Some((_, Asked::Community(index))) = asked.get(&id) else {
        return None;
    };
    let community = match &credentials[*index] {
        Credential::V1 { community } | Credential::V2c { community } => community,
        Credential::V3 { .. } => return None,
    };
    if pdu.community != community.as_bytes() {
        return None;
    }
    let values: Vec<Val> = copy_varbinds(pdu).into_iter().map(|(_, v)| v).collect();
    let t = |i: usize| values.get(i).and_then(text).unwrap_or_default();
    Some((
        id,
        Answer::Get(SystemInfo {
            descr: t(0),
            object_id: values.get(1).and_then(oid_string).unwrap_or_default(),
            name: t(2),
            services: values
                .get(3)
                .and_then(uint)
                .and_then(|v| u32::try_from(v).ok()),
            ..SystemInfo::default()
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_back() {
        let c = Credential::V2c {
            community: "public".into(),
        };
        let packet = get_request(&c, 0x1234_5678).expect("v2c");
        let pdu = snmp2::Pdu::from_bytes(&packet).expect("our GET parses");
        assert_eq!(pdu.req_id, 0x1234_5678);
        assert_eq!(pdu.community, b"public");
        assert_eq!(pdu.varbinds.count(), 4);
        let d = discovery_request(77);
        let (_, message, _) = element(&d).expect("outer");
        let (_, version, rest) = element(message).expect("version");
        assert_eq!(integer(version), Some(3));
        let (_, global, _) = element(rest).expect("global");
        assert_eq!(integer(element(global).expect("id").1), Some(77));
        assert_eq!(integer(&[0xff, 0x7f]), Some(-129));
        assert_eq!(int(-129), vec![0x02, 0x02, 0xff, 0x7f]);
        assert_eq!(int(128), vec![0x02, 0x02, 0x00, 0x80]);
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        let asked = HashMap::new();
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = decode(&junk, &[], &asked);
        }
    }

    #[tokio::test]
    async fn the_fake_agent_answers_the_burst_and_a_silent_host_gets_a_verdict() {
        use super::super::fake_agent::{encode_response, spawn};
        let addr = spawn(Box::new(|req| {
            (req.community == b"public").then(|| {
                let vbs: Vec<_> = req
                    .oids
                    .iter()
                    .map(|o| (o.clone(), Val::Str(b"Lab agent".to_vec())))
                    .collect();
                encode_response(b"public", req.req_id, 0, &vbs)
            })
        }))
        .await;
        let port = addr.port();
        let credentials = vec![
            Credential::V2c {
                community: "wrong".into(),
            },
            Credential::V2c {
                community: "public".into(),
            },
        ];
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ipv4Addr::LOCALHOST).await.expect("send");
        // Nothing listens on this address's port: silent.
        tx.send(Ipv4Addr::new(127, 0, 0, 2)).await.expect("send");
        drop(tx);
        let mut verdicts = Vec::new();
        run(
            rx,
            &credentials,
            &|_| vec![0, 1],
            &BurstOptions {
                port,
                timeout: Duration::from_millis(300),
                rate: 1000,
            },
            &CancellationToken::new(),
            &mut |ip, heard| verdicts.push((ip, heard)),
        )
        .await;
        verdicts.sort_by_key(|v| v.0);
        assert_eq!(verdicts.len(), 2);
        assert_eq!(verdicts[0].1.communities, vec![1]);
        assert_eq!(
            verdicts[0].1.system.as_ref().map(|s| s.name.as_str()),
            Some("Lab agent")
        );
        assert!(!verdicts[1].1.any());
    }
}
