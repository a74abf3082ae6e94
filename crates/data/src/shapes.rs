//! The synthetic `shapes` benchmark (DESIGN.md "The embedded default"): 224 x 224 images of
//! coloured shapes on a smooth textured background, captions naming 1-2 of them, distractors
//! sharing neither colour nor shape with a named object, exact boxes for the named ones, and a
//! variant whose caption also names an absent object (text ground truth).
//!
//! Deterministic from (seed, split, index); splits are disjoint because each draws from its own
//! seed stream.
use serde::{Deserialize, Serialize};

pub const SIZE: usize = 224;
pub const MIN_OBJECT: usize = 40;
pub const MAX_OBJECT: usize = 72;

pub const COLOURS: [(&str, [u8; 3]); 7] = [
    ("red", [220, 40, 40]),
    ("green", [40, 170, 60]),
    ("blue", [45, 85, 225]),
    ("yellow", [235, 215, 40]),
    ("purple", [150, 60, 200]),
    ("orange", [245, 140, 30]),
    ("white", [245, 245, 245]),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
    Cross,
    Ring,
}

pub const SHAPES: [Shape; 6] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Star,
    Shape::Cross,
    Shape::Ring,
];

impl Shape {
    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Cross => "cross",
            Shape::Ring => "ring",
        }
    }

    /// Whether the point (u, v) in [-1, 1]^2 of the object's box is inside the shape.
    fn contains(self, u: f64, v: f64) -> bool {
        match self {
            Shape::Circle => u * u + v * v <= 1.0,
            Shape::Square => u.abs() <= 0.85 && v.abs() <= 0.85,
            Shape::Triangle => (-0.9..=0.9).contains(&v) && u.abs() <= (v + 0.9) / 1.8 * 0.95,
            Shape::Cross => {
                (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0)
            }
            Shape::Ring => {
                let r = u * u + v * v;
                (0.3..=1.0).contains(&r)
            }
            Shape::Star => {
                let r = (u * u + v * v).sqrt();
                let a = v.atan2(u) + std::f64::consts::FRAC_PI_2;
                // Five points: the radius oscillates between 0.45 and 1.
                let k = (a * 5.0 / (2.0 * std::f64::consts::PI)).rem_euclid(1.0);
                let t = (k - 0.5).abs() * 2.0; // 1 at a tip, 0 between tips
                r <= 0.45 + 0.55 * t
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Object {
    pub colour: usize,
    pub shape: Shape,
    /// Box [x0, y0, x1, y1) in pixels.
    pub bbox: [usize; 4],
}

impl Object {
    pub fn words(&self) -> [&'static str; 2] {
        [COLOURS[self.colour].0, self.shape.word()]
    }
    pub fn phrase(&self) -> String {
        format!("{} {}", COLOURS[self.colour].0, self.shape.word())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Tune,
    Test,
}

impl Split {
    /// A split by its name (`train`, `tune`, `test`); callers word the error for their field.
    pub fn from_name(s: &str) -> Option<Split> {
        [Split::Train, Split::Tune, Split::Test]
            .into_iter()
            .find(|x| x.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Tune => "tune",
            Split::Test => "test",
        }
    }

    pub fn stream(self) -> u64 {
        match self {
            Split::Train => 0x7261_696e,
            Split::Tune => 0x7475_6e65,
            Split::Test => 0x7465_7374,
        }
    }
}

/// One generated scene.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub rgb: Vec<u8>,
    pub objects: Vec<Object>,
    /// Indices into `objects` of those the caption names.
    pub named: Vec<usize>,
    /// An object the caption names that is not in the image (absent variant only).
    pub absent: Option<(usize, Shape)>,
    pub caption: String,
    /// Per object, its pixels (row-major indices) — the exact ground truth.
    pub masks: Vec<Vec<u32>>,
}

/// splitmix64-based generator: tiny, seedable, identical on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.range(0, i + 1));
        }
    }
}

/// The scene seed of (benchmark seed, split, index).
pub fn scene_seed(seed: u64, split: Split, index: u64) -> u64 {
    let mut r =
        Rng::new(seed ^ split.stream().rotate_left(32) ^ index.wrapping_mul(0x2545F4914F6CDD1D));
    r.next_u64()
}

// The 6.28 / 6.283 literals are part of the generator: TAU would change every scene (and the
// embedded model, trained on them).
#[allow(clippy::approx_constant)]
fn background(r: &mut Rng) -> Vec<u8> {
    // Low-frequency colour field plus fine texture: dark, muted, never a shape colour.
    let base: Vec<f64> = (0..3).map(|_| 45.0 + r.f64() * 50.0).collect();
    let waves: Vec<(f64, f64, f64, f64)> = (0..3)
        .map(|_| {
            (
                r.f64() * 3.0,
                r.f64() * 3.0,
                r.f64() * 6.28,
                10.0 + r.f64() * 15.0,
            )
        })
        .collect();
    let mut img = vec![0u8; SIZE * SIZE * 3];
    for y in 0..SIZE {
        for x in 0..SIZE {
            let noise = (r.f64() - 0.5) * 16.0;
            for c in 0..3 {
                let (fx, fy, ph, amp) = waves[c];
                let v = base[c]
                    + amp
                        * (fx * 6.283 * x as f64 / SIZE as f64
                            + fy * 6.283 * y as f64 / SIZE as f64
                            + ph)
                            .sin()
                    + noise;
                img[(y * SIZE + x) * 3 + c] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

fn overlaps(a: &[usize; 4], b: &[usize; 4], margin: usize) -> bool {
    a[0] < b[2] + margin && b[0] < a[2] + margin && a[1] < b[3] + margin && b[1] < a[3] + margin
}

/// Generates scene `index` of `split`. `absent_variant` adds an absent object to the caption.
pub fn generate(seed: u64, split: Split, index: u64, absent_variant: bool) -> Scene {
    build(seed, split, index, absent_variant, false)
}

/// Scene `index` with the colours of its two named objects exchanged, everything else (layout,
/// background, shading) identical; its caption describes it. None with one named object. The
/// binding counterpart of `generate`: a caption of the original must reject this image.
pub fn generate_colours_swapped(seed: u64, split: Split, index: u64) -> Option<Scene> {
    let s = build(seed, split, index, false, true);
    (s.named.len() >= 2).then_some(s)
}

/// The image of scene `index` without object `omit` (an index into its `objects`): the same
/// layout, background and shading, with the background where the object was. The intervention
/// behind the object-importance ground truth: what the model loses when one object is gone.
pub fn render_without(
    seed: u64,
    split: Split,
    index: u64,
    absent_variant: bool,
    omit: usize,
) -> Vec<u8> {
    build_with(seed, split, index, absent_variant, false, Some(omit)).rgb
}

fn build(seed: u64, split: Split, index: u64, absent_variant: bool, swap: bool) -> Scene {
    build_with(seed, split, index, absent_variant, swap, None)
}

fn build_with(
    seed: u64,
    split: Split,
    index: u64,
    absent_variant: bool,
    swap: bool,
    omit: Option<usize>,
) -> Scene {
    let mut r = Rng::new(scene_seed(seed, split, index));
    let n_named = r.range(1, 3);
    let n_total = r.range(n_named, 5).max(n_named);
    // Named objects: distinct colours and distinct shapes.
    let mut colours: Vec<usize> = (0..COLOURS.len()).collect();
    let mut shapes: Vec<Shape> = SHAPES.to_vec();
    r.shuffle(&mut colours);
    r.shuffle(&mut shapes);
    // Named take the first colours/shapes; distractors and the absent object take from the rest,
    // so they share neither colour nor shape with a named object.
    let mut kinds: Vec<(usize, Shape)> = (0..n_named).map(|i| (colours[i], shapes[i])).collect();
    for _ in n_named..n_total {
        let c = colours[r.range(n_named, colours.len())];
        let s = shapes[r.range(n_named, shapes.len())];
        kinds.push((c, s));
    }
    let absent = absent_variant.then(|| {
        // Neither its colour nor its shape is in the image.
        let used_c: Vec<usize> = kinds.iter().map(|k| k.0).collect();
        let used_s: Vec<Shape> = kinds.iter().map(|k| k.1).collect();
        let free_c: Vec<usize> = colours
            .iter()
            .copied()
            .filter(|c| !used_c.contains(c))
            .collect();
        let free_s: Vec<Shape> = shapes
            .iter()
            .copied()
            .filter(|s| !used_s.contains(s))
            .collect();
        (
            free_c[r.range(0, free_c.len())],
            free_s[r.range(0, free_s.len())],
        )
    });
    // Place without overlap (with a margin); give up on a distractor that does not fit.
    let mut objects: Vec<Object> = Vec::new();
    for (i, (c, s)) in kinds.iter().enumerate() {
        for _ in 0..200 {
            let w = r.range(MIN_OBJECT, MAX_OBJECT + 1);
            let x0 = r.range(2, SIZE - w - 2);
            let y0 = r.range(2, SIZE - w - 2);
            let b = [x0, y0, x0 + w, y0 + w];
            if objects.iter().all(|o| !overlaps(&o.bbox, &b, 4)) {
                objects.push(Object {
                    colour: *c,
                    shape: *s,
                    bbox: b,
                });
                break;
            }
        }
        assert!(
            objects.len() == i + 1 || i >= n_named,
            "named objects always fit"
        );
    }
    if swap && n_named >= 2 {
        let c0 = objects[0].colour;
        objects[0].colour = objects[1].colour;
        objects[1].colour = c0;
    }
    let mut rgb = background(&mut r);
    let mut masks = Vec::with_capacity(objects.len());
    for (k, o) in objects.iter().enumerate() {
        let col = COLOURS[o.colour].1;
        // Drawn for every object (omitted or not) so the others keep their shading.
        let shade = 0.85 + r.f64() * 0.15;
        let [x0, y0, x1, y1] = o.bbox;
        let half = (x1 - x0) as f64 / 2.0;
        let mut mask = vec![];
        for y in y0..y1 {
            for x in x0..x1 {
                let u = (x as f64 + 0.5 - x0 as f64 - half) / half;
                let v = (y as f64 + 0.5 - y0 as f64 - half) / half;
                if o.shape.contains(u, v) {
                    if omit != Some(k) {
                        let p = (y * SIZE + x) * 3;
                        for c in 0..3 {
                            rgb[p + c] = (col[c] as f64 * shade).round() as u8;
                        }
                    }
                    mask.push((y * SIZE + x) as u32);
                }
            }
        }
        masks.push(mask);
    }
    let named: Vec<usize> = (0..n_named).collect();
    let mut phrases: Vec<String> = named.iter().map(|&i| objects[i].phrase()).collect();
    if let Some((c, s)) = absent {
        phrases.push(format!("{} {}", COLOURS[c].0, s.word()));
    }
    r.shuffle(&mut phrases);
    let caption = phrases
        .iter()
        .map(|p| format!("a {p}"))
        .collect::<Vec<_>>()
        .join(" and ");
    Scene {
        rgb,
        objects,
        named,
        absent,
        caption,
        masks,
    }
}

impl Scene {
    /// Boxes of the named objects, `[x0, y0, x1, y1]` in pixels.
    pub fn boxes(&self) -> Vec<[f64; 4]> {
        self.named
            .iter()
            .map(|&i| {
                let b = self.objects[i].bbox;
                [b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64]
            })
            .collect()
    }

    /// The phrases the caption names, in caption order, with the object each names (`None`:
    /// the absent object).
    pub fn phrases(&self) -> Vec<(String, Option<usize>)> {
        self.caption
            .split(" and ")
            .map(|p| {
                let phrase = p.trim_start_matches("a ").to_string();
                let obj = self
                    .named
                    .iter()
                    .copied()
                    .find(|&i| self.objects[i].phrase() == phrase);
                (phrase, obj)
            })
            .collect()
    }

    /// The caption without its `k`-th phrase (caption order); None when it names only one.
    pub fn caption_without(&self, k: usize) -> Option<String> {
        let parts: Vec<&str> = self.caption.split(" and ").collect();
        (parts.len() > 1 && k < parts.len()).then(|| {
            parts
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != k)
                .map(|(_, p)| *p)
                .collect::<Vec<_>>()
                .join(" and ")
        })
    }

    /// Caption words that name present objects (the text ground truth).
    pub fn present_words(&self) -> Vec<&'static str> {
        self.named
            .iter()
            .flat_map(|&i| self.objects[i].words())
            .collect()
    }

    /// The caption with one named object replaced by an absent one (absent-object accuracy).
    pub fn with_absent_object(&self, r: &mut Rng) -> String {
        let used_c: Vec<usize> = self.objects.iter().map(|o| o.colour).collect();
        let used_s: Vec<Shape> = self.objects.iter().map(|o| o.shape).collect();
        let free_c: Vec<usize> = (0..COLOURS.len()).filter(|c| !used_c.contains(c)).collect();
        let free_s: Vec<Shape> = SHAPES
            .iter()
            .copied()
            .filter(|s| !used_s.contains(s))
            .collect();
        let victim = self.objects[self.named[r.range(0, self.named.len())]].phrase();
        let c = free_c[r.range(0, free_c.len())];
        let s = free_s[r.range(0, free_s.len())];
        self.caption
            .replacen(&victim, &format!("{} {}", COLOURS[c].0, s.word()), 1)
    }

    /// The caption with the colours of two named objects swapped (binding); None with one named.
    pub fn with_colours_swapped(&self) -> Option<String> {
        if self.named.len() < 2 {
            return None;
        }
        let (a, b) = (&self.objects[self.named[0]], &self.objects[self.named[1]]);
        let swapped_a = format!("{} {}", COLOURS[b.colour].0, a.shape.word());
        let swapped_b = format!("{} {}", COLOURS[a.colour].0, b.shape.word());
        Some(
            self.caption
                .replacen(&a.phrase(), "\u{0}", 1)
                .replacen(&b.phrase(), &swapped_b, 1)
                .replacen('\u{0}', &swapped_a, 1),
        )
    }

    /// The caption with one named object's phrase re-bound: its colour with the shape of another
    /// object in the scene (or that object's colour with its shape). Every colour and shape the
    /// negative names is in the image, only the pairing is wrong, so a model that encodes which
    /// colours and shapes are present but not which goes with which cannot reject it (a training
    /// hard negative that teaches binding one object at a time). None with a single object.
    pub fn with_mixed_binding(&self, r: &mut Rng) -> Option<String> {
        let phrases: Vec<String> = self.objects.iter().map(|o| o.phrase()).collect();
        let mut options = vec![];
        for &a in &self.named {
            for (b, ob) in self.objects.iter().enumerate() {
                let oa = &self.objects[a];
                if b == a || ob.colour == oa.colour || ob.shape == oa.shape {
                    continue;
                }
                for mixed in [
                    format!("{} {}", COLOURS[oa.colour].0, ob.shape.word()),
                    format!("{} {}", COLOURS[ob.colour].0, oa.shape.word()),
                ] {
                    if !phrases.contains(&mixed) {
                        options.push((a, mixed));
                    }
                }
            }
        }
        if options.is_empty() {
            return None;
        }
        let (a, mixed) = &options[r.range(0, options.len())];
        Some(self.caption.replacen(&self.objects[*a].phrase(), mixed, 1))
    }
}

/// Every word the shapes captions use (for the word-level tokenizer).
pub fn vocabulary() -> Vec<&'static str> {
    let mut v = vec!["a", "and"];
    v.extend(COLOURS.iter().map(|c| c.0));
    v.extend(SHAPES.iter().map(|s| s.word()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn removing_an_object_changes_its_pixels_only() {
        let mut seen_multi = 0;
        for i in 0..40 {
            let s = generate(3, Split::Test, i, true);
            for k in 0..s.objects.len() {
                let without = render_without(3, Split::Test, i, true, k);
                let mask: HashSet<u32> = s.masks[k].iter().copied().collect();
                let mut changed = 0;
                for px in 0..SIZE * SIZE {
                    let differs = s.rgb[px * 3..px * 3 + 3] != without[px * 3..px * 3 + 3];
                    assert!(
                        !differs || mask.contains(&(px as u32)),
                        "scene {i} object {k}"
                    );
                    changed += differs as usize;
                }
                // The object is gone: (nearly) all of its pixels are background now.
                assert!(
                    changed * 10 >= mask.len() * 9,
                    "{changed} of {}",
                    mask.len()
                );
                seen_multi += (s.objects.len() > 1) as usize;
            }
            // Captions: one phrase fewer, the others unchanged and in order.
            let phrases = s.phrases();
            assert!(phrases.iter().filter(|p| p.1.is_none()).count() == 1);
            for k in 0..phrases.len() {
                let c = s.caption_without(k).unwrap();
                assert!(!c.contains(&format!("a {}", phrases[k].0)) || phrases.len() == 1);
                assert_eq!(c.split(" and ").count(), phrases.len() - 1);
            }
        }
        assert!(seen_multi > 20);
    }

    #[test]
    fn mixed_binding_names_only_present_colours_and_shapes() {
        let mut r = Rng::new(9);
        let mut seen = 0;
        for i in 0..200 {
            let s = generate(4, Split::Train, i, false);
            let Some(neg) = s.with_mixed_binding(&mut r) else {
                assert_eq!(s.objects.len(), 1, "{}", s.caption);
                continue;
            };
            seen += 1;
            assert_ne!(neg, s.caption);
            let colours: Vec<&str> = s.objects.iter().map(|o| o.words()[0]).collect();
            let shapes: Vec<&str> = s.objects.iter().map(|o| o.words()[1]).collect();
            let words: Vec<&str> = neg
                .split(' ')
                .filter(|w| *w != "a" && *w != "and")
                .collect();
            for pair in words.chunks(2) {
                assert!(
                    colours.contains(&pair[0]) && shapes.contains(&pair[1]),
                    "{neg}"
                );
            }
            // Exactly one phrase names no object of the scene.
            let wrong = words
                .chunks(2)
                .filter(|p| !s.objects.iter().any(|o| o.words() == [p[0], p[1]]))
                .count();
            assert_eq!(wrong, 1, "{neg} vs {}", s.caption);
        }
        assert!(seen > 100, "{seen}");
    }

    #[test]
    fn swapped_scene_differs_only_in_the_two_named_colours() {
        let mut swapped = 0;
        for i in 0..40 {
            let a = generate(2, Split::Train, i, false);
            let Some(b) = generate_colours_swapped(2, Split::Train, i) else {
                assert_eq!(a.named.len(), 1);
                continue;
            };
            swapped += 1;
            assert_eq!(b.caption, a.with_colours_swapped().unwrap());
            assert_eq!(a.masks, b.masks);
            let (p, q) = (&a.objects[a.named[0]], &a.objects[a.named[1]]);
            assert_eq!(b.objects[b.named[0]].colour, q.colour);
            assert_eq!(b.objects[b.named[1]].colour, p.colour);
            // Pixels outside the two named objects are identical.
            let inside: HashSet<u32> = a.masks[a.named[0]]
                .iter()
                .chain(&a.masks[a.named[1]])
                .copied()
                .collect();
            for k in 0..SIZE * SIZE {
                if !inside.contains(&(k as u32)) {
                    assert_eq!(a.rgb[k * 3..k * 3 + 3], b.rgb[k * 3..k * 3 + 3]);
                }
            }
        }
        assert!(swapped > 10);
    }

    #[test]
    fn same_seed_same_bytes() {
        for i in 0..5 {
            assert_eq!(
                generate(1, Split::Test, i, true),
                generate(1, Split::Test, i, true)
            );
        }
        assert_ne!(
            generate(1, Split::Test, 0, false).rgb,
            generate(2, Split::Test, 0, false).rgb
        );
    }

    #[test]
    fn boxes_contain_their_object_and_no_other() {
        for i in 0..200 {
            let s = generate(7, Split::Train, i, i % 2 == 0);
            assert!((1..=4).contains(&s.objects.len()));
            for (k, o) in s.objects.iter().enumerate() {
                let [x0, y0, x1, y1] = o.bbox;
                assert!(x1 - x0 >= MIN_OBJECT && y1 - y0 >= MIN_OBJECT);
                assert!(!s.masks[k].is_empty());
                for &p in &s.masks[k] {
                    let (x, y) = (p as usize % SIZE, p as usize / SIZE);
                    assert!(x >= x0 && x < x1 && y >= y0 && y < y1);
                }
                for (j, m) in s.masks.iter().enumerate() {
                    if j != k {
                        assert!(
                            m.iter().all(|&p| {
                                let (x, y) = (p as usize % SIZE, p as usize / SIZE);
                                !(x >= x0 && x < x1 && y >= y0 && y < y1)
                            }),
                            "object {j} inside box {k} in scene {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn distractors_share_neither_colour_nor_shape_with_named_objects() {
        for i in 0..300 {
            let s = generate(3, Split::Tune, i, true);
            let named: Vec<&Object> = s.named.iter().map(|&k| &s.objects[k]).collect();
            for (k, o) in s.objects.iter().enumerate() {
                if s.named.contains(&k) {
                    continue;
                }
                for n in &named {
                    assert!(o.colour != n.colour && o.shape != n.shape, "scene {i}");
                }
            }
            let (c, sh) = s.absent.unwrap();
            assert!(s.objects.iter().all(|o| o.colour != c && o.shape != sh));
            for w in s.present_words() {
                assert!(s.caption.split(' ').any(|x| x == w));
            }
        }
    }

    #[test]
    fn splits_are_disjoint() {
        let mut seen = HashSet::new();
        for split in [Split::Train, Split::Tune, Split::Test] {
            for i in 0..300 {
                assert!(
                    seen.insert(generate(5, split, i, false).rgb),
                    "{split:?} {i} repeats an image"
                );
            }
        }
    }

    #[test]
    fn caption_variants() {
        let mut r = Rng::new(1);
        for i in 0..100 {
            let s = generate(9, Split::Test, i, false);
            let neg = s.with_absent_object(&mut r);
            assert_ne!(neg, s.caption);
            if let Some(sw) = s.with_colours_swapped() {
                assert_ne!(sw, s.caption);
                let mut a: Vec<&str> = sw.split(' ').collect();
                let mut b: Vec<&str> = s.caption.split(' ').collect();
                a.sort();
                b.sort();
                assert_eq!(a, b, "a swap keeps the words");
            }
        }
    }
}
