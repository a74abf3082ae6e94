"""The paper's metrics on your own maps, with the runner's code and semantics.

Maps are min-max normalised first, exactly as the runner normalises a method's map before
scoring it; a constant map raises ``m2ib.Error`` (the runner's ``degenerate_map`` row).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _m2ib
from .model import Model, _image_arg


def localization_iou(image_map: Any, boxes: Sequence[Sequence[float]], threshold: str = "value") -> float:
    """IoU of the map, thresholded, with the union of ``boxes`` ``[x0, y0, x1, y1]``.

    ``threshold``: ``value`` (normalised map > 0.75, the paper's) or ``percentile`` (above its
    own 75th percentile: the top quarter of pixels). Boxes are in the map's pixel coordinates
    (the model's crop for ``Explanation.image_map``). A pixel is inside a box when its centre is.
    """
    m = np.ascontiguousarray(image_map, dtype=np.float32)
    return _m2ib.localization_iou(m, [list(map(float, b)) for b in boxes], threshold)


def text_auroc(token_scores: Any, content: Sequence[bool], positive: Sequence[bool]) -> float:
    """AUROC of the content tokens' scores, ``positive`` marking tokens that name what the
    image shows (one flag per token, as ``Explanation.tokens``; ``content`` false at start/end)."""
    s = np.ascontiguousarray(token_scores, dtype=np.float32)
    return _m2ib.text_auroc(s, [bool(c) for c in content], [bool(p) for p in positive])


def confidence(
    model: Model,
    image: Any,
    text: str,
    *,
    image_map: Any = None,
    token_scores: Any = None,
    protocol: str | None = None,
) -> dict:
    """Drop and increase in confidence (the image-caption cosine) when the pair is perturbed by
    a map: ``image_map`` [H, W] at the model's input size (protocols ``whole-map``, the paper's
    pixels x map, and ``keep-top25``), or ``token_scores`` one per token, start and end included
    (protocols ``padded``, the default, and ``official``). Returns ``before``, ``after``,
    ``drop`` (percentage points, 0 when the cosine rose) and ``increase`` (100 or 0), the values
    the runner's rows hold for one sample. The cosine is taken against ``text``; the runner scores
    image perturbations of a shapes caption that names an absent object against the caption
    without that phrase (``[metrics] image_target``), so pass that caption to match its rows."""
    if (image_map is None) == (token_scores is None):
        raise _m2ib.Error("give exactly one of image_map and token_scores")
    inner = model._inner
    if image_map is not None:
        m = np.ascontiguousarray(image_map, dtype=np.float32)
        out = inner.confidence_image(_image_arg(image), text, m, protocol or "whole-map")
    else:
        s = np.ascontiguousarray(token_scores, dtype=np.float32)
        out = inner.confidence_text(_image_arg(image), text, s, protocol or "padded")
    return dict(zip(("before", "after", "drop", "increase"), out))
