"""Golden files proving m2ib-clip matches transformers' CLIPModel (issue: foundation).

Writes crates/clip/tests/golden/:
  images/*.png|jpg          source images Rust decodes and preprocesses itself (+ boxes)
  ckpt_a/, ckpt_b/          two small random CLIPModel checkpoints (HF directories)
  <ckpt>_outputs.safetensors pixel values per image, ids, every hidden state, attentions,
                            pooled outputs, embeddings, logits
  manifest.json             what is where: captions, image files, boxes and their mapping
  tokenizer_parity.json     300+ captions and CLIPTokenizerFast ids (truncated to 77)

ckpt_a: 224 px, 32-px patches, quick_gelu, the full 49408-token CLIP vocabulary (real BPE
tokenizer), config eos_token_id 2 (openai's legacy value), no preprocessor_config.json.
ckpt_b: 64 px, 16-px patches, gelu, word-level tokenizer whose end token has the highest id,
context 16, its own preprocessor_config.json with non-CLIP mean/std.

Run by hand:  $(scripts/python/setup_venv.sh) scripts/python/make_clip_goldens.py
"""
import json
import os
import random
import shutil

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast, PreTrainedTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "clip", "tests", "golden")
CLIP_TOKENIZER = os.path.join(ROOT, "data", "clip-tokenizer", "tokenizer.json")


def smooth_image(w, h, seed, mode="RGB"):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 4), rng.uniform(0.5, 4), rng.uniform(0, 6.28)
        img[..., c] = 128 + 80 * np.sin(fx * 6.28 * xx / w + ph) * np.cos(fy * 6.28 * yy / h)
    for _ in range(4):  # sharp-edged discs exercise the resampler's overshoot and clamping
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)
        col = rng.integers(0, 256, 3)
        m = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        img[m] = col
    img += rng.normal(0, 6, img.shape)  # texture
    arr = np.clip(np.round(img), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 256, (h, w)).astype(np.uint8), "L")
        im = im.copy()
        im.putalpha(alpha)
    return im


IMAGES = [
    # name, size, mode, format, boxes (x0, y0, x1, y1) in original pixels
    ("wide_451x300.png", (451, 300), "RGB", "PNG", [[20, 30, 120, 200], [300, 50, 440, 290]]),
    ("tall_300x451.jpg", (300, 451), "RGB", "JPEG", [[10, 10, 290, 60], [100, 200, 200, 300]]),
    ("small_97x61.png", (97, 61), "RGB", "PNG", [[5, 5, 40, 50]]),
    ("gray_250x180.png", (250, 180), "L", "PNG", [[0, 0, 30, 180], [100, 40, 160, 120]]),
    ("rgba_200x320.png", (200, 320), "RGBA", "PNG", [[50, 60, 150, 260]]),
    ("photo_400x300.jpg", (400, 300), "RGB", "JPEG", [[200, 100, 390, 290], [0, 0, 70, 70]]),
    ("odd_227x225.png", (227, 225), "RGB", "PNG", [[1, 1, 226, 224]]),
]

CAPTIONS_A = [
    "a photo of a cat",
    "Two dogs playing in the snow, near a red barn!",
    "It's 3:45pm -- the café's open (finally).",
    "an X-ray showing left lower lobe consolidation",
    "   many   spaces\tand\ttabs   ",
    " ".join(["a very long caption about boats and harbours"] * 12),
]

WORDS = ["a", "an", "the", "red", "green", "blue", "yellow", "purple", "orange", "white", "circle", "square",
         "triangle", "star", "cross", "ring", "and", "next", "to", "photo", "of", "small", "large", "on", "left", "right"]
CAPTIONS_B = [
    "a red circle",
    "A Blue square and a green star",
    "the purple triangle next to an orange ring",
    "a zebra and a red cross",  # zebra -> [UNK]
    "a red circle and a blue square and a green star and a white ring and the yellow cross",  # > 16 tokens
]


def word_level_tokenizer(path):
    vocab = {"[UNK]": 0, "<pad>": 1}
    for w in WORDS:
        vocab[w] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # the end token has the highest id
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", vocab["<|startoftext|>"]), ("<|endoftext|>", vocab["<|endoftext|>"])],
    )
    tok.save(path)
    return vocab


def perturb_(model, seed):
    """HF init leaves LayerNorms at 1/0 and biases at 0; perturb everything so that a swapped or
    ignored tensor shows up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            scale = 0.1 if p.dim() == 1 else 0.02
            p.add_(torch.randn(p.shape, generator=g) * scale)


def build_checkpoint(name, config, tokenizer_file, preprocessor, seed):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    perturb_(model, seed + 1)
    model.save_pretrained(d, safe_serialization=True)
    if tokenizer_file == CLIP_TOKENIZER:  # a link, not a 3.6 MB copy
        os.symlink(os.path.relpath(CLIP_TOKENIZER, d), os.path.join(d, "tokenizer.json"))
    else:
        shutil.copy(tokenizer_file, os.path.join(d, "tokenizer.json"))
    if preprocessor is not None:
        preprocessor.save_pretrained(d)
    model = CLIPModel.from_pretrained(d, attn_implementation="eager").eval()
    return d, model


def feature(out):
    return out if torch.is_tensor(out) else out.pooler_output


def map_box(box, w, h, size, crop):
    if w <= h:
        rw, rh = size, int(size * h / w)
    else:
        rw, rh = int(size * w / h), size
    left, top = (rw - crop) // 2, (rh - crop) // 2
    sx, sy = rw / w, rh / h
    x0 = min(max(box[0] * sx - left, 0), crop)
    x1 = min(max(box[2] * sx - left, 0), crop)
    y0 = min(max(box[1] * sy - top, 0), crop)
    y1 = min(max(box[3] * sy - top, 0), crop)
    return [x0, y0, x1, y1] if x1 > x0 and y1 > y0 else None


def run_outputs(model, processor, tokenizer, captions, image_files, context):
    t = {}
    for i, f in enumerate(image_files):
        im = Image.open(os.path.join(OUT, "images", f)).convert("RGB")
        px = processor(images=im, return_tensors="pt")["pixel_values"]
        # The 8-bit crop the pixel values were made from (exact: checked below); full float pixel
        # values for the first image only, to keep the goldens small.
        mean = torch.tensor(processor.image_mean).view(3, 1, 1)
        std = torch.tensor(processor.image_std).view(3, 1, 1)
        crop = torch.round((px[0] * std + mean) * 255)
        assert (((crop / 255) - mean) / std - px[0]).abs().max() < 1e-5
        t[f"crop.{i}"] = crop.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()
        if i == 0:
            t[f"pixels.{i}"] = px[0].contiguous()
        with torch.no_grad():
            vo = model.vision_model(pixel_values=px, output_hidden_states=True, output_attentions=True)
            for k, h in enumerate(vo.hidden_states):
                t[f"vision.{i}.hidden.{k}"] = h[0].contiguous()
            if i < 2:
                for k, a in enumerate(vo.attentions):
                    t[f"vision.{i}.attn.{k}"] = a[0].contiguous()
            t[f"vision.{i}.pooled"] = vo.pooler_output[0].contiguous()
            t[f"vision.{i}.embeds"] = feature(model.get_image_features(pixel_values=px))[0].contiguous()
    enc = tokenizer(captions, padding=True, truncation=True, max_length=context, return_tensors="pt")
    t["text.ids"] = enc["input_ids"].contiguous()
    t["text.mask"] = enc["attention_mask"].contiguous()
    with torch.no_grad():
        to = model.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                              output_hidden_states=True, output_attentions=True)
        for k, h in enumerate(to.hidden_states):
            t[f"text.hidden.{k}"] = h.contiguous()
        for k, a in enumerate(to.attentions):
            t[f"text.attn.{k}"] = a.contiguous()
        t["text.pooled"] = to.pooler_output.contiguous()
        t["text.embeds"] = feature(model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])).contiguous()
        pixels = torch.stack([processor(images=Image.open(os.path.join(OUT, "images", f)).convert("RGB"),
                                        return_tensors="pt")["pixel_values"][0] for f in image_files])
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pixels)
        t["logits_per_image"] = out.logits_per_image.contiguous()
    return t


def tokenizer_parity_captions(n=320):
    rng = random.Random(0)
    words = ["a", "photo", "of", "dog", "cat", "man", "woman", "riding", "bicycle", "street", "beach", "sunset",
             "Red", "BLUE", "green", "don't", "it's", "we're", "they've", "I'm", "you'll", "he'd", "3", "42",
             "2023", "1.5kg", "café", "naïve", "Zürich", "São", "Paulo", "niño", "😀", "🐶🐱", "北京", "東京タワー",
             "서울", "Москва", "مرحبا", "hello,", "world!", "(test)", "[x-ray]", "left-lower", "lobe;", "e.g.",
             "U.S.A.", "#hashtag", "@user", "$100", "50%", "a&b", "x/y", "C++", "__init__", "<html>", "&amp;",
             "pneumothorax", "cardiomegaly", "opacity", "...", "?!", "—", "“quoted”", "'single'"]
    caps = []
    for i in range(n):
        k = rng.randint(1, 20) if i % 10 else rng.randint(60, 120)  # every tenth exceeds 77 tokens
        ws = [rng.choice(words) for _ in range(k)]
        sep = rng.choice([" ", " ", " ", "  ", "\t", " \n "])
        c = sep.join(ws)
        if i % 7 == 0:
            c = "   " + c + "   "
        caps.append(c)
    return caps


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "images"))
    manifest = {"images": [], "checkpoints": {}}
    for k, (name, (w, h), mode, fmt, boxes) in enumerate(IMAGES):
        im = smooth_image(w, h, 100 + k, mode)
        path = os.path.join(OUT, "images", name)
        if fmt == "JPEG":
            im.save(path, "JPEG", quality=92)  # 4:2:0, PIL default
        else:
            im.save(path, "PNG")
        manifest["images"].append({"file": name, "width": w, "height": h, "mode": mode, "boxes": boxes})
    files = [m["file"] for m in manifest["images"]]

    # Checkpoint A: ViT-B/32 geometry, full CLIP vocabulary, quick_gelu, openai's eos_token_id 2.
    cfg_a = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=8, intermediate_size=24, num_hidden_layers=3,
                         num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                         bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                           image_size=224, patch_size=32, hidden_act="quick_gelu"),
        projection_dim=24,
    )
    dir_a, model_a = build_checkpoint("ckpt_a", cfg_a, CLIP_TOKENIZER, None, 1)
    proc_a = CLIPImageProcessorPil()
    tok_a = CLIPTokenizerFast(tokenizer_file=os.path.join(dir_a, "tokenizer.json"))
    assert tok_a("a photo")["input_ids"][0] == 49406

    # Checkpoint B: 64 px, 16-px patches (4x4 grid), gelu, word-level tokenizer, end id highest.
    tmp_tok = os.path.join(OUT, "word_level_tokenizer.json")
    vocab = word_level_tokenizer(tmp_tok)
    cfg_b = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, hidden_act="gelu",
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=1),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=5, num_attention_heads=3,
                           image_size=64, patch_size=16, hidden_act="gelu"),
        projection_dim=16,
    )
    proc_b = CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64},
                                   image_mean=[0.5, 0.45, 0.4], image_std=[0.25, 0.3, 0.2])
    dir_b, model_b = build_checkpoint("ckpt_b", cfg_b, tmp_tok, proc_b, 2)
    os.remove(tmp_tok)
    tok_b = PreTrainedTokenizerFast(tokenizer_file=os.path.join(dir_b, "tokenizer.json"), pad_token="<pad>")

    for name, model, proc, tok, caps, size in [("ckpt_a", model_a, proc_a, tok_a, CAPTIONS_A, 224),
                                                ("ckpt_b", model_b, proc_b, tok_b, CAPTIONS_B, 64)]:
        ctx = model.config.text_config.max_position_embeddings
        t = run_outputs(model, proc, tok, caps, files, ctx)
        save_file(t, os.path.join(OUT, f"{name}_outputs.safetensors"))
        manifest["checkpoints"][name] = {
            "captions": caps,
            "context_length": ctx,
            "vision_layers": model.config.vision_config.num_hidden_layers,
            "text_layers": model.config.text_config.num_hidden_layers,
            "mapped_boxes": [[map_box(b, m["width"], m["height"], size, size) for b in m["boxes"]]
                             for m in manifest["images"]],
        }
    # PIL's own decode, so a decode difference (JPEG) can be told apart from a resampling one.
    dec = {}
    for i, f in enumerate(files):
        if not f.endswith(".jpg"):
            continue
        dec[f"decoded.{i}"] = torch.from_numpy(np.asarray(Image.open(os.path.join(OUT, "images", f)).convert("RGB")).copy())
    save_file(dec, os.path.join(OUT, "decoded.safetensors"))

    caps = tokenizer_parity_captions()
    parity = [{"caption": c, "ids": tok_a(c, truncation=True, max_length=77)["input_ids"]} for c in caps]
    with open(os.path.join(OUT, "tokenizer_parity.json"), "w") as f:
        json.dump(parity, f, ensure_ascii=False)
    manifest["versions"] = {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                            "pillow": Image.__version__}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"wrote {OUT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
