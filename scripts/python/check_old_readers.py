"""Reads every Parquet part of a run directory with the pyarrow this Python has (the point: an
old one, e.g. pyarrow 14, which rejects Arrow's string_view type) and prints what it found.

    python3 -m venv ~/.cache/m2ib/pa14 && ~/.cache/m2ib/pa14/bin/pip install pyarrow==14.0.2 "numpy<2"
    ~/.cache/m2ib/pa14/bin/python scripts/python/check_old_readers.py reports/smoke [merged.parquet ...]
"""
import glob
import os
import sys

import pyarrow
import pyarrow.parquet as pq


def main(paths):
    files = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "results", "*.parquet"))) if os.path.isdir(p) else [p]
    if not files:
        sys.exit(f"no Parquet files under {paths}")
    rows, failed = 0, []
    for f in files:
        try:
            t = pq.read_table(f)
            rows += t.num_rows
            schema = t.schema
        except Exception as e:  # report every file that fails, not only the first
            failed.append(f"{f}: {e}")
    print(f"pyarrow {pyarrow.__version__}: read {len(files) - len(failed)} of {len(files)} files, {rows} rows")
    if not failed:
        print("string columns:", ", ".join(f"{n} ({schema.field(n).type})" for n in schema.names if "string" in str(schema.field(n).type)))
    for f in failed[:5]:
        print("FAILED", f)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1:] or ["reports/smoke"])
