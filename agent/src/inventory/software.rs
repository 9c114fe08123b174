//! Installed software: dispatches to the platform's package sources and sorts the result by
//! name, arch and version so identical machines give identical lists.

use caretaker_proto::v1::Software;

use super::{CollectOptions, SourceError};

pub async fn collect(opts: &CollectOptions) -> Result<Vec<Software>, SourceError> {
    let mut list = platform(opts).await?;
    list.sort_by(|a, b| {
        (&a.name, &a.arch, &a.version, &a.source).cmp(&(&b.name, &b.arch, &b.version, &b.source))
    });
    list.dedup_by(|a, b| {
        a.name == b.name && a.arch == b.arch && a.version == b.version && a.source == b.source
    });
    Ok(list)
}

#[cfg(target_os = "linux")]
async fn platform(opts: &CollectOptions) -> Result<Vec<Software>, SourceError> {
    super::software_linux::collect(opts).await
}

#[cfg(windows)]
async fn platform(opts: &CollectOptions) -> Result<Vec<Software>, SourceError> {
    let _ = opts;
    tokio::task::spawn_blocking(super::software_windows::collect)
        .await
        .map_err(|e| SourceError::Other(format!("registry thread failed: {e}")))?
}

#[cfg(not(any(target_os = "linux", windows)))]
async fn platform(_opts: &CollectOptions) -> Result<Vec<Software>, SourceError> {
    Err(SourceError::Unsupported)
}
