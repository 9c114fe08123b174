//! MAC addresses: one canonical text form for every source (agents, the neighbour table,
//! SNMP forwarding tables), so they compare as strings.

/// A MAC in canonical `aa:bb:cc:dd:ee:ff` form, or `None` for empty/all-zero/broadcast/multicast.
pub fn normalise_mac(raw: &str) -> Option<String> {
    let hex: String = raw
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 12 || hex.chars().all(|c| c == '0') || hex.chars().all(|c| c == 'f') {
        return None;
    }
    let first = u8::from_str_radix(&hex[..2], 16).ok()?;
    if first & 1 == 1 {
        return None; // multicast
    }
    Some(
        hex.as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Locally administered (second-least-significant bit of the first octet set).
pub fn is_locally_administered(mac: &str) -> bool {
    u8::from_str_radix(mac.get(..2).unwrap_or("00"), 16).is_ok_and(|b| b & 2 == 2)
}
