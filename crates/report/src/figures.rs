//! Single-sample figures: an image with its heat map overlaid (plus a colour bar), and a caption
//! with each token coloured by its score — alone or as the paper's Figure 1 grid (one column per
//! method).
use crate::colormap::{blend, Colormap};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot draw figure: {message}")]
pub struct FigureError {
    pub path: String,
    pub message: String,
}

static FONT: Once = Once::new();
pub(crate) const FONT_FAMILY: &str = "sans-serif";

/// Registers the shipped DejaVu Sans (data/fonts) so figures need no system fonts.
pub(crate) fn ensure_font() {
    FONT.call_once(|| {
        let _ = register_font(
            FONT_FAMILY,
            FontStyle::Normal,
            include_bytes!("../../../data/fonts/DejaVuSans.ttf"),
        );
    });
}

/// An image (8-bit RGB, row-major, at its original size) with a normalised map of the same size:
/// NaN where the model did not see the image (outside its centre crop).
pub struct Overlay<'a> {
    pub width: usize,
    pub height: usize,
    pub rgb: &'a [u8],
    /// Values in [0, 1] (NaN outside the crop), `width * height`.
    pub map: &'a [f32],
    pub title: &'a str,
    /// The model's crop in image pixels `[x0, y0, x1, y1)`, outlined; None when it is the image.
    pub crop: Option<[usize; 4]>,
    pub style: Style,
}

/// How maps are drawn: colour map and opacity at the highest score (a pixel's opacity is
/// `alpha x score`, so low scores leave the image visible instead of repainting it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Style {
    pub colormap: Colormap,
    pub alpha: f32,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            colormap: Colormap::Jet,
            alpha: 0.7,
        }
    }
}

/// Tokens with normalised scores; non-content tokens are drawn grey.
pub struct TokenRow<'a> {
    pub tokens: &'a [String],
    pub scores: &'a [f32],
    pub content: &'a [bool],
    pub title: &'a str,
}

const BAR: u32 = 60;
const TITLE: u32 = 24;
/// Images are drawn at this height (aspect kept).
const SHOWN_H: usize = 224;

pub(crate) fn err(path: &Path, e: impl ToString) -> FigureError {
    FigureError {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The drawn size of an image: SHOWN_H tall, at most 2.5 times as wide.
fn shown(o: &Overlay) -> (usize, usize) {
    let w = (o.width as f64 * SHOWN_H as f64 / o.height.max(1) as f64).round() as usize;
    (w.clamp(1, SHOWN_H * 5 / 2), SHOWN_H)
}

/// The image (`with_map` false) or the image with the map blended in, scaled to `shown`, with
/// the crop outlined; a title above.
fn draw_image<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    o: &Overlay,
    title: &str,
    with_map: bool,
    x0: i32,
    y0: i32,
) -> Result<(), String> {
    let font = (FONT_FAMILY, 15).into_font();
    area.draw(&Text::new(title.to_string(), (x0 + 4, y0 + 4), font))
        .map_err(|e| e.to_string())?;
    let top = y0 + TITLE as i32;
    let (w, h) = shown(o);
    for y in 0..h {
        let sy = (y * o.height / h).min(o.height - 1);
        for x in 0..w {
            let sx = (x * o.width / w).min(o.width - 1);
            let i = sy * o.width + sx;
            let px = [o.rgb[i * 3], o.rgb[i * 3 + 1], o.rgb[i * 3 + 2]];
            let v = o.map[i];
            let c = if !with_map {
                px
            } else if v.is_nan() {
                // Outside the model's view: the image, faded.
                blend(px, [255, 255, 255], 0.55)
            } else {
                blend(
                    px,
                    o.style.colormap.color(v),
                    o.style.alpha * v.clamp(0.0, 1.0),
                )
            };
            area.draw_pixel((x0 + x as i32, top + y as i32), &RGBColor(c[0], c[1], c[2]))
                .map_err(|e| e.to_string())?;
        }
    }
    if let (true, Some([cx0, cy0, cx1, cy1])) = (with_map, o.crop) {
        let sc = |v: usize, n: usize, m: usize| (v * m / n.max(1)) as i32;
        area.draw(&Rectangle::new(
            [
                (x0 + sc(cx0, o.width, w), top + sc(cy0, o.height, h)),
                (x0 + sc(cx1, o.width, w) - 1, top + sc(cy1, o.height, h) - 1),
            ],
            WHITE.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Colour bar with ticks 0, 0.5, 1 to the right of an image of height `h`.
fn draw_colorbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    style: Style,
    x0: i32,
    y0: i32,
    h: usize,
) -> Result<(), String> {
    let font = (FONT_FAMILY, 12).into_font();
    for y in 0..h {
        let c = style.colormap.color(1.0 - y as f32 / (h - 1).max(1) as f32);
        area.draw(&Rectangle::new(
            [(x0, y0 + y as i32), (x0 + 14, y0 + y as i32 + 1)],
            RGBColor(c[0], c[1], c[2]).filled(),
        ))
        .map_err(|e| e.to_string())?;
    }
    for (v, label) in [(1.0, "1"), (0.5, "0.5"), (0.0, "0")] {
        let y = y0 + ((1.0 - v) * (h - 1) as f32) as i32;
        area.draw(&Text::new(
            label.to_string(),
            (x0 + 18, y - 6),
            font.clone(),
        ))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The original image beside it with the map overlaid (crop outlined), a colour bar, and the
/// caption with its tokens coloured below: the figure of one pair and one method.
pub fn overlay_png(path: &Path, o: &Overlay, row: &TokenRow) -> Result<(), FigureError> {
    ensure_font();
    let (w, h) = shown(o);
    let width = (2 * w + 16) as u32 + BAR;
    let text_h = token_height(row, width as i32).map_err(|e| err(path, e))?;
    let height = (h as u32 + TITLE) + text_h as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    draw_image(&root, o, "input", false, 0, 0).map_err(|e| err(path, e))?;
    draw_image(&root, o, o.title, true, w as i32 + 16, 0).map_err(|e| err(path, e))?;
    draw_colorbar(&root, o.style, 2 * w as i32 + 24, TITLE as i32, h).map_err(|e| err(path, e))?;
    draw_tokens(
        &root,
        row,
        0,
        (h as u32 + TITLE) as i32,
        width as i32,
        o.style,
    )
    .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// Lays tokens out left to right, wrapping at `width`; returns the height used.
fn draw_tokens<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    row: &TokenRow,
    x0: i32,
    y0: i32,
    width: i32,
    style: Style,
) -> Result<i32, String> {
    let font = (FONT_FAMILY, 15).into_font();
    let mut y = y0 + 4;
    if !row.title.is_empty() {
        area.draw(&Text::new(row.title.to_string(), (x0 + 4, y), font.clone()))
            .map_err(|e| e.to_string())?;
        y += TITLE as i32;
    }
    let mut x = x0 + 4;
    let line = 24;
    for (i, t) in row.tokens.iter().enumerate() {
        let label = t.replace("</w>", "");
        let (tw, _) = area
            .estimate_text_size(&label, &TextStyle::from(font.clone()))
            .map_err(|e| e.to_string())?;
        let tw = tw as i32 + 8;
        if x + tw > x0 + width && x > x0 + 4 {
            x = x0 + 4;
            y += line + 4;
        }
        let bg = if row.content[i] {
            let c = blend([255, 255, 255], style.colormap.color(row.scores[i]), 0.6);
            RGBColor(c[0], c[1], c[2])
        } else {
            RGBColor(220, 220, 220)
        };
        area.draw(&Rectangle::new(
            [(x, y), (x + tw - 2, y + line)],
            bg.filled(),
        ))
        .map_err(|e| e.to_string())?;
        area.draw(&Text::new(label, (x + 3, y + 3), font.clone()))
            .map_err(|e| e.to_string())?;
        x += tw;
    }
    Ok(y + line + 4 - y0)
}

/// The height `draw_tokens` needs at `width` (drawn once off-screen).
fn token_height(row: &TokenRow, width: i32) -> Result<i32, String> {
    let mut scratch = vec![0u8; (width * 600 * 3) as usize];
    let area = BitMapBackend::with_buffer(&mut scratch, (width as u32, 600)).into_drawing_area();
    draw_tokens(&area, row, 0, 0, width, Style::default())
}

/// The caption with each content token's background coloured by its score.
pub fn caption_png(path: &Path, row: &TokenRow, style: Style) -> Result<(), FigureError> {
    ensure_font();
    let width = 640;
    let height = token_height(row, width).map_err(|e| err(path, e))?;
    let root = BitMapBackend::new(path, (width as u32, height.max(40) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    draw_tokens(&root, row, 0, 0, width, style).map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// Figure 1 style: the input, then one column per method (overlay on top, its token scores
/// below), the caption as the title; as tall as its tallest caption column, no more.
pub fn grid_png(
    path: &Path,
    title: &str,
    columns: &[(Overlay, TokenRow)],
) -> Result<(), FigureError> {
    ensure_font();
    let Some((first, _)) = columns.first() else {
        return Err(err(path, "no columns"));
    };
    let (w, h) = shown(first);
    let cw = w as i32 + 12;
    let text_h = columns
        .iter()
        .map(|(_, t)| token_height(&TokenRow { title: "", ..*t }, cw - 8))
        .collect::<Result<Vec<i32>, String>>()
        .map_err(|e| err(path, e))?
        .into_iter()
        .max()
        .unwrap_or(0);
    let head = TITLE as i32 + 4;
    let (width, height) = (
        (cw * (columns.len() as i32 + 1) + BAR as i32) as u32,
        (head + h as i32 + TITLE as i32 + text_h) as u32,
    );
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    root.draw(&Text::new(
        title.to_string(),
        (4, 6),
        (FONT_FAMILY, 16).into_font(),
    ))
    .map_err(|e| err(path, e))?;
    draw_image(&root, first, "input", false, 0, head).map_err(|e| err(path, e))?;
    for (k, (o, t)) in columns.iter().enumerate() {
        let x0 = (k as i32 + 1) * cw;
        draw_image(&root, o, o.title, true, x0, head).map_err(|e| err(path, e))?;
        draw_tokens(
            &root,
            &TokenRow { title: "", ..*t },
            x0,
            head + h as i32 + TITLE as i32,
            cw - 8,
            o.style,
        )
        .map_err(|e| err(path, e))?;
    }
    draw_colorbar(
        &root,
        first.style,
        cw * (columns.len() as i32 + 1) + 4,
        head + TITLE as i32,
        h,
    )
    .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}
