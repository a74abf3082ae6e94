"""The README's notebook example, as a script: one heat map and its token scores from Python,
drawn with matplotlib (reports/python/notebook.png), then the same map scored with m2ib.metrics.

    python crates/python/examples/notebook.py     # with the wheel and matplotlib installed
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import m2ib  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
IMAGE = ROOT / "crates/python/tests/data/scene0.png"
CAPTION = "a yellow cross and a purple circle"

# --- the README's five lines ---
model = m2ib.load("tiny-shapes")
ex = model.attribute(IMAGE, CAPTION)  # M2IB with the model's own defaults
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [1, 1.2]})
left.imshow(plt.imread(IMAGE)); left.imshow(ex.image_map_original, cmap="jet", alpha=0.5)
right.barh(range(len(ex.tokens)), ex.token_scores, tick_label=ex.tokens); right.invert_yaxis()
# --- end ---

left.set_title(f"M2IB on '{CAPTION}'", fontsize=10)
left.axis("off")
right.set_xlabel("token score (min-max over content tokens)")
right.set_xlim(0, 1)
fig.tight_layout()
out = ROOT / "reports/python/notebook.png"
out.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(out, dpi=100)
print(ex)
print("settings:", {k: v for k, v in ex.params["image"].items() if k in ("layer", "beta", "var")}, "(image),",
      {k: v for k, v in ex.params["text"].items() if k in ("layer", "beta", "var")}, "(text)")
print("token scores:", dict(zip(ex.tokens[1:-1], ex.token_scores[1:-1].round(2))))
print("confidence drop (whole-map):", round(m2ib.metrics.confidence(model, IMAGE, CAPTION, image_map=ex.image_map)["drop"], 2))
print("wrote", out.relative_to(ROOT))
