//! The Debian packages, for real: `scripts/package.sh deb` builds both .debs (from the debug
//! binaries already built, to spare a release build), `dpkg -i` installs them on this machine
//! (CI runs as root), the files, the `caretaker` system user and the permissions are checked,
//! `systemd-analyze verify` checks the units, the installed collector tells systemd READY and
//! WATCHDOG over a notify socket, and `dpkg --purge` removes everything again.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const PACKAGES: [&str; 2] = ["caretaker-collector", "caretaker-agent"];

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run ({e}): is it installed?"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

fn purge() {
    let _ = run("dpkg", &["--purge", PACKAGES[0], PACKAGES[1]]);
}

/// Purges the packages however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        purge();
    }
}

fn unit_path(name: &str) -> PathBuf {
    ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} was not installed"))
}

#[test]
fn the_debs_install_verify_notify_and_purge() {
    assert_eq!(
        ok("id", &["-u"]).trim(),
        "0",
        "installing packages needs root (CI runs as root)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dist = tempfile::tempdir().expect("tempdir");
    let status = Command::new("bash")
        .arg(root.join("scripts/package.sh"))
        .arg("deb")
        .env("CARETAKER_DIST", dist.path())
        .env("CARETAKER_DEB_PROFILE", "dev")
        .current_dir(&root)
        .status()
        .expect("package.sh");
    assert!(status.success(), "package.sh deb failed");
    let debs: Vec<String> = PACKAGES
        .iter()
        .map(|p| {
            let deb = dist
                .path()
                .join(format!("{p}_{}-1_amd64.deb", env!("CARGO_PKG_VERSION")));
            assert!(deb.exists(), "{} was not built", deb.display());
            deb.display().to_string()
        })
        .collect();

    purge();
    let _installed = Installed;
    ok("dpkg", &["-i", &debs[0], &debs[1]]);

    // Files, the user and permissions.
    for bin in ["/usr/bin/caretaker-collector", "/usr/bin/caretaker-agent"] {
        assert_eq!(mode(bin), 0o755, "{bin}");
    }
    let user = ok("getent", &["passwd", "caretaker"]);
    let fields: Vec<&str> = user.trim().split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "caretaker is a system user: {user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{user}");
    let gid = ok("getent", &["group", "caretaker"]);
    let gid: u32 = gid
        .trim()
        .split(':')
        .nth(2)
        .expect("gid")
        .parse()
        .expect("gid");
    for (path, want) in [
        ("/etc/caretaker", 0o750),
        ("/etc/caretaker/collector.toml", 0o640),
        ("/etc/caretaker/agent.toml", 0o640),
    ] {
        assert_eq!(mode(path), want, "{path}");
        let meta = std::fs::metadata(path).expect("meta");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, gid),
            "{path} is root:caretaker"
        );
    }
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGES[0]]);
    assert!(
        conffiles.contains("/etc/caretaker/collector.toml"),
        "{conffiles}"
    );

    // The units: valid, hardened, notify.
    let collector_unit = unit_path("caretaker-collector.service");
    let agent_unit = unit_path("caretaker-agent.service");
    let verify = run(
        "systemd-analyze",
        &[
            "verify",
            &collector_unit.display().to_string(),
            &agent_unit.display().to_string(),
        ],
    );
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let unit = std::fs::read_to_string(&collector_unit).expect("unit");
    for line in [
        "Type=notify",
        "User=caretaker",
        "StateDirectory=caretaker",
        "AmbientCapabilities=CAP_NET_RAW",
        "CapabilityBoundingSet=CAP_NET_RAW",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestartPreventExitStatus=78",
        "ExecStartPre=/usr/bin/caretaker-collector check-config --config /etc/caretaker/collector.toml",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} missing from the unit"
        );
    }
    ok(
        "/usr/bin/caretaker-collector",
        &["check-config", "--config", "/etc/caretaker/collector.toml"],
    );

    // The installed collector tells systemd it is ready, keeps the watchdog fed, and says
    // when it stops.
    let scratch = tempfile::tempdir().expect("tempdir");
    let socket_path = scratch.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let config = scratch.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            scratch.path().join("data").display().to_string()
        ),
    )
    .expect("config");
    let mut child = Command::new("/usr/bin/caretaker-collector")
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .stderr(Stdio::null())
        .spawn()
        .expect("start the installed collector");
    let mut received = Vec::new();
    let mut buf = [0u8; 512];
    while !received.iter().any(|m: &String| m == "WATCHDOG=1") {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("no notification ({e}); got {received:?}")
        });
        received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        received[0].starts_with("READY=1\nSTATUS=Agents on 127.0.0.1:"),
        "{received:?}"
    );
    ok("kill", &[&child.id().to_string()]);
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buf) {
        if &buf[..n] == b"STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on SIGTERM");
    assert!(child.wait().expect("wait").success());

    // Purge removes the files and config; the user stays (it may own backups).
    purge();
    for path in [
        "/usr/bin/caretaker-collector",
        "/usr/bin/caretaker-agent",
        "/etc/caretaker",
    ] {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    assert!(!collector_unit.exists());
}
