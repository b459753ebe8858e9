//! The report's summary as a PNG image, rendered in pure Rust with an embedded font.
//!
//! [`render`] draws a [`Summary`] on a fixed [`WIDTH`] x [`HEIGHT`] white canvas: the title and
//! subtitle, a chart of the endpoint counts per group (one horizontal stacked bar per client's
//! ring: patched, failed, held, excluded), and a panel with the 3.14.1 figures per objective
//! ([b] identify, [d] report, [f] correct).
//!
//! Everything runs inside a Lambda function: no browser, no system font, no C library. Text is
//! DejaVu Sans (`fonts/`, Bitstream Vera licence in `fonts/LICENSE-DejaVu.txt`), embedded in the
//! binary and rasterised with `ab_glyph`; bars are rectangles filled on whole pixels; the `png`
//! crate encodes the result. Glyph coverage is quantised to 8 bits before blending and every
//! geometry that depends on the counts is integer arithmetic, so the same summary always gives
//! the same bytes: the evidence store compares a retried write by its hash.
//!
//! Nothing here panics: pixel access is bounds-checked, counts are summed with saturation and in
//! `u128` where they are scaled, and labels too long for their place are cut with an ellipsis.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};

use crate::record::{Group, ObjectiveTally, Summary};

use patchflow_core::rules::outcome::Category;

/// The image's width in pixels.
pub const WIDTH: u32 = 1200;
/// The image's height in pixels, whatever the number of groups: the bars are scaled to fit.
pub const HEIGHT: u32 = 800;

/// Why the summary could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An embedded font could not be parsed.
    #[error("the embedded font {face} cannot be read")]
    Font {
        /// The face's name.
        face: &'static str,
    },
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Encode(#[from] ::png::EncodingError),
}

static REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
/// Headings, labels and figures.
const INK: Rgb = [31, 35, 40];
/// The subtitle and notes.
const MUTED: Rgb = [87, 96, 106];
/// Separators and the outline of an empty bar.
const RULE: Rgb = [216, 222, 228];
/// The bars' baseline.
const AXIS: Rgb = [140, 149, 159];
/// Patched endpoints, objectives met.
const GREEN: Rgb = [46, 160, 67];
/// Failed endpoints, objectives breached.
const RED: Rgb = [207, 34, 46];
/// Held endpoints, objectives still running.
const AMBER: Rgb = [245, 166, 35];
/// Excluded endpoints.
const GREY: Rgb = [148, 158, 170];
/// Endpoints patched after a retry.
const TEAL: Rgb = [17, 122, 101];
/// Up-to-date endpoints (nothing approved missing).
const BLUE: Rgb = [9, 105, 218];
/// Critical servers awaiting an engineer's approval.
const PURPLE: Rgb = [130, 80, 223];
/// Endpoints still in progress.
const SKY: Rgb = [140, 200, 250];

const W: i64 = WIDTH as i64;
const H: i64 = HEIGHT as i64;
const MARGIN: i64 = 32;

// The header.
const TITLE_BASELINE: i64 = 50;
const TITLE_SIZE: f32 = 30.0;
const SUBTITLE_BASELINE: i64 = 80;
const SUBTITLE_SIZE: f32 = 18.0;
const HEADER_RULE: i64 = 100;

// The chart of endpoint counts.
const CHART_HEADING_BASELINE: i64 = 136;
const HEADING_SIZE: f32 = 21.0;
const LEGEND_SIZE: f32 = 15.0;
/// Where the legend may start at the earliest, from the left margin (after the heading).
const LEGEND_ROOM_LEFT: f32 = 340.0;
const CHART_TOP: i64 = 152;
const CHART_BOTTOM: i64 = 548;
const LABEL_RIGHT: i64 = 252;
const BAR_LEFT: i64 = 264;
const BAR_LEN: i64 = 768;
/// Rows never get thicker than this, nor thinner than [`MIN_ROW`] (past that, the last row
/// says how many groups are left out).
const MAX_ROW: i64 = 64;
const MIN_ROW: i64 = 22;

// The 3.14.1 panel.
const SLA_RULE: i64 = 562;
const SLA_HEADING_BASELINE: i64 = 598;
const SLA_TOP: i64 = 612;
const SLA_BOTTOM: i64 = 788;
const SLA_BAR_LEFT: i64 = 700;
const SLA_BAR_LEN: i64 = W - MARGIN - SLA_BAR_LEFT;
const SLA_MAX_ROW: i64 = 56;

/// Renders `summary` as a PNG image of [`WIDTH`] x [`HEIGHT`] pixels (8-bit RGB).
///
/// # Errors
///
/// [`RenderError`] if an embedded font cannot be read or the PNG cannot be encoded; neither
/// depends on the summary.
pub fn render(summary: &Summary) -> Result<Vec<u8>, RenderError> {
    let fonts = Fonts {
        regular: FontRef::try_from_slice(REGULAR).map_err(|_| RenderError::Font {
            face: "DejaVu Sans",
        })?,
        bold: FontRef::try_from_slice(BOLD).map_err(|_| RenderError::Font {
            face: "DejaVu Sans Bold",
        })?,
    };
    let mut canvas = Canvas::new();
    draw_header(&mut canvas, &fonts, summary);
    draw_groups(&mut canvas, &fonts, &summary.groups);
    draw_sla(&mut canvas, &fonts, &summary.sla);
    canvas.encode(&counts_text(&summary.groups))
}

/// The PNG text chunk that carries the chart's counts as data.
pub const COUNTS_KEYWORD: &str = "patchflow-counts";

/// The bars' counts as JSON (`[{"label":..,"counts":{..}}]`), kept in the image's
/// [`COUNTS_KEYWORD`] text chunk so the figures the image draws can be read back and compared
/// with the record and `patchflow status`. Latin-1 only, as a PNG text chunk requires.
pub fn counts_text(groups: &[Group]) -> String {
    serde_json::to_string(groups)
        .unwrap_or_default()
        .chars()
        .map(|c| if u32::from(c) < 256 { c } else { '?' })
        .collect()
}

struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

fn draw_header(c: &mut Canvas, f: &Fonts, s: &Summary) {
    let width = (W - 2 * MARGIN) as f32;
    let title = Label::new(&f.bold, TITLE_SIZE, &s.title).fit(width);
    title.draw(c, MARGIN as f32, TITLE_BASELINE, INK);
    let subtitle = Label::new(&f.regular, SUBTITLE_SIZE, &s.subtitle).fit(width);
    subtitle.draw(c, MARGIN as f32, SUBTITLE_BASELINE, MUTED);
    c.fill_rect(MARGIN, HEADER_RULE, W - MARGIN, HEADER_RULE + 1, RULE);
}

/// A segment of a stacked bar: its count, its colour and the colour of the count written on it.
type Segment = (u64, Rgb, Rgb);

fn draw_groups(c: &mut Canvas, f: &Fonts, groups: &[Group]) {
    Label::new(&f.bold, HEADING_SIZE, "Endpoints per client and ring").draw(
        c,
        MARGIN as f32,
        CHART_HEADING_BASELINE,
        INK,
    );
    let legend: Vec<(&str, Rgb)> = Category::ALL
        .iter()
        .map(|cat| (legend_name(*cat), colour_of(*cat).0))
        .collect();
    draw_legend(c, f, &legend, CHART_HEADING_BASELINE);
    let area = CHART_BOTTOM - CHART_TOP;
    if groups.is_empty() {
        Label::new(&f.regular, 16.0, "No endpoint groups in this summary.").draw(
            c,
            BAR_LEFT as f32,
            CHART_TOP + 32,
            MUTED,
        );
        return;
    }
    let layout = Rows::new(groups.len(), area, MAX_ROW);
    let shown = groups.get(..layout.shown).unwrap_or(groups);
    let max = shown.iter().map(|g| total(&segments(g))).max().unwrap_or(0);
    let label_size = (layout.row as f32 * 0.48).clamp(11.0, 17.0);
    let bar_h = ((layout.row as f32 * 0.62).round() as i64).clamp(6, 34);
    let mut top = CHART_TOP;
    for g in shown {
        let mid = top + layout.row / 2;
        let baseline = mid + (label_size * 0.36).round() as i64;
        let label = Label::new(&f.regular, label_size, &g.label).fit((LABEL_RIGHT - MARGIN) as f32);
        label.draw(c, LABEL_RIGHT as f32 - label.width, baseline, INK);
        let bar_top = mid - bar_h / 2;
        let segs = segments(g);
        let end = draw_bar(
            c, f, BAR_LEFT, bar_top, bar_h, BAR_LEN, max, &segs, label_size,
        );
        let figure = Label::new(&f.bold, label_size, &total(&segs).to_string());
        let x = BAR_LEFT + end + 8;
        figure
            .fit((W - MARGIN - x) as f32)
            .draw(c, x as f32, baseline, INK);
        top += layout.row;
    }
    c.fill_rect(BAR_LEFT - 1, CHART_TOP, BAR_LEFT, top, AXIS);
    if layout.hidden > 0 {
        let more = format!("... and {} more group(s) not shown", layout.hidden);
        let baseline = top + layout.row / 2 + (label_size * 0.36).round() as i64;
        Label::new(&f.regular, label_size, &more)
            .fit((W - MARGIN - BAR_LEFT) as f32)
            .draw(c, BAR_LEFT as f32, baseline, MUTED);
    }
}

/// A category's bar colour and the colour of the count written on it.
fn colour_of(c: Category) -> (Rgb, Rgb) {
    match c {
        Category::Patched => (GREEN, WHITE),
        Category::PatchedAfterRetry => (TEAL, WHITE),
        Category::UpToDate => (BLUE, WHITE),
        Category::Failed => (RED, WHITE),
        Category::AwaitingApproval => (PURPLE, WHITE),
        Category::Held => (AMBER, INK),
        Category::InProgress => (SKY, INK),
        Category::Excluded => (GREY, INK),
    }
}

/// A category's name in the legend (short: the legend shares a line with the heading).
fn legend_name(c: Category) -> &'static str {
    match c {
        Category::PatchedAfterRetry => "After retry",
        Category::AwaitingApproval => "Awaiting",
        other => match other.label() {
            "patched" => "Patched",
            "up to date" => "Up to date",
            "failed" => "Failed",
            "held" => "Held",
            "in progress" => "In progress",
            _ => "Excluded",
        },
    }
}

fn segments(g: &Group) -> Vec<Segment> {
    Category::ALL
        .iter()
        .map(|cat| {
            let (bar, text) = colour_of(*cat);
            (g.counts.get(*cat), bar, text)
        })
        .collect()
}

fn total(segs: &[Segment]) -> u64 {
    segs.iter().fold(0u64, |t, s| t.saturating_add(s.0))
}

/// How many rows of a list fit in `area` pixels, and how thick they are.
struct Rows {
    /// Items drawn.
    shown: usize,
    /// Items left out (a last row says how many).
    hidden: usize,
    /// Row thickness in pixels.
    row: i64,
}

impl Rows {
    fn new(items: usize, area: i64, max_row: i64) -> Self {
        let capacity = usize::try_from(area / MIN_ROW).unwrap_or(1).max(1);
        let (shown, hidden) = if items > capacity {
            let shown = capacity.saturating_sub(1);
            (shown, items - shown)
        } else {
            (items, 0)
        };
        let rows = i64::try_from(shown + usize::from(hidden > 0))
            .unwrap_or(1)
            .max(1);
        Self {
            shown,
            hidden,
            row: (area / rows).min(max_row),
        }
    }
}

/// Draws a stacked bar whose full `len` stands for `max`, writing each count on its segment where
/// it fits. Returns where the bar ends, relative to `x`. A bar of zero draws nothing and ends at 0.
#[allow(clippy::too_many_arguments)]
fn draw_bar(
    c: &mut Canvas,
    f: &Fonts,
    x: i64,
    top: i64,
    h: i64,
    len: i64,
    max: u64,
    segs: &[Segment],
    text_size: f32,
) -> i64 {
    let size = text_size.min(h as f32 * 0.72).max(9.0);
    let baseline = top + h / 2 + (size * 0.36).round() as i64;
    let mut end = 0i64;
    let mut sum = 0u64;
    for &(count, colour, text) in segs {
        if count == 0 {
            continue;
        }
        sum = sum.saturating_add(count);
        // Every non-empty segment stays visible, at least 2 px wide.
        let next = scale(sum, max, len).max(end + 2);
        c.fill_rect(x + end, top, x + next, top + h, colour);
        let figure = Label::new(&f.regular, size, &count.to_string());
        let room = (next - end) as f32;
        if figure.width + 8.0 <= room {
            let left = (x + end) as f32 + (room - figure.width) / 2.0;
            figure.draw(c, left.round(), baseline, text);
        }
        end = next;
    }
    end
}

/// `value / max` of `len` pixels, rounded down; 0 when `max` is 0.
fn scale(value: u64, max: u64, len: i64) -> i64 {
    if max == 0 {
        return 0;
    }
    let len = u128::try_from(len.max(0)).unwrap_or(0);
    let px = u128::from(value.min(max)) * len / u128::from(max);
    i64::try_from(px).unwrap_or(0)
}

fn draw_legend(c: &mut Canvas, f: &Fonts, items: &[(&str, Rgb)], baseline: i64) {
    const SWATCH: i64 = 14;
    const GAP: f32 = 6.0;
    const SPACING: f32 = 18.0;
    // The legend shares its line with the chart's heading: it keeps to the room right of it,
    // in a smaller size when every category does not fit at the usual one.
    let room = (W - 2 * MARGIN) as f32 - LEGEND_ROOM_LEFT;
    let lay = |size: f32| {
        let labels: Vec<(Label, Rgb)> = items
            .iter()
            .map(|(name, colour)| (Label::new(&f.regular, size, name), *colour))
            .collect();
        let width: f32 = labels
            .iter()
            .map(|(l, _)| SWATCH as f32 + GAP + l.width + SPACING)
            .sum::<f32>()
            - SPACING;
        (labels, width)
    };
    let (mut labels, mut width) = lay(LEGEND_SIZE);
    if width > room {
        let fixed = items.len() as f32 * (SWATCH as f32 + GAP + SPACING) - SPACING;
        let text = (width - fixed).max(1.0);
        let size = (LEGEND_SIZE * (room - fixed).max(0.0) / text).clamp(9.0, LEGEND_SIZE);
        (labels, width) = lay(size.floor());
    }
    let mut x = ((W - MARGIN) as f32 - width).round();
    for (label, colour) in &labels {
        let left = x as i64;
        c.fill_rect(
            left,
            baseline - SWATCH + 1,
            left + SWATCH,
            baseline + 1,
            *colour,
        );
        x += SWATCH as f32 + GAP;
        label.draw(c, x, baseline, INK);
        x = (x + label.width + SPACING).round();
    }
}

fn draw_sla(c: &mut Canvas, f: &Fonts, tallies: &[ObjectiveTally]) {
    c.fill_rect(MARGIN, SLA_RULE, W - MARGIN, SLA_RULE + 1, RULE);
    Label::new(&f.bold, HEADING_SIZE, "NIST SP 800-171 3.14.1").draw(
        c,
        MARGIN as f32,
        SLA_HEADING_BASELINE,
        INK,
    );
    draw_legend(
        c,
        f,
        &[("Met", GREEN), ("Breached", RED), ("Running", AMBER)],
        SLA_HEADING_BASELINE,
    );
    let area = SLA_BOTTOM - SLA_TOP;
    if tallies.is_empty() {
        Label::new(&f.regular, 16.0, "No 3.14.1 figures in this summary.").draw(
            c,
            MARGIN as f32,
            SLA_TOP + 32,
            MUTED,
        );
        return;
    }
    let layout = Rows::new(tallies.len(), area, SLA_MAX_ROW);
    let size = (layout.row as f32 * 0.34).clamp(11.0, 17.0);
    let bar_h = ((layout.row as f32 * 0.5).round() as i64).clamp(6, 26);
    let text_right = SLA_BAR_LEFT - 16;
    let mut top = SLA_TOP;
    for t in tallies.iter().take(layout.shown) {
        let mid = top + layout.row / 2;
        let baseline = mid + (size * 0.36).round() as i64;
        let name = Label::new(&f.bold, size, &objective_name(t)).fit(220.0);
        name.draw(c, MARGIN as f32, baseline, INK);
        let x = MARGIN as f32 + name.width;
        Label::new(&f.regular, size, &objective_figures(t))
            .fit(text_right as f32 - x)
            .draw(c, x, baseline, INK);
        let segs: [Segment; 3] = [
            (t.met, GREEN, WHITE),
            (t.breached, RED, WHITE),
            (t.running, AMBER, INK),
        ];
        let bar_top = mid - bar_h / 2;
        let sum = total(&segs);
        if sum == 0 {
            c.outline_rect(
                SLA_BAR_LEFT,
                bar_top,
                SLA_BAR_LEFT + SLA_BAR_LEN,
                bar_top + bar_h,
                RULE,
            );
            Label::new(&f.regular, size.min(bar_h as f32 * 0.72), "no flaws").draw(
                c,
                (SLA_BAR_LEFT + 8) as f32,
                bar_top + bar_h / 2 + (size * 0.3).round() as i64,
                MUTED,
            );
        } else {
            draw_bar(
                c,
                f,
                SLA_BAR_LEFT,
                bar_top,
                bar_h,
                SLA_BAR_LEN,
                sum,
                &segs,
                size,
            );
        }
        top += layout.row;
    }
    if layout.hidden > 0 {
        let more = format!("... and {} more objective(s) not shown", layout.hidden);
        Label::new(&f.regular, size, &more).draw(
            c,
            MARGIN as f32,
            top + layout.row / 2 + (size * 0.36).round() as i64,
            MUTED,
        );
    }
}

/// `[b] Identify`.
fn objective_name(t: &ObjectiveTally) -> String {
    let mut chars = t.objective.chars();
    let name: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if t.letter.is_empty() {
        name
    } else {
        format!("[{}] {}", t.letter, name)
    }
}

/// `: 120 met, 0 breached, 3 running (97.6% met)`.
fn objective_figures(t: &ObjectiveTally) -> String {
    let share = percent_met(t).map_or_else(
        || "none decided".to_owned(),
        |p| format!("{p} met of decided"),
    );
    format!(
        ": {} met, {} breached, {} running ({share})",
        t.met, t.breached, t.running
    )
}

/// The share of flaws met, of all flaws (met, breached and running), to one decimal, rounded half
/// up: `97.6%`. `None` when there are none.
fn percent_met(t: &ObjectiveTally) -> Option<String> {
    t.percent_met().map(|p| format!("{p}%"))
}

/// A line of text laid out in one face and size.
struct Label<'f> {
    font: &'f FontRef<'static>,
    scale: PxScale,
    /// Each glyph with its pen position from the start of the line.
    glyphs: Vec<(GlyphId, f32)>,
    /// The advance of the whole line.
    width: f32,
    text: String,
}

impl<'f> Label<'f> {
    /// Lays `text` out; control characters (a line break in a label) become spaces.
    fn new(font: &'f FontRef<'static>, size: f32, text: &str) -> Self {
        let text: String = text
            .chars()
            .map(|ch| if ch.is_control() { ' ' } else { ch })
            .collect();
        let scale = PxScale::from(size);
        let scaled = font.as_scaled(scale);
        let mut glyphs = Vec::with_capacity(text.len());
        let mut pen = 0.0f32;
        let mut previous: Option<GlyphId> = None;
        for ch in text.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = previous {
                pen += scaled.kern(p, id);
            }
            glyphs.push((id, pen));
            pen += scaled.h_advance(id);
            previous = Some(id);
        }
        Self {
            font,
            scale,
            glyphs,
            width: pen,
            text,
        }
    }

    /// This line, or its longest prefix that fits in `max` pixels followed by an ellipsis.
    fn fit(self, max: f32) -> Self {
        if self.width <= max {
            return self;
        }
        const ELLIPSIS: char = '\u{2026}';
        let scaled = self.font.as_scaled(self.scale);
        let room = max - scaled.h_advance(scaled.glyph_id(ELLIPSIS));
        // The glyphs map one to one to the text's chars: keep those ending within the room.
        let keep = self
            .glyphs
            .iter()
            .skip(1)
            .map(|(_, x)| *x)
            .chain(std::iter::once(self.width))
            .take_while(|end| *end <= room)
            .count();
        if room < 0.0 {
            return Self::new(self.font, self.scale.y, "");
        }
        let mut cut: String = self.text.chars().take(keep).collect();
        cut.truncate(cut.trim_end().len());
        cut.push(ELLIPSIS);
        Self::new(self.font, self.scale.y, &cut)
    }

    /// Draws the line with its pen starting at `x` on the `baseline`. Pixels off the canvas are
    /// skipped.
    fn draw(&self, c: &mut Canvas, x: f32, baseline: i64, colour: Rgb) {
        let x = x.round();
        for &(id, pen) in &self.glyphs {
            let glyph = id.with_scale_and_position(self.scale, point(x + pen, baseline as f32));
            if let Some(outlined) = self.font.outline_glyph(glyph) {
                let bounds = outlined.px_bounds();
                let (left, top) = (bounds.min.x as i64, bounds.min.y as i64);
                outlined.draw(|gx, gy, coverage| {
                    c.blend(left + i64::from(gx), top + i64::from(gy), colour, coverage);
                });
            }
        }
    }
}

/// The image being drawn: 8-bit RGB, row by row.
struct Canvas {
    data: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self {
            data: WHITE.repeat((WIDTH * HEIGHT) as usize),
        }
    }

    /// Fills `[x0, x1) x [y0, y1)`, clipped to the canvas.
    fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb) {
        let (x0, x1) = (x0.clamp(0, W), x1.clamp(0, W));
        let (y0, y1) = (y0.clamp(0, H), y1.clamp(0, H));
        if x0 >= x1 {
            return;
        }
        for y in y0..y1 {
            let start = ((y * W + x0) * 3) as usize;
            let end = ((y * W + x1) * 3) as usize;
            if let Some(row) = self.data.get_mut(start..end) {
                for px in row.chunks_exact_mut(3) {
                    px.copy_from_slice(&colour);
                }
            }
        }
    }

    /// A 1-pixel frame inside `[x0, x1) x [y0, y1)`.
    fn outline_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb) {
        self.fill_rect(x0, y0, x1, y0 + 1, colour);
        self.fill_rect(x0, y1 - 1, x1, y1, colour);
        self.fill_rect(x0, y0, x0 + 1, y1, colour);
        self.fill_rect(x1 - 1, y0, x1, y1, colour);
    }

    /// Blends `colour` over the pixel at `coverage` (0 to 1, quantised to 8 bits).
    fn blend(&mut self, x: i64, y: i64, colour: Rgb, coverage: f32) {
        if !(0..W).contains(&x) || !(0..H).contains(&y) {
            return;
        }
        let alpha = (coverage.clamp(0.0, 1.0) * 255.0).round() as u32;
        if alpha == 0 {
            return;
        }
        let start = ((y * W + x) * 3) as usize;
        if let Some(px) = self.data.get_mut(start..start + 3) {
            for (dst, src) in px.iter_mut().zip(colour) {
                let mixed = (u32::from(src) * alpha + u32::from(*dst) * (255 - alpha) + 127) / 255;
                *dst = u8::try_from(mixed).unwrap_or(u8::MAX);
            }
        }
    }

    fn encode(&self, counts: &str) -> Result<Vec<u8>, RenderError> {
        let mut out = Vec::new();
        let mut encoder = ::png::Encoder::new(&mut out, WIDTH, HEIGHT);
        encoder.add_text_chunk(COUNTS_KEYWORD.to_owned(), counts.to_owned())?;
        encoder.set_color(::png::ColorType::Rgb);
        encoder.set_depth(::png::BitDepth::Eight);
        encoder.set_compression(::png::Compression::Balanced);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.data)?;
        writer.finish()?;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::record::Counts;

    fn tally(
        objective: &str,
        letter: &str,
        met: u64,
        breached: u64,
        running: u64,
    ) -> ObjectiveTally {
        ObjectiveTally {
            objective: objective.to_owned(),
            letter: letter.to_owned(),
            met,
            breached,
            running,
        }
    }

    fn group(label: &str, patched: u64, failed: u64, held: u64, excluded: u64) -> Group {
        Group {
            label: label.to_owned(),
            counts: Counts {
                patched,
                failed,
                held,
                excluded,
                ..Counts::default()
            },
        }
    }

    fn summary(groups: Vec<Group>) -> Summary {
        Summary {
            title: "Patch compliance 2025-06 - acme".to_owned(),
            subtitle: "Cycle roll-up: 2 tier(s), closed 2025-06-20T10:00:00Z".to_owned(),
            groups,
            sla: vec![
                tally("identify", "b", 120, 0, 3),
                tally("report", "d", 100, 2, 21),
                tally("correct", "f", 80, 5, 38),
            ],
        }
    }

    fn typical() -> Summary {
        summary(vec![
            group("server pilot", 12, 1, 2, 1),
            group("server production", 40, 3, 5, 2),
            group("workstation pilot", 25, 0, 4, 6),
        ])
    }

    /// The decoded image: width, height and RGB pixels.
    struct Image {
        width: u32,
        height: u32,
        pixels: Vec<u8>,
    }

    impl Image {
        fn decode(bytes: &[u8]) -> Self {
            let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes));
            let mut reader = decoder.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert_eq!(info.color_type, ::png::ColorType::Rgb);
            assert_eq!(info.bit_depth, ::png::BitDepth::Eight);
            buf.truncate(info.buffer_size());
            Self {
                width: info.width,
                height: info.height,
                pixels: buf,
            }
        }

        fn at(&self, x: i64, y: i64) -> Rgb {
            let i = ((y * i64::from(self.width) + x) * 3) as usize;
            [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
        }

        /// Pixels of exactly `colour` in `[x0, x1) x [y0, y1)`.
        fn count(&self, colour: Rgb, x0: i64, y0: i64, x1: i64, y1: i64) -> usize {
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| self.at(x, y) == colour)
                .count()
        }
    }

    fn image(s: &Summary) -> Image {
        Image::decode(&render(s).unwrap())
    }

    #[test]
    fn decodes_to_the_fixed_size() {
        for s in [typical(), summary(Vec::new())] {
            let img = image(&s);
            assert_eq!((img.width, img.height), (WIDTH, HEIGHT));
            assert_eq!(img.pixels.len(), (WIDTH * HEIGHT * 3) as usize);
        }
    }

    #[test]
    fn is_not_blank() {
        let img = image(&typical());
        let drawn = img.pixels.chunks_exact(3).filter(|p| *p != WHITE).count();
        let share = drawn as f64 / f64::from(WIDTH * HEIGHT);
        assert!(
            share > 0.05,
            "only {:.1}% of the pixels are drawn",
            share * 100.0
        );
        assert_eq!(img.at(0, 0), WHITE);
        assert_eq!(img.at(W - 1, H - 1), WHITE);
    }

    #[test]
    fn bar_colours_follow_the_counts() {
        let chart = |img: &Image, colour| img.count(colour, BAR_LEFT, CHART_TOP, W, CHART_BOTTOM);
        let img = image(&typical());
        for colour in [GREEN, RED, AMBER, GREY] {
            assert!(
                chart(&img, colour) > 200,
                "{colour:?} missing from the chart"
            );
        }
        // No endpoint patched anywhere: no green bar, the other categories still drawn.
        let img = image(&summary(vec![
            group("server pilot", 0, 4, 2, 1),
            group("workstation pilot", 0, 0, 7, 0),
        ]));
        assert_eq!(chart(&img, GREEN), 0);
        assert!(chart(&img, RED) > 200);
        assert!(chart(&img, AMBER) > 200);
        // The legend keeps every colour, above the chart.
        assert!(img.count(GREEN, 0, CHART_HEADING_BASELINE - 20, W, CHART_TOP) > 100);
        // The 3.14.1 panel: nothing met, no green bar there either.
        let mut s = typical();
        s.sla = vec![tally("identify", "b", 0, 3, 1)];
        let img = image(&s);
        let panel = |colour| img.count(colour, SLA_BAR_LEFT, SLA_TOP, W, SLA_BOTTOM);
        assert_eq!(panel(GREEN), 0);
        assert!(panel(RED) > 200);
    }

    #[test]
    fn title_text_is_drawn() {
        let title_band = |img: &Image| img.count(INK, 0, 0, W, TITLE_BASELINE + 10);
        assert!(title_band(&image(&typical())) > 300);
        let mut s = typical();
        s.title.clear();
        assert_eq!(title_band(&image(&s)), 0);
    }

    #[test]
    fn the_image_carries_its_counts_as_a_text_chunk_with_every_category() {
        let mut g = group("server pilot", 3, 1, 0, 2);
        g.counts.patched_after_retry = 4;
        g.counts.up_to_date = 5;
        let s = summary(vec![g.clone()]);
        let bytes = render(&s).unwrap();
        let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes.as_slice()));
        let reader = decoder.read_info().unwrap();
        let chunk = reader
            .info()
            .uncompressed_latin1_text
            .iter()
            .find(|t| t.keyword == COUNTS_KEYWORD)
            .unwrap();
        let back: Vec<Group> = serde_json::from_str(&chunk.text).unwrap();
        assert_eq!(back, vec![g]);
        assert_eq!(back[0].counts.patched_after_retry, 4);
        // The after-retry and up-to-date segments are drawn in their own colours.
        let img = image(&s);
        for colour in [TEAL, BLUE] {
            assert!(img.count(colour, BAR_LEFT, CHART_TOP, W, CHART_BOTTOM) > 200);
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        let s = typical();
        let first = render(&s).unwrap();
        assert_eq!(first, render(&s).unwrap());
        assert_eq!(first, render(&s.clone()).unwrap());
        assert_ne!(first, render(&summary(Vec::new())).unwrap());
    }

    #[test]
    fn edge_cases_render() {
        let long = "x".repeat(200);
        let twelve = (0..12)
            .map(|i| group(&format!("client-{i} server production"), i * 7, i, i % 3, 1))
            .collect();
        let many = (0..40)
            .map(|i| group(&format!("ring {i}"), i, 0, 0, 0))
            .collect();
        let mut empty_sla = typical();
        empty_sla.sla.clear();
        let mut zero_sla = typical();
        zero_sla.sla = vec![tally("identify", "b", 0, 0, 0), tally("", "", 0, 0, 0)];
        let mut huge = summary(vec![group("max", u64::MAX, u64::MAX, u64::MAX, u64::MAX)]);
        huge.sla = vec![tally("correct", "f", u64::MAX, u64::MAX, u64::MAX)];
        let mut long_title = typical();
        long_title.title = format!("{long}\n{long}");
        long_title.subtitle = "\u{1F600}\u{0}\t".repeat(100);
        let cases = [
            summary(Vec::new()),
            summary(twelve),
            summary(many),
            summary(vec![
                group("all zero", 0, 0, 0, 0),
                group("other", 0, 0, 0, 0),
            ]),
            summary(vec![group(&long, 3, 2, 1, 0)]),
            empty_sla,
            zero_sla,
            huge,
            long_title,
        ];
        for s in &cases {
            let img = image(s);
            assert_eq!((img.width, img.height), (WIDTH, HEIGHT));
        }
    }

    #[test]
    fn long_labels_stay_in_their_column() {
        let long = "server production ".repeat(12);
        let img = image(&summary(vec![group(&long, 3, 2, 1, 0)]));
        let drawn_left_of_margin = (CHART_TOP..CHART_BOTTOM)
            .flat_map(|y| (0..MARGIN - 2).map(move |x| (x, y)))
            .filter(|&(x, y)| img.at(x, y) != WHITE)
            .count();
        assert_eq!(drawn_left_of_margin, 0);
        // The label is still written, cut, right of the margin.
        assert!(img.count(INK, MARGIN, CHART_TOP, LABEL_RIGHT, CHART_TOP + MAX_ROW) > 50);
    }

    #[test]
    fn all_zero_group_draws_an_empty_bar_labelled_zero() {
        let img = image(&summary(vec![group("empty", 0, 0, 0, 0)]));
        for colour in [GREEN, RED, AMBER, GREY] {
            assert_eq!(img.count(colour, BAR_LEFT, CHART_TOP, W, CHART_BOTTOM), 0);
        }
        // The "0" next to the axis.
        assert!(img.count(INK, BAR_LEFT, CHART_TOP, BAR_LEFT + 40, CHART_TOP + MAX_ROW) > 10);
    }

    #[test]
    fn share_met_is_rounded_and_never_divides_by_zero() {
        assert_eq!(
            percent_met(&tally("identify", "b", 120, 0, 3)).as_deref(),
            Some("100.0%")
        );
        assert_eq!(
            percent_met(&tally("report", "d", 1, 1, 0)).as_deref(),
            Some("50.0%")
        );
        assert_eq!(
            percent_met(&tally("correct", "f", 5, 0, 0)).as_deref(),
            Some("100.0%")
        );
        assert_eq!(percent_met(&tally("correct", "f", 0, 0, 0)), None);
        assert_eq!(
            percent_met(&tally("correct", "f", u64::MAX, u64::MAX, u64::MAX)).as_deref(),
            Some("50.0%")
        );
        assert_eq!(
            format!(
                "{}{}",
                objective_name(&tally("identify", "b", 120, 0, 3)),
                objective_figures(&tally("identify", "b", 120, 0, 3))
            ),
            "[b] Identify: 120 met, 0 breached, 3 running (100.0% met of decided)"
        );
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        let font = FontRef::try_from_slice(REGULAR).unwrap();
        let short = Label::new(&font, 16.0, "server pilot").fit(500.0);
        assert_eq!(short.text, "server pilot");
        let cut = Label::new(&font, 16.0, &"workstation ".repeat(20)).fit(200.0);
        assert!(cut.width <= 200.0, "{} px", cut.width);
        assert!(cut.text.starts_with("workstation"));
        assert!(cut.text.ends_with('\u{2026}'));
        assert!(!cut.text.ends_with(" \u{2026}"));
        assert_eq!(Label::new(&font, 16.0, "abc").fit(1.0).text, "");
    }

    #[test]
    fn segments_are_scaled_without_overflow() {
        assert_eq!(scale(0, 0, 768), 0);
        assert_eq!(scale(5, 10, 768), 384);
        assert_eq!(scale(u64::MAX, u64::MAX, 768), 768);
        assert_eq!(scale(u64::MAX, 1, 768), 768);
    }
}
