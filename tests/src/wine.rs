//! Running the Windows agent under real Wine (Debian's `wine`/`wine64` 8.0).
//!
//! `wineboot` takes tens of seconds and makes a ~700 MB prefix, so it runs once per machine:
//! a template prefix in `target/wine-template` (rebuilt when the wine version or the shim
//! changes, guarded by a file lock so test binaries running at once share it). Each test gets
//! its own prefix, [`Prefix::new`]: a copy of the template in which the large, read-only DLL
//! folders are hard links and everything Wine writes (registry files, user folders) is a real
//! copy, so tests never see each other's registry or services.
//!
//! Wine 8.0 lacks `bcryptprimitives.dll`, whose `ProcessPrng` every Rust ≥ 1.78 Windows
//! program imports; `tests/wine/processprng.c` is a ten-line shim built here with mingw-w64
//! and placed in the template's `system32`, so the agent starts wherever its exe lives
//! (including under Program Files, installed by the MSI, and as a service).
//!
//! A missing `wine`, mingw-w64 or release exe fails the test with what to install or build.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The cross-built release agent.
pub fn exe() -> PathBuf {
    let path = target_dir().join("x86_64-pc-windows-gnu/release/caretaker-agent.exe");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --release --target x86_64-pc-windows-gnu -p caretaker-agent`",
        path.display()
    );
    path
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: apt-get install {package} (scripts/test.sh does)"
    );
}

/// Builds the ProcessPrng shim (once per test binary).
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        require("x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("wine");
        let out_dir = target_dir().join("wine-shim");
        std::fs::create_dir_all(&out_dir).expect("shim dir");
        let out = out_dir.join(format!("bcryptprimitives-{}.dll", std::process::id()));
        let status = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-shared", "-O2", "-s", "-o"])
            .arg(&out)
            .arg(src.join("processprng.c"))
            .arg(src.join("processprng.def"))
            .arg("-lbcrypt")
            .status()
            .expect("run mingw-w64 gcc");
        assert!(status.success(), "building the ProcessPrng shim failed");
        let fixed = out_dir.join("bcryptprimitives.dll");
        std::fs::rename(&out, &fixed).expect("place the shim");
        fixed
    })
}

fn wine_version() -> String {
    let out = Command::new("wine")
        .arg("--version")
        .output()
        .expect("wine --version");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn base_env(cmd: &mut Command, prefix: &Path) {
    cmd.env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        // No Mono/Gecko download prompts: the agent needs neither.
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env("WINEARCH", "win64")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
}

/// The shared, booted template prefix (see the module comment).
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        require("wine", "wine wine64");
        let shim = shim();
        let dir = target_dir().join("wine-template");
        let stamp = format!(
            "{}\nshim {}\n",
            wine_version(),
            std::fs::metadata(shim).map(|m| m.len()).unwrap_or(0)
        );
        std::fs::create_dir_all(target_dir()).expect("target dir");
        let lock = std::fs::File::create(target_dir().join("wine-template.lock")).expect("lock");
        lock.lock().expect("lock the wine template");
        let stamp_file = dir.join("caretaker-template.stamp");
        if std::fs::read_to_string(&stamp_file).ok().as_deref() != Some(stamp.as_str()) {
            let _ = std::fs::remove_dir_all(&dir);
            let started = Instant::now();
            let mut boot = Command::new("wineboot");
            boot.arg("-i");
            base_env(&mut boot, &dir);
            let out = boot.output().expect("run wineboot");
            assert!(
                out.status.success(),
                "wineboot failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut wait = Command::new("wineserver");
            wait.arg("-w");
            base_env(&mut wait, &dir);
            let _ = wait.status();
            std::fs::copy(
                shim,
                dir.join("drive_c/windows/system32/bcryptprimitives.dll"),
            )
            .expect("install the shim");
            eprintln!("wine template prefix booted in {:?}", started.elapsed());
            std::fs::write(&stamp_file, &stamp).expect("stamp");
        }
        drop(lock);
        dir
    })
}

/// Copies `from` to `to`: DLL folders as hard links, everything else as real copies.
fn copy_prefix(from: &Path, to: &Path) {
    fn walk(from: &Path, to: &Path, link: bool) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read template").flatten() {
            let name = entry.file_name();
            let (src, dst) = (entry.path(), to.join(&name));
            let meta = std::fs::symlink_metadata(&src).expect("stat");
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&src).expect("readlink");
                std::os::unix::fs::symlink(target, &dst).expect("symlink");
            } else if meta.is_dir() {
                let big = matches!(
                    name.to_str(),
                    Some("system32" | "syswow64" | "winsxs" | "Microsoft.NET")
                );
                walk(&src, &dst, link || big);
            } else if link {
                std::fs::hard_link(&src, &dst).expect("hard link");
            } else {
                std::fs::copy(&src, &dst).expect("copy");
            }
        }
    }
    walk(from, to, false);
}

/// One test's own Wine prefix; its wineserver (and any service in it) is killed on drop.
pub struct Prefix {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Default for Prefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Prefix {
    pub fn new() -> Self {
        let template = template();
        let dir = tempfile::Builder::new()
            .prefix("caretaker-wine-")
            .tempdir_in(target_dir())
            .expect("prefix dir");
        let path = dir.path().join("prefix");
        copy_prefix(template, &path);
        let prefix = Self { _dir: dir, path };
        // One persistent wineserver per prefix: commands do not race a server that is shutting
        // down after the previous one, and services live until the prefix is dropped.
        prefix.keep_server();
        prefix
    }

    /// A `wine` command in this prefix.
    pub fn wine<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("wine");
        cmd.args(args);
        base_env(&mut cmd, &self.path);
        cmd
    }

    /// Runs `wine args…`, killing it after `timeout`; panics on a timeout.
    pub fn run<I, S>(&self, args: I, timeout: Duration) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.wine(args);
        let desc = format!("{cmd:?}");
        run_bounded(&mut cmd, timeout, &desc)
    }

    /// Runs the agent exe with `args`.
    pub fn agent(&self, args: &[&str], timeout: Duration) -> Output {
        let mut all: Vec<&OsStr> = vec![exe_os()];
        all.extend(args.iter().map(OsStr::new));
        self.run(all, timeout)
    }

    /// `reg add KEY /v NAME /t TYPE /d DATA /f [/reg:64|/reg:32]`.
    pub fn reg_add(&self, key: &str, name: &str, kind: &str, data: &str, view: Option<u8>) {
        let view = view.map(|v| format!("/reg:{v}"));
        let mut args = vec!["reg", "add", key, "/v", name, "/t", kind, "/d", data, "/f"];
        if let Some(v) = &view {
            args.push(v);
        }
        let out = self.run(&args, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "reg add {key} {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Imports a `.reg` file's text (regedit format) into the registry.
    pub fn reg_import(&self, text: &str) {
        let file = self.path.join("drive_c/import.reg");
        // regedit reads UTF-16 with a BOM.
        let mut bytes = vec![0xff, 0xfe];
        for unit in text.replace('\n', "\r\n").encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        std::fs::write(&file, bytes).expect("write .reg");
        let out = self.run(
            ["regedit", "/S", r"C:\import.reg"],
            Duration::from_secs(300),
        );
        assert!(
            out.status.success(),
            "regedit import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `reg query KEY [/v NAME]` output, or `None` when the key (or value) does not exist.
    pub fn reg_query(&self, key: &str, name: Option<&str>) -> Option<String> {
        let mut args = vec!["reg", "query", key];
        if let Some(n) = name {
            args.extend(["/v", n]);
        }
        let out = self.run(&args, Duration::from_secs(60));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Keeps this prefix's wineserver (and so its services) alive between commands, until
    /// the prefix is dropped. Wine ends services when the last ordinary process exits.
    fn keep_server(&self) {
        let mut cmd = Command::new("wineserver");
        cmd.arg("-p");
        base_env(&mut cmd, &self.path);
        let status = cmd.status().expect("wineserver -p");
        assert!(status.success(), "wineserver -p failed");
    }

    /// The Linux path of a `C:\...` path in this prefix.
    pub fn c_drive(&self, windows_path: &str) -> PathBuf {
        let rel = windows_path
            .trim_start_matches("C:\\")
            .trim_start_matches("c:\\")
            .replace('\\', "/");
        self.path.join("drive_c").join(rel)
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let mut kill = Command::new("wineserver");
        kill.arg("-k");
        base_env(&mut kill, &self.path);
        let _ = kill.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn exe_os() -> &'static OsStr {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(exe).as_os_str()
}

/// Runs `cmd`, killing it after `timeout` (and panicking). Output goes through files, not
/// pipes: wineserver and services inherit the handles and would hold a pipe open.
pub fn run_bounded(cmd: &mut Command, timeout: Duration, what: &str) -> Output {
    let out_file = tempfile::tempfile().expect("stdout file");
    let err_file = tempfile::tempfile().expect("stderr file");
    cmd.stdout(out_file.try_clone().expect("dup"))
        .stderr(err_file.try_clone().expect("dup"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
    let start = Instant::now();
    let read = |mut f: &std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.read_to_end(&mut v);
        v
    };
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&read(&err_file))
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: read(&out_file),
        stderr: read(&err_file),
    }
}
