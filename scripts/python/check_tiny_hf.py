"""Checks that data/tiny-shapes-clip loads in transformers' CLIPModel and gives the embeddings
Rust gives: writes a few shapes scenes with `m2ib data shapes`, embeds each pair with
`m2ib embed --json` and with transformers (PIL preprocessing), prints the max abs differences and
saves them as MODEL_DIR/hf_check.json (scripts/tiny_readme.py puts them in the README).

usage: check_tiny_hf.py M2IB_BINARY [MODEL_DIR]
Run by hand:  $(scripts/python/setup_venv.sh) scripts/python/check_tiny_hf.py $(which m2ib)
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

import torch
from PIL import Image
from transformers import CLIPModel, PreTrainedTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from m2ib_reference import feature  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    binary = sys.argv[1]
    model_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "data", "tiny-shapes-clip")
    tmp = tempfile.mkdtemp()
    subprocess.run([binary, "data", "shapes", "--out", tmp, "--n", "8", "--seed", "3"], check=True, capture_output=True)
    rows = {}
    with open(os.path.join(tmp, "shapes.csv")) as f:
        for r in csv.DictReader(f):
            rows[r["path"]] = r["label_text"]
    model = CLIPModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    proc = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    worst = {"image": 0.0, "text": 0.0, "cosine": 0.0}
    for path, caption in rows.items():
        out = subprocess.run([binary, "embed", "--model", model_dir, "--image", os.path.join(tmp, path), "--text", caption, "--json"],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        px = proc(images=Image.open(os.path.join(tmp, path)).convert("RGB"), return_tensors="pt")["pixel_values"]
        ids = tok(caption, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            i = feature(model.get_image_features(pixel_values=px))[0]
            t = feature(model.get_text_features(input_ids=ids))[0]
        worst["image"] = max(worst["image"], (i - torch.tensor(r["image_embedding"])).abs().max().item())
        worst["text"] = max(worst["text"], (t - torch.tensor(r["text_embedding"])).abs().max().item())
        worst["cosine"] = max(worst["cosine"], abs(torch.nn.functional.cosine_similarity(i, t, dim=0).item() - r["cosine"]))
    result = {"pairs": len(rows), "max_abs_difference": worst, "transformers": __import__("transformers").__version__}
    with open(os.path.join(model_dir, "hf_check.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
