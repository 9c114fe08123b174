//! The store's format version, so that an upgrade can tell what it is opening.
//!
//! Written into the `meta` tree (key [`KEY`]) when a store is created and checked on every
//! open: a store of an older format is migrated forward (none needed yet: format 1 is the
//! first), a store of a newer format — written by a later release, e.g. after a downgrade —
//! is refused before anything touches it, with a message that says what to do. A store from
//! before versioning existed has no key; it is format 1 and gets the key written.

/// The store format this release writes.
pub const CURRENT: u64 = 1;

/// The `meta` key holding the format version (a big-endian u64, like every meta value).
pub const KEY: &str = "store_format_version";

/// What opening a store of `found` format (None: no key yet) means for this release.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Current: open as it is.
    Current,
    /// No key yet (new, or older than versioning): write [`CURRENT`].
    Stamp,
    /// An older format: migrate from it (no migrations exist yet).
    Migrate(u64),
    /// Newer than this release understands: refuse.
    TooNew(u64),
}

pub fn judge(found: Option<u64>) -> Verdict {
    match found {
        None => Verdict::Stamp,
        Some(v) if v == CURRENT => Verdict::Current,
        Some(v) if v > CURRENT => Verdict::TooNew(v),
        Some(v) => Verdict::Migrate(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_gets_a_verdict() {
        assert_eq!(judge(None), Verdict::Stamp);
        assert_eq!(judge(Some(CURRENT)), Verdict::Current);
        assert_eq!(judge(Some(CURRENT + 1)), Verdict::TooNew(CURRENT + 1));
        assert_eq!(judge(Some(0)), Verdict::Migrate(0));
    }
}
