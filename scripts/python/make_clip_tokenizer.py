"""Builds data/clip-tokenizer/tokenizer.json: the real CLIP BPE tokenizer, from the MIT-licensed
`bpe_simple_vocab_16e6.txt.gz` that PyPI's `open_clip_torch` ships (PYTHON-REFERENCE-NOTES.md).

Run by hand:  $(scripts/python/setup_venv.sh) scripts/python/make_clip_tokenizer.py
"""
import glob
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile

from transformers import CLIPTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "data", "clip-tokenizer")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def main():
    tmp = tempfile.mkdtemp()
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "open_clip_torch==3.3.0", "-d", tmp], check=True)
    whl = glob.glob(os.path.join(tmp, "open_clip_torch-*.whl"))[0]
    with zipfile.ZipFile(whl) as z:
        text = gzip.decompress(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz")).decode("utf-8")
    merges = text.split("\n")[1 : 49152 - 256 - 2 + 1]
    assert len(merges) == 48894
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    src = os.path.join(tmp, "src")
    os.makedirs(src)
    with open(os.path.join(src, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f)
    with open(os.path.join(src, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizerFast.from_pretrained(src)
    ids = tok("a photo")["input_ids"]
    assert ids[0] == 49406 and ids[-1] == 49407, ids
    os.makedirs(OUT, exist_ok=True)
    tok.save_pretrained(OUT)
    for extra in os.listdir(OUT):
        if extra != "tokenizer.json":
            os.remove(os.path.join(OUT, extra))
    print("wrote", os.path.join(OUT, "tokenizer.json"), os.path.getsize(os.path.join(OUT, "tokenizer.json")), "bytes")


if __name__ == "__main__":
    main()
