//! Linux package sources: dpkg (`dpkg-query`) and rpm (`rpm -qa`). Whichever exist are used;
//! neither existing is an empty list, not an error. Commands run under the collect timeout and
//! are killed if it expires.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::UNIX_EPOCH;

use caretaker_proto::v1::Software;

use super::{CollectOptions, SourceError, timestamp_secs};

const DPKG_FORMAT: &str =
    "${Package}\t${Version}\t${Maintainer}\t${Architecture}\t${db:Status-Abbrev}\n";
const RPM_FORMAT: &str = "%{NAME}\t%{VERSION}-%{RELEASE}\t%{VENDOR}\t%{ARCH}\t%{INSTALLTIME}\n";

pub async fn collect(opts: &CollectOptions) -> Result<Vec<Software>, SourceError> {
    let mut out = Vec::new();

    let mut dpkg_args: Vec<String> = Vec::new();
    if let Some(dir) = &opts.dpkg_admindir {
        dpkg_args.push(format!("--admindir={}", dir.display()));
    }
    dpkg_args.extend(["-W".into(), format!("-f={DPKG_FORMAT}")]);
    if let Some(stdout) = run("dpkg-query", &dpkg_args).await? {
        let admindir = opts
            .dpkg_admindir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/dpkg"));
        let mut packages = parse_dpkg(&stdout);
        let info = admindir.join("info");
        tokio::task::spawn_blocking(move || {
            for p in &mut packages {
                p.installed_at = dpkg_install_time(&info, &p.name, &p.arch);
            }
            packages
        })
        .await
        .map(|p| out.extend(p))
        .map_err(|e| SourceError::Other(format!("dpkg info thread failed: {e}")))?;
    }

    let rpm_args = ["-qa".to_owned(), "--qf".to_owned(), RPM_FORMAT.to_owned()];
    if let Some(stdout) = run("rpm", &rpm_args).await? {
        out.extend(parse_rpm(&stdout));
    }
    Ok(out)
}

/// Runs a package tool; `Ok(None)` when it is not installed. The caller's timeout drops the
/// future, and `kill_on_drop` then kills the child.
async fn run(program: &str, args: &[String]) -> Result<Option<String>, SourceError> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SourceError::io(program, e)),
    };
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| SourceError::io(program, e))?;
    if !output.status.success() {
        return Err(SourceError::Command {
            what: program.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
}

/// Parses `dpkg-query -W -f=DPKG_FORMAT` output, keeping installed (`ii`) packages only.
pub fn parse_dpkg(text: &str) -> Vec<Software> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let (name, version, maintainer, arch, status) =
                (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            if !status.starts_with("ii") || name.is_empty() {
                return None;
            }
            Some(Software {
                name: name.to_owned(),
                version: version.to_owned(),
                publisher: maintainer.trim().to_owned(),
                installed_at: None,
                source: "dpkg".into(),
                arch: arch.to_owned(),
            })
        })
        .collect()
}

/// Parses `rpm -qa --qf RPM_FORMAT` output.
pub fn parse_rpm(text: &str) -> Vec<Software> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let (name, version, vendor, arch, time) =
                (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            if name.is_empty() || name == "gpg-pubkey" {
                return None;
            }
            let none = |s: &str| if s == "(none)" { "" } else { s }.to_owned();
            Some(Software {
                name: name.to_owned(),
                version: version.to_owned(),
                publisher: none(vendor),
                installed_at: timestamp_secs(time.trim().parse().unwrap_or(0)),
                source: "rpm".into(),
                arch: none(arch),
            })
        })
        .collect()
}

/// dpkg has no install date; the mtime of the package's file list is the best estimate.
fn dpkg_install_time(info: &Path, name: &str, arch: &str) -> Option<prost_types::Timestamp> {
    let candidates = [
        info.join(format!("{name}:{arch}.list")),
        info.join(format!("{name}.list")),
    ];
    let mtime = candidates
        .iter()
        .find_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())?;
    let secs = mtime.duration_since(UNIX_EPOCH).ok()?.as_secs();
    timestamp_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_lines() {
        let text = "adduser\t3.134\tDebian Adduser Developers <adduser@packages.debian.org>\tall\tii \n\
                    libc6\t2.36-9+deb12u4\tGNU Libc Maintainers <debian-glibc@lists.debian.org>\tamd64\tii \n\
                    oldpkg\t1.0\tSomeone\tamd64\trc \n\
                    halfdone\t1.0\tSomeone\tamd64\tiU \n\
                    garbage line\n";
        let p = parse_dpkg(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].name, "libc6");
        assert_eq!(p[1].version, "2.36-9+deb12u4");
        assert_eq!(
            p[1].publisher,
            "GNU Libc Maintainers <debian-glibc@lists.debian.org>"
        );
        assert_eq!(p[1].arch, "amd64");
        assert_eq!(p[1].source, "dpkg");
    }

    #[test]
    fn rpm_lines() {
        let text = "bash\t5.2.15-3.fc38\tFedora Project\tx86_64\t1700000000\n\
                    gpg-pubkey\tabc-def\t(none)\t(none)\t1700000001\n\
                    foo\t1-1\t(none)\tnoarch\t0\n";
        let p = parse_rpm(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].installed_at.unwrap().seconds, 1_700_000_000);
        assert_eq!(p[1].publisher, "");
        assert!(p[1].installed_at.is_none());
    }

    #[tokio::test]
    async fn admindir_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("info")).unwrap();
        std::fs::create_dir_all(dir.path().join("updates")).unwrap();
        std::fs::write(
            dir.path().join("status"),
            "Package: caretaker-fake\nStatus: install ok installed\nMaintainer: Test <t@example.org>\n\
             Architecture: amd64\nVersion: 9.9\nDescription: fake\n\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("info/caretaker-fake.list"), "/x\n").unwrap();
        let opts = CollectOptions {
            wmi_timeout: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(30),
            dpkg_admindir: Some(dir.path().to_owned()),
        };
        let list = collect(&opts).await.unwrap();
        let dpkg: Vec<_> = list.iter().filter(|s| s.source == "dpkg").collect();
        assert_eq!(dpkg.len(), 1);
        assert_eq!(dpkg[0].name, "caretaker-fake");
        assert!(dpkg[0].installed_at.is_some());
    }
}
