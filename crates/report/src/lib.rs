//! m2ib-report: what people look at — heat-map overlays, token highlights, and (with the
//! runner) tables, curves and the HTML index.

pub mod colormap;
pub mod figures;
pub mod html;
pub mod table;

pub use figures::{caption_png, overlay_png, FigureError, Overlay, TokenRow};
