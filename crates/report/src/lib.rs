//! m2ib-report: what people look at — heat-map overlays, token highlights, and (with the
//! runner) tables, curves and the HTML index.

pub mod colormap;
pub mod curves;
pub mod figures;
pub mod guard;
pub mod heatmap;
pub mod html;
pub mod run_report;
pub mod select;
pub mod site;
pub mod table;

pub use figures::{caption_png, overlay_png, FigureError, Overlay, Style, TokenRow};
