//! CSV import and export of the register (FITS Configuration and Financial Management).
//!
//! Pure: no I/O beyond the `Read`/`Write` handed in, no store, no network. `import` turns a
//! file (ours, or Snipe-IT's asset export) into [`RegisterEdit`]s with
//! [`EditTarget::Match`] — or into every error found, each naming its row and column, so that
//! nothing is imported from a file with a mistake in it. `export` writes assets, incidents,
//! changes and software, with a formula-injection guard on every cell.
//!
//! The HTTP routes (`http::csv`), the dashboard's import page (`web::csv_import`) and the CLI use
//! these; the edits themselves are applied by the register writer (`Job::EditRegister`),
//! all rows in one job.
//!
//! [`RegisterEdit`]: crate::model::register::RegisterEdit
//! [`EditTarget::Match`]: crate::model::register::EditTarget::Match

pub mod columns;
pub mod export;
pub mod import;
mod values;

pub use export::{SoftwareRow, write_assets, write_changes, write_incidents, write_software};
pub use import::{ImportError, ImportRow, MAX_ERRORS, MAX_IMPORT_BYTES, parse_assets};

/// OWASP's CSV-injection advice: a cell that starts with one of these is read as a formula
/// by spreadsheets, so the exporter prefixes it with `'` (and the importer strips it again).
pub const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `text` as it is safe to put into a spreadsheet cell.
pub fn guard(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The inverse of [`guard`]: a cell our exporter (or a careful spreadsheet user) prefixed.
pub fn unguard(text: &str) -> &str {
    match text.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_guarded_and_unguarded() {
        for cell in ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx"] {
            let guarded = guard(cell);
            assert!(guarded.starts_with('\''), "{cell:?}");
            assert_eq!(unguard(&guarded), cell);
        }
        assert_eq!(guard("B12"), "B12");
        // An apostrophe the user typed stays when no formula follows it.
        assert_eq!(unguard("'s Room"), "'s Room");
    }
}
