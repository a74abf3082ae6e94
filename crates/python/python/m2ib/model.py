"""Loading a checkpoint and explaining image-caption pairs with it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import _m2ib


def _bundled_dir() -> Path | None:
    """The embedded default shipped inside the installed package (wheels carry it)."""
    d = Path(__file__).parent / "models" / "tiny-shapes-clip"
    return d if (d / "config.json").is_file() else None


def load(model: str | os.PathLike = "tiny-shapes", device: str = "cpu", preset: str = "hf") -> "Model":
    """A checkpoint on one device.

    ``model``: a Hugging Face CLIP folder (config.json, model.safetensors, tokenizer.json; an
    OpenAI checkpoint converted by ``m2ib`` is one), or ``"tiny-shapes"``, the embedded default.
    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. ``preset``: ``hf`` or
    ``cxr-repair-compat`` (the official M2IB wrapper's text tower). The model's recommended
    method settings (``<folder>/m2ib.toml``, else a rule from its depths) apply to every call.
    """
    name = os.fspath(model)
    shipped = _bundled_dir() if name == _m2ib.BUNDLED_NAME else None
    if shipped is not None:
        name = str(shipped)
    m = Model(_m2ib.Model(name, device, preset))
    if m.device_note:
        print(m.device_note, file=sys.stderr)
    return m


def _image_arg(image: Any) -> Any:
    """A path stays a path (decoded by the CLI's decoder); a PIL image becomes an RGB array."""
    if isinstance(image, (str, os.PathLike, np.ndarray)):
        return image
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image.Image
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    return image


@dataclass
class Explanation:
    """One method's explanation of one image-caption pair."""

    method: str
    #: Min-max normalised map [H, W] over the model's input (the centre crop it reads).
    image_map: np.ndarray
    #: The method's raw map [H, W] before normalisation (may be signed).
    image_map_raw: np.ndarray
    #: ``image_map`` carried onto the image as given [height, width]; NaN outside the crop.
    image_map_original: np.ndarray
    #: Where the crop sits in the image as given: ``[x0, y0, x1, y1)``.
    crop: list
    #: Caption tokens, start and end included; the scores index them.
    tokens: list
    #: Normalised score per token (min-max over content tokens; 0 at start and end).
    token_scores: np.ndarray
    token_scores_raw: np.ndarray
    #: False for start and end tokens.
    content: np.ndarray
    #: The method's resolved parameters, as the runner records them.
    params: dict
    #: Where each setting above the built-in defaults came from (``argument``, ``model: ...``).
    settings_sources: dict
    seed: int
    #: Constant maps (drawn as 0), words outside the vocabulary, truncation.
    notes: list = field(default_factory=list)

    def __repr__(self) -> str:
        h, w = self.image_map.shape
        return (
            f"Explanation(method={self.method!r}, image_map={h}x{w}, "
            f"tokens={self.tokens!r}, seed={self.seed})"
        )


def _explanations(pair: dict) -> list[Explanation]:
    notes = []
    if pair["unknown_words"]:
        notes.append("not in the model's vocabulary, read as unknown: " + ", ".join(pair["unknown_words"]))
    if pair["truncated_tokens"]:
        notes.append(f"caption truncated by {pair['truncated_tokens']} tokens to the context length")
    return [
        Explanation(
            method=m["method"],
            image_map=m["image_map"],
            image_map_raw=m["image_map_raw"],
            image_map_original=m["image_map_original"],
            crop=m["crop"],
            tokens=pair["tokens"],
            token_scores=m["token_scores"],
            token_scores_raw=m["token_scores_raw"],
            content=pair["content"],
            params=m["params"],
            settings_sources=m["settings_sources"],
            seed=pair["seed"],
            notes=notes + m["notes"],
        )
        for m in pair["methods"]
    ]


def _progress(total: int, show: bool | None):
    """tqdm.auto (a widget in notebooks, a bar in terminals) when installed and wanted."""
    if show is False or total <= 1:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="pair", desc="m2ib")


class Model:
    """A loaded checkpoint. Calls release the GIL; one call runs at a time per model."""

    def __init__(self, inner: _m2ib.Model):
        self._inner = inner

    def __repr__(self) -> str:
        return repr(self._inner)

    @property
    def path(self) -> str:
        return self._inner.path

    @property
    def device(self) -> str:
        return self._inner.device

    @property
    def device_note(self) -> str | None:
        """Why ``device="auto"`` chose the device it did (None when one was named)."""
        return self._inner.device_note

    @property
    def image_size(self) -> int:
        return self._inner.image_size

    @property
    def depths(self) -> tuple[int, int]:
        """Blocks of the (image, text) towers."""
        return self._inner.depths

    def tokens(self, text: str) -> list[str]:
        return self._inner.tokens(text)

    def attribute(
        self,
        image: Any,
        text: str | None = None,
        method: str = "m2ib",
        *,
        seed: int = 0,
        pairs_per_batch: int = 8,
        progress: bool | None = None,
        **settings: Any,
    ):
        """Explain one pair, or a list of ``(image, text)`` pairs (``pairs_per_batch`` at a time).

        ``image``: a path, a PIL image or an HxWx3 uint8 array. ``method``: one of
        ``m2ib.METHODS`` or ``"all"`` (then a dict name -> Explanation per pair; ``settings`` go
        to M2IB only, as the CLI's flags do). ``settings``: the flat keys of an experiment's
        ``[methods.<name>]`` table, e.g. ``layer=8``, ``text_layer="embeddings"``, ``beta=0.1``,
        ``var=1.0``, ``steps=10``, RISE's ``image_masks=512`` or ``batch_size=64``; unset keys
        take the model's defaults, then the method's. Pair k of a call is seeded as
        ``m2ib attribute`` seeds its pair k: with ``pairs_per_batch=1`` the maps equal the CLI's
        bit for bit; batched pairs differ from them by float rounding.
        """
        single = text is not None
        pairs: Sequence = [(image, text)] if single else list(image)
        for p in pairs:
            if not (isinstance(p, (tuple, list)) and len(p) == 2):
                raise TypeError("attribute(image, text) for one pair, or attribute([(image, text), ...])")
        if pairs_per_batch < 1:
            raise _m2ib.Error(f"pairs_per_batch {pairs_per_batch}: must be at least 1")
        out = []
        bar = _progress(len(pairs), progress)
        try:
            for start in range(0, len(pairs), pairs_per_batch):
                chunk = pairs[start : start + pairs_per_batch]
                got = self._inner.attribute(
                    [_image_arg(i) for i, _ in chunk],
                    [str(t) for _, t in chunk],
                    method,
                    settings,
                    seed,
                    start,
                )
                for pair in got:
                    ex = _explanations(pair)
                    out.append({e.method: e for e in ex} if method == "all" else ex[0])
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return out[0] if single else out

    def embed(self, images: Any, texts: Any):
        """Projected embeddings and cosine similarity, as ``m2ib embed``.

        One image and one caption give ``(image_embedding [P], text_embedding [P], cosine)``;
        lists give ``([N, P], [N, P], [N])``.
        """
        single = isinstance(texts, str)
        imgs = [images] if single else list(images)
        txts = [texts] if single else list(texts)
        ie, te, cos = self._inner.embed([_image_arg(i) for i in imgs], txts)
        if single:
            return ie[0], te[0], cos[0]
        return ie, te, np.asarray(cos)
