//! Backups that restore: one point-in-time snapshot of everything the collector keeps, and
//! the restore of it into a new data directory on a new machine.
//!
//! **What is in one**: every record of every store tree ([`Store::dump`], generic, so trees
//! other modules add are included) and every regular file under the data directory (tokens,
//! the CA under `pki/`, user records, …) except the live store files, `listen.json`,
//! unfinished `*.partial` files and the backup directory itself.
//!
//! **Point in time**: the snapshot is taken on the register writer's thread between two
//! commits ([`Job::Exclusive`]), so every register record is as of one commit; ingest waits
//! (its queue holds 8,192 jobs, then agents get UNAVAILABLE and retry from their journals)
//! while it is written; reading the file back to check it happens after the writer is free
//! again. The snapshot advances [`Register::progress`] as it goes, so the systemd watchdog
//! knows a long backup from a stuck writer. The alerts' outbox and retention write on their
//! own; their records are as of the moment their tree is read.
//!
//! **Format**: `archive` (records and a SHA-256) inside `crypt` (plain, or Argon2id →
//! ChaCha20-Poly1305 with a passphrase file). A backup is written to `FILE.partial`, synced,
//! then renamed, and read back once to check it restores before the command says OK.
//!
//! **Restore** refuses a non-empty target, reads the whole file once to check it (checksum,
//! passphrase, store format) before writing anything, and removes what it wrote if it fails.
//!
//! **Daily** ([`run_daily`], `[backup]`): one backup every `every` into `dir`, keeping `keep`.

pub mod archive;
pub mod crypt;

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use crypt::Passphrase;

use crate::register::{Job, Register, RegisterError};
use crate::store::{Dump, SledStore, Store, StoreError};

/// File names the daemon writes and a backup leaves out (besides `store/`).
const SKIPPED: &[&str] = &["listen.json", "store"];
/// Backup files written by the daily task: `caretaker-YYYYMMDDTHHMMSSZ.ctbk`.
const DAILY_PREFIX: &str = "caretaker-";
const DAILY_SUFFIX: &str = ".ctbk";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the backup is damaged: {0}; nothing was restored")]
    Corrupt(String),
    #[error(
        "the passphrase does not open this backup (a wrong passphrase, or a damaged header); \
         nothing was restored"
    )]
    WrongPassphrase,
    #[error("this backup is encrypted: give its passphrase with --passphrase-file")]
    NeedsPassphrase,
    #[error("cannot use the passphrase file {path}: {reason}")]
    Passphrase { path: PathBuf, reason: String },
    #[error("cannot read the backup: {0}")]
    Read(#[source] std::io::Error),
    #[error("cannot write the backup: {0}")]
    Write(#[source] std::io::Error),
    #[error("{0} is not empty: restore only into a new or empty directory (nothing was changed)")]
    NotEmpty(PathBuf),
    #[error(
        "the backup holds store format {found}, newer than this release reads (up to \
         {supported}): restore it with the release that wrote it, or a newer one"
    )]
    TooNew { found: u64, supported: u64 },
    #[error("cannot read {path}: {source}")]
    DataFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    RestoreFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the register writer could not take the snapshot: {0}")]
    Register(#[from] RegisterError),
}

impl BackupError {
    pub(crate) fn from_read(error: std::io::Error) -> Self {
        // The decrypting reader reports damage as InvalidData.
        if error.kind() == std::io::ErrorKind::InvalidData {
            BackupError::Corrupt(error.to_string())
        } else {
            BackupError::Read(error)
        }
    }

    /// The process exit code: 65 the file cannot be used, 2 a usage problem, 74 I/O, 1 else.
    pub fn exit_code(&self) -> u8 {
        match self {
            BackupError::Corrupt(_) | BackupError::WrongPassphrase | BackupError::TooNew { .. } => {
                65
            }
            BackupError::NeedsPassphrase | BackupError::Passphrase { .. } => 2,
            BackupError::Read(_)
            | BackupError::Write(_)
            | BackupError::DataFile { .. }
            | BackupError::RestoreFile { .. }
            | BackupError::Store(_) => 74,
            BackupError::NotEmpty(_) | BackupError::Register(_) => 1,
        }
    }
}

/// `[backup]`: a backup every `every` into `dir`, keeping the newest `keep`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where backups go; `<data_dir>/backups` when unset.
    pub dir: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    pub keep: usize,
    /// Encrypt with the passphrase in this file.
    pub passphrase_file: Option<PathBuf>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            dir: None,
            every: Duration::from_secs(86_400),
            keep: 7,
            passphrase_file: None,
        }
    }
}

impl BackupConfig {
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("backups"))
    }

    /// `(key, problem)` for what the config checker reports.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.keep == 0 {
            problems.push(("keep", "must be at least 1".to_owned()));
        }
        if self.every < Duration::from_secs(60) {
            problems.push(("every", "must be at least 1m".to_owned()));
        }
        if let Some(path) = &self.passphrase_file
            && let Err(error) = Passphrase::read(path)
        {
            problems.push(("passphrase_file", error.to_string()));
        }
        problems
    }
}

/// What a backup holds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub trees: usize,
    pub records: u64,
    pub files: usize,
    pub bytes: u64,
}

const TICK_RECORDS: u64 = 4_096;

/// Writes one snapshot of `store` and the files under `data_dir` (less `skip`) to `out`.
pub fn write_snapshot(
    store: &dyn Store,
    data_dir: &Path,
    skip: &[PathBuf],
    out: impl Write,
    passphrase: Option<&Passphrase>,
) -> Result<Summary, BackupError> {
    write_snapshot_ticking(store, data_dir, skip, out, passphrase, &|| {})
}

/// [`write_snapshot`], calling `tick` every [`TICK_RECORDS`] records (progress for the
/// watchdog while the writer is held).
fn write_snapshot_ticking(
    store: &dyn Store,
    data_dir: &Path,
    skip: &[PathBuf],
    out: impl Write,
    passphrase: Option<&Passphrase>,
    tick: &dyn Fn(),
) -> Result<Summary, BackupError> {
    let header = archive::Header {
        created_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        release: env!("CARGO_PKG_VERSION").to_owned(),
        store_format: crate::store::format::CURRENT,
    };
    let sealer = crypt::Sealer::new(out, passphrase)?;
    let mut writer = archive::ArchiveWriter::new(sealer, &header).map_err(BackupError::Write)?;
    let mut summary = Summary::default();
    store.dump(&mut |item| match item {
        Dump::Tree(name) => {
            summary.trees += 1;
            writer.tree(name)
        }
        Dump::Entry(key, value) => {
            summary.records += 1;
            if summary.records % TICK_RECORDS == 0 {
                tick();
            }
            writer.entry(key, value)
        }
    })?;
    for (relative, path) in data_files(data_dir, skip)? {
        let data = std::fs::read(&path).map_err(|source| BackupError::DataFile {
            path: path.clone(),
            source,
        })?;
        writer
            .file(&relative, file_mode(&path), &data)
            .map_err(BackupError::Write)?;
        summary.files += 1;
    }
    writer
        .finish()
        .and_then(crypt::Sealer::finish)
        .map_err(BackupError::Write)?;
    Ok(summary)
}

#[cfg(unix)]
fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn file_mode(_: &Path) -> u32 {
    0o600
}

/// Every regular file under `data_dir` a backup takes, as `(relative path with '/', path)`.
fn data_files(data_dir: &Path, skip: &[PathBuf]) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let mut out = Vec::new();
    let mut pending = vec![(String::new(), data_dir.to_owned())];
    while let Some((prefix, dir)) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| BackupError::DataFile {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "Backup skips a file whose name is not UTF-8");
                continue;
            };
            let relative = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if (prefix.is_empty() && SKIPPED.contains(&name.as_str()))
                || name.ends_with(".partial")
                || skip.iter().any(|s| same_path(s, &path))
            {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push((relative, path));
            } else if kind.is_file() {
                out.push((relative, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Writes a snapshot to `path` atomically (`path.partial`, sync, rename), then reads it back
/// once to check it would restore.
pub fn write_file(
    store: &dyn Store,
    data_dir: &Path,
    skip: &[PathBuf],
    path: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<Summary, BackupError> {
    let summary = write_partial(store, data_dir, skip, path, passphrase, &|| {})?;
    finish_file(path, passphrase)?;
    Ok(summary)
}

/// The part of [`write_file`] that needs the store: the snapshot into `path`'s partial file,
/// flushed to disk; `tick` is called as records go by. Then [`finish_file`].
fn write_partial(
    store: &dyn Store,
    data_dir: &Path,
    skip: &[PathBuf],
    path: &Path,
    passphrase: Option<&Passphrase>,
    tick: &dyn Fn(),
) -> Result<Summary, BackupError> {
    let partial = partial_path(path);
    let result = (|| {
        let file = create_private(&partial).map_err(BackupError::Write)?;
        let out = BufWriter::new(&file);
        let mut summary = write_snapshot_ticking(store, data_dir, skip, out, passphrase, tick)?;
        file.sync_all().map_err(BackupError::Write)?;
        summary.bytes = file.metadata().map_err(BackupError::Write)?.len();
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Reads the partial file back through (checksum, passphrase, format) and only then gives it
/// its name; nothing of a bad one is left behind.
fn finish_file(path: &Path, passphrase: Option<&Passphrase>) -> Result<(), BackupError> {
    let partial = partial_path(path);
    let result = verify(&partial, passphrase)
        .and_then(|_| std::fs::rename(&partial, path).map_err(BackupError::Write));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Reads a backup file through (checksum, passphrase, format) without writing anything.
pub fn verify(
    path: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<archive::Header, BackupError> {
    read_file(path, passphrase, |item| {
        if let archive::Item::File { path, .. } = &item {
            safe_relative(path)?;
        }
        Ok(())
    })
}

fn read_file(
    path: &Path,
    passphrase: Option<&Passphrase>,
    visit: impl FnMut(archive::Item) -> Result<(), BackupError>,
) -> Result<archive::Header, BackupError> {
    let file = std::fs::File::open(path).map_err(BackupError::Read)?;
    let opener = crypt::Opener::new(BufReader::new(file), passphrase)?;
    let header = archive::read(opener, visit)?;
    if header.store_format > crate::store::format::CURRENT {
        return Err(BackupError::TooNew {
            found: header.store_format,
            supported: crate::store::format::CURRENT,
        });
    }
    Ok(header)
}

/// A file path from an archive as a relative path that stays inside the data directory.
fn safe_relative(path: &str) -> Result<PathBuf, BackupError> {
    let relative = PathBuf::from(path);
    let ok = !path.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(relative)
    } else {
        Err(BackupError::Corrupt(format!("a file named {path:?}")))
    }
}

/// Restores the backup at `from` into `data_dir`, which must be absent or empty.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<Summary, BackupError> {
    let existed = match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(data_dir.to_owned()));
            }
            true
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(BackupError::NotEmpty(data_dir.to_owned()));
        }
        Err(source) => {
            return Err(BackupError::RestoreFile {
                path: data_dir.to_owned(),
                source,
            });
        }
    };
    // Everything is checked before anything is written.
    verify(from, passphrase)?;
    let result = fill(from, data_dir, passphrase);
    if result.is_err() {
        if let Ok(entries) = std::fs::read_dir(data_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        if !existed {
            let _ = std::fs::remove_dir(data_dir);
        }
    }
    result
}

fn fill(
    from: &Path,
    data_dir: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<Summary, BackupError> {
    let dir_error = |path: &Path| {
        let path = path.to_owned();
        move |source| BackupError::RestoreFile { path, source }
    };
    create_private_dir(data_dir).map_err(dir_error(data_dir))?;
    let store = SledStore::open(&data_dir.join("store"))?;
    let mut summary = Summary::default();
    let mut tree: Option<Vec<u8>> = None;
    let mut pending: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let flush_into =
        |store: &SledStore, tree: &Option<Vec<u8>>, pending: &mut Vec<(Vec<u8>, Vec<u8>)>| {
            if let Some(name) = tree
                && !pending.is_empty()
            {
                store.import(name, pending)?;
            }
            pending.clear();
            Ok::<_, BackupError>(())
        };
    read_file(from, passphrase, |item| {
        match item {
            archive::Item::Tree(name) => {
                flush_into(&store, &tree, &mut pending)?;
                summary.trees += 1;
                tree = Some(name.into_bytes());
            }
            archive::Item::Entry(key, value) => {
                summary.records += 1;
                pending.push((key, value));
                if pending.len() >= 4096 {
                    flush_into(&store, &tree, &mut pending)?;
                }
            }
            archive::Item::File { path, mode, data } => {
                flush_into(&store, &tree, &mut pending)?;
                let target = data_dir.join(safe_relative(&path)?);
                if let Some(parent) = target.parent() {
                    create_private_dir(parent).map_err(dir_error(parent))?;
                }
                write_restored(&target, mode, &data).map_err(dir_error(&target))?;
                summary.files += 1;
                summary.bytes += data.len() as u64;
            }
        }
        Ok(())
    })?;
    flush_into(&store, &tree, &mut pending)?;
    store.flush()?;
    drop(store);
    // What the daemon will do first: open it (and check its format).
    drop(SledStore::open(&data_dir.join("store"))?);
    Ok(summary)
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_restored(path: &Path, mode: u32, data: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode & 0o777);
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Takes snapshots through the register writer for the API and the daily task.
pub struct Snapshots {
    pub data_dir: PathBuf,
    /// Left out of every backup (the daily backup directory when it is under `data_dir`).
    pub skip: Vec<PathBuf>,
    pub register: Register,
}

impl Snapshots {
    /// Writes one point-in-time backup to `path` (see the module comment).
    pub async fn take(
        &self,
        path: PathBuf,
        passphrase: Option<Arc<Passphrase>>,
    ) -> Result<Summary, BackupError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let data_dir = self.data_dir.clone();
        let skip = self.skip.clone();
        let progress = self.register.progress();
        let (finish_path, finish_passphrase) = (path.clone(), passphrase.clone());
        // Only the snapshot holds the writer; reading it back happens after ingest resumed.
        let work: crate::register::Exclusive = Box::new(move |store| {
            let tick = || {
                progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            };
            let result = store.map_err(BackupError::from).and_then(|store| {
                write_partial(store, &data_dir, &skip, &path, passphrase.as_deref(), &tick)
            });
            let _ = reply.send(result);
        });
        self.register
            .send(Job::Exclusive { work })
            .await
            .map_err(BackupError::Register)?;
        let summary = answer
            .await
            .map_err(|_| BackupError::Register(RegisterError::WriterGone))??;
        tokio::task::spawn_blocking(move || {
            finish_file(&finish_path, finish_passphrase.as_deref())
        })
        .await
        .map_err(|e| BackupError::Write(std::io::Error::other(e)))??;
        Ok(summary)
    }
}

/// The daily backup task (`[backup]`): runs until `shutdown`.
pub async fn run_daily(
    snapshots: Arc<Snapshots>,
    config: BackupConfig,
    shutdown: CancellationToken,
) {
    let dir = config.dir(&snapshots.data_dir);
    if let Err(error) = create_private_dir(&dir) {
        tracing::error!(%error, dir = %dir.display(), "Cannot create the backup directory; no daily backups");
        return;
    }
    let passphrase = match config.passphrase_file.as_deref().map(Passphrase::read) {
        None => None,
        Some(Ok(p)) => Some(Arc::new(p)),
        Some(Err(error)) => {
            tracing::error!(%error, "No daily backups");
            return;
        }
    };
    // The first one is due `every` after the newest already there (at once if none).
    let newest_age = newest_backup(&dir).and_then(|t| t.elapsed().ok());
    let mut wait = newest_age.map_or(Duration::ZERO, |age| config.every.saturating_sub(age));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let name = format!(
            "{DAILY_PREFIX}{}{DAILY_SUFFIX}",
            time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!(
                    "[year][month][day]T[hour][minute][second]Z"
                ))
                .unwrap_or_default()
        );
        match snapshots.take(dir.join(&name), passphrase.clone()).await {
            Ok(summary) => {
                tracing::info!(file = %name, records = summary.records, files = summary.files,
                    bytes = summary.bytes, "Daily backup written");
                prune(&dir, config.keep);
                wait = config.every;
            }
            Err(error) => {
                tracing::error!(%error, dir = %dir.display(), "Daily backup failed; trying again in an hour");
                wait = config.every.min(Duration::from_secs(3600));
            }
        }
    }
}

fn daily_backups(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(DAILY_PREFIX) && n.ends_with(DAILY_SUFFIX))
        })
        .collect();
    files.sort();
    files
}

fn newest_backup(dir: &Path) -> Option<std::time::SystemTime> {
    let newest = daily_backups(dir).pop()?;
    std::fs::metadata(newest).and_then(|m| m.modified()).ok()
}

/// Removes all but the newest `keep` daily backups in `dir`.
fn prune(dir: &Path, keep: usize) {
    let files = daily_backups(dir);
    let excess = files.len().saturating_sub(keep);
    for old in &files[..excess] {
        match std::fs::remove_file(old) {
            Ok(()) => tracing::info!(file = %old.display(), "Removed an old backup"),
            Err(error) => {
                tracing::warn!(%error, file = %old.display(), "Cannot remove an old backup")
            }
        }
    }
}

/// Reads everything a backup would hold straight from a store that no daemon has open
/// (`backup` with the collector stopped).
pub fn write_offline(
    data_dir: &Path,
    skip: &[PathBuf],
    path: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<Summary, BackupError> {
    let store = SledStore::open(&data_dir.join("store"))?;
    write_file(&store, data_dir, skip, path, passphrase)
}

/// Copies a plain backup stream (`from`, e.g. the API's answer) into `path`, encrypting it
/// when `passphrase` is given, atomically, and checks that the result restores.
pub fn save_stream(
    from: impl Read,
    path: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<archive::Header, BackupError> {
    let partial = partial_path(path);
    let result = (|| {
        let file = create_private(&partial).map_err(BackupError::Write)?;
        let mut input = crypt::Opener::new(BufReader::new(from), None)?;
        let mut sealer = crypt::Sealer::new(BufWriter::new(&file), passphrase)?;
        std::io::copy(&mut input, &mut sealer).map_err(BackupError::from_read)?;
        sealer
            .finish()
            .and_then(|mut w| w.flush())
            .map_err(BackupError::Write)?;
        file.sync_all().map_err(BackupError::Write)?;
        let header = verify(&partial, passphrase)?;
        std::fs::rename(&partial, path).map_err(BackupError::Write)?;
        Ok(header)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

#[cfg(test)]
mod tests;
