"""m2ib: what CLIP-style models look at -- M2IB and its baselines, the paper's metrics, and the
experiment runner, over the same Rust core as the `m2ib` command.

    import m2ib
    model = m2ib.load("tiny-shapes")                      # or a Hugging Face CLIP folder
    ex = model.attribute("scene.png", "a red circle")     # M2IB with the model's defaults
    ex.image_map, ex.tokens, ex.token_scores              # numpy arrays and lists
    m2ib.metrics.localization_iou(ex.image_map, boxes)

Errors are ``m2ib.Error`` (a ValueError) or FileNotFoundError, with the CLI's messages.
"""

from ._torch import TORCH_VERSION, check_installed_torch

check_installed_torch()

from . import _m2ib  # noqa: E402  (after the torch check, on purpose)
from ._m2ib import Error  # noqa: E402
from .model import Explanation, Model, load  # noqa: E402
from .results import results, run  # noqa: E402
from . import metrics  # noqa: E402

assert _m2ib.TORCH_VERSION == TORCH_VERSION, (_m2ib.TORCH_VERSION, TORCH_VERSION)

#: The attribution methods by registry name (`method="all"` runs each).
METHODS = tuple(_m2ib.METHODS)

__all__ = ["Error", "Explanation", "Model", "load", "metrics", "results", "run", "METHODS"]
