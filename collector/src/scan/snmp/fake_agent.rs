//! Test-only: a tiny SNMP v2c responder on 127.0.0.1 that misbehaves on purpose (non-increasing
//! OIDs, endless tables, wrong types, garbage packets, silence), so the walk bounds can be tested
//! against a real socket.

use tokio::net::UdpSocket;

use super::value::{OidVec, Val};

/// One BER TLV with a definite length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn int_bytes(n: i64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    bytes[start..].to_vec()
}

fn uint_bytes(n: u64) -> Vec<u8> {
    let mut v = n.to_be_bytes().to_vec();
    v.insert(0, 0);
    while v.len() > 1 && v[0] == 0 && v[1] & 0x80 == 0 {
        v.remove(0);
    }
    v
}

/// BER encoding of an OID (content only). Needs at least two arcs; pads with zeros otherwise.
pub(crate) fn oid_bytes(oid: &[u64]) -> Vec<u8> {
    let a = oid.first().copied().unwrap_or(0);
    let b = oid.get(1).copied().unwrap_or(0);
    let mut out = Vec::new();
    let mut push = |mut arc: u64| {
        let mut tmp = vec![(arc & 0x7f) as u8];
        arc >>= 7;
        while arc > 0 {
            tmp.push(0x80 | (arc & 0x7f) as u8);
            arc >>= 7;
        }
        tmp.reverse();
        out.extend(tmp);
    };
    push(a.saturating_mul(40).saturating_add(b));
    for &arc in oid.iter().skip(2) {
        push(arc);
    }
    out
}

/// BER encoding of one value (full TLV).
pub(crate) fn value_tlv(val: &Val) -> Vec<u8> {
    match val {
        Val::Int(n) => tlv(0x02, &int_bytes(*n)),
        Val::Str(b) => tlv(0x04, b),
        Val::Oid(o) => tlv(0x06, &oid_bytes(o)),
        Val::Ip(ip) => tlv(0x40, ip),
        Val::Counter32(n) => tlv(0x41, &uint_bytes(u64::from(*n))),
        Val::Unsigned32(n) => tlv(0x42, &uint_bytes(u64::from(*n))),
        Val::Ticks(n) => tlv(0x43, &uint_bytes(u64::from(*n))),
        Val::Opaque(b) => tlv(0x44, b),
        Val::Counter64(n) => tlv(0x46, &uint_bytes(*n)),
        Val::Bool(b) => tlv(0x01, &[u8::from(*b)]),
        Val::EndOfMibView => tlv(0x82, &[]),
        Val::NoSuchObject => tlv(0x80, &[]),
        Val::NoSuchInstance => tlv(0x81, &[]),
        Val::Null => tlv(0x05, &[]),
        // A SEQUENCE where a value should be: a type no varbind may carry.
        Val::Unexpected => tlv(0x30, &[]),
    }
}

/// Encodes a v2c GetResponse.
pub(crate) fn encode_response(
    community: &[u8],
    req_id: i32,
    error_status: i64,
    varbinds: &[(OidVec, Val)],
) -> Vec<u8> {
    let mut vbs = Vec::new();
    for (oid, val) in varbinds {
        let mut vb = tlv(0x06, &oid_bytes(oid));
        vb.extend(value_tlv(val));
        vbs.extend(tlv(0x30, &vb));
    }
    let mut pdu = tlv(0x02, &int_bytes(i64::from(req_id)));
    pdu.extend(tlv(0x02, &int_bytes(error_status)));
    pdu.extend(tlv(0x02, &int_bytes(0)));
    pdu.extend(tlv(0x30, &vbs));
    let mut msg = tlv(0x02, &int_bytes(1));
    msg.extend(tlv(0x04, community));
    msg.extend(tlv(snmp2::snmp::MSG_RESPONSE, &pdu));
    tlv(0x30, &msg)
}

/// What the fake agent does with each request.
pub(crate) type Behaviour = Box<dyn Fn(&Request) -> Option<Vec<u8>> + Send + Sync>;

/// A decoded request: id, type and the requested OIDs.
pub(crate) struct Request {
    pub req_id: i32,
    pub community: Vec<u8>,
    pub kind: snmp2::MessageType,
    pub oids: Vec<OidVec>,
}

/// Binds 127.0.0.1:0 and answers every request with `behave`; returns the address.
pub(crate) async fn spawn(behave: Behaviour) -> std::net::SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind fake agent");
    let addr = socket.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(pdu) = snmp2::Pdu::from_bytes(&buf[..n]) else {
                continue;
            };
            let req = Request {
                req_id: pdu.req_id,
                community: pdu.community.to_vec(),
                kind: pdu.message_type,
                oids: pdu
                    .varbinds
                    .filter_map(|(oid, _)| super::value::oid_to_vec(&oid))
                    .collect(),
            };
            if let Some(reply) = behave(&req) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    addr
}
