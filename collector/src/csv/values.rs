//! Cell values: dates, costs, lifecycle words, kinds and MAC lists as people and Snipe-IT
//! write them.

use time::{Date, Month};

use crate::model::{AssetKind, Lifecycle};

/// A date in ISO form (`2027-08-31`, also with a time after it, as Snipe-IT writes its
/// date-time columns), day first with `/`, `-` or `.` (`31/08/2027`), or with a month name
/// (`31 Aug 2027`, `Aug 31, 2027`, `Tue Aug 31, 2027`: Snipe-IT's display formats).
pub fn parse_date(text: &str) -> Result<Date, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a date; write 2027-08-31 (or 31/08/2027, day first, or 31 Aug 2027)"
        )
    };
    // ISO, optionally followed by a time.
    let head = text.split([' ', 'T']).next().unwrap_or("");
    if let Some(date) = numeric(head, true) {
        return date.ok_or_else(bad);
    }
    if let Some(date) = numeric(text, false) {
        return date.ok_or_else(bad);
    }
    named(text).ok_or_else(bad)
}

/// `Some(None)`: the shape matched but the numbers do not make a date.
fn numeric(text: &str, iso: bool) -> Option<Option<Date>> {
    let parts: Vec<&str> = text.split(['-', '/', '.']).collect();
    if parts.len() != 3
        || !parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let number = |p: &str| p.parse::<u32>().ok();
    let (year, month, day) = if iso {
        if parts[0].len() != 4 {
            return None;
        }
        (number(parts[0])?, number(parts[1])?, number(parts[2])?)
    } else {
        if parts[2].len() != 4 {
            return Some(None);
        }
        (number(parts[2])?, number(parts[1])?, number(parts[0])?)
    };
    Some(make(year, month, day))
}

fn make(year: u32, month: u32, day: u32) -> Option<Date> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    if !(1900..=9999).contains(&year) {
        return None;
    }
    Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()
}

fn month_named(word: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let word = word.to_ascii_lowercase();
    if word.len() < 3 {
        return None;
    }
    let full = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    NAMES
        .iter()
        .zip(full)
        .position(|(short, long)| long.starts_with(word.as_str()) && word.starts_with(short))
        .map(|i| i as u32 + 1)
}

/// `31 Aug 2027`, `Aug 31, 2027`, `Tue Aug 31, 2027`, `31 August 2027`, `31st Aug 2027`.
fn named(text: &str) -> Option<Date> {
    let words: Vec<&str> = text.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let mut month = None;
    let mut numbers = Vec::new();
    for word in words {
        let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            numbers.push((digits.len(), digits.parse::<u32>().ok()?));
        } else if let Some(m) = month_named(word) {
            if month.replace(m).is_some() {
                return None;
            }
        } else if !is_weekday(word) {
            return None;
        }
    }
    let month = month?;
    let [(dl, day), (4, year)] = numbers[..] else {
        return None;
    };
    if dl > 2 {
        return None;
    }
    make(year, month, day)
}

fn is_weekday(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .any(|d| word.starts_with(d))
        && word.len() <= 9
}

/// A cost in pounds (`£1,234.50`, `1234.5`, `GBP 99`) as pence.
pub fn parse_cost(text: &str) -> Result<i64, String> {
    let raw = text.trim();
    let bad = |why: &str| format!("{raw:?} is not a cost{why}; write 1234.50 or £1,234.50");
    let mut rest = raw;
    for prefix in ["£", "$", "€", "GBP", "gbp", "USD", "usd", "EUR", "eur"] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r.trim_start();
            break;
        }
    }
    if rest.starts_with('-') {
        return Err(bad(" (it is negative)"));
    }
    let cleaned: String = rest.chars().filter(|c| *c != ',' && *c != ' ').collect();
    let (pounds, pence) = match cleaned.split_once('.') {
        Some((p, d)) => (p, d),
        None => (cleaned.as_str(), ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if pounds.is_empty() || !digits(pounds) || !digits(pence) || pence.len() > 2 {
        return Err(bad(""));
    }
    if pounds.len() > 13 {
        return Err(bad(" (too large)"));
    }
    let pounds: i64 = pounds.parse().map_err(|_| bad(""))?;
    let pence: i64 = match pence.len() {
        0 => 0,
        1 => pence.parse::<i64>().map_err(|_| bad(""))? * 10,
        _ => pence.parse().map_err(|_| bad(""))?,
    };
    Ok(pounds * 100 + pence)
}

/// Pence as the exporter writes them: `1234.50`.
pub fn format_cost(pence: i64) -> String {
    let sign = if pence < 0 { "-" } else { "" };
    let abs = pence.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Our lifecycle words (`in-stock`, `In Stock`, …) and Snipe-IT's status labels, as its
/// export writes them: `Ready to Deploy (deployable)`, `Deployed`, `Out for Repair
/// (undeployable)`, `Archived (archived)`, `Lost/Stolen`, `Broken - Not Fixable`.
pub fn parse_lifecycle(text: &str) -> Result<Lifecycle, String> {
    let text = text.trim();
    if let Some(ours) = Lifecycle::parse(text) {
        return Ok(ours);
    }
    // "Label (meta)": the meta (Snipe-IT's status type) decides, except for undeployable
    // labels, where the label tells repair from loss.
    let (label, meta) = match text.rsplit_once('(') {
        Some((label, meta)) if meta.ends_with(')') => (
            label.trim().to_ascii_lowercase(),
            meta.trim_end_matches(')').trim().to_ascii_lowercase(),
        ),
        _ => (text.to_ascii_lowercase(), String::new()),
    };
    let by_label = |label: &str| -> Option<Lifecycle> {
        let label = label.replace(['_', '-'], " ");
        let label = label.split_whitespace().collect::<Vec<_>>().join(" ");
        Some(match label.as_str() {
            "ready to deploy" | "pending" | "in stock" | "stock" | "spare" | "available" => {
                Lifecycle::InStock
            }
            "deployed" | "in use" | "checked out" => Lifecycle::Deployed,
            "out for repair" | "out for diagnostics" | "repair" | "in repair" | "broken" => {
                Lifecycle::InRepair
            }
            "archived" | "broken not fixable" | "lost/stolen" | "lost" | "stolen" | "retired" => {
                Lifecycle::Retired
            }
            "disposed" | "disposed of" | "scrapped" | "recycled" => Lifecycle::Disposed,
            _ => return None,
        })
    };
    let by_meta = match meta.as_str() {
        "deployed" => Some(Lifecycle::Deployed),
        "deployable" | "pending" => Some(Lifecycle::InStock),
        "archived" => Some(Lifecycle::Retired),
        "undeployable" => Some(by_label(&label).unwrap_or(Lifecycle::InRepair)),
        _ => None,
    };
    by_meta.or_else(|| by_label(&label)).ok_or_else(|| {
        format!(
            "{text:?} is not a lifecycle state; use in-stock, deployed, in-repair, retired or \
             disposed (or a Snipe-IT status such as \"Ready to Deploy\")"
        )
    })
}

/// Our own `kind` column: the contract's words only.
pub fn parse_kind(text: &str) -> Result<AssetKind, String> {
    let wanted = text.trim().to_ascii_lowercase().replace([' ', '_'], "-");
    serde_json::from_value(serde_json::Value::String(wanted)).map_err(|_| {
        format!(
            "{text:?} is not a kind; use pc, server, laptop, printer, switch, router, \
             access-point, ups, nas, projector, phone, display, visualiser, trolley, other or unknown"
        )
    })
}

/// A Snipe-IT category (free text chosen by each school): the kind it most likely means,
/// `unknown` for the rest (whiteboards, visualisers, trolleys).
pub fn kind_of_category(text: &str) -> AssetKind {
    if let Ok(kind) = parse_kind(text) {
        return kind;
    }
    let text = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&["laptop", "notebook", "chromebook", "macbook", "ultrabook"]) {
        AssetKind::Laptop
    } else if has(&["server"]) {
        AssetKind::Server
    } else if has(&["desktop", "workstation", "computer", "all-in-one", "imac"]) || text == "pc" {
        AssetKind::Pc
    } else if has(&["printer", "copier", "mfd", "photocopier"]) {
        AssetKind::Printer
    } else if has(&["switch"]) {
        AssetKind::Switch
    } else if has(&["router", "firewall", "gateway"]) {
        AssetKind::Router
    } else if has(&["access point", "wireless", "wifi", "wi-fi", "wap"]) {
        AssetKind::AccessPoint
    } else if has(&["ups"]) {
        AssetKind::Ups
    } else if has(&["nas", "storage"]) {
        AssetKind::Nas
    } else if has(&["projector"]) {
        AssetKind::Projector
    } else if has(&["phone", "voip", "handset"]) {
        AssetKind::Phone
    } else if has(&["whiteboard", "display", "panel", "screen", "monitor", "tv"]) {
        AssetKind::Display
    } else if has(&["visualiser", "visualizer", "document camera"]) {
        AssetKind::Visualiser
    } else if has(&["trolley", "cart", "charging"]) {
        AssetKind::Trolley
    } else {
        AssetKind::Unknown
    }
}

/// The spelling the exporter writes (and `parse_kind` reads back).
pub fn kind_text(kind: AssetKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// MACs separated by spaces, commas or semicolons, each in canonical form.
pub fn parse_macs(text: &str) -> Result<Vec<String>, String> {
    let mut macs = Vec::new();
    for raw in text
        .split([' ', ',', ';', '\n'])
        .filter(|w| !w.trim().is_empty())
    {
        let mac = crate::model::mac::normalise_mac(raw)
            .filter(|_| raw.chars().filter(char::is_ascii_hexdigit).count() == 12)
            .ok_or_else(|| format!("{raw:?} is not a MAC address; write aa:bb:cc:dd:ee:ff"))?;
        if !macs.contains(&mac) {
            macs.push(mac);
        }
    }
    Ok(macs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn dates_in_every_form_schools_and_snipe_it_write() {
        for text in [
            "2027-08-31",
            "2027-08-31 00:00:00",
            "2027-08-31T09:00:00Z",
            "31/08/2027",
            "31-08-2027",
            "31.08.2027",
            "31 Aug 2027",
            "31st August 2027",
            "Aug 31, 2027",
            "Tue Aug 31, 2027",
            "August 31 2027",
        ] {
            assert_eq!(parse_date(text), Ok(date!(2027 - 08 - 31)), "{text}");
        }
        assert_eq!(parse_date("1/9/2024"), Ok(date!(2024 - 09 - 01)));
        for bad in [
            "08/31/2027",
            "2027-02-30",
            "next week",
            "31/08/27",
            "",
            "Aug 2027",
        ] {
            let error = parse_date(bad).unwrap_err();
            assert!(error.contains("2027-08-31"), "{bad}: {error}");
        }
    }

    #[test]
    fn costs_become_pence() {
        assert_eq!(parse_cost("£1,234.50"), Ok(123_450));
        assert_eq!(parse_cost("1234.5"), Ok(123_450));
        assert_eq!(parse_cost("GBP 99"), Ok(9_900));
        assert_eq!(parse_cost(" 0.07 "), Ok(7));
        for bad in ["-5", "12.345", "abc", "£", "1e5", "99999999999999999999"] {
            assert!(parse_cost(bad).is_err(), "{bad}");
        }
        assert_eq!(format_cost(123_450), "1234.50");
        assert_eq!(format_cost(7), "0.07");
        assert_eq!(parse_cost(&format_cost(987_654_321)), Ok(987_654_321));
    }

    #[test]
    fn lifecycle_from_our_words_and_snipe_it_labels() {
        use Lifecycle as L;
        for (text, want) in [
            ("in-stock", L::InStock),
            ("In Repair", L::InRepair),
            ("Ready to Deploy (deployable)", L::InStock),
            ("Ready to Deploy (deployed)", L::Deployed),
            ("Ready to Deploy", L::InStock),
            ("Pending", L::InStock),
            ("Deployed", L::Deployed),
            ("Out for Repair (undeployable)", L::InRepair),
            ("Lost/Stolen (undeployable)", L::Retired),
            ("Broken - Not Fixable", L::Retired),
            ("Archived (archived)", L::Retired),
            ("Disposed", L::Disposed),
        ] {
            assert_eq!(parse_lifecycle(text), Ok(want), "{text}");
        }
        assert!(parse_lifecycle("on the moon").is_err());
    }

    #[test]
    fn kinds_and_macs() {
        assert_eq!(parse_kind("access-point"), Ok(AssetKind::AccessPoint));
        assert!(parse_kind("whiteboard").is_err());
        assert_eq!(kind_of_category("Laptops"), AssetKind::Laptop);
        assert_eq!(kind_of_category("Desktop"), AssetKind::Pc);
        assert_eq!(
            kind_of_category("Interactive Whiteboard"),
            AssetKind::Display
        );
        assert_eq!(kind_of_category("Spaceship"), AssetKind::Unknown);
        assert_eq!(kind_text(AssetKind::AccessPoint), "access-point");
        assert_eq!(
            parse_macs("AA-BB-CC-00-11-22; aabb.cc00.1123").unwrap(),
            vec!["aa:bb:cc:00:11:22", "aa:bb:cc:00:11:23"]
        );
        assert!(parse_macs("aa:bb:cc").is_err());
    }
}
