//! Time-bounded WMI queries (Windows only). WMI can hang: a stuck provider, a broken
//! repository, winmgmt restarting. Each query runs on its own short-lived thread (COM is
//! initialised there by the `wmi` crate) and the caller waits at most `timeout` for its rows;
//! past that the query is reported as timed out, so its part of the inventory is marked
//! missing, and the thread is left to finish on its own. At most `MAX_STUCK` such threads
//! may be outstanding (see `hung.rs`): further queries fail at once instead of piling up threads.
//!
//! Rows come back as property → [`Value`] maps (text or number, copied out of the COM
//! VARIANTs on the query's thread) and are read with the lenient helpers below, so an
//! unexpected type yields an empty field rather than a failed part.

use std::collections::HashMap;
use std::time::Duration;

use wmi::Variant;

use super::SourceError;

/// A property value: what the readers need of a VARIANT, and `Send`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(i128),
    Other,
}

pub type Row = HashMap<String, Value>;

fn value(v: &Variant) -> Value {
    match v {
        Variant::String(s) => Value::Text(s.clone()),
        v => number(v).map_or(Value::Other, Value::Number),
    }
}

/// Runs `wql` in `namespace` (e.g. `ROOT\CIMV2`), waiting at most `timeout`.
pub fn query(namespace: &str, wql: &str, timeout: Duration) -> Result<Vec<Row>, SourceError> {
    super::hung::run_bounded(timeout, {
        let namespace = namespace.to_owned();
        let wql = wql.to_owned();
        move || {
            let con = wmi::WMIConnection::with_namespace_path(&namespace)
                .map_err(|e| SourceError::Other(format!("WMI {namespace}: {e}")))?;
            let rows: Vec<HashMap<String, Variant>> = con
                .raw_query(&wql)
                .map_err(|e| SourceError::Other(format!("WMI query `{wql}`: {e}")))?;
            Ok(rows
                .iter()
                .map(|r| r.iter().map(|(k, v)| (k.clone(), value(v))).collect())
                .collect())
        }
    })
}

/// A text property; numbers are formatted, anything else is empty.
pub fn text(row: &Row, name: &str) -> String {
    match row.get(name) {
        Some(Value::Text(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// An unsigned integer property (WMI hands uint32 back as VT_I4, uint64 as a string).
pub fn unsigned(row: &Row, name: &str) -> Option<u64> {
    match row.get(name)? {
        Value::Text(s) => s.trim().parse().ok(),
        Value::Number(n) => u64::try_from(*n).ok(),
        Value::Other => None,
    }
}

fn number(v: &Variant) -> Option<i128> {
    Some(match *v {
        Variant::I1(n) => n.into(),
        Variant::I2(n) => n.into(),
        Variant::I4(n) => n.into(),
        Variant::I8(n) => n.into(),
        Variant::UI1(n) => n.into(),
        Variant::UI2(n) => n.into(),
        Variant::UI4(n) => n.into(),
        Variant::UI8(n) => n.into(),
        Variant::Bool(b) => i128::from(b),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_property_reading() {
        let mut row = Row::new();
        row.insert("a".into(), value(&Variant::I4(397_568)));
        row.insert("b".into(), value(&Variant::String(" 12 ".into())));
        row.insert("c".into(), value(&Variant::Null));
        assert_eq!(unsigned(&row, "a"), Some(397_568));
        assert_eq!(unsigned(&row, "b"), Some(12));
        assert_eq!(unsigned(&row, "c"), None);
        assert_eq!(text(&row, "a"), "397568");
        assert_eq!(text(&row, "c"), "");
        assert_eq!(text(&row, "missing"), "");
    }
}
