//! The jet colour map (OpenCV's COLORMAP_JET, what the official M2IB demo overlays with).

/// Jet colour of `v` in [0, 1] (clamped): dark blue -> blue -> cyan -> yellow -> red -> dark red.
pub fn jet(v: f32) -> [u8; 3] {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let ch = |offset: f32| ((1.5 - (4.0 * v - offset).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ch(3.0), ch(2.0), ch(1.0)]
}

/// `a * (1 - w) + b * w` per channel.
pub fn blend(a: [u8; 3], b: [u8; 3], w: f32) -> [u8; 3] {
    let m = |x: u8, y: u8| {
        (x as f32 * (1.0 - w) + y as f32 * w)
            .round()
            .clamp(0.0, 255.0) as u8
    };
    [m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_endpoints_and_middle() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(f32::NAN), jet(0.0));
        assert_eq!(blend([0, 0, 0], [255, 255, 255], 0.5), [128, 128, 128]);
    }
}
