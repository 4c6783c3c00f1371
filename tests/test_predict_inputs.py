"""``predict`` takes in-memory images (PIL, numpy) and strings as well as paths."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import headstart
from headstart.data.inputs import as_examples
from headstart.errors import DataError


@pytest.fixture
def image_model(tmp_path, image_folder, tiny_backbone):
    headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "run", progress=False)
    return headstart.load(tmp_path / "run")


def test_paths_pil_images_and_arrays_give_the_same_probabilities(image_model, image_folder):
    paths = [str(p) for p in sorted(image_folder.rglob("*.png"))[:5]]
    pils = [Image.open(p) for p in paths]
    batch = np.stack([np.asarray(p.convert("RGB")) for p in pils])
    expected = image_model.predict_proba(paths)
    assert np.allclose(image_model.predict_proba(pils), expected)
    assert np.allclose(image_model.predict_proba(batch), expected)
    assert np.allclose(image_model.predict_proba(pils[0]), expected[:1])
    assert image_model.predict(batch) == image_model.predict(paths)


def test_headstart_predict_names_in_memory_images(image_model, image_folder):
    path = sorted(image_folder.rglob("*.png"))[0]
    image = Image.open(path)
    rows = headstart.predict(image_model, [image, np.asarray(image.convert("RGB")), str(path)])
    assert [r["input"] for r in rows] == ["<image 0: 24x24>", "<image 1: 24x24>", str(path)]
    assert rows[0]["label"] == rows[1]["label"] == rows[2]["label"]


def test_a_single_string_is_one_text():
    assert as_examples("one text, with a comma", "text") == ["one text, with a comma"]


@pytest.mark.parametrize(("items", "modality", "message"), [
    ([1, 2], "text", "takes strings"),
    ([{"a": 1}], "image", "file paths, PIL images or uint8 arrays"),
    (np.zeros((4, 4), np.uint8), "image", "shape"),
    ([], "text", "no inputs given"),
])
def test_examples_of_the_wrong_kind_are_refused(items, modality, message):
    with pytest.raises(DataError, match=message):
        as_examples(items, modality)


def test_float_arrays_are_refused_with_the_fix(image_model):
    with pytest.raises(DataError, match="uint8"):
        image_model.predict(np.zeros((2, 8, 8, 3), np.float32))
