//! The agent's identity (`identity.json` in the state dir, 0600 on unix): the id and secret the
//! collector issued at enrolment, plus the hardware fingerprint it was issued for, so a state
//! dir copied onto another machine (a cloned image) is noticed and the clone enrols afresh.
//! It also keeps the intervals the collector asked for at enrolment, so a restart keeps them.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inventory::Fingerprint;

const FILE: &str = "identity.json";
const TMP: &str = "identity.json.tmp";

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: String,
    pub agent_secret: String,
    pub collector: String,
    #[serde(default)]
    pub smbios_uuid: String,
    #[serde(default)]
    pub macs: Vec<String>,
    /// What the collector asked for at enrolment; 0 = nothing (keep the agent's own).
    #[serde(default)]
    pub status_interval_secs: u32,
    #[serde(default)]
    pub heartbeat_interval_secs: u32,
    /// The client certificate (PEM) and its key, made on this PC (mTLS); empty over a
    /// plaintext collector.
    #[serde(default)]
    pub certificate_pem: String,
    #[serde(default)]
    pub key_pem: String,
    /// The CA certificates (PEM) the agent trusts for the collector.
    #[serde(default)]
    pub ca_pem: String,
    /// The certificate's validity, unix seconds (renewal at two thirds).
    #[serde(default)]
    pub certificate_issued_at: i64,
    #[serde(default)]
    pub certificate_not_after: i64,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id)
            .field("agent_secret", &"***")
            .field("collector", &self.collector)
            .field("smbios_uuid", &self.smbios_uuid)
            .field("macs", &self.macs)
            .field("status_interval_secs", &self.status_interval_secs)
            .field("heartbeat_interval_secs", &self.heartbeat_interval_secs)
            .field("certificate_pem", &self.certificate_pem.len())
            .field("key_pem", &"***")
            .field("certificate_not_after", &self.certificate_not_after)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read identity {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write identity {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn secs(s: u32) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(u64::from(s)))
}

/// Why a stored identity cannot be used on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Different SMBIOS UUID, or (without a readable UUID) no MAC in common.
    OtherMachine,
    /// Enrolled with a different collector URL.
    OtherCollector,
}

impl Identity {
    /// The status interval the collector asked for, if any.
    pub fn status_interval(&self) -> Option<Duration> {
        secs(self.status_interval_secs)
    }

    /// The heartbeat interval the collector asked for, if any.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        secs(self.heartbeat_interval_secs)
    }

    /// The saved identity, or `None` when there is none. A file that does not parse (a
    /// crash mid-write on a filesystem without atomic rename, a disk error, a hand edit) is
    /// kept aside as `identity.json.corrupt-<unix time>` and treated as absent, so the agent
    /// enrols again (and stays the same asset: identity is scored on the hardware) instead of
    /// stopping until a person acts.
    pub fn load(dir: &Path) -> Result<Option<Identity>, IdentityError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(identity) => Ok(Some(identity)),
                Err(error) => {
                    let stamp = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let aside = dir.join(format!("{FILE}.corrupt-{stamp}"));
                    std::fs::rename(&path, &aside).map_err(|source| IdentityError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    tracing::error!(%error, kept_as = %aside.display(),
                        "The agent's identity file is unreadable; kept it aside and enrolling again");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    /// Writes atomically (tmp + fsync + rename), readable by the owner only.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let path = dir.join(FILE);
        let tmp = dir.join(TMP);
        let err = |source| IdentityError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        f.write_all(&json).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(err)?;
        Ok(())
    }

    /// Checks the stored identity against this machine and collector.
    pub fn check(&self, here: &Fingerprint, collector: &str) -> Result<(), Mismatch> {
        if self.collector.trim_end_matches('/') != collector.trim_end_matches('/') {
            return Err(Mismatch::OtherCollector);
        }
        if !self.smbios_uuid.is_empty() && !here.smbios_uuid.is_empty() {
            if !self.smbios_uuid.eq_ignore_ascii_case(&here.smbios_uuid) {
                return Err(Mismatch::OtherMachine);
            }
            return Ok(());
        }
        // No UUID on one side: fall back to the MAC set. Sharing one MAC is enough, so a
        // docking station or USB adapter coming and going is not mistaken for a clone.
        if !self.macs.is_empty()
            && !here.macs.is_empty()
            && !self.macs.iter().any(|m| here.macs.contains(m))
        {
            return Err(Mismatch::OtherMachine);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbage_identity_is_kept_aside_and_treated_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"\x00\x01{not json").unwrap();
        assert!(Identity::load(dir.path()).unwrap().is_none());
        assert!(!dir.path().join(FILE).exists());
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("identity.json.corrupt-")
            })
            .collect();
        assert_eq!(
            kept.len(),
            1,
            "the bad file is kept for a person to look at"
        );
    }

    fn id(uuid: &str, macs: &[&str]) -> Identity {
        Identity {
            agent_id: "a1".into(),
            agent_secret: "topsecret".into(),
            collector: "http://c:50051".into(),
            smbios_uuid: uuid.into(),
            macs: macs.iter().map(|m| (*m).to_owned()).collect(),
            status_interval_secs: 30,
            heartbeat_interval_secs: 0,
            ..Default::default()
        }
    }

    fn here(uuid: &str, macs: &[&str]) -> Fingerprint {
        Fingerprint {
            smbios_uuid: uuid.into(),
            macs: macs.iter().map(|m| (*m).to_owned()).collect(),
            ..Fingerprint::default()
        }
    }

    #[test]
    fn save_load_round_trip_private() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Identity::load(dir.path()).unwrap().is_none());
        let i = id("u", &["aa:bb:cc:dd:ee:ff"]);
        i.save(dir.path()).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), Some(i.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{i:?}").contains("topsecret"));
        assert_eq!(i.status_interval(), Some(Duration::from_secs(30)));
        assert_eq!(i.heartbeat_interval(), None);
    }

    #[test]
    fn identity_written_before_intervals_existed_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            r#"{"agent_id":"a","agent_secret":"s","collector":"http://c:1"}"#,
        )
        .unwrap();
        let i = Identity::load(dir.path()).unwrap().unwrap();
        assert_eq!((i.status_interval(), i.heartbeat_interval()), (None, None));
    }

    #[test]
    fn clone_detection() {
        let c = "http://c:50051";
        let stored = id("uuid-1", &["00:11:22:33:44:55"]);
        assert_eq!(stored.check(&here("uuid-1", &[]), c), Ok(()));
        assert_eq!(
            stored.check(&here("uuid-2", &["00:11:22:33:44:55"]), c),
            Err(Mismatch::OtherMachine)
        );
        let no_uuid = id("", &["00:11:22:33:44:55", "66:77:88:99:aa:bb"]);
        assert_eq!(no_uuid.check(&here("", &["66:77:88:99:aa:bb"]), c), Ok(()));
        assert_eq!(
            no_uuid.check(&here("", &["de:ad:be:ef:00:01"]), c),
            Err(Mismatch::OtherMachine)
        );
        assert_eq!(
            stored.check(&here("uuid-1", &[]), "http://other:50051"),
            Err(Mismatch::OtherCollector)
        );
    }
}
