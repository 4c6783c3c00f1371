"""Property-based checks of everything that reads user files: table files (CSV, TSV, JSONL, Parquet), image
folders, prediction inputs and saved model folders, filled with random and malformed content.

The property is the one the README promises: a load either succeeds, with data that later steps can use, or
raises a :class:`HeadstartError` with a message; never another exception, and never a changed input file.

Examples are few and derandomized so the suite is quick and repeatable; set ``HEADSTART_PROPERTY_EXAMPLES``
(e.g. 2000) to search longer with fresh random examples.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from headstart.data import load_dataset, load_inputs
from headstart.data.image_io import open_image
from headstart.errors import HeadstartError
from headstart.model import TransferModel

_EXAMPLES = os.environ.get("HEADSTART_PROPERTY_EXAMPLES")
PROPERTY = settings(max_examples=int(_EXAMPLES or 60), deadline=None, database=None, derandomize=not _EXAMPLES)

# Values chosen to hit the checks: empty and missing-looking cells, numbers spelt several ways, delimiters and
# quotes, split names, image paths that exist, are broken, are missing or leave the folder, markup, control codes.
TRICKY_CELLS = ["", " ", "nan", "NaN", "None", "null", "1", "1.0", "01", "-2", "a,b", 'q"uote', "two\nlines",
                "semi;colon", "tab\there", "train", "val", "valid", "test", "holdout", "good.png", "photo.jpg",
                "sub/deep.png", "bad.png", "truncated.jpg", "missing.png", "../outside.png", "/etc/hostname.png",
                "[/]", "[bold]x", "\x1b[31mred", "\x00", "é", "🙂"]
COLUMN_NAMES = ["text", "label", "path", "split", "Label", "TEXT", "class", "image", "sentence", "file", ""]
cells = st.one_of(st.sampled_from(TRICKY_CELLS), st.text(max_size=12))
column_names = st.one_of(st.sampled_from(COLUMN_NAMES), st.text(max_size=6))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_subnormal=False) | cells,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
load_options = st.fixed_dictionaries({
    "modality": st.sampled_from([None, None, "image", "text"]),
    "text_column": st.sampled_from([None, None, "text", "label", "nope"]),
    "label_column": st.sampled_from([None, None, "label", "text", "nope"]),
    "path_column": st.sampled_from([None, None, "path", "nope"]),
    "skip_bad": st.booleans(),
    "allow_outside_paths": st.booleans(),
    "training": st.booleans(),
})


# --- files on disk ---------------------------------------------------------------------------------------

def png_bytes(mode: str = "RGB", size: tuple[int, int] = (6, 5)) -> bytes:
    pixels = np.random.default_rng(len(mode)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    elif mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


IMAGE_CONTENTS: dict[str, Callable[[], bytes]] = {
    "rgb png": png_bytes,
    "gray png": lambda: png_bytes("L"),
    "16-bit png": lambda: png_bytes("I;16"),
    "rgba png": lambda: png_bytes("RGBA"),
    "palette png": lambda: png_bytes("P"),
    "1-bit png": lambda: png_bytes("1"),
    "gray+alpha png": lambda: png_bytes("LA"),
    "1x1 png": lambda: png_bytes(size=(1, 1)),
    "rgb jpeg": jpeg_bytes,
    "cmyk jpeg": lambda: jpeg_bytes("CMYK"),
    "truncated jpeg": lambda: jpeg_bytes()[:1100],  # headers whole, scan data cut: only decoding finds it
    "truncated png": lambda: png_bytes(size=(40, 40))[:120],
    "png header only": lambda: png_bytes()[:16],
    "text": lambda: b"not an image",
    "empty": lambda: b"",
}
image_contents = st.sampled_from(sorted(IMAGE_CONTENTS))


def write_image_files(folder: Path) -> None:
    """The files the tricky cells name: good and broken images under ``folder``, one image outside it."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "good.png").write_bytes(png_bytes())
    (folder / "photo.jpg").write_bytes(jpeg_bytes())
    (folder / "sub" / "deep.png").write_bytes(png_bytes("L"))
    (folder / "bad.png").write_bytes(b"junk")
    (folder / "truncated.jpg").write_bytes(IMAGE_CONTENTS["truncated jpeg"]())
    (folder.parent / "outside.png").write_bytes(png_bytes())


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@contextmanager
def workspace() -> Iterator[Path]:
    """A fresh folder holding ``data/`` (where the example writes its input), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="headstart-property-"))
    try:
        (root / "data").mkdir()
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_load(root: Path, target: Path, options: dict[str, Any]) -> None:
    """``load_dataset(target, **options)`` succeeds with usable data or raises a HeadstartError, and changes no
    file under ``root``."""
    before = snapshot(root)
    try:
        splits = load_dataset(target, **options)
    except HeadstartError as error:
        assert str(error).strip()
    else:
        for part in splits.present().values():
            assert len(part.items) == len(part.labels) > 0
            assert part.class_names == splits.class_names and len(set(part.class_names)) == len(part.class_names)
            assert all(isinstance(name, str) and name.strip() for name in part.class_names)
            assert ((part.labels >= 0) & (part.labels < len(part.class_names))).all()
            if part.modality == "text":
                assert all(isinstance(item, str) for item in part.items)
            else:  # what feature extraction does to each file: the up-front screen must have vouched for it
                for item in part.items:
                    assert open_image(item).mode == "RGB"
    assert snapshot(root) == before


# --- tables ----------------------------------------------------------------------------------------------

@st.composite
def delimited_files(draw: st.DrawFn) -> bytes:
    """CSV/TSV-like bytes: a header and rows of tricky cells, sometimes ragged, in some delimiter and
    encoding, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=120))
    header = draw(st.lists(column_names, min_size=1, max_size=4))
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        width = len(header) + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
        rows.append(draw(st.lists(cells, min_size=max(width, 0), max_size=max(width, 0))))
    text = io.StringIO()
    csv.writer(text, delimiter=draw(st.sampled_from([",", ",", "\t", ";", "|"])), lineterminator="\n").writerows(
        [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    return text.getvalue().encode(encoding, errors="replace")


@PROPERTY
@given(content=delimited_files(), suffix=st.sampled_from([".csv", ".tsv"]), options=load_options)
def test_delimited_tables_load_or_raise_a_clear_error(content, suffix, options):
    with workspace() as root:
        write_image_files(root / "data")
        target = root / "data" / f"table{suffix}"
        target.write_bytes(content)
        check_load(root, target, options)


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    """JSON lines: objects with tricky keys and nested values, other JSON values, blank or broken lines."""
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["object", "object", "object", "value", "blank", "broken"]))
        if kind == "object":
            lines.append(json.dumps(draw(st.dictionaries(column_names, json_values, max_size=4))))
        elif kind == "value":
            lines.append(json.dumps(draw(json_values)))
        elif kind == "blank":
            lines.append("  ")
        else:
            lines.append(draw(st.text(max_size=10)) + "{")
    return "\n".join(lines).encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16"])), errors="replace")


@PROPERTY
@given(content=jsonl_files(), options=load_options)
def test_jsonl_tables_load_or_raise_a_clear_error(content, options):
    with workspace() as root:
        write_image_files(root / "data")
        target = root / "data" / "table.jsonl"
        target.write_bytes(content)
        check_load(root, target, options)


PARQUET_COLUMNS: dict[str, Any] = {
    "text": st.one_of(st.none(), cells),
    "int": st.one_of(st.none(), st.integers(-5, 5)),
    "float": st.floats(allow_subnormal=False),
    "bool": st.booleans(),
    "bytes": st.binary(max_size=6),
    "list": st.lists(st.text(max_size=3), max_size=2),
    "struct": st.fixed_dictionaries({"a": st.integers(0, 3)}),
}


@st.composite
def parquet_files(draw: st.DrawFn) -> bytes:
    """A Parquet file of typed columns (text, numbers, bytes, lists, structs; names may repeat), or junk."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=120))
    n_rows = draw(st.integers(0, 6))
    names, arrays = [], []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(sorted(PARQUET_COLUMNS)))
        names.append(draw(column_names))
        arrays.append(pa.array(draw(st.lists(PARQUET_COLUMNS[kind], min_size=n_rows, max_size=n_rows)),
                               type=pa.string() if kind == "text" else None))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), buffer)
    return buffer.getvalue()


@PROPERTY
@given(content=parquet_files(), options=load_options)
def test_parquet_tables_load_or_raise_a_clear_error(content, options):
    with workspace() as root:
        write_image_files(root / "data")
        target = root / "data" / "table.parquet"
        target.write_bytes(content)
        check_load(root, target, options)


# --- image folders ---------------------------------------------------------------------------------------

FOLDER_NAMES = ["a", "b", "train", "val", "test", ".hidden", "c d", "é", "[bold]", "1", "01"]
file_names = st.tuples(st.sampled_from(["x", "y", "z", ".dot"]),
                       st.sampled_from([".png", ".jpg", ".JPEG", ".txt", ".gif", ""]))


@st.composite
def folder_trees(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """Relative file paths and contents: class folders (maybe under train/ val/ test/) of good, odd and
    broken image files, stray files; mostly on top of two good classes, so that many examples load and every
    image that passed the up-front screen is then opened as extraction would."""
    files = []
    if draw(st.integers(0, 4)):
        files += [(f"{name}/good{i}.png", png_bytes()) for name in ("a", "b") for i in range(2)]
        files.append(("a/odd.jpg", IMAGE_CONTENTS[draw(image_contents)]()))
    for top in draw(st.lists(st.sampled_from(["a", "b", *FOLDER_NAMES]), max_size=3)):
        subfolders = draw(st.lists(st.sampled_from(FOLDER_NAMES), max_size=2, unique=True))
        for folder in [f"{top}/{sub}" for sub in subfolders] or [top]:
            for stem, suffix in draw(st.lists(file_names, max_size=4, unique=True)):
                files.append((f"{folder}/{stem}{suffix}", IMAGE_CONTENTS[draw(image_contents)]()))
    if draw(st.booleans()):
        files.append(("notes.txt", b"stray"))
    return files


@PROPERTY
@given(tree=folder_trees(), options=load_options)
def test_image_folders_load_or_raise_a_clear_error(tree, options):
    with workspace() as root:
        for relative, content in tree:
            path = root / "data" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        check_load(root, root / "data", options)


# --- prediction inputs -----------------------------------------------------------------------------------

@PROPERTY
@given(inputs=st.lists(st.one_of(st.sampled_from(["data", "data/good.png", "data/bad.png", "data/truncated.jpg",
                                                   "data/sub", "data/missing.png", "data/table.csv",
                                                   "data/texts.txt", "data/empty.txt"]), cells),
                       max_size=4),
       modality=st.sampled_from(["image", "text"]), table=delimited_files())
def test_prediction_inputs_load_or_raise_a_clear_error(inputs, modality, table):
    with workspace() as root:
        write_image_files(root / "data")
        (root / "data" / "table.csv").write_bytes(table)
        (root / "data" / "texts.txt").write_text("one\n\ntwo\n", encoding="utf-8")
        (root / "data" / "empty.txt").write_text("\n \n", encoding="utf-8")
        before = snapshot(root)
        given_inputs = [str(root / i) if i.startswith("data") else i for i in inputs]
        try:
            items, names = load_inputs(given_inputs, modality)
        except HeadstartError as error:
            assert str(error).strip()
        else:
            assert len(items) == len(names) > 0
            if modality == "image":
                for item in items:
                    assert open_image(item).mode == "RGB"
            else:
                assert all(isinstance(item, str) and item.strip() for item in items)
        assert snapshot(root) == before


# --- saved model folders ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory, tiny_backbone) -> Path:
    """A 3-class model on the tiny backbone, saved once; each example edits a copy."""
    folder = tmp_path_factory.mktemp("saved-model")
    TransferModel(tiny_backbone, nn.Linear(tiny_backbone.feature_dim, 3), ["a", "b", "c"], strategy="linear",
                  metrics={"test": {"accuracy": 1.0}}).save(folder)
    return folder


CONFIG_KEYS = ["format_version", "headstart_version", "backbone", "backbone.ref", "backbone.preprocess",
               "backbone.preprocess.input_size", "backbone.preprocess.crop_pct", "backbone.preprocess.mean",
               "backbone.preprocess.interpolation", "backbone.preprocess.kind", "backbone_trained", "class_names",
               "feature_dim", "strategy", "strategy_config", "temperature"]


@st.composite
def config_edits(draw: st.DrawFn) -> list[tuple[str, str, Any]]:
    """Edits of config.json: (key path, "set" or "delete", value)."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(CONFIG_KEYS))
        if draw(st.integers(0, 3)) == 0:
            edits.append((key, "delete", None))
        else:
            value = draw(st.one_of(json_values, st.integers(-3, 3), st.lists(cells, max_size=4),
                                   st.sampled_from([0, -1, 1e308, 10**9, "timm:missing", "nope", float("nan"),
                                                    True, [], {}])))
            edits.append((key, "set", value))
    return edits


def apply_edit(config: dict[str, Any], key: str, action: str, value: Any) -> None:
    *parents, last = key.split(".")
    for parent in parents:
        config = config.get(parent) if isinstance(config, dict) else None
        if not isinstance(config, dict):
            return
    if action == "delete":
        config.pop(last, None)
    else:
        config[last] = value


@PROPERTY
@given(edits=config_edits(),
       whole_file=st.one_of(st.none(), st.sampled_from(["", "[]", "null", "{", "NaN", '"config"', "\xff"])),
       metrics=st.sampled_from([None, "{", "[]", "null"]),
       weights=st.sampled_from([None, b"", b"junk", "truncated"]))
def test_model_folders_load_or_raise_a_clear_error(saved_model, edits, whole_file, metrics, weights):
    with workspace() as root:
        folder = root / "data" / "model"
        shutil.copytree(saved_model, folder)
        config = json.loads((folder / "config.json").read_text())
        for edit in edits:
            apply_edit(config, *edit)
        (folder / "config.json").write_text(json.dumps(config) if whole_file is None else whole_file,
                                            encoding="utf-8")
        if metrics is not None:
            (folder / "metrics.json").write_text(metrics, encoding="utf-8")
        if weights is not None:
            data = (folder / "model.safetensors").read_bytes()
            (folder / "model.safetensors").write_bytes(data[: len(data) // 2] if weights == "truncated" else weights)
        before = snapshot(root)
        try:
            model = TransferModel.load(folder)
        except HeadstartError as error:
            assert str(error).strip()
        else:
            size = model.backbone.preprocess.input_size
            assert 1 <= size <= 1024, f"a model taking {size}-pixel inputs was loaded"
            proba = model.predict_proba([np.zeros((8, 8, 3), np.uint8)])
            assert proba.shape == (1, len(model.class_names)) and math.isclose(proba.sum(), 1.0, rel_tol=1e-6)
        assert snapshot(root) == before
