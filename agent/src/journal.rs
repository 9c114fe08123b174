//! The offline journal: a bounded, durable, append-only buffer of reports in the state dir, so
//! a laptop offline for a week loses nothing. Collection appends here (never waits on the
//! network); the sender reads `pending` and calls `ack` with what the collector stored.
//!
//! Files: `journal.log` holds records `[len u32 LE][crc32 u32 LE][kind u8][seq u64 LE][report]`
//! where `len` counts kind + seq + report and the CRC covers the same bytes; `journal.meta`
//! (JSON, replaced via tmp + fsync + rename) holds `acked_seq`, `next_seq`, `dropped_total`
//! and the sequence `epoch`. On open, a corrupt record is skipped and reading resumes at the
//! next intact one (only a torn tail is truncated). When the bookkeeping cannot be trusted
//! (`journal.meta` missing or unreadable, `acked_seq` past `next_seq`, numbers near the end of
//! their range) the journal starts a new epoch: a fresh random epoch, every record still in
//! the log pending again and renumbered from 1, so the collector stores them as new instead
//! of taking them for retries. When the live set would exceed `max_bytes`
//! the oldest status reports are dropped first, then superseded inventories; the latest
//! inventory is never dropped. Dead bytes are compacted away by rewriting the live set.
//! No tasks; all calls are synchronous and short (callers hold a `std::sync::Mutex`).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use caretaker_proto::v1::{Report, report::Body};
use prost::Message;
use serde::{Deserialize, Serialize};

const LOG: &str = "journal.log";
const LOG_TMP: &str = "journal.log.tmp";
const META: &str = "journal.meta";
const META_TMP: &str = "journal.meta.tmp";
const HEADER: u64 = 8;
/// kind + seq
const PREFIX: usize = 9;
/// A record larger than this is treated as corruption.
const MAX_RECORD: u32 = 64 * 1024 * 1024;
/// Compact once this many dead bytes have piled up (and they outweigh the live ones).
const COMPACT_DEAD_BYTES: u64 = 1024 * 1024;
/// Sequence numbers past this start a new epoch (they came from corruption, not from use).
const MAX_SANE_SEQ: u64 = 1 << 48;
/// While resynchronising after a corrupt record, a candidate whose seq is further than this
/// past the last good one is not taken for a record (cheap filter before the CRC).
const RESYNC_MAX_GAP: u64 = 1 << 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Inventory = 1,
    Status = 2,
}

impl Kind {
    fn of(report: &Report) -> Self {
        match report.body {
            Some(Body::Inventory(_)) => Kind::Inventory,
            _ => Kind::Status,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open journal {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot append to journal {path}")]
    Append {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read journal {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write journal metadata {path}")]
    WriteMeta {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot compact journal {path}")]
    Compact {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal record seq {seq} does not decode")]
    Decode {
        seq: u64,
        #[source]
        source: prost::DecodeError,
    },
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Meta {
    acked_seq: u64,
    next_seq: u64,
    dropped_total: u64,
    /// 0 in metadata written before epochs existed.
    #[serde(default)]
    epoch: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    kind: Kind,
    /// Offset of the record header in the log.
    offset: u64,
    /// Whole record size including the header.
    size: u64,
}

pub struct Journal {
    dir: PathBuf,
    log: File,
    log_len: u64,
    live: VecDeque<Entry>,
    live_bytes: u64,
    meta: Meta,
    max_bytes: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("pending", &self.live.len())
            .field("live_bytes", &self.live_bytes)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir`: skips corrupt records, truncates a torn tail,
    /// and starts a new epoch when the bookkeeping cannot be trusted (see the module comment).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, JournalError> {
        let log_path = dir.join(LOG);
        let open_err = |source| JournalError::Open {
            path: log_path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(open_err)?;
        let (mut meta, mut trusted) = read_meta(&dir.join(META)).map_err(open_err)?;
        let acks_the_future = meta.next_seq != 0 && meta.acked_seq >= meta.next_seq;
        if trusted && (acks_the_future || meta.acked_seq > MAX_SANE_SEQ) {
            tracing::warn!(
                acked_seq = meta.acked_seq,
                next_seq = meta.next_seq,
                "Journal metadata acknowledges reports that were never written; starting a new sequence"
            );
            trusted = false;
        }
        if !trusted {
            // Everything still in the log is sent again, under a new epoch.
            meta.acked_seq = 0;
        }
        meta.next_seq = meta.next_seq.max(meta.acked_seq + 1).max(1);

        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(open_err)?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes).map_err(open_err)?;

        let mut live = VecDeque::new();
        let mut live_bytes = 0;
        let mut pos = 0usize;
        let mut last_seq = 0;
        let mut skipped = 0usize;
        while pos < bytes.len() {
            match parse_record(&bytes[pos..]) {
                Some((kind, seq, size)) => {
                    if seq > meta.acked_seq && seq > last_seq {
                        live.push_back(Entry {
                            seq,
                            kind,
                            offset: pos as u64,
                            size: size as u64,
                        });
                        live_bytes += size as u64;
                    }
                    last_seq = last_seq.max(seq);
                    pos += size;
                }
                None => match resync(&bytes, pos, last_seq) {
                    Some(next) => {
                        tracing::warn!(
                            path = %log_path.display(),
                            offset = pos,
                            skipped_bytes = next - pos,
                            "Journal record is corrupt; skipped it and carried on at the next intact one"
                        );
                        skipped += next - pos;
                        pos = next;
                    }
                    None => {
                        tracing::warn!(
                            path = %log_path.display(),
                            offset = pos,
                            discarded_bytes = bytes.len() - pos,
                            "Journal has a torn or corrupt tail; truncating there"
                        );
                        log.set_len(pos as u64).map_err(open_err)?;
                        log.sync_all().map_err(open_err)?;
                        break;
                    }
                },
            }
        }
        meta.next_seq = meta.next_seq.max(last_seq + 1);
        let log_len = pos as u64;
        drop(bytes);

        let mut journal = Self {
            dir: dir.to_owned(),
            log,
            log_len,
            live,
            live_bytes,
            meta,
            max_bytes,
        };
        if !trusted || meta.next_seq > MAX_SANE_SEQ {
            journal.new_epoch()?;
        } else if journal.meta.epoch == 0 {
            // Written before epochs existed: keep the numbers, name the sequence.
            journal.meta.epoch = random_epoch();
            journal.write_meta()?;
        } else {
            journal.write_meta()?;
        }
        if skipped > 0 {
            journal.compact()?;
        } else {
            journal.maybe_compact()?;
        }
        Ok(journal)
    }

    /// The current sequence epoch (sent with every submit).
    pub fn epoch(&self) -> u64 {
        self.meta.epoch
    }

    /// Starts a new sequence: a fresh epoch, the pending reports renumbered from 1. Used when
    /// the bookkeeping was lost and when the collector refuses the sequence.
    pub fn new_epoch(&mut self) -> Result<(), JournalError> {
        let old = self.meta.epoch;
        self.meta.epoch = random_epoch();
        self.meta.acked_seq = 0;
        self.meta.next_seq = self.live.len() as u64 + 1;
        if old != 0 || !self.live.is_empty() {
            tracing::warn!(
                old_epoch = old,
                new_epoch = self.meta.epoch,
                pending = self.live.len(),
                "Journal starts a new report sequence; pending reports are numbered from 1"
            );
        }
        self.write_meta()?;
        self.rewrite(true)
    }

    /// Drops one pending report the collector can never store (it said why); counted with
    /// the reports dropped for room.
    pub fn discard(&mut self, seq: u64) -> Result<bool, JournalError> {
        let Some(i) = self.live.iter().position(|e| e.seq == seq) else {
            return Ok(false);
        };
        if let Some(e) = self.live.remove(i) {
            self.live_bytes -= e.size;
            self.meta.dropped_total += 1;
        }
        self.write_meta()?;
        self.maybe_compact()?;
        Ok(true)
    }

    /// Appends a report, assigning it the next sequence number (returned). Makes room by
    /// dropping old reports if the bound would be exceeded. Durable when this returns.
    pub fn append(&mut self, mut report: Report) -> Result<u64, JournalError> {
        let seq = self.meta.next_seq;
        report.seq = seq;
        let kind = Kind::of(&report);
        let payload = report.encode_to_vec();
        let size = HEADER + (PREFIX + payload.len()) as u64;

        let dropped = self.make_room(size);
        // Reserve the sequence number before the record can exist.
        self.meta.next_seq = seq + 1;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                dropped_total = self.meta.dropped_total,
                pending = self.live.len(),
                "Journal full; dropped the oldest reports"
            );
        }
        let dead = self.dead_bytes();
        let need_compact = self.log_len + size > self.max_bytes.max(self.live_bytes + size)
            || (dead >= COMPACT_DEAD_BYTES && dead >= self.live_bytes);
        if dropped > 0 || need_compact {
            self.write_meta()?;
        }
        if need_compact {
            self.compact()?;
        }

        let record = encode_record(kind, seq, &payload);

        let append_err = |source| JournalError::Append {
            path: self.dir.join(LOG),
            source,
        };
        self.log.write_all(&record).map_err(append_err)?;
        self.log.sync_data().map_err(append_err)?;
        self.live.push_back(Entry {
            seq,
            kind,
            offset: self.log_len,
            size,
        });
        self.log_len += size;
        self.live_bytes += size;
        Ok(seq)
    }

    /// Drops oldest statuses, then superseded inventories, until `incoming` fits.
    /// Returns how many were dropped.
    fn make_room(&mut self, incoming: u64) -> u64 {
        let mut dropped = 0;
        while self.live_bytes + incoming > self.max_bytes {
            let victim = self
                .live
                .iter()
                .position(|e| e.kind == Kind::Status)
                .or_else(|| {
                    // Every inventory but the newest one is superseded.
                    let newest = self.live.iter().rposition(|e| e.kind == Kind::Inventory)?;
                    self.live
                        .iter()
                        .position(|e| e.kind == Kind::Inventory)
                        .filter(|&i| i != newest)
                });
            let Some(i) = victim else { break };
            if let Some(e) = self.live.remove(i) {
                self.live_bytes -= e.size;
                self.meta.dropped_total += 1;
                dropped += 1;
            }
        }
        dropped
    }

    /// Up to `limit_count` pending reports in seq order, stopping before `limit_bytes`
    /// (at least one report is returned if any is pending).
    pub fn pending(
        &mut self,
        limit_count: usize,
        limit_bytes: usize,
    ) -> Result<Vec<Report>, JournalError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let path = self.dir.join(LOG);
        let read_err = |source| JournalError::Read {
            path: path.clone(),
            source,
        };
        let entries: Vec<Entry> = self.live.iter().take(limit_count).copied().collect();
        for e in entries {
            let payload_len = e.size as usize - HEADER as usize - PREFIX;
            if !out.is_empty() && bytes + payload_len > limit_bytes {
                break;
            }
            let mut buf = vec![0u8; payload_len];
            self.log
                .seek(SeekFrom::Start(e.offset + HEADER + PREFIX as u64))
                .map_err(read_err)?;
            self.log.read_exact(&mut buf).map_err(read_err)?;
            let mut report = match Report::decode(buf.as_slice()) {
                Ok(report) => report,
                Err(error) => {
                    // Intact by its checksum yet not a report: it can never be sent, and
                    // keeping it would stop delivery of everything after it for good.
                    tracing::error!(seq = e.seq, %error,
                        "A journal record is not a report; dropping it (counted as dropped)");
                    self.discard(e.seq)?;
                    continue;
                }
            };
            report.seq = e.seq;
            bytes += payload_len;
            out.push(report);
        }
        Ok(out)
    }

    /// Marks everything up to `upto_seq` as stored by the collector.
    pub fn ack(&mut self, upto_seq: u64) -> Result<(), JournalError> {
        let upto = upto_seq.min(self.meta.next_seq - 1);
        if upto <= self.meta.acked_seq {
            return Ok(());
        }
        self.meta.acked_seq = upto;
        while self.live.front().is_some_and(|e| e.seq <= upto) {
            if let Some(e) = self.live.pop_front() {
                self.live_bytes -= e.size;
            }
        }
        self.write_meta()?;
        self.maybe_compact()
    }

    /// Reports waiting for delivery.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Reports dropped (journal full) since the journal was created.
    pub fn dropped_total(&self) -> u64 {
        self.meta.dropped_total
    }

    pub fn acked_seq(&self) -> u64 {
        self.meta.acked_seq
    }

    /// Bytes of the log file on disk.
    pub fn file_bytes(&self) -> u64 {
        self.log_len
    }

    /// Flushes everything to disk (used at shutdown).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.log.sync_all().map_err(|source| JournalError::Append {
            path: self.dir.join(LOG),
            source,
        })?;
        self.write_meta()
    }

    fn dead_bytes(&self) -> u64 {
        self.log_len - self.live_bytes
    }

    fn maybe_compact(&mut self) -> Result<(), JournalError> {
        let dead = self.dead_bytes();
        if dead == 0 {
            return Ok(());
        }
        if self.live.is_empty() || (dead >= COMPACT_DEAD_BYTES && dead >= self.live_bytes) {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the live set into a fresh log (tmp + fsync + rename).
    fn compact(&mut self) -> Result<(), JournalError> {
        self.rewrite(false)
    }

    /// Rewrites the live set into a fresh log; with `renumber`, as seq 1, 2, … in order.
    fn rewrite(&mut self, renumber: bool) -> Result<(), JournalError> {
        let path = self.dir.join(LOG);
        let tmp = self.dir.join(LOG_TMP);
        let err = |source| JournalError::Compact {
            path: path.clone(),
            source,
        };
        let mut out = File::create(&tmp).map_err(err)?;
        let mut new_live = VecDeque::with_capacity(self.live.len());
        let mut offset = 0u64;
        let mut buf = Vec::new();
        for (index, e) in self.live.iter().enumerate() {
            buf.resize(e.size as usize, 0);
            self.log.seek(SeekFrom::Start(e.offset)).map_err(err)?;
            self.log.read_exact(&mut buf).map_err(err)?;
            let seq = if renumber { index as u64 + 1 } else { e.seq };
            if renumber {
                let payload = &buf[HEADER as usize + PREFIX..];
                buf = encode_record(e.kind, seq, payload);
            }
            out.write_all(&buf).map_err(err)?;
            new_live.push_back(Entry { offset, seq, ..*e });
            offset += e.size;
        }
        out.sync_all().map_err(err)?;
        drop(out);
        // Windows cannot replace a file that is open: let go of the log first (the rename is
        // atomic either way, so a crash leaves the old log or the new one).
        #[cfg(windows)]
        {
            self.log = File::open("NUL").map_err(err)?;
        }
        let renamed = std::fs::rename(&tmp, &path);
        sync_dir(&self.dir);
        // Reopened whether or not the rename worked: the log stays usable after a failure.
        self.log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        renamed.map_err(err)?;
        self.live = new_live;
        self.log_len = offset;
        self.live_bytes = offset;
        Ok(())
    }

    fn write_meta(&self) -> Result<(), JournalError> {
        let path = self.dir.join(META);
        let tmp = self.dir.join(META_TMP);
        let err = |source| JournalError::WriteMeta {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec(&self.meta).map_err(|e| err(std::io::Error::other(e)))?;
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&json).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(err)?;
        sync_dir(&self.dir);
        Ok(())
    }
}

/// The metadata, and whether it can be trusted (it was there and readable).
fn read_meta(path: &Path) -> std::io::Result<(Meta, bool)> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(meta) => Ok((meta, true)),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(),
                    "Journal metadata unreadable; starting a new sequence with everything in the log");
                Ok((Meta::default(), false))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if path.with_file_name(LOG).exists() {
                tracing::warn!(path = %path.display(),
                    "Journal metadata missing; starting a new sequence with everything in the log");
            }
            Ok((Meta::default(), false))
        }
        Err(e) => Err(e),
    }
}

/// A non-zero random epoch.
fn random_epoch() -> u64 {
    rand::random::<u64>().max(1)
}

/// `[len][crc][kind][seq][payload]`, the CRC over kind + seq + payload.
fn encode_record(kind: Kind, seq: u64, payload: &[u8]) -> Vec<u8> {
    let body_len = (PREFIX + payload.len()) as u32;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind as u8]);
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    let mut record = Vec::with_capacity(HEADER as usize + body_len as usize);
    record.extend_from_slice(&body_len.to_le_bytes());
    record.extend_from_slice(&hasher.finalize().to_le_bytes());
    record.push(kind as u8);
    record.extend_from_slice(&seq.to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// After a corrupt record at `from`: the offset of the next intact record (a later seq than
/// `last_seq`), or `None` when nothing intact follows (a torn tail). Cheap checks first, the
/// CRC only for plausible candidates, so a large journal resynchronises quickly.
fn resync(bytes: &[u8], from: usize, last_seq: u64) -> Option<usize> {
    let header = HEADER as usize;
    (from + 1..bytes.len().saturating_sub(header + PREFIX)).find(|&p| {
        let len = u32::from_le_bytes(bytes[p..p + 4].try_into().expect("4 bytes")) as usize;
        if len < PREFIX || len > MAX_RECORD as usize || p + header + len > bytes.len() {
            return false;
        }
        if !matches!(bytes[p + header], 1 | 2) {
            return false;
        }
        let seq = u64::from_le_bytes(
            bytes[p + header + 1..p + header + PREFIX]
                .try_into()
                .expect("8 bytes"),
        );
        seq > last_seq && seq - last_seq <= RESYNC_MAX_GAP && parse_record(&bytes[p..]).is_some()
    })
}

/// Parses one record at the start of `bytes`: (kind, seq, whole size), or None if torn/corrupt.
fn parse_record(bytes: &[u8]) -> Option<(Kind, u64, usize)> {
    if bytes.len() < HEADER as usize {
        return None;
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
    if (len as usize) < PREFIX || len > MAX_RECORD {
        return None;
    }
    let end = HEADER as usize + len as usize;
    let body = bytes.get(HEADER as usize..end)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let kind = match body[0] {
        1 => Kind::Inventory,
        2 => Kind::Status,
        _ => return None,
    };
    let seq = u64::from_le_bytes(body[1..9].try_into().ok()?);
    Some((kind, seq, end))
}

/// Makes a rename durable (best effort: not possible on Windows).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_proto::v1::{Inventory, Software, Status, VolumeUsage};

    fn status(n: u64) -> Report {
        Report {
            seq: 0,
            collected_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000 + n as i64 * 300,
                nanos: 0,
            }),
            missing: vec![],
            agent_version: "0.1.0".into(),
            body: Some(Body::Status(Status {
                uptime_secs: 3600 + n * 300,
                cpu_percent: 12.5,
                load1: 0.5,
                load5: 0.4,
                load15: 0.3,
                memory_total_bytes: 16 << 30,
                memory_used_bytes: 6 << 30,
                swap_total_bytes: 2 << 30,
                swap_used_bytes: 1 << 20,
                volumes: ["C:\\", "D:\\", "/", "/home", "/boot/efi"]
                    .iter()
                    .map(|m| VolumeUsage {
                        mount: (*m).into(),
                        total_bytes: 512 << 30,
                        free_bytes: 100 << 30,
                    })
                    .collect(),
                logged_on_users: vec!["jsmith".into(), "teacher.office".into()],
                journal_dropped: 0,
                boot_time: Some(prost_types::Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 0,
                }),
            })),
        }
    }

    fn inventory(tag: &str, packages: usize) -> Report {
        Report {
            agent_version: "0.1.0".into(),
            body: Some(Body::Inventory(Inventory {
                software: (0..packages)
                    .map(|i| Software {
                        name: format!("{tag}-package-number-{i}"),
                        version: "1:2.38.1-5+deb12u1".into(),
                        publisher: "Debian Developers <debian-devel@lists.debian.org>".into(),
                        installed_at: None,
                        source: "dpkg".into(),
                        arch: "amd64".into(),
                    })
                    .collect(),
                ..Inventory::default()
            })),
            ..Report::default()
        }
    }

    fn seqs(j: &mut Journal) -> Vec<u64> {
        j.pending(usize::MAX, usize::MAX)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect()
    }

    #[test]
    fn survives_reopen_and_keeps_seq_monotonic() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.append(inventory("a", 3)).unwrap(), 1);
        assert_eq!(j.append(status(1)).unwrap(), 2);
        drop(j);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.len(), 2);
        let p = j.pending(10, usize::MAX).unwrap();
        assert_eq!(p[0].seq, 1);
        assert!(matches!(p[0].body, Some(Body::Inventory(_))));
        assert_eq!(p[1], {
            let mut s = status(1);
            s.seq = 2;
            s
        });
        assert_eq!(j.append(status(2)).unwrap(), 3);
        // Everything acked and compacted away: seq still never reused.
        j.ack(3).unwrap();
        assert_eq!(j.file_bytes(), 0);
        drop(j);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(j.is_empty());
        assert_eq!(j.append(status(3)).unwrap(), 4);
    }

    #[test]
    fn ack_then_reopen_does_not_redeliver() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        for n in 0..5 {
            j.append(status(n)).unwrap();
        }
        j.ack(3).unwrap();
        assert_eq!(seqs(&mut j), vec![4, 5]);
        drop(j);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&mut j), vec![4, 5]);
        // Acks beyond what exists are clamped.
        j.ack(99).unwrap();
        assert!(j.is_empty());
        assert_eq!(j.append(status(9)).unwrap(), 6);
    }

    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(status(1)).unwrap();
        j.append(status(2)).unwrap();
        let good_len = j.file_bytes();
        j.append(status(3)).unwrap();
        drop(j);
        // Tear the last record in half.
        let path = dir.path().join(LOG);
        let full = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(good_len + (full - good_len) / 2).unwrap();
        drop(f);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&mut j), vec![1, 2]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        // A torn record never finished `append`, so it was never delivered; its seq is free.
        assert_eq!(j.append(status(4)).unwrap(), 3);
        drop(j);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&mut j), vec![1, 2, 3]);
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=5 {
            j.append(status(n)).unwrap();
        }
        let record = j.file_bytes() / 5;
        drop(j);
        let path = dir.path().join(LOG);
        let mut bytes = std::fs::read(&path).unwrap();
        // Inside the second record's payload.
        bytes[record as usize + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            seqs(&mut j),
            vec![1, 3, 4, 5],
            "the intact records after it survive"
        );
        // The corrupt bytes were compacted away: the next open reads a clean log.
        assert_eq!(j.file_bytes(), record * 4);
        drop(j);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&mut j), vec![1, 3, 4, 5]);
        assert_eq!(j.append(status(6)).unwrap(), 6);
    }

    #[test]
    fn lost_metadata_starts_a_new_epoch_with_everything_pending() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        let first_epoch = j.epoch();
        assert_ne!(first_epoch, 0);
        for n in 1..=6 {
            j.append(status(n)).unwrap();
        }
        j.ack(4).unwrap();
        drop(j);
        std::fs::remove_file(dir.path().join(META)).unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_ne!(j.epoch(), first_epoch, "a new epoch");
        // Whatever is still in the log is pending again, numbered from 1: the collector
        // stores it as new in the new epoch (at least once; nothing is taken for a retry).
        let pending = j.pending(usize::MAX, usize::MAX).unwrap();
        let numbers: Vec<u64> = pending.iter().map(|r| r.seq).collect();
        assert_eq!(numbers, (1..=pending.len() as u64).collect::<Vec<_>>());
        let uptimes: Vec<u64> = pending
            .iter()
            .filter_map(|r| match &r.body {
                Some(Body::Status(s)) => Some(s.uptime_secs),
                _ => None,
            })
            .collect();
        for n in [5, 6] {
            assert!(
                uptimes.contains(&(3600 + n * 300)),
                "unacknowledged {n} kept"
            );
        }
        let next = pending.len() as u64 + 1;
        assert_eq!(j.append(status(7)).unwrap(), next);
    }

    #[test]
    fn metadata_acknowledging_the_future_drops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=3 {
            j.append(status(n)).unwrap();
        }
        drop(j);
        let meta = dir.path().join(META);
        let text = std::fs::read_to_string(&meta).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["acked_seq"] = 99.into();
        std::fs::write(&meta, value.to_string()).unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&mut j), vec![1, 2, 3], "pending reports kept");
    }

    #[test]
    fn metadata_acknowledging_everything_with_no_next_seq_drops_nothing() {
        // `acked_seq` at the end of its range with `next_seq` 0 overflowed (a panic; in
        // release every report was taken as acknowledged and never sent).
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=2 {
            j.append(status(n)).unwrap();
        }
        drop(j);
        let meta = format!(
            r#"{{"acked_seq":{},"next_seq":0,"dropped_total":0,"epoch":7}}"#,
            u64::MAX
        );
        std::fs::write(dir.path().join(META), meta).unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&mut j), vec![1, 2], "pending reports kept");
        assert_eq!(j.append(status(3)).unwrap(), 3);
    }

    #[test]
    fn an_intact_record_that_is_not_a_report_is_dropped_not_a_wedge() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(status(1)).unwrap();
        drop(j);
        // A record whose checksum holds but whose payload is no protobuf (field 0).
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        log.write_all(&encode_record(Kind::Status, 2, &[0x00, 0x00]))
            .unwrap();
        drop(log);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&mut j), vec![1], "the readable report is still sent");
        assert_eq!(j.dropped_total(), 1);
        assert_eq!(j.append(status(3)).unwrap(), 3);
        assert_eq!(seqs(&mut j), vec![1, 3]);
    }

    #[test]
    fn a_sequence_at_the_end_of_its_range_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(status(1)).unwrap();
        drop(j);
        let meta = dir.path().join(META);
        let text = std::fs::read_to_string(&meta).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["next_seq"] = u64::MAX.into();
        std::fs::write(&meta, value.to_string()).unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(&mut j), vec![1]);
        assert_eq!(j.append(status(2)).unwrap(), 2, "no overflow, no wedge");
        j.new_epoch().unwrap();
        assert_eq!(seqs(&mut j), vec![1, 2]);
        assert!(j.discard(1).unwrap());
        assert_eq!(seqs(&mut j), vec![2]);
        assert_eq!(j.dropped_total(), 1);
    }

    #[test]
    fn bound_drops_oldest_status_but_keeps_latest_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let mut j = Journal::open(dir.path(), max).unwrap();
        let old_inv = j.append(inventory("old", 50)).unwrap();
        let inv = j.append(inventory("new", 100)).unwrap();
        let mut statuses = Vec::new();
        for n in 0..400 {
            statuses.push(j.append(status(n)).unwrap());
        }
        assert!(j.dropped_total() > 0);
        assert!(j.file_bytes() <= max, "file {} > {max}", j.file_bytes());
        let pending = seqs(&mut j);
        // Latest inventory always survives; old statuses went before the superseded inventory.
        assert!(pending.contains(&inv));
        assert!(pending.contains(&old_inv), "statuses go before inventories");
        // The newest statuses are kept, contiguous up to the end.
        let kept_status: Vec<u64> = pending.iter().copied().filter(|s| *s > inv).collect();
        assert_eq!(*kept_status.last().unwrap(), *statuses.last().unwrap());
        let first_kept = kept_status[0];
        assert_eq!(
            kept_status,
            (first_kept..=*statuses.last().unwrap()).collect::<Vec<_>>()
        );
        assert_eq!(
            j.dropped_total() as usize,
            402 - pending.len(),
            "dropped count matches"
        );
        // The count survives reopen.
        let dropped = j.dropped_total();
        drop(j);
        let j = Journal::open(dir.path(), max).unwrap();
        assert_eq!(j.dropped_total(), dropped);
    }

    #[test]
    fn superseded_inventories_go_when_only_inventories_remain() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let mut j = Journal::open(dir.path(), max).unwrap();
        let mut last = 0;
        for i in 0..20 {
            last = j.append(inventory(&format!("v{i}"), 100)).unwrap();
        }
        let pending = seqs(&mut j);
        assert!(j.dropped_total() > 0);
        assert_eq!(*pending.last().unwrap(), last);
    }

    #[test]
    fn a_week_of_status_fits_in_the_default_bound() {
        let dir = tempfile::tempdir().unwrap();
        let max = crate::config::Defaults::JOURNAL_MAX_BYTES;
        let mut j = Journal::open(dir.path(), max).unwrap();
        j.append(inventory("week", 2500)).unwrap();
        // 7 days × 24 h × 12 per hour at the default 5-minute interval.
        for n in 0..2016 {
            j.append(status(n)).unwrap();
        }
        assert_eq!(j.dropped_total(), 0);
        assert_eq!(j.len(), 2017);
        assert!(j.file_bytes() < max);
        // Delivered in bounded batches, in order.
        let batch = j.pending(64, 1 << 20).unwrap();
        assert!(!batch.is_empty() && batch.len() <= 64);
        assert_eq!(batch[0].seq, 1);
        assert!(batch.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn pending_respects_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        for n in 0..10 {
            j.append(status(n)).unwrap();
        }
        assert_eq!(j.pending(4, usize::MAX).unwrap().len(), 4);
        let one = status(0).encoded_len();
        assert_eq!(j.pending(100, one * 3 + 10).unwrap().len(), 3);
        // At least one even if it exceeds the byte limit.
        assert_eq!(j.pending(100, 1).unwrap().len(), 1);
    }
}
