"""Goldens for OpenAI-format checkpoints and other CLIP geometries (issue: real checkpoints
beyond the HF ViT-B/32).

Builds two random CLIPs with OpenAI's own code (openai-clip's clip/model.py, the architecture of
`clip.load` and CXR-RePaiR) at tiny widths but real geometries — ViT-B/16 (224 px, 14x14 patch
grid) and ViT-L/14-336 (336 px, 24x24) — saves their state dicts as .pt (the B/16 one in fp16,
like `clip.load` checkpoints), converts them with convert_openai_clip.py into
crates/clip/tests/golden/openai_b16 and openai_l14_336, and checks transformers.CLIPModel on the
converted directories against the OpenAI forward (must agree to 1e-4). Writes
crates/clip/tests/golden/openai.safetensors + openai.json: the OpenAI model's image and text
embeddings for golden images and captions, and the official M2IB wrapper's text embeddings
(REFERENCE.md 1.10-4: causal mask removed, text projection applied twice, pooled at the last
position) for the `cxr-repair-compat` preset.

    $(scripts/python/setup_venv.sh) scripts/python/make_openai_goldens.py
"""
import importlib.metadata as md
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPModel, PreTrainedTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(ROOT, "crates", "clip", "tests", "golden")
TOKENIZER = os.path.join(GOLDEN, "ckpt_b", "tokenizer.json")  # word-level, 30 ids, end = 29

# openai-clip's model.py alone (its package __init__ imports torchvision).
_path = next(f for f in md.files("openai-clip") if str(f) == "clip/model.py").locate()
_spec = importlib.util.spec_from_file_location("openai_clip_model", _path)
oc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oc)

GEOMETRIES = {
    # name: (image_resolution, patch, vision_layers, text_layers, fp16 state dict)
    "openai_b16": (224, 16, 3, 2, True),
    "openai_l14_336": (336, 14, 2, 2, False),
}
WIDTH = 64  # OpenAI CLIP: heads = width // 64
IMAGES = ["wide_451x300.png", "photo_400x300.jpg"]
CAPTIONS = ["a red circle", "the purple triangle next to an orange ring"]


def random_openai_clip(res, patch, v_layers, t_layers, vocab, seed):
    torch.manual_seed(seed)
    m = oc.CLIP(embed_dim=WIDTH, image_resolution=res, vision_layers=v_layers, vision_width=WIDTH,
                vision_patch_size=patch, context_length=77, vocab_size=vocab, transformer_width=WIDTH,
                transformer_heads=WIDTH // 64, transformer_layers=t_layers)
    with torch.no_grad():
        # Non-trivial norms and biases (OpenAI's init leaves them at 1 / 0).
        for n, p in m.named_parameters():
            if "ln" in n or n.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
        m.logit_scale.fill_(3.0)
    return m.eval()


def wrapper_text_features(m, ids):
    """The official M2IB ClipWrapper text path: no causal mask, projection twice, last position."""
    x = m.token_embedding(ids) + m.positional_embedding[: ids.shape[1]]
    x = x.permute(1, 0, 2)
    for blk in m.transformer.resblocks:
        x = x + blk.attn(blk.ln_1(x), blk.ln_1(x), blk.ln_1(x), need_weights=False, attn_mask=None)[0]
        x = x + blk.mlp(blk.ln_2(x))
    x = m.ln_final(x.permute(1, 0, 2)) @ m.text_projection
    return x[:, -1] @ m.text_projection


def openai_text_features(m, ids):
    """OpenAI's encode_text on an unpadded sequence (its causal mask cropped to the length)."""
    x = m.token_embedding(ids) + m.positional_embedding[: ids.shape[1]]
    mask = m.build_attention_mask()[: ids.shape[1], : ids.shape[1]]
    x = x.permute(1, 0, 2)
    for blk in m.transformer.resblocks:
        x = x + blk.attn(blk.ln_1(x), blk.ln_1(x), blk.ln_1(x), need_weights=False, attn_mask=mask)[0]
        x = x + blk.mlp(blk.ln_2(x))
    x = m.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ m.text_projection


def main():
    tok = PreTrainedTokenizerFast(tokenizer_file=TOKENIZER, pad_token="<pad>")
    vocab = len(tok.get_vocab())
    tensors, meta = {}, {"checkpoints": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, (res, patch, vl, tl, fp16)) in enumerate(GEOMETRIES.items()):
            m = random_openai_clip(res, patch, vl, tl, vocab, 100 + k)
            if fp16:
                oc.convert_weights(m)  # what clip.load checkpoints hold
            pt = os.path.join(tmp, f"{name}.pt")
            torch.save(m.state_dict(), pt)
            m = m.float()
            out = os.path.join(GOLDEN, name)
            subprocess.run([sys.executable, os.path.join(HERE, "convert_openai_clip.py"), pt, out,
                            "--tokenizer", TOKENIZER], check=True)
            hf = CLIPModel.from_pretrained(out, attn_implementation="eager").eval()
            proc = CLIPImageProcessorPil.from_pretrained(out)
            worst = 0.0
            with torch.no_grad():
                for i, img in enumerate(IMAGES):
                    px = proc(images=Image.open(os.path.join(GOLDEN, "images", img)).convert("RGB"),
                              return_tensors="pt")["pixel_values"]
                    assert px.shape[-1] == res
                    want = m.encode_image(px)
                    got = hf.get_image_features(pixel_values=px)
                    got = got if torch.is_tensor(got) else got.pooler_output
                    worst = max(worst, (want - got).abs().max().item())
                    tensors[f"{name}.image.{i}"] = want.contiguous()
                for i, cap in enumerate(CAPTIONS):
                    ids = tok(cap, return_tensors="pt")["input_ids"]
                    want = openai_text_features(m, ids)
                    got = hf.get_text_features(input_ids=ids)
                    got = got if torch.is_tensor(got) else got.pooler_output
                    worst = max(worst, (want - got).abs().max().item())
                    tensors[f"{name}.text.{i}"] = want.contiguous()
                    tensors[f"{name}.compat_text.{i}"] = wrapper_text_features(m, ids).contiguous()
            assert worst < 1e-4, f"{name}: converted HF model differs from OpenAI's by {worst}"
            meta["checkpoints"][name] = {"image_size": res, "patch": patch, "grid": res // patch,
                                         "fp16_source": fp16, "hf_vs_openai_max_abs": worst}
            print(f"{name}: HF(converted) vs OpenAI max abs {worst:.2e}")
    meta["images"], meta["captions"] = IMAGES, CAPTIONS
    save_file(tensors, os.path.join(GOLDEN, "openai.safetensors"))
    with open(os.path.join(GOLDEN, "openai.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
