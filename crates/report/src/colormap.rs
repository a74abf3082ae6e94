//! Colour maps: jet (OpenCV's COLORMAP_JET, what the official M2IB demo overlays with) and the
//! perceptually uniform viridis and inferno (matplotlib's, as 9-stop piecewise-linear tables).

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

const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 82, 139],
    [44, 114, 142],
    [33, 145, 140],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

const INFERNO: [[u8; 3]; 9] = [
    [0, 0, 4],
    [31, 12, 72],
    [85, 15, 109],
    [136, 34, 106],
    [186, 54, 85],
    [227, 89, 51],
    [249, 140, 10],
    [249, 201, 50],
    [252, 255, 164],
];

fn table(stops: &[[u8; 3]; 9], v: f32) -> [u8; 3] {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = v * 8.0;
    let i = (x.floor() as usize).min(7);
    let t = x - i as f32;
    let (a, b) = (stops[i], stops[i + 1]);
    let m = |k: usize| (a[k] as f32 + (b[k] as f32 - a[k] as f32) * t).round() as u8;
    [m(0), m(1), m(2)]
}

/// Which colour map a figure uses (`--colormap`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Colormap {
    #[default]
    Jet,
    Viridis,
    Inferno,
}

impl Colormap {
    pub const NAMES: [&'static str; 3] = ["jet", "viridis", "inferno"];

    pub fn color(self, v: f32) -> [u8; 3] {
        match self {
            Colormap::Jet => jet(v),
            Colormap::Viridis => table(&VIRIDIS, v),
            Colormap::Inferno => table(&INFERNO, v),
        }
    }
}

impl std::str::FromStr for Colormap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jet" => Ok(Colormap::Jet),
            "viridis" => Ok(Colormap::Viridis),
            "inferno" => Ok(Colormap::Inferno),
            _ => Err(format!(
                "colormap `{s}`; allowed: {}",
                Colormap::NAMES.join(", ")
            )),
        }
    }
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

    #[test]
    fn perceptual_maps_hit_their_stops_and_interpolate() {
        assert_eq!(Colormap::Viridis.color(0.0), [68, 1, 84]);
        assert_eq!(Colormap::Viridis.color(1.0), [253, 231, 37]);
        assert_eq!(Colormap::Inferno.color(0.5), [186, 54, 85]);
        // Halfway between the first two inferno stops.
        assert_eq!(Colormap::Inferno.color(1.0 / 16.0), [16, 6, 38]);
        assert_eq!("viridis".parse::<Colormap>(), Ok(Colormap::Viridis));
        assert!("parula"
            .parse::<Colormap>()
            .unwrap_err()
            .contains("jet, viridis, inferno"));
    }
}
