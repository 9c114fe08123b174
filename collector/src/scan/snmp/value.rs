//! The one place where SNMP values become Rust values.
//!
//! snmp2 hands out [`snmp2::Value`]s that borrow the receive buffer of the session, so every
//! varbind is copied into an owned [`Val`] before the next request. All later code (table
//! assembly, classification) reads values only through the typed accessors here, which check
//! the SNMP type and treat NULL / noSuchObject / noSuchInstance / endOfMibView as absent.
//! Nothing here panics on any input: the property tests at the end feed random bytes and
//! random value types through it.

use std::fmt::Write as _;

use snmp2::{Oid, Value};

/// A numeric OID, e.g. `[1, 3, 6, 1, 2, 1, 1, 1, 0]`.
pub type OidVec = Vec<u64>;

/// An owned copy of one SNMP value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Str(Vec<u8>),
    Oid(OidVec),
    Ip([u8; 4]),
    Counter32(u32),
    /// Gauge32 / Unsigned32 (same BER tag).
    Unsigned32(u32),
    Ticks(u32),
    Counter64(u64),
    Opaque(Vec<u8>),
    Bool(bool),
    Null,
    EndOfMibView,
    NoSuchObject,
    NoSuchInstance,
    /// A type that has no business in a varbind (a nested PDU, a SEQUENCE, an OID with an arc
    /// too large for `u64`, ...). Walks stop when they meet one.
    Unexpected,
}

impl Val {
    /// Copies a borrowed snmp2 value.
    pub fn from_snmp(value: &Value<'_>) -> Val {
        match value {
            Value::Integer(n) => Val::Int(*n),
            Value::OctetString(b) => Val::Str(b.to_vec()),
            Value::ObjectIdentifier(oid) => oid_to_vec(oid).map_or(Val::Unexpected, Val::Oid),
            Value::IpAddress(ip) => Val::Ip(*ip),
            Value::Counter32(n) => Val::Counter32(*n),
            Value::Unsigned32(n) => Val::Unsigned32(*n),
            Value::Timeticks(n) => Val::Ticks(*n),
            Value::Counter64(n) => Val::Counter64(*n),
            Value::Opaque(b) => Val::Opaque(b.to_vec()),
            Value::Boolean(b) => Val::Bool(*b),
            Value::Null => Val::Null,
            Value::EndOfMibView => Val::EndOfMibView,
            Value::NoSuchObject => Val::NoSuchObject,
            Value::NoSuchInstance => Val::NoSuchInstance,
            _ => Val::Unexpected,
        }
    }

    /// NULL, the three v2 exceptions and unexpected types carry no data.
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            Val::Null
                | Val::EndOfMibView
                | Val::NoSuchObject
                | Val::NoSuchInstance
                | Val::Unexpected
        )
    }

    /// Rough memory cost, for the per-walk byte bound.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Val::Str(b) | Val::Opaque(b) => b.len() + 8,
            Val::Oid(o) => o.len() * 8 + 8,
            _ => 8,
        }
    }
}

/// The arcs of an snmp2 OID, or `None` when an arc does not fit in `u64` (hostile input).
pub fn oid_to_vec(oid: &Oid<'_>) -> Option<OidVec> {
    oid.iter().map(Iterator::collect)
}

/// `1.3.6.1...` for a numeric OID.
pub fn dotted(oid: &[u64]) -> String {
    let mut out = String::with_capacity(oid.len() * 3);
    for (i, arc) in oid.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        let _ = write!(out, "{arc}");
    }
    out
}

/// Parses `1.3.6.1...` (a leading dot is allowed). `None` for anything else.
pub fn parse_dotted(text: &str) -> Option<OidVec> {
    let text = text.trim().trim_start_matches('.');
    if text.is_empty() {
        return None;
    }
    text.split('.').map(|arc| arc.parse::<u64>().ok()).collect()
}

/// Text of an OCTET STRING: UTF-8 (lossy), NULs and surrounding whitespace trimmed.
/// `None` for absent values and for non-string types.
pub fn text(v: &Val) -> Option<String> {
    match v {
        Val::Str(b) => Some(clean_text(b)),
        _ => None,
    }
}

/// Text of an OCTET STRING, or `None` when it is absent or empty after trimming.
pub fn nonempty_text(v: &Val) -> Option<String> {
    text(v).filter(|s| !s.is_empty())
}

fn clean_text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .replace('\0', "")
}

/// Text when the bytes are printable, otherwise lower-case colon-separated hex
/// (LLDP chassis/port ids, engine ids and other binary identifiers).
pub fn display(v: &Val) -> Option<String> {
    match v {
        Val::Str(b) => {
            let trimmed: &[u8] = {
                let end = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                &b[..end]
            };
            let printable = std::str::from_utf8(trimmed)
                .map(|s| s.chars().all(|c| !c.is_control() || c == '\t'))
                .unwrap_or(false);
            if printable {
                Some(clean_text(trimmed))
            } else {
                Some(hex_colons(b))
            }
        }
        Val::Ip(ip) => Some(format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])),
        _ => None,
    }
}

fn hex_colons(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`: six raw bytes, or text that already spells one
/// (`AA:BB:..`, `aa-bb-..`, `aabb.ccdd.eeff`, 12 hex digits). All-zero MACs count as absent.
pub fn mac(v: &Val) -> Option<String> {
    let Val::Str(b) = v else { return None };
    mac_from_bytes(b)
}

/// See [`mac`].
pub fn mac_from_bytes(b: &[u8]) -> Option<String> {
    let raw: Vec<u8> = if b.len() == 6 {
        b.to_vec()
    } else {
        let s = std::str::from_utf8(b).ok()?.trim();
        let digits: String = s
            .chars()
            .filter(|c| !matches!(c, ':' | '-' | '.' | ' '))
            .collect();
        if digits.len() != 12 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        (0..6)
            .map(|i| u8::from_str_radix(&digits[i * 2..i * 2 + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    };
    if raw.iter().all(|&x| x == 0) {
        return None;
    }
    Some(hex_colons(&raw))
}

/// A signed integer from INTEGER, Counter32, Gauge32, TimeTicks or Counter64 (when it fits).
pub fn int(v: &Val) -> Option<i64> {
    match v {
        Val::Int(n) => Some(*n),
        Val::Counter32(n) | Val::Unsigned32(n) | Val::Ticks(n) => Some(i64::from(*n)),
        Val::Counter64(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// A non-negative integer from any numeric type; negative INTEGERs are absent.
pub fn uint(v: &Val) -> Option<u64> {
    match v {
        Val::Int(n) => u64::try_from(*n).ok(),
        Val::Counter32(n) | Val::Unsigned32(n) | Val::Ticks(n) => Some(u64::from(*n)),
        Val::Counter64(n) => Some(*n),
        _ => None,
    }
}

/// An OBJECT IDENTIFIER value as a dotted string.
pub fn oid_string(v: &Val) -> Option<String> {
    match v {
        Val::Oid(o) => Some(dotted(o)),
        _ => None,
    }
}

/// An IPv4 address from an IpAddress value or a 4-byte OCTET STRING.
pub fn ipv4(v: &Val) -> Option<std::net::Ipv4Addr> {
    match v {
        Val::Ip(ip) => Some(std::net::Ipv4Addr::from(*ip)),
        Val::Str(b) if b.len() == 4 => Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])),
        _ => None,
    }
}

/// Copies all varbinds out of a received PDU. Stops at the first varbind snmp2 cannot parse
/// (truncated or malformed packets): what came before is kept.
pub fn copy_varbinds(pdu: snmp2::Pdu<'_>) -> Vec<(Option<OidVec>, Val)> {
    pdu.varbinds
        .map(|(oid, value)| (oid_to_vec(&oid), Val::from_snmp(&value)))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_trims_nuls_and_whitespace() {
        assert_eq!(
            text(&Val::Str(b"  HP LaserJet\0\0".to_vec())).as_deref(),
            Some("HP LaserJet")
        );
        assert_eq!(
            text(&Val::Str(vec![0xff, b'a'])).as_deref(),
            Some("\u{fffd}a")
        );
        assert_eq!(text(&Val::Int(3)), None);
        assert_eq!(text(&Val::Null), None);
        assert_eq!(nonempty_text(&Val::Str(b"\0".to_vec())), None);
    }

    #[test]
    fn mac_from_raw_and_text() {
        let raw = Val::Str(vec![0x00, 0x1B, 0x21, 0xAA, 0xbb, 0x0c]);
        assert_eq!(mac(&raw).as_deref(), Some("00:1b:21:aa:bb:0c"));
        for spelled in [
            "00:1B:21:AA:BB:0C",
            "00-1b-21-aa-bb-0c",
            "001b.21aa.bb0c",
            "001B21AABB0C",
        ] {
            assert_eq!(
                mac(&Val::Str(spelled.as_bytes().to_vec())).as_deref(),
                Some("00:1b:21:aa:bb:0c"),
                "{spelled}"
            );
        }
        assert_eq!(mac(&Val::Str(vec![0; 6])), None);
        assert_eq!(mac(&Val::Str(vec![1, 2, 3])), None);
        assert_eq!(mac(&Val::Str(b"not a mac at all".to_vec())), None);
        assert_eq!(mac(&Val::Int(6)), None);
    }

    #[test]
    fn display_hexes_binary() {
        assert_eq!(
            display(&Val::Str(b"axis".to_vec())).as_deref(),
            Some("axis")
        );
        assert_eq!(
            display(&Val::Str(vec![0, 0x40, 0x8c, 1, 2, 3])).as_deref(),
            Some("00:40:8c:01:02:03")
        );
        assert_eq!(
            display(&Val::Ip([10, 1, 2, 3])).as_deref(),
            Some("10.1.2.3")
        );
    }

    #[test]
    fn numbers_are_type_checked() {
        assert_eq!(int(&Val::Int(-3)), Some(-3));
        assert_eq!(int(&Val::Counter32(7)), Some(7));
        assert_eq!(int(&Val::Counter64(u64::MAX)), None);
        assert_eq!(uint(&Val::Counter64(u64::MAX)), Some(u64::MAX));
        assert_eq!(uint(&Val::Int(-1)), None);
        assert_eq!(int(&Val::Str(b"12".to_vec())), None);
        assert_eq!(int(&Val::Null), None);
        assert_eq!(uint(&Val::NoSuchInstance), None);
    }

    #[test]
    fn oids_round_trip() {
        assert_eq!(parse_dotted(".1.3.6.1.2.1"), Some(vec![1, 3, 6, 1, 2, 1]));
        assert_eq!(parse_dotted("1.3.x"), None);
        assert_eq!(parse_dotted(""), None);
        assert_eq!(dotted(&[1, 3, 6, 1, 4, 1, 11]), "1.3.6.1.4.1.11");
        assert_eq!(
            oid_string(&Val::Oid(vec![1, 3, 6])).as_deref(),
            Some("1.3.6")
        );
        let oid = Oid::from(&[1, 3, 6, 1, 4, 1, 318, 1]).unwrap();
        assert_eq!(oid_to_vec(&oid), Some(vec![1, 3, 6, 1, 4, 1, 318, 1]));
    }

    #[test]
    fn absent_values() {
        for v in [
            Val::Null,
            Val::NoSuchObject,
            Val::NoSuchInstance,
            Val::EndOfMibView,
            Val::Unexpected,
        ] {
            assert!(v.is_absent());
            assert_eq!(text(&v), None);
            assert_eq!(int(&v), None);
        }
        assert!(!Val::Int(0).is_absent());
    }

    pub(crate) fn any_val() -> impl Strategy<Value = Val> {
        prop_oneof![
            any::<i64>().prop_map(Val::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Val::Str),
            proptest::collection::vec(any::<u64>(), 0..12).prop_map(Val::Oid),
            any::<[u8; 4]>().prop_map(Val::Ip),
            any::<u32>().prop_map(Val::Counter32),
            any::<u32>().prop_map(Val::Unsigned32),
            any::<u32>().prop_map(Val::Ticks),
            any::<u64>().prop_map(Val::Counter64),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Val::Opaque),
            any::<bool>().prop_map(Val::Bool),
            Just(Val::Null),
            Just(Val::EndOfMibView),
            Just(Val::NoSuchObject),
            Just(Val::NoSuchInstance),
            Just(Val::Unexpected),
        ]
    }

    proptest! {
        #[test]
        fn accessors_never_panic(v in any_val()) {
            let _ = (text(&v), display(&v), mac(&v), int(&v), uint(&v), oid_string(&v), ipv4(&v));
            let _ = v.approx_bytes();
        }

        #[test]
        fn random_packets_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(pdu) = snmp2::Pdu::from_bytes(&bytes) {
                for (_oid, v) in copy_varbinds(pdu) {
                    let _ = (text(&v), display(&v), mac(&v), int(&v), uint(&v));
                }
            }
        }

        #[test]
        fn mutated_response_decodes_without_panic(
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
            cut in 0usize..200,
        ) {
            let mut bytes = sample_response();
            for (pos, b) in flips {
                if let Some(slot) = bytes.get_mut(pos) {
                    *slot = b;
                }
            }
            bytes.truncate(cut.max(1));
            if let Ok(pdu) = snmp2::Pdu::from_bytes(&bytes) {
                let _ = copy_varbinds(pdu);
            }
        }

        #[test]
        fn dotted_round_trips(arcs in proptest::collection::vec(any::<u64>(), 1..20)) {
            prop_assert_eq!(parse_dotted(&dotted(&arcs)), Some(arcs));
        }
    }

    /// A well-formed v2c response with a few varbinds of different types.
    pub(crate) fn sample_response() -> Vec<u8> {
        crate::scan::snmp::fake_agent::encode_response(
            b"public",
            1,
            0,
            &[
                (
                    vec![1, 3, 6, 1, 2, 1, 1, 1, 0],
                    Val::Str(b"HP ETHERNET MULTI-ENVIRONMENT".to_vec()),
                ),
                (
                    vec![1, 3, 6, 1, 2, 1, 1, 2, 0],
                    Val::Oid(vec![1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 1]),
                ),
                (vec![1, 3, 6, 1, 2, 1, 1, 3, 0], Val::Ticks(12345)),
            ],
        )
    }

    #[test]
    fn sample_response_decodes() {
        let bytes = sample_response();
        let pdu = snmp2::Pdu::from_bytes(&bytes).unwrap();
        let vbs = copy_varbinds(pdu);
        assert_eq!(vbs.len(), 3);
        assert_eq!(
            oid_string(&vbs[1].1).as_deref(),
            Some("1.3.6.1.4.1.11.2.3.9.1")
        );
        assert_eq!(uint(&vbs[2].1), Some(12345));
    }
}
