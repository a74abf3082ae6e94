#!/usr/bin/env python3
"""Writes data/tiny-shapes-clip/README.md from its training.json (written by `m2ib train-tiny`)
and hf_check.json (written by scripts/python/check_tiny_hf.py). Plain Python, no dependencies.

    python3 scripts/tiny_readme.py [MODEL_DIR]
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "data", "tiny-shapes-clip")
    t = json.load(open(os.path.join(d, "training.json")))
    c = json.load(open(os.path.join(d, "config.json")))
    q = t["quality"]
    v, x = c["vision_config"], c["text_config"]
    hf = os.path.join(d, "hf_check.json")
    hf = json.load(open(hf)) if os.path.exists(hf) else None
    cmd = t["command"].split(" ", 1)[1] if " " in t["command"] else t["command"]
    gates = [
        ("absent-object accuracy >= 0.90", q["absent_object_accuracy"] >= 0.90, f'{q["absent_object_accuracy"]:.3f}'),
        ("top-1 retrieval among 64 >= 0.40 (both directions)",
         min(q["image_to_caption_top1"], q["caption_to_image_top1"]) >= 0.40,
         f'{q["image_to_caption_top1"]:.3f} / {q["caption_to_image_top1"]:.3f}'),
        ("colour-swap binding: aim >= 0.75", q["colour_swap_binding"] >= 0.75, f'{q["colour_swap_binding"]:.3f}'),
    ]
    negs = t.get("hard_negatives", "none")
    if isinstance(negs, list):
        negs = ", ".join(negs) or "none"
    init = t.get("init", "N(0, 0.02) initialisation")
    s = f"""# tiny-shapes-clip — the embedded default

A small CLIP with the ViT-B/32 geometry ({v["image_size"]} px, {v["patch_size"]}-px patches, \
{v["image_size"] // v["patch_size"]} x {v["image_size"] // v["patch_size"]} grid; vision width {v["hidden_size"]}, \
{v["num_hidden_layers"]} blocks; text width {x["hidden_size"]}, {x["num_hidden_layers"]} blocks, context \
{x["max_position_embeddings"]}; projection {c["projection_dim"]}), trained here on the synthetic shapes benchmark \
(`crates/data/src/shapes.rs`). Word-level tokenizer (built with the `tokenizers` crate) whose end token has the \
highest id; `config.json` carries that real end id ({x["eos_token_id"]}, not 2). The layers M2IB, Grad-CAM and \
Chefer use by default are in `m2ib.toml` beside the weights (read by `m2ib run` and `m2ib attribute`).

Trained with (`just m2ib train-tiny ...` runs the same binary):

    m2ib {cmd}

seed {t["seed"]}, {t["steps"]} steps of batch {t["batch"]} from a pool of {t["pool"]} generated scenes, AdamW lr \
{t["lr"]} (cosine, 5 % warm-up; weight decay {t.get("weight_decay", 0.1)} on weight matrices only), logit-scale \
learning rate x{t.get("logit_scale_lr_mult", 1)}, hard negatives ({negs}), {init}, \
{t["threads"]} CPU threads: {t["train_seconds"] / 60:.1f} min of training on a 2-core machine that was also \
compiling. Final logit scale {t["logit_scale"]:.2f} (temperature {2.718281828 ** t["logit_scale"]:.1f}). Loss \
(contrastive, with the hard negatives as extra columns): first 100 steps {t["loss_first_100_mean"]:.3f}, last 100 \
steps {t["loss_last_100_mean"]:.3f}.

Quality on {q["test_scenes"]} test scenes (`m2ib_tiny::evaluate`; the test
`crates/tiny/tests/tiny_checkpoint.rs` recomputes it from the committed weights):

| measure | value |
|---|---|
| image -> caption top-1 among 64 (captions deduplicated, {q["retrieval_groups"]} groups) | {q["image_to_caption_top1"]:.3f} |
| caption -> image top-1 among 64 | {q["caption_to_image_top1"]:.3f} |
| absent-object accuracy (true caption vs one object replaced by an absent one) | {q["absent_object_accuracy"]:.3f} |
| colour-swap binding (true caption vs colours swapped, {q["binding_pairs"]} pairs) | {q["colour_swap_binding"]:.3f} |
""" + (f"""| re-binding (true caption vs one named colour paired with another object's shape) | {q["mixed_binding"]:.3f} |
""" if "mixed_binding" in q else "") + (f"""
Reference points for the retrieval measure on these scenes (expected top-1 of a model that picks uniformly among \
the candidates that fit): knowing exactly which objects are in an image but not which of them the caption names, \
{q["uniform_given_objects"]["image_to_caption_top1"]:.3f} / {q["uniform_given_objects"]["caption_to_image_top1"]:.3f}; \
knowing which colours and which shapes are present but not which goes with which (no binding), \
{q["uniform_given_colours_and_shapes"]["image_to_caption_top1"]:.3f} / \
{q["uniform_given_colours_and_shapes"]["caption_to_image_top1"]:.3f}. A model beats the first by learning which \
objects the generator tends to name (named objects never share a colour or shape with a distractor).
""" if "uniform_given_objects" in q else "") + f"""

Gates of the benchmark issue:

| gate | met | value |
|---|---|---|
""" + "".join(f"| {g} | {'yes' if ok else 'NO'} | {val} |\n" for g, ok, val in gates)
    if hf:
        w = hf["max_abs_difference"]
        s += f"""
Loads in `transformers.CLIPModel.from_pretrained` (transformers {hf.get("transformers", "?")}):
`scripts/python/check_tiny_hf.py` embeds {hf["pairs"]} shapes pairs with both; max abs difference image embedding \
{w["image"]:.1e}, text embedding {w["text"]:.1e}, cosine {w["cosine"]:.1e} (`hf_check.json`).
"""
    notes = os.path.join(d, "NOTES.md")
    if os.path.exists(notes):
        s += "\n" + open(notes).read()
    open(os.path.join(d, "README.md"), "w").write(s)
    print(f"wrote {os.path.join(d, 'README.md')}")


if __name__ == "__main__":
    main()
