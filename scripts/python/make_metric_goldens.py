"""Golden metric values from the libraries that define them: scipy `spearmanr`, scikit-image
`structural_similarity` (win_size 7, data_range 1), and pytorch-grad-cam `DropInConfidence` /
`IncreaseInConfidence` (CamMultImageConfidenceChange: the whole normalised map multiplies the
normalised pixels) on the clip goldens' ckpt_b with fixed maps.

Writes crates/metrics/tests/golden/metrics.safetensors and metrics.json.
Run by hand:  $(scripts/python/setup_venv.sh) scripts/python/make_metric_goldens.py
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange, DropInConfidence, IncreaseInConfidence
from safetensors.torch import save_file
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from transformers import CLIPModel, PreTrainedTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from m2ib_reference import feature  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIP_GOLDEN = os.path.join(ROOT, "crates", "clip", "tests", "golden")
OUT = os.path.join(ROOT, "crates", "metrics", "tests", "golden")


class CosTarget:
    def __init__(self, emb):
        self.emb = emb

    def __call__(self, out):
        return F.cosine_similarity(out, self.emb, dim=-1, eps=1e-8)


def main():
    rng = np.random.default_rng(0)
    t, meta = {}, {"spearman": [], "ssim": [], "confidence": []}
    for k in range(4):
        a = rng.random((30, 40))
        b = a * (0.3 + 0.2 * k) + rng.random((30, 40)) * (0.2 + 0.3 * k)
        if k == 3:
            a = np.round(a * 5) / 5  # ties
        t[f"pair.{k}.a"], t[f"pair.{k}.b"] = torch.from_numpy(a), torch.from_numpy(b)
        meta["spearman"].append(float(spearmanr(a.ravel(), b.ravel()).statistic))
        bn = (b - b.min()) / (b.max() - b.min())
        an = (a - a.min()) / (a.max() - a.min())
        meta["ssim"].append(float(structural_similarity(an, bn, win_size=7, data_range=1.0)))
    d = os.path.join(CLIP_GOLDEN, "ckpt_b")
    model = CLIPModel.from_pretrained(d, attn_implementation="eager").eval()
    proc = CLIPImageProcessorPil.from_pretrained(d)
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"), pad_token="<pad>")

    class ImageModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = model

        def forward(self, x):
            return feature(model.get_image_features(pixel_values=x))

    for k, (img, cap) in enumerate([("tall_300x451.jpg", "a red circle and a blue star"), ("odd_227x225.png", "the green ring"),
                                    ("photo_400x300.jpg", "a white square"), ("small_97x61.png", "an orange cross")]):
        px = proc(images=Image.open(os.path.join(CLIP_GOLDEN, "images", img)).convert("RGB"), return_tensors="pt")["pixel_values"]
        ids = tok(cap, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            temb = feature(model.get_text_features(input_ids=ids))[0]
        cam = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(k)).numpy()  # a fixed map in [0, 1)
        t[f"conf.{k}.map"] = torch.from_numpy(cam[0].copy())
        drop = DropInConfidence()(px, cam, [CosTarget(temb)], ImageModel())
        inc = IncreaseInConfidence()(px, cam, [CosTarget(temb)], ImageModel())
        diff = CamMultImageConfidenceChange()(px, cam, [CosTarget(temb)], ImageModel())
        meta["confidence"].append({"image": img, "caption": cap, "drop": float(np.ravel(drop)[0]) * 100,
                                   "increase": float(np.ravel(inc)[0]) * 100, "after_minus_before": float(np.ravel(diff)[0])})
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, "metrics.safetensors"))
    with open(os.path.join(OUT, "metrics.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
