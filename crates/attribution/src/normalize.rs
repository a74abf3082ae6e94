//! The one shared normalisation (DESIGN.md "The Attributor trait"): min-max over the pixels, over
//! content tokens for text. A map whose range is below 1e-12 or that holds a non-finite value is a
//! `degenerate_map` error for that sample, never silently averaged.
use crate::attributor::{Attribution, AttributionError};
use tch::{Kind, Tensor};

pub const DEGENERATE_RANGE: f64 = 1e-12;

fn check(
    values: impl Iterator<Item = f64>,
    modality: &'static str,
) -> Result<(f64, f64), AttributionError> {
    let (mut lo, mut hi, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
    for v in values {
        if !v.is_finite() {
            return Err(AttributionError::DegenerateMap {
                modality,
                reason: format!("holds a non-finite value ({v})"),
            });
        }
        lo = lo.min(v);
        hi = hi.max(v);
        n += 1;
    }
    if n == 0 {
        return Err(AttributionError::DegenerateMap {
            modality,
            reason: "has no values (no content tokens)".into(),
        });
    }
    if hi - lo < DEGENERATE_RANGE {
        return Err(AttributionError::DegenerateMap {
            modality,
            reason: format!("is constant (max - min = {:e})", hi - lo),
        });
    }
    Ok((lo, hi))
}

/// (map - min) / (max - min) over all pixels.
pub fn normalize_image(map: &Tensor) -> Result<Tensor, AttributionError> {
    let flat = Vec::<f64>::try_from(map.to_kind(Kind::Double).flatten(0, -1))?;
    let (lo, hi) = check(flat.iter().copied(), "image")?;
    Ok((map.to_kind(Kind::Float) - lo) / (hi - lo))
}

/// Content-token scores min-max normalised; non-content positions come back as 0.
pub fn normalize_text(scores: &[f32], content: &[bool]) -> Result<Vec<f32>, AttributionError> {
    let vals = scores
        .iter()
        .zip(content)
        .filter(|(_, c)| **c)
        .map(|(v, _)| *v as f64);
    let (lo, hi) = check(vals, "text")?;
    Ok(scores
        .iter()
        .zip(content)
        .map(|(v, c)| {
            if *c {
                ((*v as f64 - lo) / (hi - lo)) as f32
            } else {
                0.0
            }
        })
        .collect())
}

/// An explanation's two maps normalised for showing (`m2ib attribute`'s files and figures, the
/// Python module's arrays).
pub struct Shown {
    pub image: Tensor,
    pub text: Vec<f32>,
    /// One line per map that is constant: `<method>: image map: ...; drawn as 0`.
    pub notes: Vec<String>,
}

/// Both maps min-max normalised. A constant map is a result (the method found nothing to tell
/// apart), not a failure of the pair: it is shown as zeros and named in `notes`, and the other
/// modality's map is still shown. Other degenerate maps (non-finite, no content) stay errors.
pub fn for_display(a: &Attribution, method: &str) -> Result<Shown, AttributionError> {
    let constant = |e: &AttributionError| matches!(e, AttributionError::DegenerateMap { reason, .. } if reason.starts_with("is constant"));
    let mut notes = vec![];
    let image = match normalize_image(&a.image) {
        Err(e) if constant(&e) => {
            notes.push(format!("{method}: image map: {e}; drawn as 0"));
            a.image.zeros_like()
        }
        other => other?,
    };
    let text = match normalize_text(&a.text, &a.content) {
        Err(e) if constant(&e) => {
            notes.push(format!("{method}: token scores: {e}; drawn as 0"));
            vec![0.0; a.text.len()]
        }
        other => other?,
    };
    Ok(Shown { image, text, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_over_pixels() {
        let m = Tensor::from_slice(&[2.0f32, 4.0, 6.0, 10.0]).view([2, 2]);
        let n = Vec::<f32>::try_from(normalize_image(&m).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(n, vec![0.0, 0.25, 0.5, 1.0]);
    }

    #[test]
    fn text_ignores_special_tokens() {
        let n = normalize_text(
            &[100.0, 1.0, 3.0, 2.0, -50.0],
            &[false, true, true, true, false],
        )
        .unwrap();
        assert_eq!(n, vec![0.0, 0.0, 1.0, 0.5, 0.0]);
    }

    #[test]
    fn constant_and_non_finite_maps_are_degenerate() {
        assert!(normalize_image(&Tensor::ones([3, 3], (Kind::Float, tch::Device::Cpu))).is_err());
        let nan = Tensor::from_slice(&[0.0f32, f32::NAN, 1.0]);
        let e = normalize_image(&nan).unwrap_err().to_string();
        assert!(
            e.contains("degenerate_map") && e.contains("non-finite"),
            "{e}"
        );
        assert!(normalize_text(&[1.0, 5.0, 1.0], &[false, true, false]).is_err());
        assert!(normalize_text(&[1.0, f32::INFINITY], &[true, true]).is_err());
    }

    #[test]
    fn a_constant_map_is_shown_as_zeros_and_named() {
        let a = Attribution {
            image: Tensor::from_slice(&[3.0f32; 4]).view([2, 2]),
            text: vec![9.0, 1.0, 2.0, 9.0],
            content: vec![false, true, true, false],
            params: serde_json::Value::Null,
        };
        let s = for_display(&a, "m").unwrap();
        assert_eq!(
            Vec::<f32>::try_from(s.image.flatten(0, -1)).unwrap(),
            vec![0.0; 4]
        );
        assert_eq!(s.text, vec![0.0, 0.0, 1.0, 0.0]);
        assert_eq!(s.notes.len(), 1);
        assert!(s.notes[0].starts_with("m: image map: degenerate_map: image map is constant"));
        // A non-finite map is no result: still an error.
        let bad = Attribution {
            image: Tensor::from_slice(&[f32::NAN, 1.0]).view([1, 2]),
            ..a
        };
        assert!(for_display(&bad, "m").is_err());
    }
}
