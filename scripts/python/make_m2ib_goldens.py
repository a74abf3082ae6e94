"""Golden M2IB outputs from the official algorithm (m2ib_reference.official_m2ib) on the clip
goldens' checkpoints (including the converted OpenAI-format ViT-B/16 and ViT-L/14-336 ones),
several (layer, beta, sigma) settings, sigma != 1 included.

Writes crates/attribution/tests/golden/m2ib.{safetensors,json} (CASES: blocks) and
m2ib_embeddings.{safetensors,json} (EMBEDDING_CASES: the bottleneck on each tower's embeddings).
Run by hand:  $(scripts/python/setup_venv.sh) scripts/python/make_m2ib_goldens.py
"""
import json
import os
import sys

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPModel, CLIPTokenizerFast, PreTrainedTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from m2ib_reference import official_m2ib, optimized_m2ib, upsample_patch_scores  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIP_GOLDEN = os.path.join(ROOT, "crates", "clip", "tests", "golden")
OUT = os.path.join(ROOT, "crates", "attribution", "tests", "golden")

CASES = {
    # checkpoint: pairs of (image file, caption, sample seed), then (modality, layer, beta, sigma)
    "ckpt_a": ([("wide_451x300.png", "a photo of a cat", 11),
                ("photo_400x300.jpg", "Two dogs playing in the snow, near a red barn!", 22)],
               [(0, 2, 0.1, 1.0), (0, 3, 1.0, 0.5), (0, 0, 0.01, 2.0),
                (1, 1, 0.1, 1.0), (1, 2, 1.0, 0.5), (1, 0, 0.01, 2.0)]),
    "ckpt_b": ([("tall_300x451.jpg", "a red circle", 33),
                ("gray_250x180.png", "the purple triangle next to an orange ring", 44)],
               [(0, 3, 0.1, 1.0), (0, 4, 1.0, 0.5), (0, 1, 0.01, 2.0),
                (1, 0, 0.1, 1.0), (1, 1, 1.0, 0.3)]),
    # Converted OpenAI-format checkpoints (make_openai_goldens.py): ViT-B/16 and ViT-L/14-336 grids.
    "openai_b16": ([("wide_451x300.png", "a red circle", 55)],
                   [(0, 1, 0.1, 1.0), (1, 0, 1.0, 0.5)]),
    "openai_l14_336": ([("photo_400x300.jpg", "the purple triangle next to an orange ring", 66)],
                       [(0, 0, 0.1, 1.0), (1, 1, 0.1, 1.0)]),
}

# The bottleneck on the encoder input: every block in the suffix (ViT-B-shaped and OpenAI-format).
EMBEDDING_CASES = {
    "ckpt_a": ([("wide_451x300.png", "a photo of a cat", 11)],
               [(0, "embeddings", 0.1, 1.0), (1, "embeddings", 1.0, 0.5)]),
    "ckpt_b": ([("gray_250x180.png", "the purple triangle next to an orange ring", 44)],
               [(0, "embeddings", 0.01, 2.0), (1, "embeddings", 0.1, 1.0)]),
    "openai_b16": ([("wide_451x300.png", "a red circle", 55)],
                   [(0, "embeddings", 0.1, 1.0), (1, "embeddings", 0.1, 1.0)]),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    write(CASES, "m2ib")
    write(EMBEDDING_CASES, "m2ib_embeddings")


def write(cases, stem):
    tensors, meta = {}, {"cases": []}
    for ck, (pairs, settings) in cases.items():
        d = os.path.join(CLIP_GOLDEN, ck)
        model = CLIPModel.from_pretrained(d, attn_implementation="eager").eval()
        if ck == "ckpt_a":
            proc, tok = CLIPImageProcessorPil(), CLIPTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
        else:
            proc = CLIPImageProcessorPil.from_pretrained(d)
            tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"), pad_token="<pad>")
        for p, (img, cap, seed) in enumerate(pairs):
            px = proc(images=Image.open(os.path.join(CLIP_GOLDEN, "images", img)).convert("RGB"), return_tensors="pt")["pixel_values"]
            ids = tok(cap, return_tensors="pt")["input_ids"]
            for (modality, layer, beta, sigma) in settings:
                key = f"{ck}.{p}.{modality}.{layer}.{beta}.{sigma}"
                cap_sum, losses = official_m2ib(model, px, ids, modality, layer, beta, sigma, seed)
                opt_sum, opt_losses = optimized_m2ib(model, px, ids, modality, layer, beta, sigma, seed)
                for q in model.parameters():
                    q.requires_grad_(True)
                gap = (cap_sum - opt_sum).abs().max().item()
                assert gap < 1e-3, f"{key}: official vs optimised formulation differ by {gap}"
                tensors[key + ".scores"] = cap_sum.contiguous()
                tensors[key + ".losses"] = torch.tensor(losses, dtype=torch.float64)
                meta["cases"].append({"key": key, "checkpoint": ck, "image": img, "caption": cap, "seed": seed,
                                      "modality": modality, "layer": layer, "beta": beta, "sigma": sigma,
                                      "official_vs_optimized_max_abs": gap})
                if modality == 0 and p == 0 and (ck.startswith("openai") or (ck == "ckpt_b" and layer == 3)):
                    grid = model.config.vision_config.image_size // model.config.vision_config.patch_size
                    tensors[key + ".map"] = upsample_patch_scores(cap_sum, grid, model.config.vision_config.image_size).contiguous()
                print(key, "max official-vs-optimized", f"{gap:.2e}")
    save_file(tensors, os.path.join(OUT, f"{stem}.safetensors"))
    with open(os.path.join(OUT, f"{stem}.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
