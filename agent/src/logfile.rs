//! A size-bounded rolling log file for the Windows service (which has no stderr):
//! `caretaker-agent.log` grows to `max_bytes`, then becomes `caretaker-agent.log.1` (older ones
//! shift up to `.keep`, the oldest is deleted). At most `(keep + 1) × max_bytes` of disk.
//! Writes are synchronous and unbuffered (one log line per write), so nothing is lost when the
//! service stops; a failed write is dropped rather than stopping the agent.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const FILE_NAME: &str = "caretaker-agent.log";

struct State {
    dir: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

/// Cheap to clone; every clone writes to the same file.
#[derive(Clone)]
pub struct RollingFile(Arc<Mutex<State>>);

impl RollingFile {
    pub fn open(dir: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self(Arc::new(Mutex::new(State {
            dir: dir.to_owned(),
            file: Some(file),
            size,
            max_bytes: max_bytes.max(1024),
            keep: keep.max(1),
        }))))
    }
}

impl State {
    fn name(&self, n: usize) -> PathBuf {
        if n == 0 {
            self.dir.join(FILE_NAME)
        } else {
            self.dir.join(format!("{FILE_NAME}.{n}"))
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None; // Windows cannot rename an open file
        let _ = std::fs::remove_file(self.name(self.keep));
        for n in (0..self.keep).rev() {
            let from = self.name(n);
            if from.exists() {
                std::fs::rename(&from, self.name(n + 1))?;
            }
        }
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.name(0))?,
        );
        self.size = 0;
        Ok(())
    }
}

impl Write for RollingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if st.size > 0 && st.size + buf.len() as u64 > st.max_bytes {
            st.rotate()?;
        }
        let Some(f) = st.file.as_mut() else {
            return Err(io::Error::other("log file is not open"));
        };
        f.write_all(buf)?;
        st.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        st.file.as_mut().map_or(Ok(()), File::flush)
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RollingFile {
    type Writer = RollingFile;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_over_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RollingFile::open(dir.path(), 1024, 2).unwrap();
        let line = [b'x'; 100];
        for i in 0..60u8 {
            let mut l = line;
            l[0] = i;
            l[99] = b'\n';
            log.write_all(&l).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                FILE_NAME,
                &format!("{FILE_NAME}.1"),
                &format!("{FILE_NAME}.2")
            ]
        );
        for n in &names {
            let len = std::fs::metadata(dir.path().join(n)).unwrap().len();
            assert!(len <= 1024, "{n} is {len} bytes");
        }
        // The newest line is in the current file.
        let current = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(current[current.len() - 100], 59);
    }

    #[test]
    fn appends_to_an_existing_log() {
        let dir = tempfile::tempdir().unwrap();
        RollingFile::open(dir.path(), 4096, 1)
            .unwrap()
            .write_all(b"one\n")
            .unwrap();
        RollingFile::open(dir.path(), 4096, 1)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "one\ntwo\n"
        );
    }
}
