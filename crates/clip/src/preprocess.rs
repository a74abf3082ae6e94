//! Image preprocessing on the PIL path of HF's CLIP image processor (transformers 4.x
//! `CLIPImageProcessor`, 5.x `CLIPImageProcessorPil`): shortest side to S with PIL's bicubic
//! resampler (long side truncated), centre crop at `(size - crop) // 2`, /255, normalise.
//!
//! `pil_resize` reproduces Pillow's `ImagingResample` (libImaging/Resample.c) exactly: two
//! separable passes (horizontal, then vertical), cubic kernel a = -0.5 whose support widens by the
//! scale factor when downscaling, coefficients normalised per output pixel and converted to
//! 22-bit fixed point, each pass rounding and clamping to 8 bits.
use crate::error::{ClipError, Result};
use serde_json::Value;
use std::path::Path;
use tch::Tensor;

/// Decoding refuses images with more pixels than this (a 20000 x 20000 image would need 1.2 GB).
pub const MAX_PIXELS: u64 = 100_000_000;

/// An 8-bit RGB image, row-major, channels interleaved.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb8 {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width * height * 3, "RGB buffer size");
        Rgb8 {
            width,
            height,
            data,
        }
    }
}

/// Decodes PNG or JPEG (format from the content, not the name) to RGB: alpha is dropped as
/// PIL's `convert("RGB")` does (no compositing), grayscale is replicated, 16-bit samples become
/// `round(v * 255 / 65535)` (the `image` crate's rule; PIL has none for 16-bit RGB).
pub fn decode_image(path: &Path) -> Result<Rgb8> {
    let err = |message: String| ClipError::Image {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| ClipError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(err("file is empty (0 bytes)".into()));
    }
    // From the content alone: a text file named .jpg is not a JPEG.
    let format = image::guess_format(&bytes).ok();
    if !matches!(
        format,
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg)
    ) {
        return Err(err("not a PNG or JPEG image (unrecognised content)".into()));
    }
    let reader =
        || image::ImageReader::with_format(std::io::Cursor::new(&bytes), format.expect("checked"));
    let (w, h) = reader().into_dimensions().map_err(|e| err(e.to_string()))?;
    if (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(err(format!(
            "{w}x{h} image has more than the {MAX_PIXELS}-pixel limit; downscale it first"
        )));
    }
    if format == Some(image::ImageFormat::Jpeg) {
        return decode_jpeg(&bytes).map_err(err);
    }
    let mut r = reader();
    r.no_limits();
    let img = r.decode().map_err(|e| err(e.to_string()))?;
    let rgb = img.to_rgb8();
    Ok(Rgb8::new(
        rgb.width() as usize,
        rgb.height() as usize,
        rgb.into_raw(),
    ))
}

/// JPEG through libjpeg-turbo's decoder (as vendored by mozjpeg), the library PIL uses, with
/// PIL's settings (integer IDCT, fancy upsampling): pure-Rust decoders differ by a few grey levels.
fn decode_jpeg(bytes: &[u8]) -> std::result::Result<Rgb8, String> {
    // libjpeg only warns on a missing end; PIL refuses such files ("image file is truncated").
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err("truncated JPEG (no end-of-image marker)".into());
    }
    let result = std::panic::catch_unwind(|| -> std::io::Result<Rgb8> {
        let mut d = mozjpeg::Decompress::new_mem(bytes)?;
        d.dct_method(mozjpeg::DctMethod::IntegerSlow);
        d.do_fancy_upsampling(true);
        let mut started = d.rgb()?;
        let (w, h) = (started.width(), started.height());
        let data = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok(Rgb8::new(w, h, data))
    });
    match result {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "corrupt JPEG".into())),
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first input index, count, and fixed-point weights (Pillow's
/// `precompute_coeffs` + `normalize_coeffs_8bpc`).
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    k: Vec<i64>,
}

// Index loops as in Pillow's C (Resample.c), so the two can be read side by side.
#[allow(clippy::needless_range_loop)]
fn precompute_coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i64; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts with truncation toward zero, then clamps.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for x in 0..xmax {
            let v = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            w[x] = v;
            ww += v;
        }
        for x in 0..xmax {
            let v = if ww != 0.0 { w[x] / ww } else { w[x] };
            let fixed = v * (1i64 << PRECISION_BITS) as f64;
            k[xx * ksize + x] = if v < 0.0 {
                (fixed - 0.5) as i64
            } else {
                (fixed + 0.5) as i64
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { bounds, ksize, k }
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((w, h), Image.BICUBIC)` on an RGB image, bit for bit.
pub fn pil_resize(img: &Rgb8, out_w: usize, out_h: usize) -> Rgb8 {
    if img.width == out_w && img.height == out_h {
        return img.clone();
    }
    let horiz = precompute_coeffs(img.width, out_w);
    let vert = precompute_coeffs(img.height, out_h);
    let half = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass over the rows the vertical pass reads.
    let y_first = vert.bounds[0].0;
    let y_last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;
    let need_h = out_w != img.width;
    let (tmp, tmp_w, row0) = if need_h {
        let rows = y_last - y_first;
        let mut tmp = vec![0u8; rows * out_w * 3];
        for y in 0..rows {
            let src = &img.data[(y + y_first) * img.width * 3..(y + y_first + 1) * img.width * 3];
            for xx in 0..out_w {
                let (xmin, xmax) = horiz.bounds[xx];
                let k = &horiz.k[xx * horiz.ksize..];
                for c in 0..3 {
                    let mut ss = half;
                    for x in 0..xmax {
                        ss += src[(x + xmin) * 3 + c] as i64 * k[x];
                    }
                    tmp[(y * out_w + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        (tmp, out_w, y_first)
    } else {
        (img.data.clone(), img.width, 0)
    };
    if out_h == img.height {
        // Only the horizontal pass was needed (all rows were resampled).
        return Rgb8::new(out_w, out_h, tmp);
    }
    let mut out = vec![0u8; out_w * out_h * 3];
    for yy in 0..out_h {
        let (ymin, ymax) = vert.bounds[yy];
        let k = &vert.k[yy * vert.ksize..];
        for xx in 0..tmp_w {
            for c in 0..3 {
                let mut ss = half;
                for y in 0..ymax {
                    ss += tmp[((y + ymin - row0) * tmp_w + xx) * 3 + c] as i64 * k[y];
                }
                out[(yy * out_w + xx) * 3 + c] = clip8(ss);
            }
        }
    }
    Rgb8::new(out_w, out_h, out)
}

/// Settings of HF's CLIP image processor.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessor {
    /// Target of the shortest side.
    pub shortest_edge: usize,
    pub crop_height: usize,
    pub crop_width: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

// The published constants as written (OpenAI's and HF's preprocessor configs).
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Where a box or pixel lands: the resize and the crop applied to an image of a given size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    pub resized_w: usize,
    pub resized_h: usize,
    pub left: i64,
    pub top: i64,
    pub crop_w: usize,
    pub crop_h: usize,
}

impl Geometry {
    /// A crop-sized map carried back onto the original `width` x `height` image, for figures:
    /// each original pixel takes the crop pixel its centre lands on (NaN outside the crop).
    /// Also the crop's rectangle in original pixels, `[x0, y0, x1, y1)`.
    pub fn to_original(&self, map: &[f32], width: usize, height: usize) -> (Vec<f32>, [usize; 4]) {
        let sx = self.resized_w as f64 / width as f64;
        let sy = self.resized_h as f64 / height as f64;
        let mut out = vec![f32::NAN; width * height];
        for y in 0..height {
            let cy = ((y as f64 + 0.5) * sy).floor() as i64 - self.top;
            if cy < 0 || cy >= self.crop_h as i64 {
                continue;
            }
            for x in 0..width {
                let cx = ((x as f64 + 0.5) * sx).floor() as i64 - self.left;
                if cx >= 0 && cx < self.crop_w as i64 {
                    out[y * width + x] = map[cy as usize * self.crop_w + cx as usize];
                }
            }
        }
        let edge = |v: f64, s: f64, max: usize| ((v / s).round().max(0.0) as usize).min(max);
        let rect = [
            edge(self.left as f64, sx, width),
            edge(self.top as f64, sy, height),
            edge((self.left + self.crop_w as i64) as f64, sx, width),
            edge((self.top + self.crop_h as i64) as f64, sy, height),
        ];
        (out, rect)
    }
}

/// A box in model-input coordinates after clipping to the crop; `None` when nothing is left.
pub type Box4 = [f64; 4];

impl Preprocessor {
    /// The default for a square model input of `size` pixels.
    pub fn for_size(size: usize) -> Self {
        Preprocessor {
            shortest_edge: size,
            crop_height: size,
            crop_width: size,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }

    /// Reads `preprocessor_config.json` (HF keys `size`, `crop_size`, `image_mean`, `image_std`);
    /// absent keys fall back to `default`.
    pub fn from_file(path: &Path, default: &Preprocessor) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ClipError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |message: String| ClipError::Config {
            path: path.to_path_buf(),
            message,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut p = default.clone();
        match v.get("size") {
            Some(Value::Number(n)) => {
                p.shortest_edge = n
                    .as_u64()
                    .ok_or_else(|| bad("`size` must be a positive integer".into()))?
                    as usize
            }
            Some(Value::Object(o)) => {
                if let Some(s) = o.get("shortest_edge").and_then(Value::as_u64) {
                    p.shortest_edge = s as usize;
                } else {
                    return Err(bad("`size` must give `shortest_edge` (fixed height/width resizing is not supported)".into()));
                }
            }
            Some(_) => return Err(bad("`size` must be a number or an object".into())),
            None => {}
        }
        match v.get("crop_size") {
            Some(Value::Number(n)) => {
                let c = n
                    .as_u64()
                    .ok_or_else(|| bad("`crop_size` must be a positive integer".into()))?
                    as usize;
                p.crop_height = c;
                p.crop_width = c;
            }
            Some(Value::Object(o)) => {
                let get = |k: &str| o.get(k).and_then(Value::as_u64).map(|x| x as usize);
                p.crop_height =
                    get("height").ok_or_else(|| bad("`crop_size.height` missing".into()))?;
                p.crop_width =
                    get("width").ok_or_else(|| bad("`crop_size.width` missing".into()))?;
            }
            Some(_) => return Err(bad("`crop_size` must be a number or an object".into())),
            None => {}
        }
        let triple = |key: &str, into: &mut [f32; 3]| -> Result<()> {
            if let Some(a) = v.get(key) {
                let arr = a
                    .as_array()
                    .filter(|a| a.len() == 3)
                    .ok_or_else(|| bad(format!("`{key}` must be a list of 3 numbers")))?;
                for (i, x) in arr.iter().enumerate() {
                    into[i] = x
                        .as_f64()
                        .ok_or_else(|| bad(format!("`{key}` must be a list of 3 numbers")))?
                        as f32;
                }
            }
            Ok(())
        };
        triple("image_mean", &mut p.mean)?;
        triple("image_std", &mut p.std)?;
        if p.shortest_edge == 0 || p.crop_height == 0 || p.crop_width == 0 {
            return Err(bad("sizes must be positive".into()));
        }
        Ok(p)
    }

    /// Resize and crop geometry for an image of `w` x `h` (HF `get_resize_output_image_size`
    /// with `default_to_square=False`, then `center_crop`).
    pub fn geometry(&self, w: usize, h: usize) -> Geometry {
        let s = self.shortest_edge;
        let (resized_w, resized_h) = if w <= h {
            (s, ((s * h) as f64 / w as f64) as usize)
        } else {
            (((s * w) as f64 / h as f64) as usize, s)
        };
        Geometry {
            resized_w,
            resized_h,
            left: (resized_w as i64 - self.crop_width as i64).div_euclid(2),
            top: (resized_h as i64 - self.crop_height as i64).div_euclid(2),
            crop_w: self.crop_width,
            crop_h: self.crop_height,
        }
    }

    /// Resized and cropped 8-bit image (zero padding where the crop exceeds the image, as HF).
    pub fn resize_crop(&self, img: &Rgb8) -> Rgb8 {
        let g = self.geometry(img.width, img.height);
        let resized = pil_resize(img, g.resized_w, g.resized_h);
        let mut out = vec![0u8; g.crop_w * g.crop_h * 3];
        for y in 0..g.crop_h {
            let sy = y as i64 + g.top;
            if sy < 0 || sy >= g.resized_h as i64 {
                continue;
            }
            for x in 0..g.crop_w {
                let sx = x as i64 + g.left;
                if sx < 0 || sx >= g.resized_w as i64 {
                    continue;
                }
                let src = (sy as usize * g.resized_w + sx as usize) * 3;
                out[(y * g.crop_w + x) * 3..(y * g.crop_w + x) * 3 + 3]
                    .copy_from_slice(&resized.data[src..src + 3]);
            }
        }
        Rgb8::new(g.crop_w, g.crop_h, out)
    }

    /// Normalised pixel values [3, crop_h, crop_w] float32.
    pub fn to_tensor(&self, cropped: &Rgb8) -> Tensor {
        let (w, h) = (cropped.width, cropped.height);
        let mut v = vec![0f32; 3 * w * h];
        for c in 0..3 {
            for i in 0..w * h {
                let x = cropped.data[i * 3 + c] as f32 * (1.0 / 255.0);
                v[c * w * h + i] = (x - self.mean[c]) / self.std[c];
            }
        }
        Tensor::from_slice(&v).view([3, h as i64, w as i64])
    }

    pub fn preprocess(&self, img: &Rgb8) -> Tensor {
        self.to_tensor(&self.resize_crop(img))
    }

    /// Maps a box `[x0, y0, x1, y1]` in original pixels through the resize and crop, clipped to
    /// the crop; `None` when the box lies wholly outside it.
    pub fn map_box(&self, w: usize, h: usize, b: Box4) -> Option<Box4> {
        let g = self.geometry(w, h);
        let sx = g.resized_w as f64 / w as f64;
        let sy = g.resized_h as f64 / h as f64;
        let x0 = (b[0] * sx - g.left as f64).clamp(0.0, g.crop_w as f64);
        let x1 = (b[2] * sx - g.left as f64).clamp(0.0, g.crop_w as f64);
        let y0 = (b[1] * sy - g.top as f64).clamp(0.0, g.crop_h as f64);
        let y1 = (b[3] * sy - g.top as f64).clamp(0.0, g.crop_h as f64);
        (x1 > x0 && y1 > y0).then_some([x0, y0, x1, y1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_side_is_truncated_not_rounded() {
        // 224 * 451 / 300 = 336.75: PIL path gives 336.
        let g = Preprocessor::for_size(224).geometry(451, 300);
        assert_eq!((g.resized_w, g.resized_h, g.left, g.top), (336, 224, 56, 0));
        let g = Preprocessor::for_size(224).geometry(300, 451);
        assert_eq!((g.resized_w, g.resized_h, g.left, g.top), (224, 336, 0, 56));
    }

    #[test]
    fn crop_offset_floors() {
        // 225 - 224 = 1 -> offset 0; 227 - 224 = 3 -> 1.
        let p = Preprocessor {
            crop_width: 224,
            crop_height: 224,
            ..Preprocessor::for_size(225)
        };
        assert_eq!(p.geometry(225, 225).left, 0);
        let p = Preprocessor {
            crop_width: 224,
            crop_height: 224,
            ..Preprocessor::for_size(227)
        };
        assert_eq!(p.geometry(227, 227).left, 1);
    }

    #[test]
    fn maps_go_back_onto_the_original_image() {
        // 8 x 4 -> resized 4 x 2 (shortest side 2), centre crop 2 x 2 from x = 1.
        let g = Geometry {
            resized_w: 4,
            resized_h: 2,
            left: 1,
            top: 0,
            crop_w: 2,
            crop_h: 2,
        };
        let (m, rect) = g.to_original(&[1.0, 2.0, 3.0, 4.0], 8, 4);
        assert_eq!(rect, [2, 0, 6, 4]);
        assert!(m[0].is_nan() && m[7].is_nan() && m[1].is_nan() && m[6].is_nan());
        assert_eq!(&m[2..6], &[1.0, 1.0, 2.0, 2.0]);
        assert_eq!(&m[3 * 8 + 2..3 * 8 + 6], &[3.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn resize_of_constant_image_is_constant() {
        let img = Rgb8::new(37, 23, vec![200; 37 * 23 * 3]);
        for (w, h) in [(10, 7), (80, 51), (37, 50)] {
            let r = pil_resize(&img, w, h);
            assert!(r.data.iter().all(|&v| v == 200), "{w}x{h}");
        }
    }

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(451, 336), (97, 224), (224, 224), (1000, 7)] {
            let c = precompute_coeffs(i, o);
            for xx in 0..o {
                let s: i64 = c.k[xx * c.ksize..xx * c.ksize + c.bounds[xx].1]
                    .iter()
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= c.bounds[xx].1 as i64,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }

    #[test]
    fn boxes_follow_resize_and_crop() {
        let p = Preprocessor::for_size(224);
        // 451x300 -> 336x224, crop left 56. x scale 336/451.
        let b = p.map_box(451, 300, [100.0, 30.0, 200.0, 150.0]).unwrap();
        let sx = 336.0 / 451.0;
        let sy = 224.0 / 300.0;
        assert!((b[0] - (100.0 * sx - 56.0)).abs() < 1e-9);
        assert!((b[1] - 30.0 * sy).abs() < 1e-9);
        assert!((b[2] - (200.0 * sx - 56.0)).abs() < 1e-9);
        // A box wholly in the cropped-away left margin.
        assert_eq!(p.map_box(451, 300, [0.0, 0.0, 60.0, 100.0]), None);
        // Partly cropped: clipped at 0.
        let b = p.map_box(451, 300, [50.0, 0.0, 120.0, 10.0]).unwrap();
        assert_eq!(b[0], 0.0);
    }

    #[test]
    fn normalisation_uses_mean_and_std() {
        let p = Preprocessor::for_size(1);
        let t = p.to_tensor(&Rgb8::new(1, 1, vec![255, 0, 128]));
        let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
        assert!((v[0] - (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
        assert!((v[1] - (0.0 - CLIP_MEAN[1]) / CLIP_STD[1]).abs() < 1e-6);
        assert!((v[2] - (128.0 / 255.0 - CLIP_MEAN[2]) / CLIP_STD[2]).abs() < 1e-6);
    }
}
