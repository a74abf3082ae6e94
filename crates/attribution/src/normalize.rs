//! The one shared normalisation (DESIGN.md "The Attributor trait"): min-max over the pixels, over
//! content tokens for text. A map whose range is below 1e-12 or that holds a non-finite value is a
//! `degenerate_map` error for that sample, never silently averaged.
use crate::attributor::AttributionError;
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
}
