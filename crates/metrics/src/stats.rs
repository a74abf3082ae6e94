//! Shared statistics: numpy's linear percentile, average ranks, Spearman (scipy), SSIM
//! (scikit-image defaults with a 7 x 7 uniform window), AUROC, and standard errors.

/// `numpy.percentile(values, q)` with linear interpolation (q in [0, 100]).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// 1-based ranks, ties get their average rank (scipy `rankdata`).
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut r = vec![0.0; values.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && values[idx[j + 1]] == values[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman rank correlation (scipy `spearmanr`): Pearson of average ranks. NaN when either
/// side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Mean SSIM of two images in [0, data_range] (scikit-image `structural_similarity` with
/// win_size 7, uniform window, sample covariance, K1 0.01, K2 0.03; the 3-pixel border excluded).
pub fn ssim(x: &[f64], y: &[f64], h: usize, w: usize, data_range: f64) -> f64 {
    const WIN: usize = 7;
    let np = (WIN * WIN) as f64;
    let cov_norm = np / (np - 1.0);
    let (c1, c2) = ((0.01 * data_range).powi(2), (0.03 * data_range).powi(2));
    let pad = (WIN - 1) / 2;
    let (mut total, mut count) = (0.0, 0usize);
    for i in pad..h - pad {
        for j in pad..w - pad {
            let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for di in 0..WIN {
                for dj in 0..WIN {
                    let p = (i + di - pad) * w + (j + dj - pad);
                    let (a, b) = (x[p], y[p]);
                    sx += a;
                    sy += b;
                    sxx += a * a;
                    syy += b * b;
                    sxy += a * b;
                }
            }
            let (ux, uy) = (sx / np, sy / np);
            let vx = cov_norm * (sxx / np - ux * ux);
            let vy = cov_norm * (syy / np - uy * uy);
            let vxy = cov_norm * (sxy / np - ux * uy);
            let s = ((2.0 * ux * uy + c1) * (2.0 * vxy + c2))
                / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
            total += s;
            count += 1;
        }
    }
    total / count as f64
}

/// Area under the ROC curve: P(score of a positive > score of a negative), ties counting half.
pub fn auroc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let pos: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(s, _)| *s)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|(_, p)| !**p)
        .map(|(s, _)| *s)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

/// Mean and standard error of the mean (sample standard deviation / sqrt(n)); NaN error for n < 2.
pub fn mean_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let m = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (m, f64::NAN);
    }
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(percentile(&v, 75.0), 3.25);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[5.0, 1.0, 3.0], 50.0), 3.0);
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
    }

    #[test]
    fn spearman_cases() {
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // scipy.stats.spearmanr([1,2,3,4,5], [5,6,7,8,7]) = 0.8207826816681233
        assert!(
            (spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]) - 0.8207826816681233)
                .abs()
                < 1e-12
        );
    }

    #[test]
    fn auroc_by_hand() {
        assert_eq!(
            auroc(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]),
            Some(1.0)
        );
        assert_eq!(
            auroc(&[0.1, 0.2, 0.9, 0.8], &[true, true, false, false]),
            Some(0.0)
        );
        // pairs (0.5>0.3) (0.5=0.5) (0.2<0.3) (0.2<0.5): 1 + 0.5 = 1.5 of 4
        assert_eq!(
            auroc(&[0.5, 0.2, 0.3, 0.5], &[true, true, false, false]),
            Some(0.375)
        );
        assert_eq!(auroc(&[0.5], &[true]), None);
    }

    #[test]
    fn ssim_of_identical_images_is_one() {
        let x: Vec<f64> = (0..100).map(|i| (i as f64 * 0.37).sin().abs()).collect();
        assert!((ssim(&x, &x, 10, 10, 1.0) - 1.0).abs() < 1e-12);
        let y: Vec<f64> = x.iter().map(|v| 1.0 - v).collect();
        assert!(ssim(&x, &y, 10, 10, 1.0) < 0.0);
    }

    #[test]
    fn standard_error() {
        let (m, se) = mean_se(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((se - (1.6666666666666667f64 / 4.0).sqrt()).abs() < 1e-12);
    }
}
