//! The asset importer: a CSV file → one [`RegisterEdit`] per row, matched by asset tag, then
//! serial, then MAC ([`EditTarget::Match`]), or every error found (up to [`MAX_ERRORS`]),
//! each naming its row and column. A file with any error yields no edits at all.
//!
//! Rows are numbered as a spreadsheet shows them: the header is row 1. A column present in
//! the file sets its field on every row (an empty cell clears it); a column that is absent
//! leaves the field as it is.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use time::Date;

use super::columns::{self, Column, Field};
use super::values;
use crate::model::AssetKind;
use crate::model::register::{EditTarget, NewAsset, RegisterEdit, RegisterPatch};

/// The largest file the importer reads (a register of 10,000 assets is about 3 MiB).
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;
/// Errors listed before the importer stops looking for more.
pub const MAX_ERRORS: usize = 100;
/// Rows in one file (one register job holds them all).
pub const MAX_ROWS: usize = 50_000;

/// One row's edit, with the row number the user sees in a spreadsheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub row: usize,
    pub edit: RegisterEdit,
}

/// What is wrong with one cell (or, with an empty `column`, one row or the whole file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportError {
    pub row: usize,
    pub column: String,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column.is_empty() {
            write!(f, "row {}: {}", self.row, self.message)
        } else {
            write!(
                f,
                "row {}, column {:?}: {}",
                self.row, self.column, self.message
            )
        }
    }
}

impl ImportError {
    fn new(row: usize, column: &str, message: impl Into<String>) -> ImportError {
        ImportError {
            row,
            column: column.to_owned(),
            message: message.into(),
        }
    }
}

const SAVE_AS_UTF8: &str = "the file is not UTF-8 (it looks like Windows-1252 or another \
    legacy encoding); in Excel choose File > Save As and the type \"CSV UTF-8 (Comma \
    delimited) (*.csv)\", in LibreOffice Calc tick \"Edit filter settings\" and pick the \
    character set \"Unicode (UTF-8)\", then import that file";

/// Counts what is read so a file past the cap is refused without reading the rest.
struct Capped<R> {
    inner: R,
    left: usize,
    over: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a file of exactly the cap from a larger one.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? > 0 {
                self.over = true;
            }
            return Ok(0);
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n;
        Ok(n)
    }
}

/// Parses an asset CSV (ours or Snipe-IT's). `Err` holds every error found (at most
/// [`MAX_ERRORS`]); `Ok` holds one edit per non-blank row.
pub fn parse_assets<R: Read>(input: R) -> Result<Vec<ImportRow>, Vec<ImportError>> {
    let mut capped = Capped {
        inner: input,
        left: MAX_IMPORT_BYTES,
        over: false,
    };
    let result = parse_inner(&mut capped);
    if capped.over {
        return Err(vec![ImportError::new(
            1,
            "",
            format!(
                "the file is larger than {} MiB; split it into smaller files",
                MAX_IMPORT_BYTES / (1024 * 1024)
            ),
        )]);
    }
    result
}

fn parse_inner<R: Read>(input: R) -> Result<Vec<ImportRow>, Vec<ImportError>> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => return Err(vec![ImportError::new(1, "", "the file is empty")]),
        Some(Err(error)) => return Err(vec![syntax(1, &error)]),
        Some(Ok(record)) => record,
    };
    let headers = text_cells(1, &header, &[])?;
    let mut headers: Vec<String> = headers;
    if let Some(first) = headers.first_mut()
        && let Some(rest) = first.strip_prefix('\u{feff}')
    {
        *first = rest.to_owned();
    }
    let headers: Vec<String> = headers.into_iter().map(|h| h.trim().to_owned()).collect();
    let layout = layout(&headers)?;

    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut tags: HashMap<String, usize> = HashMap::new();
    for (index, record) in records.enumerate() {
        let row = index + 2;
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                errors.push(syntax(row, &error));
                break;
            }
        };
        let cells = text_cells(row, &record, &headers).map_err(|mut e| {
            // An encoding error ends the import at once: every later row has it too.
            errors.append(&mut e);
            errors.clone()
        })?;
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if cells.len() != headers.len() {
            errors.push(ImportError::new(
                row,
                "",
                format!(
                    "the row has {} cells but the header has {} columns",
                    cells.len(),
                    headers.len()
                ),
            ));
            continue;
        }
        if rows.len() >= MAX_ROWS {
            errors.push(ImportError::new(
                row,
                "",
                format!("a file holds at most {MAX_ROWS} rows; split it"),
            ));
            break;
        }
        // Duplicate tags are checked on every row, also those with other errors.
        if let Some(i) = layout.index.get(&Field::AssetTag) {
            let tag = super::unguard(cells[*i].trim()).trim();
            if !tag.is_empty() {
                let seen = *tags.entry(tag.to_lowercase()).or_insert(row);
                if seen != row {
                    errors.push(ImportError::new(
                        row,
                        &headers[*i],
                        format!("asset tag {tag:?} is also on row {seen}"),
                    ));
                }
            }
        }
        match parse_row(row, &cells, &headers, &layout) {
            Ok(edit) => rows.push(ImportRow { row, edit }),
            Err(mut row_errors) => errors.append(&mut row_errors),
        }
    }
    errors.truncate(MAX_ERRORS);
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

fn syntax(row: usize, error: &::csv::Error) -> ImportError {
    let row = error
        .position()
        .map_or(row, |p| usize::try_from(p.record()).map_or(row, |r| r + 1));
    ImportError::new(row, "", format!("the file is not valid CSV: {error}"))
}

/// The cells of one record as text, or the first byte that is not UTF-8 (row, column).
fn text_cells(
    row: usize,
    record: &::csv::ByteRecord,
    headers: &[String],
) -> Result<Vec<String>, Vec<ImportError>> {
    let mut cells = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        match std::str::from_utf8(field) {
            Ok(text) => cells.push(text.to_owned()),
            Err(error) => {
                let at = error.valid_up_to();
                let byte = field.get(at).copied().unwrap_or_default();
                let column = headers
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("column {}", i + 1));
                return Err(vec![ImportError::new(
                    row,
                    &column,
                    format!(
                        "byte 0x{byte:02X} at character {} is not UTF-8: {SAVE_AS_UTF8}",
                        String::from_utf8_lossy(&field[..at]).chars().count() + 1
                    ),
                )]);
            }
        }
    }
    Ok(cells)
}

/// Which column holds which field.
struct Layout {
    fields: Vec<Option<Field>>,
    index: HashMap<Field, usize>,
}

impl Layout {
    fn has(&self, field: Field) -> bool {
        self.index.contains_key(&field)
    }

    /// The header text of `field`'s column (our spelling when the file has none).
    fn name<'a>(&self, field: Field, headers: &'a [String]) -> &'a str {
        match self.index.get(&field) {
            Some(i) => &headers[*i],
            None => match field {
                Field::AssetTag => "asset_tag",
                _ => "",
            },
        }
    }
}

fn layout(headers: &[String]) -> Result<Layout, Vec<ImportError>> {
    let mut errors = Vec::new();
    let mut fields = Vec::with_capacity(headers.len());
    let mut index: HashMap<Field, usize> = HashMap::new();
    for (i, header) in headers.iter().enumerate() {
        if header.is_empty() {
            errors.push(ImportError::new(
                1,
                &format!("column {}", i + 1),
                "the header is empty; name the column or delete it",
            ));
            fields.push(None);
            continue;
        }
        match columns::column(header) {
            None => {
                errors.push(ImportError::new(
                    1,
                    header,
                    "unknown column; rename it to one of the columns in the README \
                     (e.g. asset_tag, room, purchase_date) or delete it",
                ));
                fields.push(None);
            }
            Some(Column::Ignored) => fields.push(None),
            Some(Column::Field(field)) => {
                if let Some(other) = index.insert(field, i) {
                    errors.push(ImportError::new(
                        1,
                        header,
                        format!(
                            "means the same as column {:?}; keep one of them",
                            headers[other]
                        ),
                    ));
                }
                fields.push(Some(field));
            }
        }
    }
    let keys = [Field::AssetTag, Field::Serial, Field::Macs];
    if errors.is_empty() && !keys.iter().any(|k| index.contains_key(k)) {
        errors.push(ImportError::new(
            1,
            "",
            "the file needs an asset_tag, serial or macs column (Snipe-IT: \"Asset Tag\", \
             \"Serial\" or \"MAC Address\") to match rows to assets",
        ));
    }
    if errors.is_empty() {
        Ok(Layout { fields, index })
    } else {
        errors.truncate(MAX_ERRORS);
        Err(errors)
    }
}

fn parse_row(
    row: usize,
    cells: &[String],
    headers: &[String],
    layout: &Layout,
) -> Result<RegisterEdit, Vec<ImportError>> {
    let mut errors = Vec::new();
    let mut patch = RegisterPatch::default();
    let mut new = NewAsset {
        kind: AssetKind::Unknown,
        name: String::new(),
        vendor: String::new(),
        model: String::new(),
        serial: String::new(),
        macs: Vec::new(),
    };
    let mut asset_tag = String::new();
    let mut purchase: Option<Date> = None;
    let mut warranty_months: Option<(usize, u32)> = None;
    for (i, cell) in cells.iter().enumerate() {
        let Some(field) = layout.fields[i] else {
            continue;
        };
        let text = super::unguard(cell.trim()).trim().to_owned();
        let column = headers[i].as_str();
        let mut fail = |message: String| errors.push(ImportError::new(row, column, message));
        match field {
            Field::AssetTag => {
                asset_tag = text.clone();
                patch.asset_tag = Some(text);
            }
            Field::Name => new.name = text,
            Field::Kind => match (text.is_empty(), values::parse_kind(&text)) {
                (true, _) => {}
                (false, Ok(kind)) => new.kind = kind,
                (false, Err(message)) => fail(message),
            },
            Field::Category => {
                if !text.is_empty() {
                    new.kind = values::kind_of_category(&text);
                }
            }
            Field::Vendor => new.vendor = text,
            Field::Model => new.model = text,
            Field::Serial => new.serial = text,
            Field::Macs => match values::parse_macs(&text) {
                Ok(macs) => new.macs = macs,
                Err(message) => fail(message),
            },
            Field::Site => patch.site = Some(text),
            Field::Building => patch.building = Some(text),
            Field::Room => patch.room = Some(text),
            Field::AssignedUser => patch.assigned_user = Some(text),
            Field::Department => patch.department = Some(text),
            Field::Supplier => patch.supplier = Some(text),
            Field::OrderRef => patch.order_ref = Some(text),
            Field::Funding => patch.funding = Some(text),
            Field::Notes => patch.notes = Some(text),
            Field::DisposalRef => patch.disposal_ref = Some(text),
            Field::PurchaseDate => {
                if text.is_empty() {
                    patch.purchase_date = Some(None);
                } else {
                    match values::parse_date(&text) {
                        Ok(date) => {
                            purchase = Some(date);
                            patch.purchase_date = Some(Some(date));
                        }
                        Err(message) => fail(message),
                    }
                }
            }
            Field::WarrantyEnd => {
                if text.is_empty() {
                    patch.warranty_end = Some(None);
                } else {
                    match values::parse_date(&text) {
                        Ok(date) => patch.warranty_end = Some(Some(date)),
                        Err(message) => fail(message),
                    }
                }
            }
            Field::WarrantyMonths => {
                let digits = text
                    .trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == ' ')
                    .trim();
                if !text.is_empty() {
                    match digits.parse::<u32>() {
                        Ok(months) if months <= 1200 => warranty_months = Some((i, months)),
                        _ => fail(format!(
                            "{text:?} is not a number of months (Snipe-IT's Warranty column)"
                        )),
                    }
                }
            }
            Field::Cost => {
                if text.is_empty() {
                    patch.cost_pence = Some(None);
                } else {
                    match values::parse_cost(&text) {
                        Ok(pence) => patch.cost_pence = Some(Some(pence)),
                        Err(message) => fail(message),
                    }
                }
            }
            Field::Lifecycle => {
                if !text.is_empty() {
                    match values::parse_lifecycle(&text) {
                        Ok(lifecycle) => patch.lifecycle = Some(lifecycle),
                        Err(message) => fail(message),
                    }
                }
            }
        }
    }
    // Snipe-IT's "Warranty" (months) gives the end date when no column says it outright.
    let end_given = matches!(patch.warranty_end, Some(Some(_)));
    if let Some((i, months)) = warranty_months
        && !end_given
    {
        match purchase {
            Some(bought) => patch.warranty_end = Some(add_months(bought, months)),
            None => errors.push(ImportError::new(
                row,
                &headers[i],
                "a warranty in months needs a purchase date on the same row",
            )),
        }
    }
    if asset_tag.is_empty() && new.serial.is_empty() && new.macs.is_empty() {
        errors.push(ImportError::new(
            row,
            layout.name(Field::AssetTag, headers),
            "the row has no asset tag, serial or MAC address to match it by",
        ));
    }
    if new.name.is_empty() {
        new.name = [&asset_tag, &new.serial]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .or_else(|| new.macs.first().cloned())
            .unwrap_or_default();
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !layout.has(Field::AssetTag) {
        patch.asset_tag = None;
    }
    Ok(RegisterEdit {
        target: EditTarget::Match {
            asset_tag,
            serial: new.serial.clone(),
            macs: new.macs.clone(),
            new,
        },
        patch,
    })
}

/// `date` plus `months` calendar months (the last day of the month when it is shorter).
fn add_months(date: Date, months: u32) -> Option<Date> {
    let total =
        date.year() * 12 + i32::from(u8::from(date.month())) - 1 + i32::try_from(months).ok()?;
    let (year, month) = (
        total.div_euclid(12),
        u8::try_from(total.rem_euclid(12) + 1).ok()?,
    );
    let month = time::Month::try_from(month).ok()?;
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Lifecycle;
    use time::macros::date;

    fn parse(text: &str) -> Result<Vec<ImportRow>, Vec<ImportError>> {
        parse_assets(text.as_bytes())
    }

    fn messages(errors: &[ImportError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn snipe_it_export_maps_every_column() {
        let file = "\u{feff}Company,Asset Name,Asset Tag,Model,Model No.,Category,Manufacturer,\
            Serial,Purchase Date,Purchase Cost,Order Number,Supplier,Location,Checked Out To,\
            Type,Status,Warranty,Warranty Expires,Notes,MAC Address\n\
            Hilltop,HT-LAP-07,HT-0007,Latitude 5440,5440,Laptops,Dell,SN-7,2024-09-01,\
            \"£1,234.50\",PO-991,Stone Group,B12,Ms Patel,user,Ready to Deploy (deployed),36,\
            2027-09-01,'=cmd,AA-BB-CC-00-11-22\n";
        let rows = parse(file).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].row, 2);
        let RegisterEdit { target, patch } = &rows[0].edit;
        let EditTarget::Match {
            asset_tag,
            serial,
            macs,
            new,
        } = target
        else {
            panic!("{target:?}")
        };
        assert_eq!(asset_tag, "HT-0007");
        assert_eq!(serial, "SN-7");
        assert_eq!(macs, &["aa:bb:cc:00:11:22"]);
        assert_eq!(new.kind, AssetKind::Laptop);
        assert_eq!(new.name, "HT-LAP-07");
        assert_eq!(
            (new.vendor.as_str(), new.model.as_str()),
            ("Dell", "Latitude 5440")
        );
        assert_eq!(patch.asset_tag.as_deref(), Some("HT-0007"));
        assert_eq!(patch.room.as_deref(), Some("B12"));
        assert_eq!(patch.assigned_user.as_deref(), Some("Ms Patel"));
        assert_eq!(patch.purchase_date, Some(Some(date!(2024 - 09 - 01))));
        assert_eq!(patch.cost_pence, Some(Some(123_450)));
        assert_eq!(patch.order_ref.as_deref(), Some("PO-991"));
        assert_eq!(patch.supplier.as_deref(), Some("Stone Group"));
        assert_eq!(patch.lifecycle, Some(Lifecycle::Deployed));
        assert_eq!(patch.warranty_end, Some(Some(date!(2027 - 09 - 01))));
        assert_eq!(
            patch.notes.as_deref(),
            Some("=cmd"),
            "the guard is stripped"
        );
        // Columns the file does not have are left alone.
        assert_eq!(patch.site, None);
        assert_eq!(patch.funding, None);
    }

    #[test]
    fn warranty_months_count_from_the_purchase_date() {
        let rows = parse("Asset Tag,Purchase Date,Warranty\nT1,2024-01-31,1\n").unwrap();
        assert_eq!(
            rows[0].edit.patch.warranty_end,
            Some(Some(date!(2024 - 02 - 29)))
        );
        let errors = parse("Asset Tag,Warranty\nT1,36\n").unwrap_err();
        assert_eq!(
            messages(&errors),
            [
                "row 2, column \"Warranty\": a warranty in months needs a purchase date on the same row"
            ]
        );
    }

    #[test]
    fn every_error_names_row_and_column_and_nothing_is_returned() {
        let file = "asset_tag,purchase_date,cost,lifecycle\n\
                    A1,2024-13-01,10,deployed\n\
                    A2,2024-01-01,ten pounds,deployed\n\
                    A3,2024-01-01,10,lost in space\n\
                    a1,2024-01-01,10,deployed\n\
                    A5,2024-01-01,10,deployed\n";
        let errors = messages(&parse(file).unwrap_err());
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors[0].starts_with("row 2, column \"purchase_date\": \"2024-13-01\" is not a date"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("row 3, column \"cost\":"),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("row 4, column \"lifecycle\":"),
            "{errors:?}"
        );
        assert_eq!(
            errors[3],
            "row 5, column \"asset_tag\": asset tag \"a1\" is also on row 2"
        );
    }

    #[test]
    fn unknown_and_duplicate_columns_are_header_errors() {
        let errors =
            messages(&parse("Asset Tag,Colour,Room,Location\nA1,red,B1,B2\n").unwrap_err());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("row 1, column \"Colour\": unknown column"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("row 1, column \"Location\": means the same as column \"Room\"")
        );
        // Known Snipe-IT columns we do not import are fine.
        assert!(parse("Asset Tag,Company,Model No.,Created At\nA1,x,y,z\n").is_ok());
        assert!(
            parse("room\nB1\n").unwrap_err()[0]
                .message
                .contains("asset_tag")
        );
    }

    #[test]
    fn windows_1252_names_the_first_bad_byte() {
        // "£" in Windows-1252 is 0xA3.
        let mut file = b"asset_tag,room,cost\nA1,B1,10\nA2,Caf".to_vec();
        file.push(0xE9);
        file.extend_from_slice(b",\xA399\n");
        let errors = parse_assets(&file[..]).unwrap_err();
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.starts_with("row 3, column \"room\": byte 0xE9 at character 4 is not UTF-8"),
            "{text}"
        );
        assert!(text.contains("CSV UTF-8"), "{text}");
    }

    #[test]
    fn a_row_needs_a_key_blank_rows_are_skipped_and_sizes_are_capped() {
        let errors = messages(&parse("asset_tag,serial,room\n,,B1\n").unwrap_err());
        assert_eq!(
            errors,
            [
                "row 2, column \"asset_tag\": the row has no asset tag, serial or MAC address to match it by"
            ]
        );
        let rows = parse("asset_tag,room\nA1,B1\n,\n\nA2,B2\n").unwrap();
        assert_eq!(rows.iter().map(|r| r.row).collect::<Vec<_>>(), [2, 4]);
        let errors = messages(&parse("asset_tag,room\nA1\n").unwrap_err());
        assert_eq!(
            errors,
            ["row 2: the row has 1 cells but the header has 2 columns"]
        );
        let big = format!("asset_tag\n\"{}\"\n", "A".repeat(MAX_IMPORT_BYTES));
        let errors = parse(&big).unwrap_err();
        assert!(
            errors[0].message.contains("larger than 16 MiB"),
            "{errors:?}"
        );
        assert!(matches!(
            parse("").unwrap_err()[0].message.as_str(),
            "the file is empty"
        ));
    }

    #[test]
    fn errors_stop_at_the_cap() {
        let mut file = String::from("asset_tag,cost\n");
        for i in 0..500 {
            file.push_str(&format!("T{i},x\n"));
        }
        assert_eq!(parse(&file).unwrap_err().len(), MAX_ERRORS);
    }

    #[test]
    fn never_panics_on_odd_input() {
        for file in [
            "\"unterminated\n",
            "asset_tag\n\"a\"\"b\"\n",
            "asset_tag,macs\nA,zz\n",
            ",\n,\n",
            "\u{feff}",
        ] {
            let _ = parse(file);
        }
    }
}
