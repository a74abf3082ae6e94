"""Running experiments and reading their results."""

from __future__ import annotations

import os
from pathlib import Path

from . import _m2ib


def run(experiment, out=None, devices: str | None = None, quiet: bool = False, dry_run: bool = False) -> dict:
    """Run an experiment TOML as ``m2ib run`` does: into ``out`` (default
    ``reports/<experiment name>``), resuming what a previous run finished; ``devices``
    overrides the TOML's (``cpu``, ``auto``, ``cuda:0,cuda:1``). Progress bars draw where a
    terminal is attached (``quiet`` turns them off). Returns the job counts and the folder."""
    return _m2ib.run(
        os.fspath(experiment),
        None if out is None else os.fspath(out),
        devices,
        quiet,
        dry_run,
    )


def results(out, library: str = "auto"):
    """The run folder's result rows (``<out>/results/*.parquet``) as one DataFrame: pandas when
    installed (``library="auto"``), else polars; or the one named."""
    folder = Path(out) / "results"
    parts = sorted(folder.glob("*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{folder}: no result files (has `m2ib.run` written here?)")
    want = library
    if want == "auto":
        try:
            import pandas  # noqa: F401

            want = "pandas"
        except ImportError:
            want = "polars"
    if want == "pandas":
        import pandas as pd

        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    if want == "polars":
        import polars as pl

        return pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
    raise _m2ib.Error(f"library {library!r}; allowed: auto, pandas, polars")
