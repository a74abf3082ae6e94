#!/usr/bin/env python3
"""The README's compact Table 1 from a report's table.csv (standard library only).

Prints one Markdown row per method (calibration rows last) with mean ± per-sample standard error,
then the oracle-vs-random margin of every column in standard errors:
(oracle - random) / sqrt(se_oracle^2 + se_random^2), signed so that positive means the oracle is
better (lower for drop). For ROAR+ the "samples" are the fine-tunings (repeats x splits).

    python3 scripts/table_readme.py reports/table1/table.csv
"""
import csv
import math
import sys

COLUMNS = [
    ("image", "localization_iou", "value", "img IoU (>0.75) ↑"),
    ("image", "localization_iou", "percentile", "img IoU (top 25 %) ↑"),
    ("image", "drop", "whole-map", "img drop ↓"),
    ("image", "drop", "keep-top25", "img drop, keep 25 % ↓"),
    ("image", "increase", "keep-top25", "img increase, keep 25 % ↑"),
    ("image", "intervention", "spearman", "img intervention ρ ↑"),
    ("image", "roar", "top50", "img ROAR+ ↑"),
    ("text", "localization_auroc", "content", "txt AUROC ↑"),
    ("text", "drop", "official", "txt drop ↓"),
    ("text", "increase", "official", "txt increase ↑"),
    ("text", "intervention", "spearman", "txt intervention ρ ↑"),
    ("text", "roar", "top50", "txt ROAR+ ↑"),
]
CALIBRATION = ["oracle", "random"]


def fmt(x, digits):
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def main(path):
    cells = {}
    clean = {}
    for r in csv.DictReader(open(path)):
        key = (r["modality"], r["metric"], r["variant"])
        vals = (float(r["mean"]), float(r["se_samples"]), int(r["n_used"]), int(r["n_total"]))
        cells.setdefault(r["method"], {})[key] = vals
        if r["metric"] == "roar_loss" and r["variant"] == "clean":
            clean[r["modality"]] = vals
    methods = [m for m in cells if m not in CALIBRATION] + [m for m in CALIBRATION if m in cells]
    cols = [c for c in COLUMNS if any(c[:3] in cells[m] for m in methods)]
    print("| method | " + " | ".join(c[3] for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for m in methods:
        row = []
        for c in cols:
            v = cells[m].get(c[:3])
            digits = 3 if c[1].startswith("localization") or c[1] == "intervention" else 1
            row.append("—" if v is None else f"{fmt(v[0], digits)} ± {fmt(v[1], digits)}")
        name = f"*{m}*" if m in CALIBRATION else m
        print(f"| {name} | " + " | ".join(row) + " |")
    if all(m in cells for m in CALIBRATION):
        out = []
        for c in cols:
            o, r = cells["oracle"].get(c[:3]), cells["random"].get(c[:3])
            if o is None or r is None:
                out.append("—")
                continue
            se = math.hypot(o[1], r[1])
            sign = -1.0 if c[1] == "drop" else 1.0
            out.append("—" if se == 0 or not math.isfinite(se) else f"{sign * (o[0] - r[0]) / se:+.1f}")
        print("| oracle − random (SE) | " + " | ".join(out) + " |")
    for mod, v in sorted(clean.items()):
        print(f"\nclean ROAR+ validation loss ({mod}): {v[0]:.3f} ± {v[1]:.3f} (n = {v[2]})", end="")
    print()


if __name__ == "__main__":
    main(sys.argv[1])
