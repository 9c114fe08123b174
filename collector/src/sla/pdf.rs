//! The monthly report as a PDF (printpdf, the PDF base-14 Helvetica fonts: nothing to embed).
//!
//! A small line layout: headings, paragraphs and tables with fixed columns, A4 portrait,
//! a new page when one is full. Text is reduced to ASCII-safe characters first, because
//! the base-14 fonts only cover WinAnsi and a name from the register may hold anything.

use printpdf::{
    BuiltinFont, Color, Line, LinePoint, Mm, Op, PdfDocument, PdfFontHandle, PdfPage,
    PdfSaveOptions, Point, Pt, Rgb, TextItem,
};

use super::report::MonthlyReport;

const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 18.0;

/// Characters the base-14 fonts cannot show become their nearest ASCII.
fn safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '–' | '—' => '-',
            '×' => 'x',
            '…' => '.',
            '‘' | '’' => '\'',
            '“' | '”' => '"',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '?',
        })
        .collect()
}

/// Keeps a cell within `chars` characters.
fn fit(text: &str, chars: usize) -> String {
    let text = safe(text);
    if text.chars().count() <= chars {
        text
    } else {
        let mut cut: String = text.chars().take(chars.saturating_sub(3)).collect();
        cut.push_str("...");
        cut
    }
}

struct Layout {
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Self {
            pages: vec![Vec::new()],
            y: PAGE_H - MARGIN,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Room for `height` mm more, or a new page.
    fn need(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.pages.push(Vec::new());
            self.y = PAGE_H - MARGIN;
        }
    }

    fn text_at(&mut self, x: f32, text: &str, size: f32, bold: bool) {
        let font = if bold {
            BuiltinFont::HelveticaBold
        } else {
            BuiltinFont::Helvetica
        };
        let y = self.y;
        self.ops().extend([
            Op::StartTextSection,
            Op::SetTextCursor {
                pos: Point::new(Mm(x), Mm(y)),
            },
            Op::SetFont {
                font: PdfFontHandle::Builtin(font),
                size: Pt(size),
            },
            Op::ShowText {
                items: vec![TextItem::Text(safe(text))],
            },
            Op::EndTextSection,
        ]);
    }

    fn line(&mut self, text: &str, size: f32, bold: bool) {
        let height = size * 0.3528 * 1.45;
        self.need(height);
        self.y -= height;
        self.text_at(MARGIN, text, size, bold);
    }

    fn heading(&mut self, text: &str) {
        self.need(14.0);
        self.y -= 4.0;
        self.line(text, 13.0, true);
        let y = self.y - 1.5;
        self.ops().extend([
            Op::SetOutlineColor {
                col: Color::Rgb(Rgb {
                    r: 0.6,
                    g: 0.6,
                    b: 0.6,
                    icc_profile: None,
                }),
            },
            Op::SetOutlineThickness { pt: Pt(0.5) },
            Op::DrawLine {
                line: Line {
                    points: vec![
                        LinePoint {
                            p: Point::new(Mm(MARGIN), Mm(y)),
                            bezier: false,
                        },
                        LinePoint {
                            p: Point::new(Mm(PAGE_W - MARGIN), Mm(y)),
                            bezier: false,
                        },
                    ],
                    is_closed: false,
                },
            },
        ]);
        self.y -= 2.0;
    }

    /// A table: `widths` in mm, the header bold, each cell cut to its column.
    fn table(&mut self, widths: &[f32], header: &[&str], rows: &[Vec<String>]) {
        let size = 8.5;
        let height = size * 0.3528 * 1.5;
        let row = |layout: &mut Layout, cells: &[String], bold: bool| {
            layout.need(height);
            layout.y -= height;
            let mut x = MARGIN;
            for (cell, w) in cells.iter().zip(widths) {
                let chars = (*w / 1.75).max(3.0) as usize;
                layout.text_at(x, &fit(cell, chars), size, bold);
                x += w;
            }
        };
        let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
        row(self, &header, true);
        for cells in rows {
            row(self, cells, false);
        }
    }
}

/// The report as PDF bytes.
pub fn render(report: &MonthlyReport) -> Vec<u8> {
    let title = if report.school_name.is_empty() {
        format!("ICT service levels: {}", report.title)
    } else {
        format!(
            "{}: ICT service levels, {}",
            report.school_name, report.title
        )
    };
    let mut l = Layout::new();
    l.line(&title, 17.0, true);
    // Two short lines: one long one ran off the page's right edge.
    l.line(
        &format!(
            "{} to {}. Availability within school hours; response and resolution on the {} clock.",
            report.first_day, report.last_day, report.clock
        ),
        8.5,
        false,
    );
    l.line(
        &format!("Time on hold not counted. Made {}.", report.generated),
        8.5,
        false,
    );
    l.line(
        &format!(
            "Incidents opened: {}   Incidents resolved: {}",
            report.opened, report.resolved
        ),
        10.0,
        false,
    );

    l.heading("Availability by service");
    let rows: Vec<Vec<String>> = report
        .services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.members.to_string(),
                s.availability_text.clone(),
                s.target_text.clone(),
                s.verdict.clone(),
                s.down_text.clone(),
                s.opened.to_string(),
                s.resolved.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        l.line(
            "No services are configured ([[service]] in the config).",
            9.0,
            false,
        );
    } else {
        l.table(
            &[46.0, 16.0, 22.0, 20.0, 16.0, 20.0, 16.0, 18.0],
            &[
                "Service", "Devices", "Achieved", "Target", "Verdict", "Down", "Opened", "Resolved",
            ],
            &rows,
        );
    }

    l.heading("Response and resolution by priority");
    let rows: Vec<Vec<String>> = report
        .priorities
        .iter()
        .map(|p| {
            vec![
                p.priority.clone(),
                p.opened.to_string(),
                p.resolved.to_string(),
                p.response_target.clone(),
                p.response_within.clone(),
                p.response_median.clone(),
                p.resolution_target.clone(),
                p.resolution_within.clone(),
                p.resolution_median.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        l.line("No incidents this month.", 9.0, false);
    } else {
        l.table(
            &[10.0, 14.0, 16.0, 16.0, 28.0, 16.0, 16.0, 28.0, 16.0],
            &[
                "",
                "Opened",
                "Resolved",
                "Response",
                "Within target",
                "Median",
                "Resolve",
                "Within target",
                "Median",
            ],
            &rows,
        );
    }

    l.heading("Top problems");
    if report.problems.is_empty() {
        l.line("None.", 9.0, false);
    } else {
        let rows: Vec<Vec<String>> = report
            .problems
            .iter()
            .map(|p| {
                vec![
                    p.what.clone(),
                    p.incidents.to_string(),
                    p.assets.to_string(),
                ]
            })
            .collect();
        l.table(
            &[120.0, 25.0, 25.0],
            &["Problem", "Incidents", "Devices"],
            &rows,
        );
    }

    l.heading("Capacity outlook");
    if report.capacity.is_empty() {
        l.line("No disk or supply is forecast to run out.", 9.0, false);
    } else {
        let rows: Vec<Vec<String>> = report
            .capacity
            .iter()
            .map(|c| vec![c.asset.clone(), c.what.clone(), c.outlook.clone()])
            .collect();
        l.table(&[60.0, 60.0, 50.0], &["Device", "What", "Outlook"], &rows);
    }

    l.heading(&format!(
        "Warranties ending next term ({})",
        report.warranty_window
    ));
    if report.warranties.is_empty() {
        l.line("None.", 9.0, false);
    } else {
        let rows: Vec<Vec<String>> = report
            .warranties
            .iter()
            .map(|w| {
                vec![
                    w.asset.clone(),
                    w.tag.clone(),
                    w.room.clone(),
                    w.warranty_end.clone(),
                ]
            })
            .collect();
        l.table(
            &[60.0, 35.0, 35.0, 40.0],
            &["Device", "Tag", "Room", "Warranty ends"],
            &rows,
        );
    }

    let mut doc = PdfDocument::new(&safe(&title));
    let pages = l
        .pages
        .into_iter()
        .map(|ops| PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops))
        .collect();
    doc.with_pages(pages);
    let mut warnings = Vec::new();
    doc.save(&PdfSaveOptions::default(), &mut warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshowable_characters_become_ascii() {
        assert_eq!(safe("24×7 – ok"), "24x7 - ok");
        assert_eq!(safe("Bücherei"), "B?cherei");
        assert_eq!(fit("a long device name", 10), "a long ...");
    }
}
