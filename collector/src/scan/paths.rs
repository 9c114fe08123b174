//! The path to each routed range: which gateway the kernel sends it to, and the last router
//! before it (from TTL-limited echo requests to one live host of the range). The daemon's
//! topology uses this to fold "most hosts behind one path went silent together" into one
//! incident, without any configured dependencies.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

use super::targets::{Ipv4Net, Routes, Scope};

/// How far TTL-limited probes look.
const MAX_HOPS: u8 = 12;

/// One routed part of the scope and the way to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutedPath {
    /// The part of a scanned range this route carries.
    pub range: Ipv4Net,
    /// The next hop the kernel sends it to.
    pub gateway: Ipv4Addr,
    pub iface: String,
    /// The last router before the range, when TTL-limited probes showed one beyond the
    /// gateway.
    pub last_hop: Option<Ipv4Addr>,
}

impl RoutedPath {
    /// "198.19.0.0/22 via 198.18.0.2" (and "(last hop …)").
    pub fn label(&self) -> String {
        match self.last_hop {
            Some(hop) if hop != self.gateway => {
                format!("{} via {} (last hop {hop})", self.range, self.gateway)
            }
            _ => format!("{} via {}", self.range, self.gateway),
        }
    }
}

/// The routed parts of `scope`, from the routing table.
pub fn routed_parts(scope: &Scope, routes: &Routes) -> Vec<RoutedPath> {
    let mut out = Vec::new();
    for range in scope.ranges() {
        let Some(first) = range.hosts().next() else {
            continue;
        };
        // More specific routes inside the range, each its own path.
        for route in routes.0.iter().filter(|r| {
            r.gateway.is_some()
                && r.dest.prefix() > range.prefix()
                && range.contains(r.dest.network())
        }) {
            out.push(RoutedPath {
                range: route.dest,
                gateway: route.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
                iface: route.iface.clone(),
                last_hop: None,
            });
        }
        if let Some(route) = routes.lookup(first)
            && let Some(gateway) = route.gateway
            && route.dest.prefix() <= range.prefix()
        {
            out.push(RoutedPath {
                range: *range,
                gateway,
                iface: route.iface.clone(),
                last_hop: None,
            });
        }
    }
    out.sort_by_key(|p| (p.range, p.gateway));
    out.dedup();
    out
}

/// Fills in each path's last hop from TTL-limited probes to one live host behind it.
pub async fn learn_last_hops(paths: &mut [RoutedPath], live: &[Ipv4Addr], timeout: Duration) {
    let probes = paths.iter().map(|path| {
        let host = live.iter().copied().find(|ip| path.range.contains(*ip));
        async move {
            let hops = super::icmp::trace(host?, MAX_HOPS, timeout).await?;
            hops.into_iter().flatten().last()
        }
    });
    let hops = futures_util::future::join_all(probes).await;
    for (path, hop) in paths.iter_mut().zip(hops) {
        path.last_hop = hop;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_ranges_get_their_gateway_and_on_link_ones_none() {
        let routes = Routes::parse(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
             lab0\t000012C6\t00000000\t0001\t0\t0\t0\t00FCFFFF\n\
             lab0\t000013C6\t020012C6\t0003\t0\t0\t0\t0000FFFF\n\
             lab0\t000413C6\t030012C6\t0003\t0\t0\t0\t00FFFFFF\n",
        );
        let scope = Scope::parse(
            &["198.18.0.0/22".to_owned(), "198.19.0.0/16".to_owned()],
            1 << 17,
        )
        .expect("scope");
        let paths = routed_parts(&scope, &routes);
        let labels: Vec<String> = paths.iter().map(RoutedPath::label).collect();
        assert_eq!(
            labels,
            [
                "198.19.0.0/16 via 198.18.0.2",
                "198.19.4.0/24 via 198.18.0.3"
            ]
        );
        let with_hop = RoutedPath {
            last_hop: Some(Ipv4Addr::new(198, 18, 9, 1)),
            ..paths[0].clone()
        };
        assert_eq!(
            with_hop.label(),
            "198.19.0.0/16 via 198.18.0.2 (last hop 198.18.9.1)"
        );
    }
}
