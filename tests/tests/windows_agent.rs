//! The Windows agent, cross-built in release mode, under real Wine: registry software
//! inventory, bad input (garbage values, a 50,000-entry hive, a WMI past its timeout),
//! `run --once` against a real collector on loopback (also while the collector is away),
//! the Windows service under Wine's service manager, and the MSI built by
//! `scripts/package.sh` (its tables, then installed, upgraded and removed under Wine).
//!
//! Each test has its own Wine prefix (see `caretaker_tests::wine`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use caretaker_tests::wine::{self, Prefix};
use caretaker_tests::{Collector, wait_for};
use serde_json::Value;

const UNINSTALL: &str = r"HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall";
const USER_UNINSTALL: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall";
const MINUTE: Duration = Duration::from_secs(60);

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn inventory(prefix: &Prefix, extra: &[&str]) -> Value {
    let mut args = vec!["inventory", "--json"];
    args.extend_from_slice(extra);
    let out = prefix.agent(&args, 3 * MINUTE);
    assert!(out.status.success(), "inventory failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("inventory --json is not JSON ({e}): {}", stderr(&out)))
}

fn programs(report: &Value) -> BTreeSet<(String, String, String)> {
    report["inventory"]["software"]
        .as_array()
        .expect("software list")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["version"].as_str().unwrap_or_default().to_owned(),
                s["arch"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn missing(report: &Value) -> Vec<String> {
    report["missing"]
        .as_array()
        .expect("missing list")
        .iter()
        .map(|m| m.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Seeds programs in the 64-bit and 32-bit views and the user's hive, plus entries that are
/// not programs.
fn seed_programs(p: &Prefix) {
    let add = |view: Option<u8>, root: &str, key: &str, values: &[(&str, &str, &str)]| {
        for (name, kind, data) in values {
            p.reg_add(&format!(r"{root}\{key}"), name, kind, data, view);
        }
    };
    add(
        Some(64),
        UNINSTALL,
        "{A64}",
        &[
            ("DisplayName", "REG_SZ", "Caretaker Test Suite"),
            ("DisplayVersion", "REG_SZ", "2.4.1"),
            ("Publisher", "REG_SZ", "Example Software Ltd"),
            ("InstallDate", "REG_SZ", "20240115"),
        ],
    );
    add(
        Some(32),
        UNINSTALL,
        "{B32}",
        &[
            ("DisplayName", "REG_SZ", "Legacy Reader"),
            ("DisplayVersion", "REG_SZ", "11.0"),
        ],
    );
    add(
        None,
        USER_UNINSTALL,
        "UserTool",
        &[
            ("DisplayName", "REG_SZ", "Per-user Tool"),
            ("DisplayVersion", "REG_DWORD", "7"),
        ],
    );
    // Not programs: a system component, an update with a parent, an update by release type,
    // a KB key, and an entry without a name.
    add(
        Some(64),
        UNINSTALL,
        "{C-SYS}",
        &[
            ("DisplayName", "REG_SZ", "Hidden Runtime"),
            ("SystemComponent", "REG_DWORD", "1"),
        ],
    );
    add(
        Some(32),
        UNINSTALL,
        "{D-UPD}",
        &[
            (
                "DisplayName",
                "REG_SZ",
                "Update for Legacy Reader (KB123456)",
            ),
            ("ParentKeyName", "REG_SZ", "{B32}"),
        ],
    );
    add(
        Some(64),
        UNINSTALL,
        "{E-REL}",
        &[
            ("DisplayName", "REG_SZ", "Security Update for Test Suite"),
            ("ReleaseType", "REG_SZ", "Security Update"),
        ],
    );
    add(
        Some(64),
        UNINSTALL,
        "KB5034441",
        &[("DisplayName", "REG_SZ", "Hotfix for Windows")],
    );
    add(
        Some(64),
        UNINSTALL,
        "{F-NONAME}",
        &[("DisplayVersion", "REG_SZ", "1.0")],
    );
}

fn expected_programs() -> BTreeSet<(String, String, String)> {
    [
        ("Caretaker Test Suite", "2.4.1", "x64"),
        ("Legacy Reader", "11.0", "x86"),
        ("Per-user Tool", "7", ""),
    ]
    .iter()
    .map(|(n, v, a)| ((*n).to_owned(), (*v).to_owned(), (*a).to_owned()))
    .collect()
}

#[test]
fn inventory_lists_exactly_the_seeded_programs() {
    let p = Prefix::new();
    seed_programs(&p);
    let report = inventory(&p, &[]);
    assert_eq!(programs(&report), expected_programs());
    let suite = report["inventory"]["software"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Caretaker Test Suite")
        .unwrap()
        .clone();
    assert_eq!(suite["publisher"], "Example Software Ltd");
    assert_eq!(suite["installed_at"], "2024-01-15T00:00:00Z");
    assert_eq!(suite["source"], "registry");

    let inv = &report["inventory"];
    let system = &inv["system"];
    assert!(
        system["os_name"].as_str().unwrap().contains("Windows"),
        "{system}"
    );
    assert_eq!(system["domain_type"], "workgroup");
    assert!(!system["machine_id"].as_str().unwrap().is_empty());
    // Wine maps C: to a real directory: a volume with a size and a file system.
    let volumes = inv["volumes"].as_array().unwrap();
    let c = volumes
        .iter()
        .find(|v| v["mount"] == "C:\\")
        .expect("C: volume");
    assert!(c["total_bytes"].as_u64().unwrap() > 0);
    assert!(c["free_bytes"].as_u64().unwrap() <= c["total_bytes"].as_u64().unwrap());
    assert!(!c["file_system"].as_str().unwrap().is_empty());
    // Wine's WMI answers QFE with its one stock entry; the part is not missing.
    assert!(
        !missing(&report).contains(&"hotfixes".to_owned()),
        "{:?}",
        missing(&report)
    );
    assert!(!missing(&report).contains(&"software".to_owned()));
}

#[test]
fn firewall_profiles_and_servicing_packages_come_from_the_registry() {
    let p = Prefix::new();
    let fw = r"HKLM\SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy";
    p.reg_add(
        &format!(r"{fw}\DomainProfile"),
        "EnableFirewall",
        "REG_DWORD",
        "1",
        Some(64),
    );
    p.reg_add(
        &format!(r"{fw}\StandardProfile"),
        "EnableFirewall",
        "REG_DWORD",
        "1",
        Some(64),
    );
    p.reg_add(
        &format!(r"{fw}\PublicProfile"),
        "EnableFirewall",
        "REG_DWORD",
        "0",
        Some(64),
    );
    // Group policy turns the public profile on.
    p.reg_add(
        r"HKLM\SOFTWARE\Policies\Microsoft\WindowsFirewall\PublicProfile",
        "EnableFirewall",
        "REG_DWORD",
        "1",
        Some(64),
    );
    // A cumulative rollup QFE does not list, as the servicing stack records it.
    let cbs = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\Packages";
    let pkg = format!(r"{cbs}\Package_for_KB5034441~31bf3856ad364e35~amd64~~19041.3920.1.2");
    p.reg_add(&pkg, "CurrentState", "REG_DWORD", "112", Some(64));
    // 2024-01-15T00:00:00Z as a FILETIME, split in two DWORDs.
    p.reg_add(&pkg, "InstallTimeHigh", "REG_DWORD", "31082309", Some(64));
    p.reg_add(&pkg, "InstallTimeLow", "REG_DWORD", "3360833536", Some(64));
    let staged = format!(r"{cbs}\Package_for_KB5000001~31bf3856ad364e35~amd64~~1.0");
    p.reg_add(&staged, "CurrentState", "REG_DWORD", "32", Some(64));

    let report = inventory(&p, &[]);
    let inv = &report["inventory"];
    let profiles: Vec<(String, bool)> = inv["firewalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["profile"].as_str().unwrap().to_owned(),
                f["enabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        profiles,
        [
            ("domain".into(), true),
            ("private".into(), true),
            ("public".into(), true)
        ]
    );
    let hotfixes: Vec<&str> = inv["hotfixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert!(hotfixes.contains(&"KB5034441"), "{hotfixes:?}");
    assert!(
        !hotfixes.contains(&"KB5000001"),
        "a staged package is not installed"
    );
    let rollup = inv["hotfixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == "KB5034441")
        .unwrap();
    assert_eq!(rollup["installed_at"], "2024-01-15T00:00:00Z");
    assert_eq!(rollup["source"], "cbs");
    // With no Windows Update record, the newest install date stands for the last update.
    assert_eq!(inv["system"]["last_update_at"], "2024-01-15T00:00:00Z");
    assert!(missing(&report).is_empty(), "{:?}", missing(&report));
}

#[test]
fn garbage_values_and_a_50000_entry_hive_lose_nothing() {
    let p = Prefix::new();
    let mut reg = String::from("Windows Registry Editor Version 5.00\n\n");
    let key = r"HKEY_LOCAL_MACHINE\Software\Microsoft\Windows\CurrentVersion\Uninstall";
    for i in 0..50_000 {
        reg.push_str(&format!(
            "[{key}\\Bulk{i:05}]\n\"DisplayName\"=\"Bulk Program {i:05}\"\n\"DisplayVersion\"=\"1.{i}\"\n\"Publisher\"=\"Bulk Ltd\"\n\n"
        ));
    }
    // Garbage: a binary name (skipped: no usable name), a name of control characters and
    // junk, a 100 kB version, a DWORD date, a date that is no date, a binary publisher.
    reg.push_str(&format!(
        "[{key}\\GarbageBinaryName]\n\"DisplayName\"=hex:de,ad,be,ef\n\n"
    ));
    reg.push_str(&format!(
        "[{key}\\GarbageText]\n\"DisplayName\"=\"Garbled\u{7}\tTool\"\n\"DisplayVersion\"=\"{}\"\n\"InstallDate\"=dword:00000001\n\"Publisher\"=hex:00,01,02\n\n",
        "9".repeat(100_000)
    ));
    reg.push_str(&format!(
        "[{key}\\GarbageDate]\n\"DisplayName\"=\"Dated Tool\"\n\"InstallDate\"=\"last Tuesday\"\n\n"
    ));
    p.reg_import(&reg);

    let report = inventory(&p, &["--collect-timeout", "120s"]);
    assert!(
        !missing(&report).contains(&"software".to_owned()),
        "{:?}",
        missing(&report)
    );
    let software = report["inventory"]["software"].as_array().unwrap();
    let bulk = software
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("Bulk Program "))
        .count();
    assert_eq!(bulk, 50_000, "every entry of the big hive is listed");
    let garbled = software
        .iter()
        .find(|s| s["name"].as_str().unwrap().starts_with("Garbled"))
        .expect("an entry with junk values is still listed");
    assert_eq!(garbled["version"].as_str().unwrap().len(), 256, "bounded");
    assert_eq!(
        garbled["publisher"], "",
        "a binary publisher is no publisher"
    );
    assert!(garbled["installed_at"].is_null());
    let dated = software.iter().find(|s| s["name"] == "Dated Tool").unwrap();
    assert!(dated["installed_at"].is_null());
    assert_eq!(
        software.len(),
        50_002,
        "bulk + the two garbage entries with a name"
    );
}

#[test]
fn a_wmi_query_past_its_timeout_marks_its_part_missing() {
    let p = Prefix::new();
    seed_programs(&p);
    // 1 ms: no WMI query (COM start, connection, query) answers that fast, as if WMI hung.
    let report = inventory(&p, &["--wmi-timeout", "1ms"]);
    let m = missing(&report);
    assert!(m.contains(&"hotfixes".to_owned()), "{m:?}");
    // Everything that does not need WMI is there.
    assert_eq!(programs(&report), expected_programs());
    assert!(
        !m.contains(&"volumes".to_owned()) && !m.contains(&"system".to_owned()),
        "{m:?}"
    );
    assert!(
        report["inventory"]["hotfixes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

fn assets_named(collector: &Collector) -> Vec<Value> {
    collector.assets()
}

fn wine_hostname(p: &Prefix) -> String {
    let out = p.run(["cmd", "/c", "hostname"], MINUTE);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn run_once_enrols_with_a_real_collector_and_keeps_reports_while_it_is_away() {
    let p = Prefix::new();
    seed_programs(&p);
    let dir = tempfile::tempdir().unwrap();

    // The collector is away: the agent journals, says so, exits 69.
    // Port 1 on loopback: nothing listens there.
    let dead = "http://127.0.0.1:1".to_owned();
    let state = r"C:\caretaker-state";
    let out = p.agent(
        &[
            "run",
            "--once",
            "--collector",
            &dead,
            "--enroll-token",
            "x",
            "--state-dir",
            state,
        ],
        3 * MINUTE,
    );
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(p.c_drive(r"C:\caretaker-state\journal.log").exists());

    let mut collector = Collector::start(&dir.path().join("collector"));
    let token = collector.enroll_token();
    let out = p.agent(
        &[
            "run",
            "--once",
            "--collector",
            &collector.url(),
            "--enroll-token",
            &token,
            "--state-dir",
            state,
        ],
        3 * MINUTE,
    );
    assert!(out.status.success(), "run --once failed: {}", stderr(&out));
    // Collector URL changed: it enrolled there; the journal from the first run was delivered
    // too (nothing lost) and is now empty.
    let assets = assets_named(&collector);
    assert_eq!(assets.len(), 1, "{assets:#?}");
    let asset = &assets[0];
    assert_eq!(asset["sources"], serde_json::json!(["agent"]));
    assert!(
        asset["os"].as_str().unwrap_or_default().contains("Windows"),
        "{asset}"
    );
    assert_eq!(
        asset["hostname"].as_str().unwrap().to_lowercase(),
        wine_hostname(&p).to_lowercase()
    );
    let detail = collector.get(&format!("/assets/{}", asset["id"].as_str().unwrap()));
    let names: BTreeSet<&str> = detail["software"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Caretaker Test Suite", "Legacy Reader", "Per-user Tool"]
            .into_iter()
            .collect()
    );
    // The Windows-only parts reach the register too.
    let hw = &detail["hardware"];
    assert_eq!(hw["os_domain_type"], "workgroup", "{hw}");
    assert!(
        !hw["hotfixes"].as_array().unwrap().is_empty(),
        "Wine's stock QFE entry: {hw}"
    );
    let identity = std::fs::read_to_string(p.c_drive(r"C:\caretaker-state\identity.json")).unwrap();
    assert!(identity.contains("agent_secret"));
    collector.stop();
}

/// Every file under `dir`, read as bytes (the collector's data directory).
fn all_bytes(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

#[test]
fn run_once_enrols_over_mtls_at_the_collectors_own_port_and_reuses_its_certificate() {
    let p = Prefix::new();
    seed_programs(&p);
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(&dir.path().join("collector"));
    // A real token (CA pin inside), and the collector's TLS-only port: no test proxy between.
    let token = collector.enroll_token();
    assert!(token.starts_with("ct1_"), "{token}");
    let url = collector.direct_url();
    let state = r"C:\caretaker-mtls";
    let out = p.agent(
        &[
            "run",
            "--once",
            "--collector",
            &url,
            "--enroll-token",
            &token,
            "--state-dir",
            state,
        ],
        3 * MINUTE,
    );
    assert!(out.status.success(), "run --once failed: {}", stderr(&out));
    let read_identity = || -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(p.c_drive(r"C:\caretaker-mtls\identity.json"))
                .expect("identity.json"),
        )
        .expect("identity JSON")
    };
    let first = read_identity();
    let cert = first["certificate_pem"].as_str().unwrap().to_owned();
    let key = first["key_pem"].as_str().unwrap().to_owned();
    assert!(cert.contains("BEGIN CERTIFICATE"), "{first}");
    assert!(key.contains("PRIVATE KEY"), "the key is made on the PC");
    assert!(
        first["ca_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE"),
        "the CA is kept for later calls"
    );
    // A client pair rustls accepts (key matches certificate), issued by this collector's CA.
    let ca = std::fs::read_to_string(collector.dir.join("data/pki/ca.pem")).unwrap();
    let _ = caretaker_tests::tls::client_config(&ca, Some((&cert, &key)));
    let assets = collector.assets();
    assert_eq!(assets.len(), 1, "{assets:#?}");
    let id = assets[0]["id"].as_str().unwrap().to_owned();
    let detail = collector.get(&format!("/assets/{id}"));
    assert!(
        detail["software"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "Caretaker Test Suite"),
        "the inventory arrived over mTLS: {detail}"
    );
    // The private key never left the PC: no byte of its body is in the collector's files.
    let body: String = key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let probe = &body[body.len().saturating_sub(48)..];
    for (path, bytes) in all_bytes(&collector.dir) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(probe),
            "the agent's key is in {}",
            path.display()
        );
    }
    let log = collector.log();
    assert!(
        !log.contains("spoke plaintext"),
        "the agent spoke TLS to the TLS port:\n{log}"
    );

    // Second run, no token: the stored certificate alone authenticates, nothing is re-made.
    let out = p.agent(
        &["run", "--once", "--collector", &url, "--state-dir", state],
        3 * MINUTE,
    );
    assert!(
        out.status.success(),
        "second run --once failed: {}",
        stderr(&out)
    );
    let second = read_identity();
    assert_eq!(second["agent_id"], first["agent_id"]);
    assert_eq!(second["certificate_pem"], first["certificate_pem"]);
    assert_eq!(second["key_pem"], first["key_pem"]);
    let assets = collector.assets();
    assert_eq!(assets.len(), 1, "still one asset: {assets:#?}");
    assert_eq!(assets[0]["id"], id.as_str());
    collector.stop();
}

fn service_state(p: &Prefix) -> String {
    let out = p.agent(&["service", "status"], MINUTE);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        stderr(&out).trim()
    )
}

#[test]
fn the_service_installs_starts_reports_and_stops_under_wines_service_manager() {
    let p = Prefix::new();
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start_with(
        &dir.path().join("collector"),
        "[agents]\nheartbeat_interval = \"2s\"\nstatus_interval = \"2s\"\n",
    );
    let token = collector.enroll_token();

    let out = p.agent(
        &[
            "service",
            "install",
            "--collector",
            &collector.url(),
            "--enroll-token",
            &token,
        ],
        MINUTE,
    );
    assert!(out.status.success(), "service install: {}", stderr(&out));
    assert!(
        service_state(&p).starts_with("Stopped"),
        "{}",
        service_state(&p)
    );
    let out = p.agent(&["service", "start"], MINUTE);
    assert!(out.status.success(), "service start: {}", stderr(&out));
    assert!(service_state(&p).starts_with("Running"));

    // The service enrols and reports; the collector's 2 s status interval applies.
    let asset = wait_for(Duration::from_secs(120), "the service's asset", || {
        collector.assets().into_iter().next()
    });
    assert!(asset["os"].as_str().unwrap_or_default().contains("Windows"));
    let data = p.c_drive(r"C:\ProgramData\Caretaker");
    let identity = std::fs::read_to_string(data.join("identity.json")).expect("identity.json");
    assert!(
        identity.contains("\"status_interval_secs\": 2"),
        "{identity}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("enroll-token"))
            .unwrap()
            .trim(),
        token,
        "the token lives in the private state directory"
    );

    // Stop takes the Ctrl-C path: the log says so, and the service reports Stopped.
    let out = p.agent(&["service", "stop"], MINUTE);
    assert!(out.status.success(), "service stop: {}", stderr(&out));
    assert!(service_state(&p).starts_with("Stopped"));
    let log = std::fs::read_to_string(data.join("logs/caretaker-agent.log")).expect("service log");
    assert!(log.contains("Agent starting"), "{log}");
    assert!(
        log.contains("Shutting down") && log.contains("Agent stopped"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "no colour codes in the log file");

    let out = p.agent(&["service", "uninstall"], MINUTE);
    assert!(out.status.success(), "service uninstall: {}", stderr(&out));
    assert!(
        service_state(&p).contains("not installed"),
        "{}",
        service_state(&p)
    );
}

/// `msiinfo export` of one table.
fn msi_table(msi: &Path, table: &str) -> String {
    let out = Command::new("msiinfo")
        .arg("export")
        .arg(msi)
        .arg(table)
        .output()
        .expect("msiinfo (msitools) is installed");
    assert!(
        out.status.success(),
        "msiinfo export {table}: {}",
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split('\t').next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{table}"))
        .split('\t')
        .collect()
}

fn build_msi() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/package.sh"))
        .arg("msi")
        .output()
        .expect("run scripts/package.sh");
    assert!(
        out.status.success(),
        "package.sh msi failed: {}",
        stderr(&out)
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    root.join(path)
}

#[test]
fn the_msi_has_its_service_and_properties_and_installs_upgrades_and_uninstalls() {
    let msi = build_msi();
    let exe_size = std::fs::metadata(wine::exe()).unwrap().len();
    assert!(
        exe_size <= 8 << 20,
        "the release exe is {exe_size} bytes, over 8 MiB"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        msi.ends_with(format!("dist/caretaker-agent-{version}-x64.msi")),
        "{}",
        msi.display()
    );

    let services = msi_table(&msi, "ServiceInstall");
    let svc = row(&services, "AgentService");
    assert_eq!(svc[1], "CaretakerAgent");
    assert_eq!(svc[4], "2", "automatic start");
    assert_eq!(svc[8], "LocalSystem");
    assert_eq!(svc[10], "run");
    let controls = msi_table(&msi, "ServiceControl");
    let control = row(&controls, "AgentServiceControl");
    assert_eq!(control[1], "CaretakerAgent");
    assert_eq!(
        control[2], "163",
        "start on install, stop on both, remove on uninstall"
    );
    let props = msi_table(&msi, "Property");
    assert_eq!(row(&props, "ProductVersion")[1], version);
    assert_eq!(
        row(&props, "UpgradeCode")[1],
        "{12366881-728E-4882-BC40-1FF8F8018C0F}"
    );
    assert_eq!(row(&props, "MsiHiddenProperties")[1], "ENROLL_TOKEN");
    let registry = msi_table(&msi, "Registry");
    assert!(
        registry.contains("SOFTWARE\\Caretaker\\Agent\tCollector\t[COLLECTOR]"),
        "{registry}"
    );
    assert!(
        registry.contains("EnrollToken\t[ENROLL_TOKEN]"),
        "{registry}"
    );
    assert!(msi_table(&msi, "LaunchCondition").contains("Installed OR COLLECTOR"));
    assert!(msi_table(&msi, "Upgrade").contains("WIX_UPGRADE_DETECTED"));

    // Under Wine: install with the two properties, as a GPO or Intune would.
    let p = Prefix::new();
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(&dir.path().join("collector"));
    let token = collector.enroll_token();
    let collector_prop = format!("COLLECTOR={}", collector.url());
    let token_prop = format!("ENROLL_TOKEN={token}");
    let msi_arg = msi.to_str().unwrap();
    let out = p.run(
        [
            "msiexec",
            "/i",
            msi_arg,
            "/qn",
            &collector_prop,
            &token_prop,
        ],
        5 * MINUTE,
    );
    assert!(out.status.success(), "msiexec /i: {}", stderr(&out));
    let installed = p.c_drive(r"C:\Program Files\Caretaker\caretaker-agent.exe");
    assert!(installed.exists(), "exe installed under Program Files");
    let asset = wait_for(
        Duration::from_secs(120),
        "the MSI-installed agent's asset",
        || collector.assets().into_iter().next(),
    );
    let first_id = asset["id"].clone();
    let key = r"HKLM\SOFTWARE\Caretaker\Agent";
    assert!(
        p.reg_query(key, Some("Collector"))
            .unwrap()
            .contains(&collector.url())
    );
    wait_for(
        Duration::from_secs(60),
        "the token moved out of the registry",
        || {
            p.reg_query(key, Some("EnrollToken"))
                .is_none()
                .then_some(())
        },
    );

    // Upgrade in place: a newer MSI, no properties (the collector is remembered).
    let newer = dir.path().join("caretaker-agent-99.0.0-x64.msi");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe = wine::exe();
    let exe_rel = exe
        .strip_prefix(root.canonicalize().unwrap())
        .map(Path::to_path_buf)
        .unwrap_or(exe);
    let status = Command::new("wixl")
        .current_dir(&root)
        .args(["--arch", "x64", "-D", "Version=99.0.0", "-D"])
        .arg(format!("Exe={}", exe_rel.display()))
        .arg("-o")
        .arg(&newer)
        .arg("deploy/windows/caretaker-agent.wxs")
        .status()
        .expect("wixl");
    assert!(status.success());
    let out = p.run(
        ["msiexec", "/i", newer.to_str().unwrap(), "/qn"],
        5 * MINUTE,
    );
    assert!(out.status.success(), "msiexec upgrade: {}", stderr(&out));
    assert!(
        service_state(&p).starts_with("Running"),
        "{}",
        service_state(&p)
    );
    assert!(
        p.reg_query(key, Some("Collector"))
            .unwrap()
            .contains(&collector.url())
    );
    let assets = collector.assets();
    assert_eq!(
        assets.len(),
        1,
        "the upgraded agent is the same asset: {assets:#?}"
    );
    assert_eq!(assets[0]["id"], first_id);

    // Uninstall: service, exe and settings gone; state kept.
    let out = p.run(
        ["msiexec", "/x", newer.to_str().unwrap(), "/qn"],
        5 * MINUTE,
    );
    assert!(out.status.success(), "msiexec /x: {}", stderr(&out));
    assert!(!installed.exists(), "exe removed");
    assert!(
        service_state(&p).contains("not installed"),
        "{}",
        service_state(&p)
    );
    assert!(
        p.reg_query(key, Some("Collector")).is_none(),
        "settings removed"
    );
    assert!(
        p.c_drive(r"C:\ProgramData\Caretaker\identity.json")
            .exists(),
        "state kept"
    );
}
