//! The invoice document: an A4 PDF, rendered once at closing and stored with the invoice.
//!
//! The text is set in DejaVu Sans, embedded as a subset (the text stays extractable, e.g.
//! by `pdftotext`), and the output depends on the invoice alone (no timestamps, ids derived
//! from the content): the same invoice renders to the same bytes. An invoice that does not
//! show rates (a managed account's) prints quantities and amounts only.

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};
use skrifa::MetadataProvider;

use super::statement::{Line, Statement};
use super::{Category, Invoice, InvoiceError, invoice_number_text, product_name};
use crate::billing::CURRENCY;
use crate::money::Money;
use crate::pricing::Product;

/// A4 width in points.
const PAGE_WIDTH_PT: f32 = 595.276;
/// A4 height in points.
const PAGE_HEIGHT_PT: f32 = 841.89;
/// Left and right margin.
const MARGIN_PT: f32 = 50.0;
/// Where the first line of a page sits.
const TOP_PT: f32 = 60.0;
/// Lowest baseline of the body: below it the footer.
const BOTTOM_PT: f32 = PAGE_HEIGHT_PT - 70.0;
/// Body text size.
const TEXT_PT: f32 = 9.5;
/// Distance between two body lines.
const LINE_PT: f32 = 14.0;
/// Longest description printed on one line, in characters; longer ones are cut with `…`.
const DESCRIPTION_CHARS_MAX: usize = 60;
/// Longest name printed on one line, in characters.
const NAME_CHARS_MAX: usize = 70;

const RIGHT_PT: f32 = PAGE_WIDTH_PT - MARGIN_PT;
const QUANTITY_RIGHT_PT: f32 = 370.0;
const RATE_RIGHT_PT: f32 = 460.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        align: Align,
        text: String,
    },
    Rule {
        y: f32,
    },
}

/// Lays text out in pages; rendering comes after, when the page count is known.
struct Layout {
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Self {
            pages: vec![Vec::new()],
            y: TOP_PT,
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(page) = self.pages.last_mut() {
            page.push(op);
        }
    }

    /// Starts a new page if `height` does not fit on this one.
    fn ensure(&mut self, height: f32) {
        if self.y + height > BOTTOM_PT {
            self.pages.push(Vec::new());
            self.y = TOP_PT;
        }
    }

    fn text(&mut self, x: f32, size: f32, bold: bool, align: Align, text: impl Into<String>) {
        let y = self.y;
        self.push(Op::Text {
            x,
            y,
            size,
            bold,
            align,
            text: text.into(),
        });
    }

    /// One line of cells; the first is left-aligned at the margin, the others right-aligned
    /// at their x.
    fn row(&mut self, bold: bool, first: &str, cells: &[(f32, String)]) {
        self.ensure(LINE_PT);
        self.text(MARGIN_PT, TEXT_PT, bold, Align::Left, first);
        for (x, cell) in cells {
            self.text(*x, TEXT_PT, bold, Align::Right, cell.clone());
        }
        self.y += LINE_PT;
    }

    fn heading(&mut self, text: &str) {
        self.ensure(LINE_PT * 3.0);
        self.y += LINE_PT * 0.6;
        self.text(MARGIN_PT, 12.0, true, Align::Left, text);
        self.y += LINE_PT * 0.5;
        let y = self.y;
        self.push(Op::Rule { y });
        self.y += LINE_PT;
    }

    fn note(&mut self, text: &str) {
        self.row(false, text, &[]);
    }
}

/// Renders `invoice` as PDF bytes.
pub fn render(invoice: &Invoice) -> Result<Vec<u8>, InvoiceError> {
    let layout = lay_out(invoice);
    let fail = |what: &str| InvoiceError::Render(what.to_owned());
    let regular = Font::new(dejavu::sans::regular().into(), 0).ok_or_else(|| fail("font"))?;
    let bold = Font::new(dejavu::sans::bold().into(), 0).ok_or_else(|| fail("bold font"))?;
    let mut document = Document::new();
    let number = invoice_number_text(invoice.number);
    document.set_metadata(
        Metadata::new()
            .title(format!("Invoice {number}"))
            .creator(invoice.platform_name.clone()),
    );
    let page_count = layout.pages.len();
    let footer = format!(
        "{} · Invoice {number} · Amounts in {CURRENCY}, rounded to the cent; totals are computed from exact amounts.",
        truncate(&invoice.platform_name, 40)
    );
    for (index, ops) in layout.pages.iter().enumerate() {
        let settings =
            PageSettings::from_wh(PAGE_WIDTH_PT, PAGE_HEIGHT_PT).ok_or_else(|| fail("page"))?;
        let mut page = document.start_page_with(settings);
        let mut surface = page.surface();
        surface.set_fill(Some(Fill::default()));
        let page_text = format!("Page {} of {page_count}", index + 1);
        let footer_ops = [
            Op::Text {
                x: MARGIN_PT,
                y: PAGE_HEIGHT_PT - 40.0,
                size: 7.0,
                bold: false,
                align: Align::Left,
                text: footer.clone(),
            },
            Op::Text {
                x: RIGHT_PT,
                y: PAGE_HEIGHT_PT - 28.0,
                size: 7.0,
                bold: false,
                align: Align::Right,
                text: page_text,
            },
        ];
        for op in ops.iter().chain(footer_ops.iter()) {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    bold: is_bold,
                    align,
                    text,
                } => {
                    let (font, bytes) = if *is_bold {
                        (bold.clone(), dejavu::sans::bold())
                    } else {
                        (regular.clone(), dejavu::sans::regular())
                    };
                    let x = match align {
                        Align::Left => *x,
                        Align::Right => *x - width(bytes, *size, text),
                    };
                    surface.draw_text(
                        Point::from_xy(x, *y),
                        font,
                        *size,
                        text,
                        false,
                        TextDirection::Auto,
                    );
                }
                Op::Rule { y } => {
                    let mut path = PathBuilder::new();
                    path.move_to(MARGIN_PT, *y);
                    path.line_to(RIGHT_PT, *y);
                    if let Some(path) = path.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke {
                            paint: rgb::Color::new(120, 120, 120).into(),
                            width: 0.6,
                            ..Default::default()
                        }));
                        surface.draw_path(&path);
                        surface.set_stroke(None);
                        surface.set_fill(Some(Fill::default()));
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    document
        .finish()
        .map_err(|e| InvoiceError::Render(format!("{e:?}")))
}

/// Advance width of `text` in points, to right-align amounts.
fn width(font: &[u8], size: f32, text: &str) -> f32 {
    let Ok(font) = skrifa::FontRef::new(font) else {
        return 0.0;
    };
    let charmap = font.charmap();
    let metrics = font.glyph_metrics(
        skrifa::instance::Size::new(size),
        skrifa::instance::LocationRef::default(),
    );
    text.chars()
        .filter_map(|c| charmap.map(c))
        .filter_map(|glyph| metrics.advance_width(glyph))
        .sum()
}

fn lay_out(invoice: &Invoice) -> Layout {
    let mut layout = Layout::new();
    header(&mut layout, invoice);
    summary(&mut layout, &invoice.statement);
    usage(&mut layout, &invoice.statement);
    money(&mut layout, &invoice.statement);
    sections(&mut layout, &invoice.statement);
    layout
}

fn header(layout: &mut Layout, invoice: &Invoice) {
    let statement = &invoice.statement;
    layout.text(
        MARGIN_PT,
        18.0,
        true,
        Align::Left,
        truncate(&invoice.platform_name, 40),
    );
    layout.text(RIGHT_PT, 18.0, true, Align::Right, "Invoice");
    layout.y += LINE_PT * 2.2;
    let issued = crate::clock::from_epoch_ms(invoice.created_at_ms)
        .format("%Y-%m-%d")
        .to_string();
    let right = [
        format!("Invoice number: {}", invoice_number_text(invoice.number)),
        format!(
            "Period: {} to {}",
            statement.period.first_day(),
            statement.period.last_day()
        ),
        format!("Issued: {issued}"),
        format!("Currency: {CURRENCY}"),
    ];
    let left = [
        "Billed to".to_owned(),
        truncate(&statement.payer.business_name, 45),
        truncate(&statement.payer.email, 45),
        format!("Account ID: {}", statement.payer.id),
    ];
    for (n, (l, r)) in left.iter().zip(right.iter()).enumerate() {
        layout.text(MARGIN_PT, TEXT_PT, n == 0, Align::Left, l.clone());
        layout.text(RIGHT_PT, TEXT_PT, false, Align::Right, r.clone());
        layout.y += LINE_PT;
    }
}

fn amount(money: Money) -> String {
    money.to_decimal_string(2)
}

/// A usage line's charge: the opposite of its balance movement.
fn charge(line_amount: Money) -> Money {
    Money::ZERO.checked_sub(line_amount).unwrap_or_default()
}

fn summary(layout: &mut Layout, statement: &Statement) {
    let totals = &statement.totals;
    layout.heading(&format!("Summary for {}", statement.period.long_name()));
    layout.row(
        false,
        "Opening balance",
        &[(RIGHT_PT, amount(totals.opening))],
    );
    for category in Category::ALL {
        let movement = totals.of(category);
        if category == Category::Other && movement == Money::ZERO {
            continue;
        }
        layout.row(false, category.title(), &[(RIGHT_PT, amount(movement))]);
    }
    layout.row(
        true,
        "Closing balance",
        &[(RIGHT_PT, amount(totals.closing()))],
    );
    let due = totals.amount_due();
    let due_text = if due == Money::ZERO {
        "Nothing due".to_owned()
    } else {
        amount(due)
    };
    layout.row(true, "Amount due", &[(RIGHT_PT, due_text)]);
}

fn quantity_text(product: Product, line: &Line, shows_rates: bool) -> String {
    if product.is_voice() {
        // Billed seconds reveal the billing increments: only where rates may be shown.
        let seconds = if shows_rates {
            line.billable_quantity
        } else {
            line.quantity
        };
        let hundredths = (i128::from(seconds) * 100 + 30) / 60;
        format!(
            "{}, {}.{:02} min",
            counted(line.event_count, "call"),
            hundredths / 100,
            hundredths % 100
        )
    } else if product.is_messaging() {
        format!(
            "{}, {}",
            counted(line.event_count, "message"),
            counted(line.quantity, "part")
        )
    } else {
        counted(line.quantity, "number-month")
    }
}

/// `1 call`, `2 calls`.
fn counted(count: i64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn rate_text(product: Product, rate_nanos: i64) -> String {
    let full = Money::from_nanos(rate_nanos).to_decimal_string(9);
    let (whole, fraction) = full.split_once('.').unwrap_or((&full, ""));
    let mut fraction = fraction.trim_end_matches('0').to_owned();
    while fraction.len() < 2 {
        fraction.push('0');
    }
    let unit = if product.is_voice() {
        "min"
    } else if product.is_messaging() {
        "part"
    } else {
        "month"
    };
    format!("{whole}.{fraction} / {unit}")
}

fn usage_row(layout: &mut Layout, line: &Line, shows_rates: bool) {
    let Some(product) = line.product else {
        return;
    };
    let name = match line.usage_month {
        Some(month) => format!("{} (used in {})", product_name(product), month.long_name()),
        None => product_name(product).to_owned(),
    };
    let mut cells = vec![(QUANTITY_RIGHT_PT, quantity_text(product, line, shows_rates))];
    if let Some(rate) = line.rate_nanos.filter(|_| shows_rates) {
        cells.push((RATE_RIGHT_PT, rate_text(product, rate)));
    }
    cells.push((RIGHT_PT, amount(charge(line.amount))));
    layout.row(false, &name, &cells);
}

fn usage_header(layout: &mut Layout, shows_rates: bool) {
    let mut cells = vec![(QUANTITY_RIGHT_PT, "Quantity".to_owned())];
    if shows_rates {
        cells.push((RATE_RIGHT_PT, "Rate".to_owned()));
    }
    cells.push((RIGHT_PT, "Charge".to_owned()));
    layout.row(true, "Product", &cells);
}

fn usage(layout: &mut Layout, statement: &Statement) {
    let own: Vec<&Line> = statement
        .lines
        .iter()
        .filter(|l| l.category == Category::Usage && l.section.is_none())
        .collect();
    layout.heading("Usage");
    if own.is_empty() {
        layout.note("No usage of this account was charged in this period.");
        return;
    }
    usage_header(layout, statement.shows_rates);
    for line in own.iter().filter(|l| l.usage_month.is_none()) {
        usage_row(layout, line, statement.shows_rates);
    }
    let late: Vec<&&Line> = own.iter().filter(|l| l.usage_month.is_some()).collect();
    if !late.is_empty() {
        layout.row(
            true,
            "Late usage: charged in this period for an earlier month",
            &[],
        );
        for line in late {
            usage_row(layout, line, statement.shows_rates);
        }
    }
    layout.row(
        true,
        "Total usage of this account",
        &[(RIGHT_PT, amount(charge(statement.usage_of(None))))],
    );
}

fn money(layout: &mut Layout, statement: &Statement) {
    let lines: Vec<&Line> = statement
        .lines
        .iter()
        .filter(|l| l.entry.is_some())
        .collect();
    if lines.is_empty() {
        return;
    }
    layout.heading("Credits, adjustments and payments");
    layout.row(true, "Date", &[(RIGHT_PT, "Balance change".to_owned())]);
    for line in lines {
        let Some(entry) = &line.entry else {
            continue;
        };
        let date = crate::clock::from_epoch_ms(entry.posted_at_ms)
            .format("%Y-%m-%d")
            .to_string();
        let what = match entry.kind.as_str() {
            "card_refund" | "refund" => "Card refund",
            "card_payment" | "payment" => "Card payment",
            _ => line.category.title().trim_end_matches('s'),
        };
        let text = match entry
            .description
            .as_deref()
            .filter(|d| !d.trim().is_empty())
        {
            Some(reason) => format!(
                "{date}   {what}: {}",
                truncate(reason, DESCRIPTION_CHARS_MAX)
            ),
            None => format!("{date}   {what}"),
        };
        layout.row(false, &text, &[(RIGHT_PT, amount(line.amount))]);
    }
}

fn sections(layout: &mut Layout, statement: &Statement) {
    let sections = statement.sections();
    if sections.is_empty() {
        return;
    }
    layout.heading("Managed accounts with rollup billing (their usage is billed here)");
    for section in sections {
        layout.ensure(LINE_PT * 4.0);
        layout.row(true, &truncate(&section.name, NAME_CHARS_MAX), &[]);
        layout.row(false, &format!("Account ID: {}", section.account_id), &[]);
        for line in statement.lines.iter().filter(|l| {
            l.category == Category::Usage
                && l.section.as_ref().map(|s| s.account_id) == Some(section.account_id)
        }) {
            usage_row(layout, line, statement.shows_rates);
        }
        layout.row(
            true,
            &format!("Total for {}", truncate(&section.name, 50)),
            &[(
                RIGHT_PT,
                amount(charge(statement.usage_of(Some(section.account_id)))),
            )],
        );
        layout.y += LINE_PT * 0.5;
    }
}

fn truncate(text: &str, chars_max: usize) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.chars().count() <= chars_max {
        return clean;
    }
    let mut cut: String = clean.chars().take(chars_max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_print_without_trailing_zeros() {
        assert_eq!(rate_text(Product::VoiceOutbound, 10_000_000), "0.01 / min");
        assert_eq!(rate_text(Product::SmsOutbound, 4_500_000), "0.0045 / part");
        assert_eq!(
            rate_text(Product::NumberRental, 1_000_000_000),
            "1.00 / month"
        );
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("a\u{7}b", 4), "ab");
    }
}
