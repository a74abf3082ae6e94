//! Single-sample figures: an image with its heat map overlaid (plus a colour bar), and a caption
//! with each token coloured by its score — alone or as the paper's Figure 1 grid (one column per
//! method).
use crate::colormap::{blend, jet};
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

/// An image (8-bit RGB, row-major) with a normalised map of the same size.
pub struct Overlay<'a> {
    pub width: usize,
    pub height: usize,
    pub rgb: &'a [u8],
    /// Values in [0, 1], `width * height`.
    pub map: &'a [f32],
    pub title: &'a str,
}

/// Tokens with normalised scores; non-content tokens are drawn grey.
pub struct TokenRow<'a> {
    pub tokens: &'a [String],
    pub scores: &'a [f32],
    pub content: &'a [bool],
    pub title: &'a str,
}

const MAP_WEIGHT: f32 = 0.5;
const BAR: u32 = 60;
const TITLE: u32 = 24;

pub(crate) fn err(path: &Path, e: impl ToString) -> FigureError {
    FigureError {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn draw_overlay<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    o: &Overlay,
    x0: i32,
    y0: i32,
) -> Result<(), String> {
    let font = (FONT_FAMILY, 15).into_font();
    area.draw(&Text::new(
        o.title.to_string(),
        (x0 + 4, y0 + 4),
        font.clone(),
    ))
    .map_err(|e| e.to_string())?;
    let top = y0 + TITLE as i32;
    for y in 0..o.height {
        for x in 0..o.width {
            let i = (y * o.width + x) * 3;
            let c = blend(
                [o.rgb[i], o.rgb[i + 1], o.rgb[i + 2]],
                jet(o.map[y * o.width + x]),
                MAP_WEIGHT,
            );
            area.draw_pixel((x0 + x as i32, top + y as i32), &RGBColor(c[0], c[1], c[2]))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Colour bar with ticks 0, 0.5, 1 to the right of an image of height `h`.
fn draw_colorbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x0: i32,
    y0: i32,
    h: usize,
) -> Result<(), String> {
    let font = (FONT_FAMILY, 12).into_font();
    for y in 0..h {
        let c = jet(1.0 - y as f32 / (h - 1).max(1) as f32);
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

/// The image with the map overlaid (jet, 50 %), a title and a colour bar.
pub fn overlay_png(path: &Path, o: &Overlay) -> Result<(), FigureError> {
    ensure_font();
    let (w, h) = (o.width as u32 + BAR, o.height as u32 + TITLE);
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    draw_overlay(&root, o, 0, 0).map_err(|e| err(path, e))?;
    draw_colorbar(&root, o.width as i32 + 8, TITLE as i32, o.height).map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// Lays tokens out left to right, wrapping at `width`; returns the height used.
fn draw_tokens<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    row: &TokenRow,
    x0: i32,
    y0: i32,
    width: i32,
) -> Result<i32, String> {
    let font = (FONT_FAMILY, 15).into_font();
    area.draw(&Text::new(
        row.title.to_string(),
        (x0 + 4, y0 + 4),
        font.clone(),
    ))
    .map_err(|e| e.to_string())?;
    let (mut x, mut y) = (x0 + 4, y0 + TITLE as i32 + 4);
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
            let c = blend([255, 255, 255], jet(row.scores[i]), 0.6);
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

/// The caption with each content token's background coloured by its score.
pub fn caption_png(path: &Path, row: &TokenRow) -> Result<(), FigureError> {
    ensure_font();
    let width = 640;
    // Draw once off-screen to measure the height, then for real.
    let mut scratch = vec![0u8; (width * 400 * 3) as usize];
    let height = {
        let area = BitMapBackend::with_buffer(&mut scratch, (width, 400)).into_drawing_area();
        draw_tokens(&area, row, 0, 0, width as i32).map_err(|e| err(path, e))?
    };
    let root = BitMapBackend::new(path, (width, height.max(40) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    draw_tokens(&root, row, 0, 0, width as i32).map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// Figure 1 style: one column per method, the overlay on top and the caption below.
pub fn grid_png(path: &Path, columns: &[(Overlay, TokenRow)]) -> Result<(), FigureError> {
    ensure_font();
    let cw = columns.iter().map(|(o, _)| o.width).max().unwrap_or(224) as i32 + 16;
    let ih = columns.iter().map(|(o, _)| o.height).max().unwrap_or(224) as i32 + TITLE as i32;
    let text_h = 200;
    let (w, h) = (
        (cw * columns.len() as i32 + BAR as i32) as u32,
        (ih + text_h) as u32,
    );
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    for (k, (o, t)) in columns.iter().enumerate() {
        let x0 = k as i32 * cw;
        draw_overlay(&root, o, x0, 0).map_err(|e| err(path, e))?;
        draw_tokens(
            &root,
            &TokenRow { title: "", ..*t },
            x0,
            ih - TITLE as i32 + 4,
            cw - 8,
        )
        .map_err(|e| err(path, e))?;
    }
    draw_colorbar(
        &root,
        cw * columns.len() as i32 + 4,
        TITLE as i32,
        columns[0].0.height,
    )
    .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}
