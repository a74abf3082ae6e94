//! The per-sample metrics an explain job scores, named once: each knows the (modality, metric,
//! variant) columns of its result rows, and `Metric::list` gives them in row order from what an
//! experiment's `[metrics]` asks for (typed: serde refuses an unknown name when the TOML is read).
use crate::confidence::{TextProtocol, KEEP_TOP25, WHOLE_MAP};
use crate::localization::Threshold;

/// How an image map perturbs the pixels for confidence drop / increase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ImageProtocol {
    /// The paper: the pixels times the whole normalised map.
    #[serde(rename = "whole-map")]
    WholeMap,
    /// Only the map's top 25 % of pixels kept (`confidence::keep_top`).
    #[serde(rename = "keep-top25")]
    KeepTop25,
}

impl ImageProtocol {
    pub fn name(self) -> &'static str {
        match self {
            ImageProtocol::WholeMap => WHOLE_MAP,
            ImageProtocol::KeepTop25 => KEEP_TOP25,
        }
    }

    /// Every variant, in the order error messages list them.
    pub const ALL: [ImageProtocol; 2] = [ImageProtocol::WholeMap, ImageProtocol::KeepTop25];

    pub fn from_name(s: &str) -> Option<ImageProtocol> {
        ImageProtocol::ALL.into_iter().find(|p| p.name() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Drop,
    Increase,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Drop => "drop",
            Direction::Increase => "increase",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Image: IoU of the thresholded map with the boxes.
    LocalizationIou(Threshold),
    /// Text: AUROC of the token scores against the object-naming tokens.
    TextAuroc,
    ImageConfidence(ImageProtocol, Direction),
    TextConfidence(TextProtocol, Direction),
    /// Rank agreement of the map with the objects' importance for the model (`intervention`).
    Intervention(m2ib_attribution::Modality),
}

impl Metric {
    /// "image" or "text".
    pub fn modality(self) -> &'static str {
        match self {
            Metric::LocalizationIou(_) | Metric::ImageConfidence(..) => "image",
            Metric::TextAuroc | Metric::TextConfidence(..) => "text",
            Metric::Intervention(m) => m.name(),
        }
    }

    /// The `metric` column.
    pub fn name(self) -> &'static str {
        match self {
            Metric::LocalizationIou(_) => "localization_iou",
            Metric::TextAuroc => "localization_auroc",
            Metric::ImageConfidence(_, d) | Metric::TextConfidence(_, d) => d.name(),
            Metric::Intervention(_) => "intervention",
        }
    }

    /// The `metric_variant` column.
    pub fn variant(self) -> &'static str {
        match self {
            Metric::LocalizationIou(t) => t.name(),
            Metric::TextAuroc => "content",
            Metric::ImageConfidence(p, _) => p.name(),
            Metric::TextConfidence(p, _) => p.name(),
            Metric::Intervention(_) => "spearman",
        }
    }

    /// The metrics asked for, in row order: localization per threshold, text AUROC, image
    /// confidence per protocol (only with text confidence, as the paper scores them together),
    /// text confidence per protocol, intervention.
    pub fn list(
        localization: &[Threshold],
        text_localization: bool,
        confidence: &[TextProtocol],
        image_confidence: &[ImageProtocol],
        intervention: bool,
    ) -> Vec<Metric> {
        let mut m: Vec<Metric> = localization
            .iter()
            .map(|&t| Metric::LocalizationIou(t))
            .collect();
        if text_localization {
            m.push(Metric::TextAuroc);
        }
        if !confidence.is_empty() {
            for &p in image_confidence {
                m.push(Metric::ImageConfidence(p, Direction::Drop));
                m.push(Metric::ImageConfidence(p, Direction::Increase));
            }
        }
        for &p in confidence {
            m.push(Metric::TextConfidence(p, Direction::Drop));
            m.push(Metric::TextConfidence(p, Direction::Increase));
        }
        if intervention {
            m.push(Metric::Intervention(m2ib_attribution::Modality::Image));
            m.push(Metric::Intervention(m2ib_attribution::Modality::Text));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_named_as_the_results_always_were() {
        let l = Metric::list(
            &[Threshold::Value, Threshold::Percentile],
            true,
            &[TextProtocol::Official],
            &[ImageProtocol::WholeMap, ImageProtocol::KeepTop25],
            true,
        );
        let cols: Vec<(&str, &str, &str)> = l
            .iter()
            .map(|m| (m.modality(), m.name(), m.variant()))
            .collect();
        assert_eq!(
            cols,
            [
                ("image", "localization_iou", "value"),
                ("image", "localization_iou", "percentile"),
                ("text", "localization_auroc", "content"),
                ("image", "drop", "whole-map"),
                ("image", "increase", "whole-map"),
                ("image", "drop", "keep-top25"),
                ("image", "increase", "keep-top25"),
                ("text", "drop", "official"),
                ("text", "increase", "official"),
                ("image", "intervention", "spearman"),
                ("text", "intervention", "spearman"),
            ]
        );
        // Image confidence only comes with text confidence.
        assert!(Metric::list(&[], false, &[], &[ImageProtocol::WholeMap], false).is_empty());
    }

    /// The TOML names are the row names (serde and `name` agree).
    #[test]
    fn serde_names_are_the_row_names() {
        for p in ImageProtocol::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
        for p in TextProtocol::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
        for t in Threshold::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
        }
    }
}
