//! What may be scanned: CIDR parsing, size caps, routes, and the randomised probe order.
//!
//! [`Scope`] is the one gate every probe passes: a sweep, an SNMP query or a TCP probe to an
//! address outside the configured ranges is refused here, whatever the caller asked.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;

use rand::seq::SliceRandom;

/// Largest total number of addresses one scan may cover unless configured otherwise (a /16).
pub const DEFAULT_MAX_ADDRESSES: u64 = 65_536;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{0:?} is not an IPv4 CIDR range (like 10.20.0.0/22): {1}")]
    Malformed(String, &'static str),
    #[error("{range} has {addresses} addresses; the cap is {cap} (raise [scan] max_addresses)")]
    TooLarge {
        range: String,
        addresses: u64,
        cap: u64,
    },
    #[error("{0} has no route from this machine: {1}")]
    NoRoute(String, String),
}

/// An IPv4 network in CIDR form, normalised to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    network: u32,
    prefix: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            network: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// Number of addresses in the block, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == self.network
    }

    /// Addresses a host can have: all but network and broadcast, except in /31 and /32.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let first = u64::from(self.network);
        let last = first + self.size() - 1;
        let (first, last) = if self.prefix >= 31 {
            (first, last)
        } else {
            (first + 1, last - 1)
        };
        (first..=last).map(|a| Ipv4Addr::from(a as u32))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl serde::Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for Ipv4Net {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why| TargetError::Malformed(text.to_owned(), why);
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (
                a,
                p.parse::<u8>()
                    .map_err(|_| bad("the prefix length is not a number"))?,
            ),
            None => (text.trim(), 32),
        };
        if addr.contains(':') {
            return Err(bad("IPv6 ranges are not swept (too large); IPv4 only"));
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("the address is not IPv4"))?;
        Ipv4Net::new(addr, prefix).ok_or_else(|| bad("the prefix length is over 32"))
    }
}

/// The validated set of ranges a scan may touch (empty by default: nothing is scanned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    ranges: Vec<Ipv4Net>,
}

impl Scope {
    /// Parses every range, collecting all errors, and enforces the address cap.
    pub fn parse(ranges: &[String], max_addresses: u64) -> Result<Self, Vec<TargetError>> {
        let mut errors = Vec::new();
        let mut nets = Vec::new();
        for range in ranges {
            match range.parse::<Ipv4Net>() {
                Ok(net) if net.size() > max_addresses => errors.push(TargetError::TooLarge {
                    range: range.clone(),
                    addresses: net.size(),
                    cap: max_addresses,
                }),
                Ok(net) => nets.push(net),
                Err(e) => errors.push(e),
            }
        }
        nets.sort();
        nets.dedup();
        let total: u64 = nets.iter().map(Ipv4Net::size).sum();
        if errors.is_empty() && total > max_addresses {
            errors.push(TargetError::TooLarge {
                range: ranges.join(", "),
                addresses: total,
                cap: max_addresses,
            });
        }
        if errors.is_empty() {
            Ok(Self { ranges: nets })
        } else {
            Err(errors)
        }
    }

    pub fn ranges(&self) -> &[Ipv4Net] {
        &self.ranges
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.ranges.iter().any(|r| r.contains(addr))
    }

    /// The addresses of `asset` that lie inside the scope (IPv6 and unparsable ones skipped).
    pub fn addresses_of<'a>(
        &'a self,
        asset: &'a crate::model::Asset,
    ) -> impl Iterator<Item = Ipv4Addr> + 'a {
        asset
            .ips
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .filter(|ip| self.contains(*ip))
    }

    /// Whether any address of `asset` lies inside the scope.
    pub fn covers(&self, asset: &crate::model::Asset) -> bool {
        self.addresses_of(asset).next().is_some()
    }

    /// Every host address once, in random order (so a sweep never walks a subnet in order
    /// and never hammers one switch port after another).
    pub fn shuffled_hosts(&self) -> Vec<Ipv4Addr> {
        let mut hosts: Vec<Ipv4Addr> = self.ranges.iter().flat_map(Ipv4Net::hosts).collect();
        hosts.sort_unstable();
        hosts.dedup();
        hosts.shuffle(&mut rand::rng());
        hosts
    }

    /// Checks that the kernel has a route to each range. A UDP `connect` only consults the
    /// routing table; it sends nothing.
    pub fn check_routes(&self) -> Result<(), Vec<TargetError>> {
        let errors: Vec<_> = self
            .ranges
            .iter()
            .filter_map(|net| {
                let probe = net.hosts().next().unwrap_or(net.network());
                let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
                socket
                    .connect(SocketAddr::from((probe, 9)))
                    .err()
                    .map(|e| TargetError::NoRoute(net.to_string(), e.to_string()))
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Networks this machine reaches directly, without a gateway (its own segments), from the
/// kernel's routing table. Probes to these addresses need ARP first.
pub fn on_link_networks() -> Vec<Ipv4Net> {
    Routes::read()
        .0
        .into_iter()
        .filter(|r| r.gateway.is_none())
        .map(|r| r.dest)
        .collect()
}

/// `/proc/net/route` (on-link routes only), kept for the neighbour-table fallback.
pub fn parse_proc_net_route(text: &str) -> Vec<Ipv4Net> {
    Routes::parse(text)
        .0
        .into_iter()
        .filter(|r| r.gateway.is_none() && r.dest.prefix() > 0)
        .map(|r| r.dest)
        .collect()
}

/// One IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub iface: String,
    pub dest: Ipv4Net,
    /// `None`: the destination is on the interface's own segment.
    pub gateway: Option<Ipv4Addr>,
    pub metric: u32,
}

/// The kernel's main IPv4 routing table, for "how does this address leave": on a segment of
/// ours (ARP) or through which gateway (ICMP, and the path a routed range depends on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes(pub Vec<Route>);

impl Routes {
    /// `/proc/net/route` on Linux; empty elsewhere.
    pub fn read() -> Self {
        #[cfg(target_os = "linux")]
        {
            Self::parse(&std::fs::read_to_string("/proc/net/route").unwrap_or_default())
        }
        #[cfg(not(target_os = "linux"))]
        {
            Self::default()
        }
    }

    /// `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`, addresses as the kernel
    /// prints network-order words: little-endian hex. Routes not up, and reject/blackhole
    /// routes, are left out.
    pub fn parse(text: &str) -> Self {
        const RTF_UP: u32 = 0x1;
        const RTF_GATEWAY: u32 = 0x2;
        const RTF_REJECT: u32 = 0x200;
        let routes = text
            .lines()
            .skip(1)
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let hex = |i: usize| u32::from_str_radix(cols.get(i)?, 16).ok();
                let (dest, gateway, flags, mask) = (hex(1)?, hex(2)?, hex(3)?, hex(7)?);
                let metric = cols.get(6)?.parse().ok()?;
                if flags & RTF_UP == 0 || flags & RTF_REJECT != 0 || cols[0] == "*" {
                    return None;
                }
                let gateway = (flags & RTF_GATEWAY != 0 && gateway != 0)
                    .then(|| Ipv4Addr::from(gateway.to_le_bytes()));
                Some(Route {
                    iface: cols[0].to_owned(),
                    dest: Ipv4Net::new(
                        Ipv4Addr::from(dest.to_le_bytes()),
                        u32::from_le(mask).count_ones() as u8,
                    )?,
                    gateway,
                    metric,
                })
            })
            .collect();
        Self(routes)
    }

    /// The route the kernel would pick for `ip`: longest prefix, then lowest metric.
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<&Route> {
        self.0
            .iter()
            .filter(|r| r.dest.contains(ip))
            .min_by_key(|r| (std::cmp::Reverse(r.dest.prefix()), r.metric))
    }
}

/// The addresses of this machine (in its network namespace): the kernel's LOCAL routes, from
/// `/proc/net/fib_trie` (`127.0.0.0/8` is one of them). Empty where that file does not
/// exist. A sweep never probes or lists them: the scanner is not a find.
#[derive(Debug, Clone, Default)]
pub struct LocalAddresses(Vec<(Ipv4Addr, u8)>);

impl LocalAddresses {
    pub fn read() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default())
    }

    /// Lines `|-- ADDRESS` followed by `/PREFIX host LOCAL` name a local address (or block).
    pub fn parse(text: &str) -> Self {
        let mut found = Vec::new();
        let mut current: Option<Ipv4Addr> = None;
        for line in text.lines().map(str::trim) {
            if let Some(addr) = line.strip_prefix("|-- ") {
                current = addr.trim().parse().ok();
            } else if let (Some(addr), Some(route)) = (current, line.strip_prefix('/')) {
                let mut words = route.split_whitespace();
                let prefix = words.next().and_then(|p| p.parse::<u8>().ok());
                if let Some(prefix) = prefix.filter(|p| *p <= 32)
                    && words.next_back() == Some("LOCAL")
                    && !found.contains(&(addr, prefix))
                {
                    found.push((addr, prefix));
                }
            }
        }
        Self(found)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.0.iter().any(|&(addr, prefix)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(addr) & mask
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_parse_and_normalise() {
        let net: Ipv4Net = "198.18.3.7/22".parse().expect("cidr");
        assert_eq!(net.to_string(), "198.18.0.0/22");
        assert_eq!(net.size(), 1024);
        assert_eq!(net.hosts().count(), 1022);
        assert_eq!(
            "198.18.0.9"
                .parse::<Ipv4Net>()
                .expect("host")
                .hosts()
                .collect::<Vec<_>>(),
            [Ipv4Addr::new(198, 18, 0, 9)]
        );
        assert_eq!(
            "198.18.0.0/31"
                .parse::<Ipv4Net>()
                .expect("p2p")
                .hosts()
                .count(),
            2
        );
    }

    #[test]
    fn bad_ranges_are_named() {
        for bad in [
            "198.18.0.0/33",
            "198.18.0/24",
            "fd00::/64",
            "school",
            "198.18.0.0/x",
        ] {
            let error = bad.parse::<Ipv4Net>().expect_err(bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
        let errors = Scope::parse(
            &["198.18.0.0/8".to_owned(), "nope".to_owned()],
            DEFAULT_MAX_ADDRESSES,
        )
        .expect_err("too big");
        assert_eq!(errors.len(), 2);
        assert!(errors[0].to_string().contains("198.18.0.0/8"));
        assert!(errors[0].to_string().contains("16777216"));
    }

    #[test]
    fn the_cap_counts_all_ranges_together() {
        let two = ["198.18.0.0/16".to_owned(), "198.19.0.0/16".to_owned()];
        assert!(Scope::parse(&two, DEFAULT_MAX_ADDRESSES).is_err());
        assert!(Scope::parse(&two, 2 * DEFAULT_MAX_ADDRESSES).is_ok());
    }

    #[test]
    fn on_link_networks_come_from_the_routing_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FCFFFF\t0\t0\t0\n\
                     eth1\t000013C6\t020012C6\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let nets = parse_proc_net_route(table);
        assert_eq!(nets, vec!["198.18.0.0/22".parse::<Ipv4Net>().expect("net")]);
        let routes = Routes::parse(table);
        let via = routes.lookup(Ipv4Addr::new(198, 19, 4, 5)).expect("routed");
        assert_eq!(via.gateway, Some(Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(via.dest.to_string(), "198.19.0.0/16");
        let local = routes
            .lookup(Ipv4Addr::new(198, 18, 3, 9))
            .expect("on link");
        assert_eq!((local.gateway, local.iface.as_str()), (None, "eth0"));
        let default = routes
            .lookup(Ipv4Addr::new(198, 20, 0, 1))
            .expect("default");
        assert_eq!(default.gateway, Some(Ipv4Addr::new(198, 18, 0, 1)));
        // A blackhole route (reject flag, no interface) routes nothing.
        let blackhole = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                         *\t000013C6\t00000000\t0201\t0\t0\t0\t0000FFFF\n";
        assert!(Routes::parse(blackhole).0.is_empty());
    }

    #[test]
    fn local_addresses_come_from_the_local_routes() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
                   \x20    +-- 127.0.0.0/8 2 0 2\n        +-- 127.0.0.0/31 1 0 0\n\
                   \x20          |-- 127.0.0.0\n              /8 host LOCAL\n\
                   \x20          |-- 127.0.0.1\n              /32 host LOCAL\n\
                   \x20       |-- 127.255.255.255\n           /32 link BROADCAST\n\
                   \x20    +-- 198.18.0.0/22 2 0 2\n           |-- 198.18.0.0\n              /22 link UNICAST\n\
                   \x20          |-- 198.18.0.1\n              /32 host LOCAL\n\
                   \x20       |-- 198.18.3.255\n           /32 link BROADCAST\n";
        let local = LocalAddresses::parse(fib);
        assert!(local.contains(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(local.contains(Ipv4Addr::new(127, 0, 0, 1)));
        assert!(
            local.contains(Ipv4Addr::new(127, 3, 2, 1)),
            "all of 127/8 is this machine"
        );
        for other in [
            [198, 18, 0, 2],
            [198, 18, 0, 0],
            [198, 18, 3, 255],
            [0, 0, 0, 1],
        ] {
            assert!(!local.contains(Ipv4Addr::from(other)), "{other:?}");
        }
    }

    #[test]
    fn an_unroutable_range_is_reported_without_sending() {
        // Loopback always routes; the scope check itself sends nothing.
        let scope = Scope::parse(&["127.0.0.0/30".to_owned()], 1024).expect("scope");
        assert!(scope.check_routes().is_ok());
    }

    proptest! {
        #[test]
        fn every_shuffled_host_is_in_scope_exactly_once(a in any::<u32>(), prefix in 20u8..=32, b in any::<u32>(), q in 24u8..=32) {
            let ranges = [format!("{}/{prefix}", Ipv4Addr::from(a)), format!("{}/{q}", Ipv4Addr::from(b))];
            let scope = Scope::parse(&ranges, 1 << 13).expect("scope");
            let hosts = scope.shuffled_hosts();
            let mut sorted = hosts.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), hosts.len());
            prop_assert!(hosts.iter().all(|h| scope.contains(*h)));
            let expected: std::collections::BTreeSet<_> = scope.ranges().iter().flat_map(Ipv4Net::hosts).collect();
            prop_assert_eq!(expected.len(), hosts.len());
        }
    }
}
