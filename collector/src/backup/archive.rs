//! The backup archive's record stream (what the optional encryption in `crypt` wraps).
//!
//! ```text
//! "CTARCHV1"                     magic and version of the record stream
//! u32 len, JSON header           {created_at, release, store_format}
//! records, each a tag byte:
//!   1  u32 len, tree name         the records after it belong to this store tree
//!   2  u32 len, key, u32 len, value
//!   3  u32 len, path, u32 mode, u64 len, bytes   a file under the data directory
//!   0  end
//! 32 bytes                       SHA-256 of everything before it
//! ```
//! Lengths are big-endian and bounded ([`MAX_RECORD`], [`MAX_FILE`]), so a corrupt length
//! is reported as corruption instead of a huge allocation. Nothing read is trusted before the
//! trailing hash matched: `restore` reads an archive through once to check it, and only then
//! writes anything.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use super::BackupError;

pub const MAGIC: &[u8; 8] = b"CTARCHV1";
/// Largest key, value, name or header accepted.
pub const MAX_RECORD: u32 = 64 * 1024 * 1024;
/// Largest file accepted.
pub const MAX_FILE: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// RFC 3339, when the snapshot was taken.
    pub created_at: String,
    /// The collector release that wrote it.
    pub release: String,
    /// The store format of the trees inside (`store::format`).
    pub store_format: u64,
}

/// One record of an archive, as read back.
#[derive(Debug, PartialEq)]
pub enum Item {
    Tree(String),
    Entry(Vec<u8>, Vec<u8>),
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
}

/// Writes an archive to `out`, hashing as it goes.
pub struct ArchiveWriter<W: Write> {
    out: W,
    hash: Sha256,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut writer = Self {
            out,
            hash: Sha256::new(),
        };
        writer.put(MAGIC)?;
        let json = serde_json::to_vec(header).expect("header serialises");
        writer.put_bytes(&json)?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }

    fn put_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }

    pub fn tree(&mut self, name: &[u8]) -> io::Result<()> {
        self.put(&[1])?;
        self.put_bytes(name)
    }

    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.put(&[2])?;
        self.put_bytes(key)?;
        self.put_bytes(value)
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.put(&[3])?;
        self.put_bytes(path.as_bytes())?;
        self.put(&mode.to_be_bytes())?;
        self.put(&(data.len() as u64).to_be_bytes())?;
        self.put(data)
    }

    /// Writes the end record and the hash; returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.put(&[0])?;
        let digest = self.hash.finalize();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads an archive from `input`, handing every record to `visit`; checks the hash at the end.
/// `visit`'s work must be undone by the caller if this fails (it fails on the hash last).
pub fn read(
    input: impl Read,
    mut visit: impl FnMut(Item) -> Result<(), BackupError>,
) -> Result<Header, BackupError> {
    let mut reader = Hashing {
        input,
        hash: Sha256::new(),
    };
    let mut magic = [0u8; 8];
    reader.exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(BackupError::Corrupt(
            "not a Caretaker backup (or from an unknown release)".into(),
        ));
    }
    let header: Header = serde_json::from_slice(&reader.bytes(MAX_RECORD)?)
        .map_err(|e| BackupError::Corrupt(format!("unreadable header: {e}")))?;
    loop {
        let mut tag = [0u8; 1];
        reader.exact(&mut tag)?;
        match tag[0] {
            0 => break,
            1 => {
                let name = reader.bytes(MAX_RECORD)?;
                let name = String::from_utf8(name)
                    .map_err(|_| BackupError::Corrupt("a tree name is not UTF-8".into()))?;
                visit(Item::Tree(name))?;
            }
            2 => {
                let key = reader.bytes(MAX_RECORD)?;
                let value = reader.bytes(MAX_RECORD)?;
                visit(Item::Entry(key, value))?;
            }
            3 => {
                let path = String::from_utf8(reader.bytes(MAX_RECORD)?)
                    .map_err(|_| BackupError::Corrupt("a file name is not UTF-8".into()))?;
                let mut mode = [0u8; 4];
                reader.exact(&mut mode)?;
                let mut len = [0u8; 8];
                reader.exact(&mut len)?;
                let len = u64::from_be_bytes(len);
                if len > MAX_FILE {
                    return Err(BackupError::Corrupt(format!("file {path} of {len} bytes")));
                }
                let mut data = vec![0u8; len as usize];
                reader.exact(&mut data)?;
                visit(Item::File {
                    path,
                    mode: u32::from_be_bytes(mode),
                    data,
                })?;
            }
            other => {
                return Err(BackupError::Corrupt(format!("unknown record type {other}")));
            }
        }
    }
    let digest = reader.hash.clone().finalize();
    let mut trailer = [0u8; 32];
    reader
        .input
        .read_exact(&mut trailer)
        .map_err(|_| BackupError::Corrupt("the file ends before its checksum".into()))?;
    if digest[..] != trailer {
        return Err(BackupError::Corrupt("the checksum does not match".into()));
    }
    let mut extra = [0u8; 1];
    if matches!(reader.input.read(&mut extra), Ok(n) if n > 0) {
        return Err(BackupError::Corrupt("data after the checksum".into()));
    }
    Ok(header)
}

struct Hashing<R> {
    input: R,
    hash: Sha256,
}

impl<R: Read> Hashing<R> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => BackupError::Corrupt("the file is cut short".into()),
            _ => BackupError::from_read(e),
        })?;
        self.hash.update(&*buf);
        Ok(())
    }

    fn bytes(&mut self, max: u32) -> Result<Vec<u8>, BackupError> {
        let mut len = [0u8; 4];
        self.exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len > max {
            return Err(BackupError::Corrupt(format!("a record of {len} bytes")));
        }
        let mut out = vec![0u8; len as usize];
        self.exact(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let header = Header {
            created_at: "2026-12-02T13:00:00Z".into(),
            release: "0.1.0".into(),
            store_format: 1,
        };
        let mut w = ArchiveWriter::new(Vec::new(), &header).expect("header");
        w.tree(b"assets").expect("tree");
        w.entry(b"a1", b"{\"id\":\"a1\"}").expect("entry");
        w.file("api-token", 0o600, b"secret\n").expect("file");
        w.finish().expect("finish")
    }

    #[test]
    fn an_archive_reads_back_record_for_record() {
        let mut items = Vec::new();
        let header = read(&sample()[..], |i| {
            items.push(i);
            Ok(())
        })
        .expect("read");
        assert_eq!(header.store_format, 1);
        assert_eq!(
            items,
            vec![
                Item::Tree("assets".into()),
                Item::Entry(b"a1".to_vec(), b"{\"id\":\"a1\"}".to_vec()),
                Item::File {
                    path: "api-token".into(),
                    mode: 0o600,
                    data: b"secret\n".to_vec()
                },
            ]
        );
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_caught() {
        let good = sample();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            assert!(read(&bad[..], |_| Ok(())).is_err(), "flip at {at}");
            assert!(read(&good[..at], |_| Ok(())).is_err(), "cut at {at}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(read(&longer[..], |_| Ok(())).is_err());
    }
}
