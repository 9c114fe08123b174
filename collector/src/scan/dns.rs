//! Reverse DNS names for live hosts, from the hosts file and the system's DNS servers,
//! cached (an hour for names, ten minutes for "no name") so repeated sweeps ask once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolveHosts;

const POSITIVE_TTL: Duration = Duration::from_secs(3600);
const NEGATIVE_TTL: Duration = Duration::from_secs(600);

pub struct ReverseDns {
    resolver: Option<TokioResolver>,
    cache: Mutex<HashMap<IpAddr, (Option<String>, Instant)>>,
}

impl ReverseDns {
    /// A resolver from the system configuration; without one (no resolv.conf), lookups
    /// simply find no names.
    pub fn from_system(timeout: Duration) -> Self {
        let resolver = TokioResolver::builder_tokio()
            .map(|mut builder| {
                let options = builder.options_mut();
                options.timeout = timeout;
                options.attempts = 1;
                options.use_hosts_file = ResolveHosts::Always;
                builder
            })
            .and_then(|b| b.build());
        match resolver {
            Ok(resolver) => Self {
                resolver: Some(resolver),
                cache: Mutex::default(),
            },
            Err(error) => {
                tracing::warn!(%error, "No DNS resolver configuration; hosts get no reverse names");
                Self {
                    resolver: None,
                    cache: Mutex::default(),
                }
            }
        }
    }

    fn cached(&self, ip: IpAddr) -> Option<Option<String>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&ip)
            .filter(|(name, at)| {
                at.elapsed()
                    < if name.is_some() {
                        POSITIVE_TTL
                    } else {
                        NEGATIVE_TTL
                    }
            })
            .map(|(name, _)| name.clone())
    }

    /// The PTR name of `ip` without the trailing dot, if it has one.
    pub async fn name(&self, ip: IpAddr) -> Option<String> {
        if let Some(hit) = self.cached(ip) {
            return hit;
        }
        let name = match &self.resolver {
            Some(resolver) => resolver.reverse_lookup(ip).await.ok().and_then(|lookup| {
                lookup
                    .answers()
                    .iter()
                    .find_map(|record| match &record.data {
                        hickory_resolver::proto::rr::RData::PTR(ptr) => {
                            Some(ptr.0.to_utf8().trim_end_matches('.').to_owned())
                        }
                        _ => None,
                    })
            }),
            None => None,
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ip, (name.clone(), Instant::now()));
        name
    }

    /// Names for many hosts at once, at most `concurrency` lookups in flight.
    pub async fn names(&self, ips: &[Ipv4Addr], concurrency: usize) -> HashMap<Ipv4Addr, String> {
        use futures_util::StreamExt;
        futures_util::stream::iter(ips.iter().copied())
            .map(|ip| async move { (ip, self.name(IpAddr::V4(ip)).await) })
            .buffer_unordered(concurrency.max(1))
            .filter_map(|(ip, name)| async move { name.map(|n| (ip, n)) })
            .collect()
            .await
    }
}
