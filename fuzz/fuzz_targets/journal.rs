#![no_main]

//! The agent's journal reader on whatever is on disk: `[meta length u8][journal.meta…]
//! [journal.log…]`. Opening never fails on content (only on I/O), and every record it then
//! offers as pending can be read back.

use std::sync::OnceLock;

use caretaker_agent::journal::Journal;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&meta_len, rest)) = data.split_first() else {
        return;
    };
    let (meta, log) = rest.split_at(usize::from(meta_len).min(rest.len()));
    let dir = DIR
        .get_or_init(|| {
            tempfile::tempdir_in("/dev/shm")
                .or_else(|_| tempfile::tempdir())
                .expect("tempdir")
        })
        .path();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    if meta_len != 0 {
        std::fs::write(dir.join("journal.meta"), meta).expect("meta");
    }
    std::fs::write(dir.join("journal.log"), log).expect("log");
    let mut journal = Journal::open(dir, 1 << 20).expect("a journal opens whatever its content");
    let pending = journal
        .pending(usize::MAX, usize::MAX)
        .expect("what is pending can be read");
    assert_eq!(pending.len(), journal.len());
    let mut last = 0;
    for report in &pending {
        assert!(report.seq > last, "pending in increasing seq order");
        last = report.seq;
    }
    if let Some(report) = pending.first() {
        journal.ack(report.seq).expect("ack");
    }
    drop(journal);
    let _reopened = Journal::open(dir, 1 << 20).expect("reopens after its own writes");
});
