"""Bad input raises the documented exceptions with the CLI's messages, never a panic."""

import numpy as np
import pytest
from conftest import cli


def test_a_missing_image_is_file_not_found_with_the_cli_message(m2ib, model, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        model.attribute("nope.png", "a red circle")
    out = cli("attribute", "--model", "tiny-shapes", "--image", "nope.png", "--text", "a red circle", "--out", tmp_path, check=False)
    assert out.returncode != 0
    assert f"error: {e.value}" in out.stderr


def test_a_missing_model_or_experiment_is_file_not_found(m2ib, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder at nodir"):
        m2ib.load("nodir")
    with pytest.raises(FileNotFoundError):
        m2ib.run(tmp_path / "absent.toml")
    with pytest.raises(FileNotFoundError, match="no result files"):
        m2ib.results(tmp_path)


def test_bad_settings_are_value_errors_naming_the_setting(m2ib, model, scenes):
    with pytest.raises(m2ib.Error, match="no block after it"):
        model.attribute(scenes[0], "a red circle", layer=3)
    with pytest.raises(m2ib.Error, match="unknown method"):
        model.attribute(scenes[0], "a red circle", method="lime")
    with pytest.raises(m2ib.Error, match="setting `beta`: a list"):
        model.attribute(scenes[0], "a red circle", beta=[1, 2])
    with pytest.raises(m2ib.Error, match="device"):
        m2ib.load("tiny-shapes", device="tpu")


def test_file_not_found_only_when_the_error_is_the_missing_file(m2ib, model):
    # A missing image with a bad setting: the setting is checked first, and that is the error.
    with pytest.raises(m2ib.Error, match="no block after it") as e:
        model.attribute("nope.png", "a red circle", layer=3)
    assert not isinstance(e.value, FileNotFoundError)
    with pytest.raises(m2ib.Error, match="no pairs"):
        model.embed([], [])


def test_bad_images_say_what_was_expected(m2ib, model):
    with pytest.raises(m2ib.Error, match="expected height x width x 3"):
        model.attribute(np.zeros((8, 8, 4), np.uint8), "a red circle")
    with pytest.raises(m2ib.Error, match="uint8"):
        model.attribute(np.zeros((8, 8, 3), np.float32), "a red circle")
    with pytest.raises(m2ib.Error, match="expected a path"):
        model.attribute(42, "a red circle")


def test_the_message_of_a_cli_error_is_the_same(m2ib, model, scenes, tmp_path):
    with pytest.raises(ValueError) as e:
        model.attribute(scenes[0], "a red circle", layer=3)
    out = cli("attribute", "--model", "tiny-shapes", "--image", scenes[0], "--text", "a red circle", "--layer", "3", "--out", tmp_path, check=False)
    assert f"error: {e.value}\n" in out.stderr
