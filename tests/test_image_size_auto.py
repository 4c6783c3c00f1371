"""``--image-size auto``: a smaller input for images much smaller than the backbone's input."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import headstart
from headstart.backbones import create_backbone, with_preprocess
from headstart.backbones.references import SMALL_IMAGE_SIZE, with_image_size
from headstart.cli import app
from headstart.errors import ConfigError


@pytest.fixture
def backbone_224(tiny_timm_ref):
    return with_preprocess(create_backbone(tiny_timm_ref), {"input_size": 224})


def test_auto_picks_the_small_size_only_when_every_image_is_much_smaller(backbone_224):
    small, large = np.zeros((28, 28), np.uint8), np.zeros((120, 90, 3), np.uint8)
    assert with_image_size(backbone_224, "auto", [small] * 3).preprocess.input_size == SMALL_IMAGE_SIZE
    assert with_image_size(backbone_224, "auto", [small, large]).preprocess.input_size == 224
    small_input = with_preprocess(backbone_224, {"input_size": 96})
    assert with_image_size(small_input, "auto", [small]).preprocess.input_size == 96, "never enlarged"


def test_auto_reads_image_files_in_fit(tmp_path, image_folder, backbone_224):
    model = headstart.fit(image_folder, backbone=backbone_224, image_size="auto", progress=False, cache=False)
    assert model.backbone.preprocess.input_size == SMALL_IMAGE_SIZE  # the folder's images are 24 px


def test_auto_needs_the_training_images_and_sizes_are_checked(backbone_224):
    with pytest.raises(ConfigError, match="only fit reads"):
        with_image_size(backbone_224, "auto")
    with pytest.raises(ConfigError, match="at least 16"):
        with_image_size(backbone_224, 8)


def test_cli_refuses_an_image_size_that_is_neither_pixels_nor_auto(image_folder, tmp_path):
    result = CliRunner().invoke(app, ["fit", str(image_folder), "--image-size", "big", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "not a number of pixels or 'auto'" in result.output
