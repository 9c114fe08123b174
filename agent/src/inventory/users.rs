//! Logged-on users, for status reports: Linux from `utmp` (parsed here, so the format is
//! tested on every platform), Windows from the WTS session list (`windows.rs`).

use std::collections::BTreeSet;

/// Unique, sorted names of the users with a login session now.
#[cfg(target_os = "linux")]
pub fn logged_on() -> Vec<String> {
    std::fs::read("/var/run/utmp")
        .or_else(|_| std::fs::read("/run/utmp"))
        .map(|b| parse_utmp(&b))
        .unwrap_or_default()
}

#[cfg(windows)]
pub fn logged_on() -> Vec<String> {
    super::windows::logged_on_users()
}

#[cfg(not(any(target_os = "linux", windows)))]
pub fn logged_on() -> Vec<String> {
    Vec::new()
}

const UTMP_RECORD: usize = 384;
const UT_USER_PROCESS: i32 = 7;
const UT_USER_OFFSET: usize = 44;
const UT_USER_LEN: usize = 32;

/// Unique, sorted user names of USER_PROCESS records in a glibc `utmp` file.
// Only the Linux reader calls it; the tests run everywhere.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn parse_utmp(bytes: &[u8]) -> Vec<String> {
    let mut users = BTreeSet::new();
    for rec in bytes.chunks_exact(UTMP_RECORD) {
        let ut_type = i32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        if ut_type != UT_USER_PROCESS {
            continue;
        }
        let field = &rec[UT_USER_OFFSET..UT_USER_OFFSET + UT_USER_LEN];
        let end = field.iter().position(|&b| b == 0).unwrap_or(UT_USER_LEN);
        let name = String::from_utf8_lossy(&field[..end]).trim().to_owned();
        if !name.is_empty() {
            users.insert(name);
        }
    }
    users.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ut_type: i32, user: &str) -> Vec<u8> {
        let mut r = vec![0u8; UTMP_RECORD];
        r[0..4].copy_from_slice(&ut_type.to_le_bytes());
        // Something in ut_line (offset 8) to make sure we read the right field.
        r[8..13].copy_from_slice(b"tty1\0");
        r[UT_USER_OFFSET..UT_USER_OFFSET + user.len()].copy_from_slice(user.as_bytes());
        r
    }

    #[test]
    fn utmp_users_unique_and_sorted() {
        let mut bytes = Vec::new();
        bytes.extend(record(2, "reboot")); // BOOT_TIME
        bytes.extend(record(7, "teacher"));
        bytes.extend(record(6, "LOGIN")); // LOGIN_PROCESS
        bytes.extend(record(7, "admin"));
        bytes.extend(record(7, "teacher"));
        bytes.extend(record(8, "gone")); // DEAD_PROCESS
        bytes.extend(record(7, &"x".repeat(32))); // full-width name, no NUL
        bytes.extend([7, 0, 0]); // torn trailing record is ignored
        assert_eq!(
            parse_utmp(&bytes),
            vec!["admin".to_owned(), "teacher".to_owned(), "x".repeat(32)]
        );
    }
}
