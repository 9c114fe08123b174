//! Security posture, servicing and power: antivirus, firewalls, volume encryption, hotfixes
//! and batteries. Windows reads them from the registry, Win32 and (bounded) WMI; Linux reports
//! batteries from sysfs and has no equivalent of the others yet (empty lists, not missing).

use caretaker_proto::v1::{Antivirus, Battery, Firewall, Hotfix, VolumeEncryption};

use super::{CollectOptions, SourceError};

pub struct Posture {
    pub antivirus: Result<Vec<Antivirus>, SourceError>,
    pub firewalls: Result<Vec<Firewall>, SourceError>,
    pub encryption: Result<Vec<VolumeEncryption>, SourceError>,
    pub hotfixes: Result<Vec<Hotfix>, SourceError>,
    pub batteries: Result<Vec<Battery>, SourceError>,
}

#[cfg(windows)]
pub async fn collect(opts: &CollectOptions) -> Posture {
    use super::{blocking, windows};
    let (t, w) = (opts.timeout, opts.wmi_timeout);
    let (antivirus, firewalls, encryption, hotfixes, batteries) = tokio::join!(
        blocking(t, move || windows::antivirus(w)),
        blocking(t, move || windows::firewalls(w)),
        blocking(t, move || windows::encryption(w)),
        blocking(t, move || windows::hotfixes(w)),
        blocking(t, windows::batteries),
    );
    Posture {
        antivirus,
        firewalls,
        encryption,
        hotfixes,
        batteries,
    }
}

#[cfg(not(windows))]
pub async fn collect(opts: &CollectOptions) -> Posture {
    #[cfg(target_os = "linux")]
    let batteries = super::blocking(opts.timeout, || Ok(super::linux::batteries())).await;
    #[cfg(not(target_os = "linux"))]
    let batteries = {
        let _ = opts;
        Ok(Vec::new())
    };
    Posture {
        antivirus: Ok(Vec::new()),
        firewalls: Ok(Vec::new()),
        encryption: Ok(Vec::new()),
        hotfixes: Ok(Vec::new()),
        batteries,
    }
}
