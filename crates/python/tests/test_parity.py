"""The module computes what the CLI computes: same maps, bit for bit, on the same inputs."""

import json

import numpy as np
import pytest
from conftest import cli, read_safetensors, write_png

CAPTIONS = ["a red circle", "a blue square and a green triangle"]


@pytest.fixture(scope="module")
def cli_all(tmp_path_factory, scenes):
    """`m2ib attribute --method all` on two pairs (pair k seeded from k, as the module does)."""
    out = tmp_path_factory.mktemp("cli")
    args = ["attribute", "--model", "tiny-shapes", "--method", "all", "--out", out]
    for img, cap in zip(scenes, CAPTIONS):
        args += ["--image", img, "--text", cap]
    cli(*args)
    return out


@pytest.mark.parametrize("pairs_per_batch", [1, 2])
def test_every_method_equals_the_cli(model, m2ib, scenes, cli_all, pairs_per_batch):
    got = model.attribute(list(zip(scenes, CAPTIONS)), method="all", pairs_per_batch=pairs_per_batch)
    worst = 0.0
    for k, (img, per_method) in enumerate(zip(scenes, got)):
        assert sorted(per_method) == sorted(m2ib.METHODS)
        for name, ex in per_method.items():
            folder = cli_all / f"{k:04d}-{img.stem}" / name
            want = read_safetensors(folder / "maps.safetensors")
            meta = json.loads((folder / "maps.json").read_text())
            assert ex.tokens == meta["tokens"]
            assert ex.content.tolist() == meta["content"]
            assert ex.params == meta["params"]
            assert ex.seed == meta["meta"]["seed"]
            assert ex.settings_sources == meta["meta"]["settings_sources"]
            pairs = [
                (ex.image_map_raw, want["image_raw"]),
                (ex.image_map, want["image_normalized"]),
                (ex.token_scores_raw, want["text_raw"]),
                (ex.token_scores, want["text_normalized"]),
            ]
            for a, b in pairs:
                assert a.shape == b.shape
                if pairs_per_batch == 1:
                    # One pair per call, as the CLI runs them: identical bits.
                    np.testing.assert_array_equal(a, b, err_msg=f"{name} pair {k}")
                else:
                    worst = max(worst, float(np.max(np.abs(a - b))))
    # Batched pairs run the same maths in one padded batch: equal up to float rounding (6.7e-4
    # here, mostly M2IB's optimisation amplifying it; the bound leaves room for other CPUs).
    print(f"pairs_per_batch {pairs_per_batch}: largest difference from the CLI {worst:.3g}")
    assert worst < 1e-2, worst


def test_an_array_is_read_as_the_same_file(model, tmp_path):
    """A non-square image given as an array and as a PNG file: same pixels, same maps; the map
    on the original image covers the centre crop only."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(150, 260, 3), dtype=np.uint8)
    png = tmp_path / "wide.png"
    write_png(png, rgb)
    a = model.attribute(rgb, "a red circle", method="saliency")
    b = model.attribute(png, "a red circle", method="saliency")
    np.testing.assert_array_equal(a.image_map, b.image_map)
    assert a.image_map_original.shape == (150, 260)
    x0, y0, x1, y1 = a.crop
    assert (y0, y1) == (0, 150) and 0 < x0 < x1 < 260
    inside = a.image_map_original[:, x0:x1]
    assert np.isfinite(inside).all() and np.isnan(a.image_map_original[:, :x0]).all()
    # The CLI on the file: the same normalised map.
    out = tmp_path / "cli"
    cli("attribute", "--model", "tiny-shapes", "--method", "saliency", "--image", png, "--text", "a red circle", "--out", out)
    want = read_safetensors(out / "0000-wide" / "maps.safetensors")["image_normalized"]
    np.testing.assert_array_equal(a.image_map, want)


def test_embed_equals_the_cli(model, scenes):
    out = cli("embed", "--model", "tiny-shapes", "--image", scenes[0], "--text", CAPTIONS[0], "--json")
    want = json.loads(out.stdout)
    ie, te, cos = model.embed(scenes[0], CAPTIONS[0])
    np.testing.assert_array_equal(ie, np.asarray(want["image_embedding"], dtype=np.float32))
    np.testing.assert_array_equal(te, np.asarray(want["text_embedding"], dtype=np.float32))
    assert abs(cos - want["cosine"]) < 1e-12
    # A list: one row per pair.
    ie2, te2, cos2 = model.embed(scenes, CAPTIONS)
    assert ie2.shape == (2, ie.shape[0]) and cos2.shape == (2,)
    np.testing.assert_allclose(ie2[0], ie, atol=1e-5)


def test_settings_override_the_model_defaults(model, scenes):
    ex = model.attribute(scenes[0], CAPTIONS[0], layer=1, beta=0.5, steps=2)
    assert ex.params["image"]["layer"] == 1 and ex.params["text"]["layer"] == 1
    assert ex.params["image"]["beta"] == 0.5 and ex.params["image"]["steps"] == 2
    assert ex.settings_sources["layer"] == "argument"
    # Untouched keys keep the model's m2ib.toml values and say so.
    assert ex.settings_sources["image_sigma"].startswith("model: ")
    embeddings = model.attribute(scenes[0], CAPTIONS[0], text_layer="embeddings", steps=2)
    assert embeddings.params["text"]["layer"] == "embeddings"
    # numpy scalars are settings too (a `for layer in np.arange(3)` loop).
    looped = model.attribute(scenes[0], CAPTIONS[0], layer=np.int64(1), beta=np.float32(0.5), steps=np.int64(2))
    assert looped.params["image"]["layer"] == 1 and looped.params["image"]["steps"] == 2
    # A method's own `batch_size` reaches the method (pairs per call is `pairs_per_batch`).
    rise = model.attribute(scenes[0], CAPTIONS[0], method="rise", batch_size=32, image_masks=64)
    assert rise.params["batch_size"] == 32


def test_the_gil_is_released_while_computing(model, scenes):
    """Another Python thread runs while a call computes (the call holds no GIL)."""
    import threading
    import time

    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    start = time.perf_counter()
    model.attribute(list(zip(scenes, CAPTIONS)) * 2, method="rise", image_masks=512, pairs_per_batch=4)
    end = time.perf_counter()
    done.set()
    t.join()
    during = [x for x in ticks if start < x < end]
    # A thread starved by a held GIL would tick about once (a switch interval is 5 ms); with the
    # GIL released it ticks every millisecond or so of the call (a twentieth of that is asked,
    # as two busy libtorch threads share the two cores with it).
    assert len(during) > max(20, 0.05 * (end - start) / 0.001), (len(during), end - start)


def test_a_pil_image_is_read_as_its_pixels(model, scenes):
    Image = pytest.importorskip("PIL.Image")
    pil = Image.open(scenes[0])
    a = model.attribute(pil, CAPTIONS[0], method="saliency")
    b = model.attribute(np.asarray(pil.convert("RGB")), CAPTIONS[0], method="saliency")
    c = model.attribute(scenes[0], CAPTIONS[0], method="saliency")
    np.testing.assert_array_equal(a.image_map, b.image_map)
    np.testing.assert_array_equal(a.image_map, c.image_map)
    # A grey-level or RGBA PIL image is converted to RGB first, as PIL's convert("RGB") does.
    grey = model.attribute(pil.convert("L"), CAPTIONS[0], method="saliency")
    assert grey.image_map.shape == (224, 224)
