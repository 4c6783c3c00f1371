"""Shared fixtures: an isolated feature cache, a tiny timm backbone saved to a local file, a tiny local BERT
folder, tiny data sets."""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_PREPROCESS = {"kind": "image", "input_size": 32, "crop_pct": 1.0, "interpolation": "bilinear",
                   "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what importing the test modules created (torch, transformers, ...: over half a million objects that
    live for the whole session anyway) out of the garbage collector's sight. Every loop-trained fit ends in
    accelerate's ``free_memory()``, a full ``gc.collect()`` that would otherwise scan them all: 0.8 of the 1.1 s
    a tiny fit took under load."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test run gets its own feature cache, never the user's ~/.cache/headstart."""
    root = tmp_path_factory.mktemp("headstart-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("HEADSTART_CACHE", str(root))
    yield root
    mp.undo()


@pytest.fixture(autouse=True)
def bundled_weights_only_in_e2e(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a bundled backbone (real weights, seconds to load) fails a test not marked ``e2e``."""
    if request.node.get_closest_marker("e2e"):
        return
    from headstart.backbones import BACKBONES

    def refuse(argument: str | None, preprocess: dict | None, **options: bool) -> None:
        raise AssertionError("this test loads bundled weights: mark it @pytest.mark.e2e or use a tiny backbone")

    for name, spec in BACKBONES.items():
        if spec.bundled:
            monkeypatch.setitem(BACKBONES._entries, name, dataclasses.replace(spec, factory=refuse))


@pytest.fixture(scope="session")
def tiny_timm_ref(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``timm:test_efficientnet@<file>``: a 99k-parameter timm model with fixed random weights on disk."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "test_efficientnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return f"timm:test_efficientnet@{path}"


@pytest.fixture(scope="session")
def tiny_backbone(tiny_timm_ref: str):
    """The tiny timm backbone at 32x32 input, for tests that run many forward passes."""
    from headstart.backbones import create_backbone

    return create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with its tokenizer, saved with ``save_pretrained``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("bert")
    words = ["the", "a", "cat", "sat", "on", "mat", "stocks", "fell", "sharply", "monday"]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    return folder


def write_image_folder(root: Path, per_class: int = 12, classes: tuple[str, ...] = ("red", "green", "blue"),
                       seed: int = 0) -> Path:
    """Class folders of 24x24 PNGs whose dominant colour is the class: separable by any backbone."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, size=(24, 24, 3))
            pixels[..., c % 3] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name}_{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A 3-class image folder with 12 images per class."""
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def text_csv(tmp_path: Path) -> Path:
    """A 2-class text CSV (animals vs food), 10 rows per class."""
    animals = ["a small dog barks", "the cat sleeps", "a horse runs fast", "birds fly south", "a cow eats grass",
               "the lion hunts", "a fox in the woods", "the sheep graze", "a wolf howls", "the mouse hides"]
    food = ["fresh bread and butter", "a bowl of rice", "pasta with tomato sauce", "apple pie for dessert",
            "grilled cheese sandwich", "vegetable soup", "chocolate cake", "a plate of noodles",
            "roast potatoes", "pancakes with syrup"]
    path = tmp_path / "texts.csv"
    rows = ["text,label"] + [f"{t},animal" for t in animals] + [f"{t},food" for t in food]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_text_ref(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``hf:<folder>``: a 2-layer, 32-wide random BERT with a word-piece tokenizer, saved as a transformers folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz",
             *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return f"hf:{folder}"
