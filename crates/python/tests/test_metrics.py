"""The metrics on hand-made maps: the values the Rust tests expect (crates/metrics)."""

import numpy as np
import pytest


def test_iou_by_hand(m2ib):
    # 4x4 map, prediction = the left half, box = the top half: inter 4, union 12
    # (crates/metrics/src/localization.rs `iou_by_hand`).
    left = np.array([[1, 1, 0, 0]] * 4, dtype=np.float32)
    assert m2ib.metrics.localization_iou(left, [[0, 0, 4, 2]]) == pytest.approx(4 / 12, abs=1e-12)
    # Maps are min-max normalised first, as the runner does: scale and offset change nothing.
    assert m2ib.metrics.localization_iou(3 * left - 7, [[0, 0, 4, 2]]) == pytest.approx(4 / 12, abs=1e-12)


def test_percentile_keeps_the_top_quarter(m2ib):
    ramp = (np.arange(16, dtype=np.float32) / 15).reshape(4, 4)
    assert m2ib.metrics.localization_iou(ramp, [[0, 3, 4, 4]], threshold="percentile") == 1.0
    # The value threshold (0.75) keeps 12/15.. 15/15: the bottom row and nothing else.
    assert m2ib.metrics.localization_iou(ramp, [[0, 3, 4, 4]], threshold="value") == 1.0


def test_text_auroc_by_hand(m2ib):
    # Content tokens 1..3; positives 1 and 3. Scores .9 (pos), .1 (neg), .8 (pos): perfect.
    scores = np.array([0, 0.9, 0.1, 0.8, 0], dtype=np.float32)
    content = [False, True, True, True, False]
    assert m2ib.metrics.text_auroc(scores, content, [False, True, False, True, False]) == 1.0
    # The negative scored highest: both pairs wrong.
    assert m2ib.metrics.text_auroc(scores, content, [False, False, True, False, False]) == 0.0
    # Start and end tokens never count, whatever their score.
    loud_ends = scores.copy()
    loud_ends[[0, 4]] = 99
    assert m2ib.metrics.text_auroc(loud_ends, content, [False, True, False, True, False]) == 1.0


def test_confidence_of_a_map_that_keeps_everything(m2ib, model, scenes):
    # A map of ones except one pixel: normalised, pixels x map leaves the image as it was but
    # for that pixel; the cosine barely moves and cannot be said to rise by much.
    ones = np.ones((224, 224), dtype=np.float32)
    ones[0, 0] = 0
    c = m2ib.metrics.confidence(model, scenes[0], "a red circle", image_map=ones)
    assert c["before"] == pytest.approx(c["after"], abs=1e-3)
    assert c["drop"] == pytest.approx(max(c["before"] - c["after"], 0) * 100, abs=1e-9)
    assert c["drop"] < 0.1


def test_confidence_drop_and_increase_follow_the_cosines(m2ib, model, scenes):
    ex = model.attribute(scenes[0], "a red circle", method="saliency")
    for proto in ("whole-map", "keep-top25"):
        c = m2ib.metrics.confidence(model, scenes[0], "a red circle", image_map=ex.image_map, protocol=proto)
        assert c["drop"] == pytest.approx(max(c["before"] - c["after"], 0) * 100, abs=1e-9)
        assert c["increase"] == (100.0 if c["after"] > c["before"] else 0.0)
    # The clean cosine is the pair's embedding cosine.
    _, _, cos = model.embed(scenes[0], "a red circle")
    assert c["before"] == pytest.approx(cos, abs=1e-6)
    for proto in ("padded", "official"):
        c = m2ib.metrics.confidence(model, scenes[0], "a red circle", token_scores=ex.token_scores_raw, protocol=proto)
        assert c["drop"] == pytest.approx(max(c["before"] - c["after"], 0) * 100, abs=1e-9)


def test_constant_and_misshapen_maps_are_refused(m2ib, model, scenes):
    with pytest.raises(m2ib.Error, match="constant"):
        m2ib.metrics.localization_iou(np.zeros((4, 4), np.float32), [[0, 0, 1, 1]])
    with pytest.raises(m2ib.Error, match="model reads 224x224"):
        m2ib.metrics.confidence(model, scenes[0], "a red circle", image_map=np.eye(8, dtype=np.float32))
    with pytest.raises(m2ib.Error, match="constant"):
        m2ib.metrics.confidence(model, scenes[0], "a red circle", token_scores=np.ones(5, np.float32))
    with pytest.raises(m2ib.Error, match="token scores for a caption of 5 tokens"):
        m2ib.metrics.confidence(model, scenes[0], "a red circle", token_scores=np.ones(3, np.float32))
    with pytest.raises(m2ib.Error, match="allowed: value, percentile"):
        m2ib.metrics.localization_iou(np.eye(4, dtype=np.float32), [[0, 0, 1, 1]], threshold="mean")
