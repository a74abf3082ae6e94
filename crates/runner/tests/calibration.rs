//! The calibration rows frame the directional metrics on the embedded default (tune split): the
//! oracle keeps more of the model's confidence than random maps, and the inverted oracle
//! (1 - oracle) keeps less, for images (keep-top25 protocol) and text. A metric where this fails
//! cannot rank methods on this benchmark.
use m2ib_attribution::{normalize_image, normalize_text};
use m2ib_clip::tokenizer::text_input;
use m2ib_clip::Checkpoint;
use m2ib_metrics::calibration::{image_map, text_scores, Reference};
use m2ib_metrics::confidence::{image_change, text_change, TextProtocol};
use m2ib_runner::experiment::DatasetSpec;
use m2ib_runner::samples::{list, prepare};
use tch::{Device, Tensor};

use m2ib_testkit::tiny_model as model_dir;

/// `n` generated scenes of the tune split.
fn tune_scenes(n: usize, seed: u64, absent: bool) -> DatasetSpec {
    DatasetSpec {
        reader: m2ib_runner::experiment::Reader::Shapes,
        split: "tune".into(),
        n,
        seed,
        absent,
        file: None,
        image_root: None,
        base: Default::default(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Map {
    Oracle,
    Random,
    Inverted,
}

#[test]
fn oracle_beats_random_beats_inverted_oracle_on_confidence_drop() {
    tch::set_num_threads(1);
    let ck = Checkpoint::load(&model_dir(), Device::Cpu).unwrap();
    let spec = tune_scenes(24, 5, false);
    let kinds = [Map::Oracle, Map::Random, Map::Inverted];
    let mut image_drop = [0.0f64; 3];
    let mut text_drop = [0.0f64; 3];
    let mut keep_drop = [0.0f64; 3];
    let samples = list(&spec, 0).unwrap();
    for (i, s) in samples.iter().enumerate() {
        let p = prepare(&ck, s.as_ref().unwrap()).unwrap();
        let (h, w) = (p.pixels.size()[1] as usize, p.pixels.size()[2] as usize);
        let ids = &p.encoded.ids;
        let t = &ck.tokenizer;
        let content: Vec<bool> = ids
            .iter()
            .map(|&x| Some(x) != t.start_id && x != t.end_id)
            .collect();
        let (img_e, txt_e) = tch::no_grad(|| {
            (
                ck.model.image_features(&p.pixels.unsqueeze(0)),
                ck.model.text_features(&text_input(
                    std::slice::from_ref(ids),
                    t.pad_id,
                    t.end_id,
                    ck.pooling,
                )),
            )
        });
        for (k, kind) in kinds.iter().enumerate() {
            let r = if *kind == Map::Random {
                Reference::Random
            } else {
                Reference::Oracle
            };
            let seed = 100 + i as u64;
            let mut img = image_map(r, h, w, p.boxes.as_deref(), seed).unwrap();
            let mut txt = text_scores(r, ids.len(), p.present.as_deref(), seed).unwrap();
            if *kind == Map::Inverted {
                img.iter_mut().for_each(|v| *v = 1.0 - *v);
                txt.iter_mut().for_each(|v| *v = 1.0 - *v);
            }
            let map =
                normalize_image(&Tensor::from_slice(&img).view([h as i64, w as i64])).unwrap();
            image_drop[k] += image_change(&ck.model, &p.pixels, &map, &txt_e.get(0))
                .unwrap()
                .drop();
            let kept = m2ib_metrics::confidence::keep_top(&map, 0.25).unwrap();
            keep_drop[k] += image_change(&ck.model, &p.pixels, &kept, &txt_e.get(0))
                .unwrap()
                .drop();
            let scores = normalize_text(&txt, &content).unwrap();
            let pool = ids.len() - 1;
            text_drop[k] += text_change(
                &ck.model,
                &m2ib_metrics::confidence::Caption {
                    ids,
                    pool,
                    text_mask_id: t.pad_id,
                    end_id: t.end_id,
                },
                &scores,
                &img_e.get(0),
                TextProtocol::Official,
            )
            .unwrap()
            .drop();
        }
    }
    let n = samples.len() as f64;
    let (image_drop, text_drop) = (image_drop.map(|v| v / n), text_drop.map(|v| v / n));
    let keep_drop = keep_drop.map(|v| v / n);
    println!("image drop oracle / random / inverted: {image_drop:?}");
    println!("image drop, top 25 % kept: {keep_drop:?}");
    println!("text drop oracle / random / inverted: {text_drop:?}");
    // The paper's whole-map product: random pixel noise keeps every object at about half
    // strength and barely moves the model, while the oracle greys the whole background out, so
    // random "beats" the oracle. This is why tables also score `keep-top25` (README).
    assert!(
        image_drop[1] < image_drop[0] && image_drop[0] < image_drop[2],
        "{image_drop:?}"
    );
    assert!(
        keep_drop[0] < keep_drop[1] && keep_drop[1] < keep_drop[2],
        "{keep_drop:?}"
    );
    assert!(
        text_drop[0] < text_drop[1] && text_drop[1] < text_drop[2],
        "{text_drop:?}"
    );
}

/// Diagnostic (run by hand, `--ignored --nocapture`; ABSENT=1 for captions naming an absent
/// object, CAPTION=1 to score against the whole caption): keep-top25 drop and increase on the
/// tune split for oracle tie-break variants beside the random row, with per-sample standard
/// errors. It is why image perturbations are scored against the caption's true part and why the
/// oracle keeps its per-pixel jitter (README "Results on the embedded default").
#[test]
#[ignore]
fn keep_top25_oracle_tie_breaks_on_tune() {
    tch::set_num_threads(2);
    let ck = Checkpoint::load(&model_dir(), Device::Cpu).unwrap();
    let n_scenes = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let spec = tune_scenes(n_scenes, 11, std::env::var("ABSENT").is_ok());
    let names = [
        "oracle-pixel",
        "oracle-smooth",
        "oracle-distance",
        "random",
        "random-smooth",
    ];
    let mut drops = vec![Vec::new(); names.len()];
    let mut incs = vec![Vec::new(); names.len()];
    let mut cover = Vec::new();
    let samples = list(&spec, 0).unwrap();
    for (i, s) in samples.iter().enumerate() {
        let p = prepare(&ck, s.as_ref().unwrap()).unwrap();
        let (h, w) = (p.pixels.size()[1] as usize, p.pixels.size()[2] as usize);
        let ids = &p.encoded.ids;
        let t = &ck.tokenizer;
        // Scored against the caption's true part (`metrics.image_target`, default "present");
        // CAPTION=1: against the caption the map explains.
        let target_ids = match (&p.present_caption, std::env::var("CAPTION").is_ok()) {
            (Some(c), false) => c.clone(),
            _ => ids.clone(),
        };
        let txt_e = tch::no_grad(|| {
            ck.model.text_features(&text_input(
                std::slice::from_ref(&target_ids),
                t.pad_id,
                t.end_id,
                ck.pooling,
            ))
        });
        let seed = 100 + i as u64;
        let boxes = p.boxes.as_deref().unwrap();
        let inside = m2ib_metrics::localization::box_mask(boxes, h, w);
        cover.push(inside.iter().filter(|&&b| b).count() as f64 / (h * w) as f64);
        let smooth = smooth_noise(h, w, 7, seed);
        let maps: Vec<Vec<f32>> = vec![
            image_map(Reference::Oracle, h, w, Some(boxes), seed).unwrap(),
            inside
                .iter()
                .zip(&smooth)
                .map(|(&b, &s)| b as u8 as f32 + 1e-3 * s)
                .collect(),
            distance_oracle(boxes, h, w, &inside),
            image_map(Reference::Random, h, w, None, seed).unwrap(),
            smooth.clone(),
        ];
        for (k, m) in maps.iter().enumerate() {
            let map = normalize_image(&Tensor::from_slice(m).view([h as i64, w as i64])).unwrap();
            let kept = m2ib_metrics::confidence::keep_top(&map, 0.25).unwrap();
            let c = image_change(&ck.model, &p.pixels, &kept, &txt_e.get(0)).unwrap();
            drops[k].push(c.drop());
            incs[k].push(c.increase());
        }
    }
    let ms = |v: &[f64]| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, (var / n).sqrt())
    };
    let c = ms(&cover);
    println!(
        "n {} scenes, box cover {:.3} ± {:.3}",
        samples.len(),
        c.0,
        c.1
    );
    let (rd, ri) = (ms(&drops[3]), ms(&incs[3]));
    for (k, name) in names.iter().enumerate() {
        let (d, inc) = (ms(&drops[k]), ms(&incs[k]));
        println!(
            "{name:16} drop {:6.2} ± {:4.2} ({:+5.1} SE)   increase {:5.1} ± {:4.1} ({:+5.1} SE)",
            d.0,
            d.1,
            (rd.0 - d.0) / (rd.1.powi(2) + d.1.powi(2)).sqrt(),
            inc.0,
            inc.1,
            (inc.0 - ri.0) / (ri.1.powi(2) + inc.1.powi(2)).sqrt()
        );
    }
}

/// Uniform noise on a coarse (g+1)² lattice, bilinear in between.
fn smooth_noise(h: usize, w: usize, g: usize, seed: u64) -> Vec<f32> {
    let lattice = image_map(Reference::Random, g + 1, g + 1, None, seed ^ 0x5EED).unwrap();
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let fy = (y as f32 + 0.5) / h as f32 * g as f32;
        let (y0, ty) = (fy.floor() as usize, fy.fract());
        for x in 0..w {
            let fx = (x as f32 + 0.5) / w as f32 * g as f32;
            let (x0, tx) = (fx.floor() as usize, fx.fract());
            let at = |yy: usize, xx: usize| lattice[yy * (g + 1) + xx];
            let top = at(y0, x0) * (1.0 - tx) + at(y0, x0 + 1) * tx;
            let bot = at(y0 + 1, x0) * (1.0 - tx) + at(y0 + 1, x0 + 1) * tx;
            out.push(top * (1.0 - ty) + bot * ty);
        }
    }
    out
}

/// Inside a box: closer to its centre ranks higher; outside: closer to the nearest box.
fn distance_oracle(boxes: &[[f64; 4]], h: usize, w: usize, inside: &[bool]) -> Vec<f32> {
    let diag = ((h * h + w * w) as f64).sqrt();
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let cy = y as f64 + 0.5;
        for x in 0..w {
            let cx = x as f64 + 0.5;
            let v = if inside[y * w + x] {
                let d = boxes
                    .iter()
                    .filter(|b| cx >= b[0] && cx < b[2] && cy >= b[1] && cy < b[3])
                    .map(|b| {
                        ((cx - (b[0] + b[2]) / 2.0).powi(2) + (cy - (b[1] + b[3]) / 2.0).powi(2))
                            .sqrt()
                    })
                    .fold(f64::INFINITY, f64::min);
                1.0 + 1e-3 * (1.0 - d / diag)
            } else {
                let d = boxes
                    .iter()
                    .map(|b| {
                        let dx = (b[0] - cx).max(cx - b[2]).max(0.0);
                        let dy = (b[1] - cy).max(cy - b[3]).max(0.0);
                        (dx * dx + dy * dy).sqrt()
                    })
                    .fold(f64::INFINITY, f64::min);
                1e-3 * (1.0 - d / diag)
            };
            out.push(v as f32);
        }
    }
    out
}
