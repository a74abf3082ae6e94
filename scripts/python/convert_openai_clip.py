"""Convert an OpenAI-format CLIP checkpoint (`clip.load`-style state dict: `visual.conv1.weight`,
`visual.transformer.resblocks.N.attn.in_proj_weight`, `transformer.resblocks...`,
`token_embedding`, `positional_embedding`, `text_projection`, `visual.proj`, `logit_scale`;
fp16 or fp32) into an HF checkpoint directory that m2ib (and transformers.CLIPModel) loads:
config.json, model.safetensors (fp32), tokenizer.json, preprocessor_config.json.

Reading a pickled `.pt` needs torch, hence Python. Accepted inputs: a TorchScript archive (the
official `ViT-B-32.pt` downloads), a pickled state dict, a dict holding one under `state_dict`
or `model` (training checkpoints such as CXR-RePaiR's `clip-imp-pretrained_128_6_after_4.pt`),
with or without a `module.` prefix; or a .safetensors file with OpenAI names.

    $(scripts/python/setup_venv.sh) scripts/python/convert_openai_clip.py IN.pt OUT_DIR \
        [--tokenizer data/clip-tokenizer/tokenizer.json]

The vision tower must be a ViT (ResNet CLIPs are not supported by m2ib). OpenAI CLIP uses
QuickGELU, 64-wide attention heads, and the BPE tokenizer whose end token is the highest id;
the config records that real end id (not transformers' legacy 2) so pooling is by end token.
"""
import argparse
import json
import os
import shutil
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_TOKENIZER = os.path.join(ROOT, "data", "clip-tokenizer", "tokenizer.json")


def load_state_dict(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    try:
        sd = torch.jit.load(path, map_location="cpu").state_dict()
    except Exception:
        sd = torch.load(path, map_location="cpu", weights_only=False)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        sys.exit(f"{path}: no state dict found (got {type(sd).__name__})")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def convert(sd, end_id, start_id, pad_id):
    """OpenAI names -> HF names (fp32) and the HF config."""
    if "visual.proj" not in sd:
        sys.exit("not a ViT CLIP state dict (no `visual.proj`): ResNet towers are not supported")
    f = {k: v.float() for k, v in sd.items() if torch.is_tensor(v)}
    out = {}

    def blocks(src_prefix, dst_prefix):
        n = len({k.split(".")[len(src_prefix.split("."))] for k in f if k.startswith(src_prefix + ".")})
        for i in range(n):
            s, d = f"{src_prefix}.{i}", f"{dst_prefix}.{i}"
            w, b = f[f"{s}.attn.in_proj_weight"], f[f"{s}.attn.in_proj_bias"]
            for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"{d}.self_attn.{name}.weight"] = w.chunk(3, 0)[j].clone()
                out[f"{d}.self_attn.{name}.bias"] = b.chunk(3, 0)[j].clone()
            for src, dst in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                             ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                out[f"{d}.{dst}.weight"] = f[f"{s}.{src}.weight"]
                out[f"{d}.{dst}.bias"] = f[f"{s}.{src}.bias"]
        return n

    v_layers = blocks("visual.transformer.resblocks", "vision_model.encoder.layers")
    t_layers = blocks("transformer.resblocks", "text_model.encoder.layers")
    out["vision_model.embeddings.class_embedding"] = f["visual.class_embedding"]
    out["vision_model.embeddings.patch_embedding.weight"] = f["visual.conv1.weight"]
    out["vision_model.embeddings.position_embedding.weight"] = f["visual.positional_embedding"]
    out["vision_model.pre_layrnorm.weight"] = f["visual.ln_pre.weight"]
    out["vision_model.pre_layrnorm.bias"] = f["visual.ln_pre.bias"]
    out["vision_model.post_layernorm.weight"] = f["visual.ln_post.weight"]
    out["vision_model.post_layernorm.bias"] = f["visual.ln_post.bias"]
    out["visual_projection.weight"] = f["visual.proj"].t().contiguous()
    out["text_model.embeddings.token_embedding.weight"] = f["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = f["positional_embedding"]
    out["text_model.final_layer_norm.weight"] = f["ln_final.weight"]
    out["text_model.final_layer_norm.bias"] = f["ln_final.bias"]
    out["text_projection.weight"] = f["text_projection"].t().contiguous()
    out["logit_scale"] = f["logit_scale"].reshape(())

    v_width = f["visual.conv1.weight"].shape[0]
    patch = f["visual.conv1.weight"].shape[-1]
    grid = round((f["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    t_width = f["ln_final.weight"].shape[0]
    config = {
        "architectures": ["CLIPModel"], "model_type": "clip",
        "projection_dim": f["text_projection"].shape[1],
        "logit_scale_init_value": float(f["logit_scale"]),
        "text_config": {
            "model_type": "clip_text_model", "vocab_size": f["token_embedding.weight"].shape[0],
            "hidden_size": t_width, "intermediate_size": f["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": t_layers, "num_attention_heads": t_width // 64,
            "max_position_embeddings": f["positional_embedding"].shape[0], "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5, "eos_token_id": end_id, "bos_token_id": start_id, "pad_token_id": pad_id,
        },
        "vision_config": {
            "model_type": "clip_vision_model", "hidden_size": v_width,
            "intermediate_size": f["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": v_layers, "num_attention_heads": v_width // 64,
            "image_size": patch * grid, "patch_size": patch, "num_channels": 3,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
        },
    }
    return out, config


def special_ids(tokenizer_path):
    t = json.load(open(tokenizer_path))
    vocab = t["model"]["vocab"]
    added = {a["content"]: a["id"] for a in t.get("added_tokens", [])}
    find = lambda *names: next((added.get(n, vocab.get(n)) for n in names if n in added or n in vocab), None)
    end = find("<|endoftext|>")
    start = find("<|startoftext|>")
    pad = find("<pad>", "!") or 0
    if end is None:
        sys.exit(f"{tokenizer_path}: no <|endoftext|> token")
    return end, start, pad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("out")
    ap.add_argument("--tokenizer", default=DEFAULT_TOKENIZER)
    a = ap.parse_args()
    end, start, pad = special_ids(a.tokenizer)
    tensors, config = convert(load_state_dict(a.input), end, start, pad)
    vocab = config["text_config"]["vocab_size"]
    if end >= vocab:
        sys.exit(f"{a.tokenizer}: end id {end} is outside the checkpoint's vocabulary ({vocab})")
    os.makedirs(a.out, exist_ok=True)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(a.out, "model.safetensors"))
    with open(os.path.join(a.out, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    shutil.copyfile(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    size = config["vision_config"]["image_size"]
    with open(os.path.join(a.out, "preprocessor_config.json"), "w") as fh:
        json.dump({"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
                   "do_center_crop": True, "crop_size": {"height": size, "width": size}, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True,
                   "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
                   "resample": 3, "do_convert_rgb": True}, fh, indent=2)
    print(f"wrote {a.out}: {len(tensors)} tensors, vision {config['vision_config']['num_hidden_layers']} layers "
          f"({size} px, patch {config['vision_config']['patch_size']}), text {config['text_config']['num_hidden_layers']} layers")


if __name__ == "__main__":
    main()
