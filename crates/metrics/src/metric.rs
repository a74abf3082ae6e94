//! The per-sample metrics an explain job scores, named once: each knows the (modality, metric,
//! variant) columns of its result rows, and `Metric::list` gives them in row order from what an
//! experiment's `[metrics]` asks for.
use crate::confidence::{TextProtocol, KEEP_TOP25, WHOLE_MAP};
use crate::localization::Threshold;

/// How an image map perturbs the pixels for confidence drop / increase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageProtocol {
    /// The paper: the pixels times the whole normalised map.
    WholeMap,
    /// Only the map's top 25 % of pixels kept (`confidence::keep_top`).
    KeepTop25,
}

impl ImageProtocol {
    pub fn name(self) -> &'static str {
        match self {
            ImageProtocol::WholeMap => WHOLE_MAP,
            ImageProtocol::KeepTop25 => KEEP_TOP25,
        }
    }

    pub fn from_name(s: &str) -> Option<ImageProtocol> {
        [ImageProtocol::WholeMap, ImageProtocol::KeepTop25]
            .into_iter()
            .find(|p| p.name() == s)
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
    /// text confidence per protocol, intervention. Unknown names are an error naming them.
    pub fn list(
        localization: &[String],
        text_localization: bool,
        confidence: &[String],
        image_confidence: &[String],
        intervention: bool,
    ) -> Result<Vec<Metric>, String> {
        let unknown = |what: &str, s: &str| format!("unknown {what} {s:?}");
        let mut m = vec![];
        for t in localization {
            m.push(Metric::LocalizationIou(
                Threshold::from_name(t).ok_or_else(|| unknown("threshold", t))?,
            ));
        }
        if text_localization {
            m.push(Metric::TextAuroc);
        }
        if !confidence.is_empty() {
            for p in image_confidence {
                let p = ImageProtocol::from_name(p).ok_or_else(|| unknown("image protocol", p))?;
                m.push(Metric::ImageConfidence(p, Direction::Drop));
                m.push(Metric::ImageConfidence(p, Direction::Increase));
            }
        }
        for p in confidence {
            let p = TextProtocol::from_name(p).ok_or_else(|| unknown("text protocol", p))?;
            m.push(Metric::TextConfidence(p, Direction::Drop));
            m.push(Metric::TextConfidence(p, Direction::Increase));
        }
        if intervention {
            m.push(Metric::Intervention(m2ib_attribution::Modality::Image));
            m.push(Metric::Intervention(m2ib_attribution::Modality::Text));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_named_as_the_results_always_were() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let l = Metric::list(
            &s(&["value", "percentile"]),
            true,
            &s(&["official"]),
            &s(&["whole-map", "keep-top25"]),
            true,
        )
        .unwrap();
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
        assert!(Metric::list(&[], false, &[], &s(&["whole-map"]), false)
            .unwrap()
            .is_empty());
        assert!(Metric::list(&s(&["median"]), false, &[], &[], false).is_err());
    }
}
