//! The network-namespace test lab: a small, throw-away network for sweeps and SNMP tests.
//!
//! # What it builds
//!
//! ```text
//!  {id}s  "scan"   eth0 198.18.0.1/22 ─┐           (no default route, only lab routes)
//!  {id}l  "lan"    br0 (bridge, STP off) ── p0, p1, q<k>, r<k> veth ports
//!  {id}h  "hosts"  up0 ─ macvlan m<k> (bridge mode, own MAC, own /22 address) × n
//!  {id}n<k>        eth0: one host in its own namespace (link up/down, daemons)
//!  {id}r<k>        eth0 on the LAN; blackhole <routed>; live addresses as /32 on lo
//! ```
//!
//! `{id}` is `ct<pid>x<counter>`, so labs of parallel tests (threads or processes) never share a
//! name. Every link lives inside a lab namespace (veth pairs are created directly in their target
//! namespaces), so nothing is ever added to the host's own namespace. Bulk work (hundreds of
//! macvlans, thousands of /32s) goes through `ip -n NS -batch FILE`, one process per namespace.
//!
//! The hosts namespace has `arp_ignore=1`/`arp_announce=2`, so each macvlan answers ARP only
//! for its own address, and a policy rule per host (`from IP lookup <table>`) sends each host's
//! replies out of its own macvlan: every host looks like a separate machine with its own MAC.
//!
//! On a real LAN every machine answers broadcasts with its own CPU; here one kernel answers for
//! all of them, so the hosts namespace must not make a broadcast cost what 300 machines' worth
//! of policy routing would. Every ARP request reaches all macvlans, and each would look the
//! target up through every `from IP` rule (and, for a local target, check the sender's address
//! through them again): 300 × 300 rule checks per broadcast, ~1 ms of softirq on these cores,
//! which made a /22 sweep by nmap or by us measure the lab's kernel rather than the sweeper.
//! Two settings keep each broadcast cheap without changing what any host answers:
//! `accept_local=1` (with `rp_filter=0`, the source check is skipped) and a rule before the
//! per-host ones, `not iif lo unreachable`: an arriving packet not for a local address (found
//! in the `local` table at pref 0) is refused at once — the namespace routes nothing anyway —
//! while the hosts' own replies (looked up with `iif lo`) still take their own rules.
//!
//! # Teardown
//!
//! [`Drop`] kills the daemons the lab started, then every process still inside one of the lab's
//! namespaces (only the lab puts processes there), deletes the namespaces (which destroys their
//! links), and removes the lab's temporary directory. [`Lab::new`] also sweeps stale lab
//! namespaces (`ct<pid>x…` older than an hour whose process is gone) left by killed test runs.
//!
//! # Safety rules
//!
//! * Addresses only from 198.18.0.0/15 (RFC 2544 benchmarking range); anything else is refused.
//! * The scanner namespace has no default route and no link except the veth into the lab LAN.
//! * Nothing is sent from the host's namespace; run probes with [`Lab::scanner_cmd`].
//! * Daemons run inside lab namespaces with their own config in the lab's temp dir; `/etc/snmp`
//!   is never touched (`snmpd -C -c`).
//!
//! Every failing command becomes an error that names the command and carries its stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use rand::Rng;
use rand::seq::IndexedRandom;

/// The only range the lab uses (RFC 2544), 198.18.0.0/15.
const LAB_RANGE: (u32, u8) = (0xC612_0000, 15);
/// The scanner's LAN address.
pub const SCANNER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// First policy-routing table used for the macvlan hosts.
const TABLE_BASE: usize = 1000;

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Mutex<()> = Mutex::new(());

/// Serialises LAN sweeps within this process; [`nmap_sn`] and [`fping`] take it themselves.
///
/// The kernel's ARP table limit (`net.ipv4.neigh.default.gc_thresh3`, 1024 by default) is
/// global, not per namespace: a fast sweep of a /22 leaves ~1,000 INCOMPLETE entries for a few
/// seconds, so two sweeps at once in parallel tests overflow it ("neighbor table overflow",
/// probes silently dropped). Hold this guard while running your own sweep in the scanner.
pub fn sweep_guard() -> MutexGuard<'static, ()> {
    SWEEP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A live host on the lab LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabHost {
    pub ip: Ipv4Addr,
    /// `aa:bb:cc:dd:ee:ff`, lower case.
    pub mac: String,
    /// The namespace holding the host's interface.
    pub netns: String,
    /// The host's interface inside `netns`.
    pub dev: String,
}

/// Configuration of a real net-snmp `snmpd` started by [`Lab::start_snmpd`].
#[derive(Clone, Debug)]
pub struct SnmpdConf {
    /// v1/v2c read-only community.
    pub community: String,
    pub sys_name: String,
    pub sys_location: String,
    pub sys_contact: String,
    /// An SNMPv3 user with SHA authentication and AES privacy (authPriv), if any.
    pub v3: Option<V3User>,
}

/// An SNMPv3 USM user (SHA + AES).
#[derive(Clone, Debug)]
pub struct V3User {
    pub user: String,
    pub auth_pass: String,
    pub priv_pass: String,
}

impl Default for SnmpdConf {
    fn default() -> Self {
        SnmpdConf {
            community: "lab-community".into(),
            sys_name: "lab-snmpd".into(),
            sys_location: "Lab rack 1".into(),
            sys_contact: "technician@school.example".into(),
            v3: Some(V3User {
                user: "labuser".into(),
                auth_pass: "lab-auth-pass".into(),
                priv_pass: "lab-priv-pass".into(),
            }),
        }
    }
}

/// An IPv4 network, `base/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub base: Ipv4Addr,
    pub len: u8,
}

impl Net {
    pub fn parse(cidr: &str) -> Result<Net> {
        let (ip, len) = cidr
            .split_once('/')
            .with_context(|| format!("`{cidr}` is not a CIDR (a.b.c.d/len)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .with_context(|| format!("bad address in `{cidr}`"))?;
        let len: u8 = len
            .parse()
            .with_context(|| format!("bad prefix length in `{cidr}`"))?;
        ensure!(len <= 32, "prefix length above 32 in `{cidr}`");
        let net = Net { base: ip, len };
        ensure!(
            net.first() == u32::from(ip),
            "`{cidr}` has host bits set (network is {})",
            net
        );
        Ok(net)
    }

    fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }
    fn first(self) -> u32 {
        u32::from(self.base) & self.mask()
    }
    fn last(self) -> u32 {
        self.first() | !self.mask()
    }
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.first()
    }
    fn overlaps(self, other: Net) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }
    /// Every usable host address (without network and broadcast for prefixes up to /30).
    pub fn hosts(self) -> impl Iterator<Item = Ipv4Addr> {
        let (lo, hi) = if self.len >= 31 {
            (self.first(), self.last())
        } else {
            (self.first() + 1, self.last() - 1)
        };
        (lo..=hi).map(Ipv4Addr::from)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.first()), self.len)
    }
}

fn lab_range() -> Net {
    Net {
        base: Ipv4Addr::from(LAB_RANGE.0),
        len: LAB_RANGE.1,
    }
}

/// Owns a lab's namespaces, daemons and temp dir; see the module docs.
pub struct Lab {
    id: String,
    lan: Net,
    scan_ns: String,
    scan_mac: String,
    lan_ns: String,
    hosts_ns: String,
    /// Every namespace created (deleted on drop, in reverse).
    namespaces: Vec<String>,
    dir: PathBuf,
    /// LAN addresses in use (scanner, routers, hosts).
    used: BTreeSet<Ipv4Addr>,
    infra: Vec<Ipv4Addr>,
    hosts: Vec<LabHost>,
    routed: Vec<Net>,
    /// Each routed range's router (its LAN link).
    routers: Vec<(Net, LabHost)>,
    next_dev: usize,
    next_ns: usize,
    next_file: usize,
    daemons: Vec<(String, Child)>,
}

impl Lab {
    /// A lab with the scanner at 198.18.0.1/22.
    pub fn new() -> Result<Lab> {
        Lab::with_prefix(22)
    }

    /// A lab whose LAN is 198.18.0.0/`prefix_len` (16..=29), the scanner at 198.18.0.1.
    pub fn with_prefix(prefix_len: u8) -> Result<Lab> {
        ensure!(
            (16..=29).contains(&prefix_len),
            "lab LAN prefix /{prefix_len} out of 16..=29"
        );
        require(&["ip"])?;
        ensure_root()?;
        sweep_stale();
        let id = format!(
            "ct{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("caretaker-lab-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let lan = Net {
            base: Ipv4Addr::new(198, 18, 0, 0),
            len: prefix_len,
        };
        let mut lab = Lab {
            scan_ns: format!("{id}s"),
            scan_mac: random_mac(),
            lan_ns: format!("{id}l"),
            hosts_ns: format!("{id}h"),
            id,
            lan,
            namespaces: Vec::new(),
            dir,
            used: BTreeSet::from([SCANNER_IP]),
            infra: vec![SCANNER_IP],
            hosts: Vec::new(),
            routed: Vec::new(),
            routers: Vec::new(),
            next_dev: 0,
            next_ns: 0,
            next_file: 0,
            daemons: Vec::new(),
        };
        // Registered before creation so that a half-built lab is still torn down.
        lab.namespaces = vec![
            lab.lan_ns.clone(),
            lab.scan_ns.clone(),
            lab.hosts_ns.clone(),
        ];
        let add: String = lab
            .namespaces
            .iter()
            .map(|ns| format!("netns add {ns}\n"))
            .collect();
        lab.batch(None, &add)?;
        lab.sysctl(
            &lab.hosts_ns.clone(),
            &[
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.accept_local=1",
            ],
        )?;
        let (scan, hosts) = (lab.scan_ns.clone(), lab.hosts_ns.clone());
        lab.batch(
            Some(&lab.lan_ns.clone()),
            &format!(
                "link set lo up\n\
                 link add br0 type bridge stp_state 0 mcast_snooping 0\n\
                 link set br0 up\n\
                 link add p0 type veth peer name eth0 netns {scan}\n\
                 link set p0 master br0 up\n\
                 link add p1 type veth peer name up0 netns {hosts}\n\
                 link set p1 master br0 up\n"
            ),
        )?;
        lab.batch(
            Some(&scan),
            &format!(
                "link set lo up\nlink set eth0 address {}\nlink set eth0 up\n\
                 addr add {SCANNER_IP}/{prefix_len} dev eth0\n",
                lab.scan_mac
            ),
        )?;
        lab.batch(
            Some(&hosts),
            "link set lo up\nlink set up0 up\nrule add not iif lo pref 50 unreachable\n",
        )?;
        Ok(lab)
    }

    /// The lab's id (`ct<pid>x<n>`), the prefix of all its namespace names.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The LAN, e.g. 198.18.0.0/22.
    pub fn lan(&self) -> Net {
        self.lan
    }
    /// The scanner's namespace.
    pub fn scanner_ns(&self) -> &str {
        &self.scan_ns
    }
    /// The namespace holding the macvlan hosts (and snmpsim devices).
    pub fn hosts_ns(&self) -> &str {
        &self.hosts_ns
    }
    /// Every namespace the lab owns.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
    /// Every host added so far.
    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }
    /// LAN addresses of the lab's own machinery (the scanner, routers): they answer ping too.
    pub fn infra_addrs(&self) -> &[Ipv4Addr] {
        &self.infra
    }
    /// The lab's scratch directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds `n` live hosts at random free LAN addresses, each a macvlan with its own random
    /// locally administered MAC, in the hosts namespace.
    pub fn add_hosts(&mut self, n: usize) -> Result<Vec<LabHost>> {
        let ips = self.alloc(n)?;
        let spec: Vec<(Ipv4Addr, Option<&str>)> = ips.iter().map(|&ip| (ip, None)).collect();
        self.add_hosts_at(&spec)
    }

    /// Adds hosts at the given LAN addresses, with the given MAC or a random one.
    pub fn add_hosts_at(&mut self, spec: &[(Ipv4Addr, Option<&str>)]) -> Result<Vec<LabHost>> {
        let mut script = String::new();
        let mut added = Vec::new();
        for &(ip, mac) in spec {
            self.claim(ip)?;
            let mac = mac.map_or_else(random_mac, str::to_ascii_lowercase);
            let k = self.next_dev;
            self.next_dev += 1;
            let (dev, table, len, net) = (format!("m{k}"), TABLE_BASE + k, self.lan.len, self.lan);
            writeln!(
                script,
                "link add {dev} link up0 address {mac} type macvlan mode bridge bcqueuelen 16384\n\
                 addr add {ip}/{len} dev {dev}\n\
                 link set {dev} up\n\
                 rule add from {ip} lookup {table} pref 100\n\
                 route add {net} dev {dev} src {ip} table {table}\n\
                 {neigh} dev {dev}",
                neigh = self.scanner_neigh()
            )
            .expect("write to String");
            added.push(LabHost {
                ip,
                mac,
                netns: self.hosts_ns.clone(),
                dev,
            });
        }
        self.batch(Some(&self.hosts_ns.clone()), &script)?;
        self.hosts.extend(added.iter().cloned());
        Ok(added)
    }

    /// Adds one host in its own namespace (its link can go down, it can run daemons).
    pub fn add_host_ns(&mut self, ip: Ipv4Addr) -> Result<LabHost> {
        self.add_host_ns_mac(ip, None)
    }

    /// [`Lab::add_host_ns`] with a chosen MAC.
    pub fn add_host_ns_mac(&mut self, ip: Ipv4Addr, mac: Option<&str>) -> Result<LabHost> {
        self.claim(ip)?;
        let mac = mac.map_or_else(random_mac, str::to_ascii_lowercase);
        let ns = self.new_ns('n')?;
        let port = format!("q{}", self.next_ns);
        self.batch(
            Some(&self.lan_ns.clone()),
            &format!("link add {port} type veth peer name eth0 netns {ns}\nlink set {port} master br0 up\n"),
        )?;
        self.batch(
            Some(&ns),
            &format!(
                "link set lo up\nlink set eth0 address {mac}\naddr add {ip}/{} dev eth0\n\
                 link set eth0 up\n{} dev eth0\n",
                self.lan.len,
                self.scanner_neigh()
            ),
        )?;
        let host = LabHost {
            ip,
            mac,
            netns: ns,
            dev: "eth0".into(),
        };
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// Takes a host's link down or brings it back up.
    pub fn set_link(&self, host: &LabHost, up: bool) -> Result<()> {
        run(Command::new("ip")
            .args(["-n", &host.netns, "link", "set", &host.dev])
            .arg(if up { "up" } else { "down" }))?;
        if up && host.netns == self.hosts_ns {
            // A macvlan going down loses its policy route; restore it.
            let table = (TABLE_BASE + host.dev[1..].parse::<usize>()?).to_string();
            run(Command::new("ip")
                .args(["-n", &host.netns, "route", "replace"])
                .args([
                    &self.lan.to_string(),
                    "dev",
                    &host.dev,
                    "src",
                    &host.ip.to_string(),
                    "table",
                    &table,
                ]))?;
        }
        Ok(())
    }

    /// A router namespace on the LAN; the scanner routes `routed` (inside 198.18.0.0/15, not
    /// overlapping the LAN) via it. The router blackholes `routed` and carries `live` random
    /// addresses of it as /32s on its loopback (they answer ping). Returns them, sorted.
    pub fn add_routed(&mut self, routed: &str, live: usize) -> Result<Vec<Ipv4Addr>> {
        let net = Net::parse(routed)?;
        ensure!(
            lab_range().first() <= net.first() && net.last() <= lab_range().last(),
            "routed range {net} is outside the lab range {}",
            lab_range()
        );
        ensure!(
            !net.overlaps(self.lan),
            "routed range {net} overlaps the lab LAN {}",
            self.lan
        );
        if let Some(other) = self.routed.iter().find(|r| r.overlaps(net)) {
            bail!("routed range {net} overlaps {other}, already routed");
        }
        let candidates: Vec<Ipv4Addr> = net.hosts().collect();
        ensure!(
            live <= candidates.len(),
            "{live} live addresses do not fit in {net}"
        );
        let mut addrs: Vec<Ipv4Addr> = candidates
            .choose_multiple(&mut rand::rng(), live)
            .copied()
            .collect();
        addrs.sort();
        let router_ip = self.alloc(1)?[0];
        self.claim(router_ip)?;
        let ns = self.new_ns('r')?;
        let port = format!("r{}", self.next_ns);
        self.batch(
            Some(&self.lan_ns.clone()),
            &format!("link add {port} type veth peer name eth0 netns {ns}\nlink set {port} master br0 up\n"),
        )?;
        let mut script = format!(
            "link set lo up\naddr add {router_ip}/{} dev eth0\nlink set eth0 up\n\
             {} dev eth0\nroute add blackhole {net}\n",
            self.lan.len,
            self.scanner_neigh()
        );
        for a in &addrs {
            writeln!(script, "addr add {a}/32 dev lo").expect("write to String");
        }
        self.batch(Some(&ns), &script)?;
        self.batch(
            Some(&self.scan_ns.clone()),
            &format!("route add {net} via {router_ip}\n"),
        )?;
        self.routed.push(net);
        self.infra.push(router_ip);
        self.routers.push((
            net,
            LabHost {
                ip: router_ip,
                mac: String::new(),
                netns: ns,
                dev: "eth0".into(),
            },
        ));
        Ok(addrs)
    }

    /// The router namespace carrying `routed` (its LAN link is `eth0`; [`Lab::set_link`] takes
    /// it down and up).
    pub fn router_of(&self, routed: &str) -> Option<LabHost> {
        let net = Net::parse(routed).ok()?;
        self.routers
            .iter()
            .find(|(n, _)| *n == net)
            .map(|(_, h)| h.clone())
    }

    /// `ip netns exec <scanner> program args…`: run (or spawn) a probe inside the scanner.
    pub fn scanner_cmd<S: AsRef<OsStr>>(&self, program: impl AsRef<OsStr>, args: &[S]) -> Command {
        self.in_ns(&self.scan_ns, program, args)
    }

    /// `ip netns exec <netns> program args…`.
    pub fn in_ns<S: AsRef<OsStr>>(
        &self,
        netns: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(program).args(args);
        cmd
    }

    /// Starts a real net-snmp `snmpd` in `host`'s namespace listening on `host.ip:161`, and
    /// waits until it answers a v2c get from the scanner.
    pub fn start_snmpd(&mut self, host: &LabHost, conf: &SnmpdConf) -> Result<()> {
        require(&["snmpd", "snmpget"])?;
        let dir = self.new_dir("snmpd")?;
        let mut text = format!(
            "agentAddress udp:{ip}:161\n\
             rocommunity {c} default\n\
             sysName {n}\nsysLocation {l}\nsysContact {k}\nsysServices 72\n",
            ip = host.ip,
            c = conf.community,
            n = conf.sys_name,
            l = conf.sys_location,
            k = conf.sys_contact,
        );
        if let Some(v3) = &conf.v3 {
            writeln!(
                text,
                "createUser {u} SHA {a} AES {p}\nrouser {u} authpriv",
                u = v3.user,
                a = v3.auth_pass,
                p = v3.priv_pass
            )
            .expect("write to String");
        }
        let conf_path = dir.join("snmpd.conf");
        write(&conf_path, &text)?;
        let log = dir.join("snmpd.log");
        let mut cmd = self.in_ns(&host.netns, "snmpd", &[] as &[&str]);
        cmd.env("SNMP_PERSISTENT_DIR", dir.join("persist"))
            .env("MIBS", "")
            .arg("-f")
            .arg("-C")
            .arg("-c")
            .arg(&conf_path)
            .arg("-Lf")
            .arg(&log)
            .arg("-p")
            .arg(dir.join("snmpd.pid"));
        let name = format!("snmpd on {}", host.ip);
        self.spawn_daemon(&name, cmd, &log)?;
        let args = [
            "-v2c",
            "-c",
            &conf.community,
            "-t",
            "1",
            "-r",
            "0",
            "-On",
            "-Oqv",
        ];
        self.wait_snmp(
            &name,
            &log,
            host.ip,
            &args,
            "1.3.6.1.2.1.1.5.0",
            Duration::from_secs(20),
        )
    }

    /// Starts `snmpsimd` serving each `(address, recording)`: the recording (base name of a file
    /// in [`recordings_dir`]) answers community `public` on that address only, and community
    /// `<recording>` on every address of this call. Addresses that are not lab hosts yet become
    /// macvlan hosts (own MAC); one snmpsimd runs per namespace involved. Waits until every
    /// address answers from the scanner.
    ///
    /// One snmpsimd per distinct recording (its default SNMPv3 architecture), listening on every
    /// address that serves that recording, with the recording linked as `public.snmprec` (and
    /// under its own name). snmpsim 0.4.5's `--v2c-arch`, which could pick a recording per
    /// endpoint in one process, spins forever answering a GETBULK that runs past the end of
    /// the MIB, so it is not used.
    pub fn start_snmpsim(&mut self, devices: &[(Ipv4Addr, &str)]) -> Result<()> {
        require(&["snmpsimd", "snmpget", "chown"])?;
        ensure!(!devices.is_empty(), "start_snmpsim: no devices");
        let recordings = recordings_dir()?;
        let missing: Vec<(Ipv4Addr, Option<&str>)> = devices
            .iter()
            .filter(|(ip, _)| !self.hosts.iter().any(|h| h.ip == *ip))
            .map(|&(ip, _)| (ip, None))
            .collect();
        if !missing.is_empty() {
            self.add_hosts_at(&missing)?;
        }
        // One daemon per (namespace, recording): community "public" then always means it.
        let mut groups: BTreeMap<(String, &str), Vec<Ipv4Addr>> = BTreeMap::new();
        for &(ip, rec) in devices {
            let host = self.hosts.iter().find(|h| h.ip == ip).expect("added above");
            groups
                .entry((host.netns.clone(), rec))
                .or_default()
                .push(ip);
        }
        for ((ns, rec), ips) in groups {
            let dir = self.new_dir("snmpsim")?;
            let (data, cache) = (dir.join("data"), dir.join("cache"));
            for d in [&data, &cache] {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            }
            let src = recordings.join(format!("{rec}.snmprec"));
            let text = std::fs::read_to_string(&src)
                .with_context(|| format!("reading recording {}", src.display()))?;
            let copy = data.join(format!("{rec}.snmprec"));
            write(&copy, &servable_recording(&text))?;
            symlink(&copy, &data.join("public.snmprec"))?;
            let mut cmd = self.in_ns(&ns, "snmpsimd", &[] as &[&str]);
            cmd.arg(format!("--data-dir={}", data.display()))
                .arg(format!("--cache-dir={}", cache.display()))
                .args(["--process-user=nobody", "--process-group=nogroup"]);
            for ip in &ips {
                cmd.arg(format!("--agent-udpv4-endpoint={ip}:161"));
            }
            run(Command::new("chmod").arg("-R").arg("a+rX").arg(&dir))?;
            run(Command::new("chown").arg("nobody:nogroup").arg(&cache))?;
            let log = dir.join("snmpsimd.log");
            let name = format!("snmpsimd ({rec}) in {ns}");
            self.spawn_daemon(&name, cmd, &log)?;
            let args = ["-v2c", "-c", "public", "-t", "1", "-r", "0", "-On"];
            for ip in &ips {
                self.wait_snmp(&name, &log, *ip, &args, "1.3.6.1", Duration::from_secs(60))?;
            }
        }
        Ok(())
    }

    // --- internals ---

    /// Hosts know the scanner's MAC statically: permanent neighbour entries are exempt from the
    /// kernel's neighbour-table limit, which all namespaces share (see [`sweep_guard`]), so the
    /// lab's hosts do not eat into the scanner's share as they would with ARP.
    fn scanner_neigh(&self) -> String {
        format!(
            "neigh replace {SCANNER_IP} lladdr {} nud permanent",
            self.scan_mac
        )
    }

    fn alloc(&self, n: usize) -> Result<Vec<Ipv4Addr>> {
        let free: Vec<Ipv4Addr> = self
            .lan
            .hosts()
            .filter(|ip| !self.used.contains(ip))
            .collect();
        ensure!(
            n <= free.len(),
            "only {} free addresses left in {} for {n} hosts",
            free.len(),
            self.lan
        );
        let mut ips: Vec<Ipv4Addr> = free.choose_multiple(&mut rand::rng(), n).copied().collect();
        ips.sort();
        Ok(ips)
    }

    fn claim(&mut self, ip: Ipv4Addr) -> Result<()> {
        ensure!(
            self.lan.contains(ip),
            "{ip} is not in the lab LAN {}",
            self.lan
        );
        ensure!(
            self.lan.hosts().any(|h| h == ip),
            "{ip} is the network or broadcast address of {}",
            self.lan
        );
        ensure!(self.used.insert(ip), "{ip} is already in use in the lab");
        Ok(())
    }

    fn new_ns(&mut self, role: char) -> Result<String> {
        self.next_ns += 1;
        let ns = format!("{}{role}{}", self.id, self.next_ns);
        self.namespaces.push(ns.clone());
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        Ok(ns)
    }

    fn new_dir(&mut self, what: &str) -> Result<PathBuf> {
        self.next_file += 1;
        let dir = self.dir.join(format!("{what}{}", self.next_file));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Runs `ip [-n ns] -batch FILE`; an error names the failing line.
    fn batch(&mut self, ns: Option<&str>, script: &str) -> Result<()> {
        if script.is_empty() {
            return Ok(());
        }
        self.next_file += 1;
        let path = self.dir.join(format!("batch{}.ip", self.next_file));
        write(&path, script)?;
        let mut cmd = Command::new("ip");
        if let Some(ns) = ns {
            cmd.args(["-n", ns]);
        }
        cmd.arg("-batch").arg(&path);
        run(&mut cmd).map(drop).map_err(|e| {
            let msg = format!("{e:#}");
            let line = msg
                .rsplit_once(&format!("{}:", path.display()))
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| script.lines().nth(n.saturating_sub(1)));
            match line {
                Some(line) => e.context(format!("batch line `{line}`")),
                None => e,
            }
        })
    }

    fn sysctl(&self, ns: &str, settings: &[&str]) -> Result<()> {
        let mut cmd = self.in_ns(ns, "sysctl", &["-q", "-w"]);
        cmd.args(settings);
        run(&mut cmd).map(drop)
    }

    fn spawn_daemon(&mut self, name: &str, mut cmd: Command, log: &Path) -> Result<()> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name}: `{}`", describe(&cmd)))?;
        self.daemons.push((name.to_string(), child));
        Ok(())
    }

    fn wait_snmp(
        &mut self,
        name: &str,
        log: &Path,
        ip: Ipv4Addr,
        args: &[&str],
        oid: &str,
        timeout: Duration,
    ) -> Result<()> {
        let start = Instant::now();
        let getter = if oid == "1.3.6.1" {
            "snmpgetnext"
        } else {
            "snmpget"
        };
        loop {
            let out = self
                .scanner_cmd(getter, args)
                .arg(ip.to_string())
                .arg(oid)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {getter}"))?;
            if out.status.success() {
                return Ok(());
            }
            let exited = self
                .daemons
                .iter_mut()
                .rev()
                .find(|(n, _)| n == name)
                .and_then(|(_, c)| c.try_wait().ok().flatten());
            if exited.is_some() || start.elapsed() > timeout {
                bail!(
                    "{name} does not answer on {ip} ({}; last {getter}: {}); log {}:\n{}",
                    exited.map_or_else(
                        || format!("waited {timeout:?}"),
                        |s| format!("it exited: {s}")
                    ),
                    String::from_utf8_lossy(&out.stderr).trim(),
                    log.display(),
                    tail(log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut script = String::new();
        for ns in self.namespaces.iter().rev() {
            kill_ns_processes(ns);
            let _ = writeln!(script, "netns del {ns}");
        }
        let path = self.dir.join("teardown.ip");
        let batch_ok = std::fs::write(&path, &script).is_ok()
            && Command::new("ip")
                .arg("-force")
                .arg("-batch")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if !batch_ok {
            for ns in &self.namespaces {
                let _ = Command::new("ip")
                    .args(["netns", "del", ns])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `nmap -sn -n -oG - [extra…] targets…` in the scanner; the hosts it reports up.
pub fn nmap_sn(
    lab: &Lab,
    targets: &[&str],
    extra: &[&str],
) -> Result<(Duration, BTreeSet<Ipv4Addr>)> {
    require(&["nmap"])?;
    let mut cmd = lab.scanner_cmd("nmap", &["-sn", "-n", "-oG", "-"]);
    cmd.args(extra).args(targets);
    let _guard = sweep_guard();
    let start = Instant::now();
    let out = run(&mut cmd)?;
    let took = start.elapsed();
    let up = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("Host: ") && l.contains("Status: Up"))
        .filter_map(|l| l["Host: ".len()..].split_whitespace().next()?.parse().ok())
        .collect();
    Ok((took, up))
}

/// `fping -a -q -t timeout_ms [extra…] -g CIDR` in the scanner; the addresses alive.
///
/// Beware: fping sends faster than ARP resolves, and packets waiting for ARP count against its
/// socket's send buffer (`net.core.wmem_default`, not settable per namespace), so a fast `-g`
/// over a mostly empty LAN fails with ENOBUFS after ~200 unresolved addresses and misses
/// hosts. Keep `-i` ≥ 10 for a whole /22, or probe a list of targets with [`fping`].
pub fn fping_ag(
    lab: &Lab,
    cidr: &str,
    timeout_ms: u32,
    extra: &[&str],
) -> Result<(Duration, BTreeSet<Ipv4Addr>)> {
    fping(lab, &["-g", cidr], timeout_ms, extra)
}

/// `fping -a -q -t timeout_ms [extra…] targets…` in the scanner; the addresses alive.
pub fn fping(
    lab: &Lab,
    targets: &[&str],
    timeout_ms: u32,
    extra: &[&str],
) -> Result<(Duration, BTreeSet<Ipv4Addr>)> {
    require(&["fping"])?;
    let t = timeout_ms.to_string();
    let mut cmd = lab.scanner_cmd("fping", &["-a", "-q", "-t", &t]);
    cmd.args(extra).args(targets);
    let mut desc = describe(&cmd);
    if desc.len() > 300 {
        desc = format!("{}… ({} targets)", &desc[..300], targets.len());
    }
    let _guard = sweep_guard();
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{desc}`"))?;
    let took = start.elapsed();
    // fping exits 1 when some targets are unreachable: that is the normal case here.
    ensure!(
        matches!(out.status.code(), Some(0 | 1)),
        "`{desc}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(line) = stderr.lines().find(|l| l.contains("error while sending")) {
        bail!("`{desc}` could not send all probes (slow it down with -i): {line}");
    }
    let alive = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    Ok((took, alive))
}

/// `../shared/snmp-recordings` next to the repository; an error if it is missing.
pub fn recordings_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/snmp-recordings");
    ensure!(
        dir.join("README.md").is_file(),
        "SNMP recordings are missing at {}: clone the shared data next to the repository",
        dir.display()
    );
    Ok(dir)
}

/// A recording as snmpsim 0.4.5 can serve it: OID components masked as `xx` (the Windows
/// recording) become `0`, the fix the recordings README describes.
pub fn servable_recording(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.split_once('|') {
            Some((oid, rest)) if oid.split('.').any(|c| c == "xx") => {
                let oid: Vec<&str> = oid
                    .split('.')
                    .map(|c| if c == "xx" { "0" } else { c })
                    .collect();
                out.push_str(&oid.join("."));
                out.push('|');
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Fails with a clear message when a required program is not on PATH.
pub fn require(programs: &[&str]) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .collect();
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| !dirs.iter().any(|d| d.join(p).is_file()))
        .collect();
    ensure!(
        missing.is_empty(),
        "the network lab needs {} (missing on PATH; Debian packages: iproute2, snmpd, snmp, snmpsim, nmap, fping)",
        missing.join(", ")
    );
    Ok(())
}

fn ensure_root() -> Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    ensure!(
        euid == "0",
        "the network lab needs root (network namespaces), running as uid {euid}"
    );
    Ok(())
}

/// Deletes lab namespaces (`ct<pid>x<n>…`) older than an hour whose process is gone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("ct")
            .and_then(|rest| rest.split_once('x'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < hour_ago);
        if old && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_ns_processes(&name);
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Kills (SIGKILL, by pid) every process left inside one of the lab's namespaces.
fn kill_ns_processes(ns: &str) {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|p| p.parse::<u32>().is_ok())
        .map(str::to_string)
        .collect();
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs a command to completion; failure is an error naming it, with its stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let desc = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{desc}`"))?;
    if !out.status.success() {
        bail!(
            "`{desc}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A random unicast, locally administered MAC.
fn random_mac() -> String {
    let mut b: [u8; 6] = rand::rng().random();
    b[0] = (b[0] & 0xfc) | 0x02;
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
