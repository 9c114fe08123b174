//! Comparing software versions as the package managers do: an optional numeric epoch
//! (`1:2.3`), then dpkg's ordering (runs of digits compare as numbers, other characters by
//! their code with letters before punctuation, `~` before everything, even the end), then a
//! Debian revision after the last `-`. It orders Windows' `10.0.19045.1234`, semantic
//! versions and `2.3~rc1` correctly, and never fails: any text is a version.

use std::cmp::Ordering;

/// `a` against `b` (`Less`: `a` is older).
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ra) = split_epoch(normalise(a));
    let (eb, rb) = split_epoch(normalise(b));
    ea.cmp(&eb).then_with(|| {
        let (ua, va) = split_revision(ra);
        let (ub, vb) = split_revision(rb);
        segments(ua, ub).then_with(|| segments(va, vb))
    })
}

/// Whether `installed` is older than `minimum`.
pub fn older_than(installed: &str, minimum: &str) -> bool {
    compare(installed, minimum) == Ordering::Less
}

fn normalise(text: &str) -> &str {
    let text = text.trim();
    // "v1.2" as tags are written.
    match text.as_bytes() {
        [b'v' | b'V', d, ..] if d.is_ascii_digit() => &text[1..],
        _ => text,
    }
}

fn split_epoch(text: &str) -> (u64, &str) {
    match text.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, text),
    }
}

fn split_revision(text: &str) -> (&str, &str) {
    match text.rsplit_once('-') {
        Some((upstream, revision)) if !upstream.is_empty() => (upstream, revision),
        _ => (text, ""),
    }
}

/// dpkg's weight of a non-digit character: `~` lowest, the end next, letters, then the rest.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`.
fn segments(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit prefix.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let wa = weight(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let wb = weight(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // The digit run, as a number of any length: skip leading zeros, longer is larger.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (si, sj) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let order = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn numeric_segments_compare_as_numbers() {
        assert_eq!(compare("1.10", "1.9"), Greater);
        assert_eq!(compare("1.2.3", "1.2.3"), Equal);
        assert_eq!(compare("1.2", "1.2.0"), Less);
        assert_eq!(compare("01.02", "1.2"), Equal);
        assert_eq!(compare("2", "10"), Less);
        assert_eq!(compare("v1.2", "1.3"), Less);
        assert_eq!(
            compare("99999999999999999999999.1", "99999999999999999999998.9"),
            Greater
        );
    }

    #[test]
    fn epochs_win_over_everything_after_them() {
        assert_eq!(compare("1:2.3", "9.9"), Greater);
        assert_eq!(compare("1:2.3", "2:0.1"), Less);
        assert_eq!(compare("0:1.0", "1.0"), Equal);
    }

    #[test]
    fn tilde_sorts_before_a_release_and_revisions_count_last() {
        assert_eq!(compare("2.3~rc1", "2.3"), Less);
        assert_eq!(compare("2.3~rc1", "2.3~rc2"), Less);
        assert_eq!(compare("2.3~~", "2.3~"), Less);
        assert_eq!(compare("1.0-1", "1.0-2"), Less);
        assert_eq!(compare("1.0-10", "1.0-9"), Greater);
        assert_eq!(compare("2.36.1-8+deb11u1", "2.36.1-8"), Greater);
        assert_eq!(compare("1.0a", "1.0"), Greater);
        assert_eq!(compare("1.0a", "1.0+"), Less, "letters before punctuation");
    }

    #[test]
    fn windows_build_numbers() {
        assert_eq!(compare("10.0.19045.1234", "10.0.19045.999"), Greater);
        assert_eq!(compare("10.0.19044.4000", "10.0.19045.1"), Less);
        assert_eq!(compare("120.0.6099.71", "120.0.6099.109"), Less);
    }

    #[test]
    fn any_text_is_a_version_and_comparison_is_total() {
        let odd = ["", ":", "-", "~", "a:b", "1:", "::1", "é1.2", "1..2", "--1"];
        for a in odd {
            for b in odd {
                assert_eq!(compare(a, b), compare(b, a).reverse(), "{a:?} vs {b:?}");
            }
            assert_eq!(compare(a, a), Equal);
        }
        assert!(older_than("115.5.0esr-1~deb12u1", "128.0"));
        assert!(!older_than("128.3.1esr-1", "128.0"));
    }
}
