"""PyTorch side of `just bench m2ib`: the official M2IB loop and the best PyTorch formulation of
the same maths, on the exact openai ViT-B/32 architecture with random weights (cost equals the
real model), CPU, a fixed thread count. Prints one JSON object.

usage: bench_m2ib.py --threads 2 --runs 3 --batch 8 [--official-runs 3]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from m2ib_reference import draw_noise, feature, official_m2ib, text_mask  # noqa: E402

LAYER, BETA, SIGMA, STEPS, COPIES = 9, 0.1, 1.0, 10, 10


def batched_optimized(model, pixels, ids, modality):
    """(b) for S pairs at once: own alpha each, summed losses, cached prefix, other tower once,
    frozen weights, last backward skipped. Captions share one length (no padding)."""
    s = pixels.shape[0]
    with torch.no_grad():
        if modality == 0:
            h = model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states[LAYER + 1]
            target = feature(model.get_text_features(input_ids=ids))
        else:
            h = model.text_model(input_ids=ids, output_hidden_states=True).hidden_states[LAYER + 1]
            target = feature(model.get_image_features(pixel_values=pixels))
    n, d = h.shape[1:]
    tower = model.vision_model if modality == 0 else model.text_model
    mask = None if modality == 0 else text_mask(n, s * COPIES)
    pool = int(ids[0].argmax())
    target = target.repeat_interleave(COPIES, 0)

    def suffix(z):
        for blk in tower.encoder.layers[LAYER + 1:]:
            z = blk(z, attention_mask=mask)
        if modality == 0:
            return model.visual_projection(model.vision_model.post_layernorm(z[:, 0]))
        return model.text_projection(model.text_model.final_layer_norm(z)[:, pool])

    alpha = torch.full((s, n, d), 5.0, requires_grad=True)
    opt = torch.optim.Adam(lr=1.0, params=[alpha])
    for step in range(STEPS):
        lam = torch.sigmoid(alpha)
        var = (1 - lam) ** 2
        cap = -0.5 * (1 + torch.log(var) - (lam * h / SIGMA) ** 2 - var)
        eps = torch.stack([draw_noise(1000 + i, modality, step, (COPIES, n, d)) for i in range(s)])
        z = (lam[:, None] * h[:, None] + SIGMA * (torch.sqrt(var)[:, None] * eps)).reshape(s * COPIES, n, d)
        cos = F.cosine_similarity(suffix(z), target, dim=-1, eps=1e-6).view(s, COPIES).mean(1)
        loss = (BETA * cap.mean((1, 2)) - cos).sum()
        if step + 1 == STEPS:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cap.sum(-1).detach()


def timed(fn, runs):
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--official-runs", type=int, default=3)
    ap.add_argument("--caption-len", type=int, default=12)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()  # openai/clip-vit-base-patch32 geometry
    model.config._attn_implementation = "eager"
    pixels = torch.randn(a.batch, 3, 224, 224)
    body = torch.randint(1000, 40000, (a.batch, a.caption_len - 2))
    ids = torch.cat([torch.full((a.batch, 1), 49406), body, torch.full((a.batch, 1), 49407)], 1)

    def official_pair():
        official_m2ib(model, pixels[:1], ids[:1], 0, LAYER, BETA, SIGMA, 1000)
        official_m2ib(model, pixels[:1], ids[:1], 1, LAYER, BETA, SIGMA, 1000)
        for p in model.parameters():
            p.requires_grad_(True)

    official = timed(official_pair, a.official_runs)
    for p in model.parameters():
        p.requires_grad_(False)
    opt1 = timed(lambda: (batched_optimized(model, pixels[:1], ids[:1], 0), batched_optimized(model, pixels[:1], ids[:1], 1)), a.runs)
    optb = timed(lambda: (batched_optimized(model, pixels, ids, 0), batched_optimized(model, pixels, ids, 1)), a.runs)
    print(json.dumps({
        "threads": a.threads, "torch": torch.__version__,
        "official": {"pairs": 1, "runs_s": official, "median_s_per_pair": statistics.median(official)},
        "pytorch_optimized_1": {"pairs": 1, "runs_s": opt1, "median_s_per_pair": statistics.median(opt1)},
        "pytorch_optimized_batch": {"pairs": a.batch, "runs_s": optb, "median_s_per_pair": statistics.median(optb) / a.batch},
    }))


if __name__ == "__main__":
    main()
