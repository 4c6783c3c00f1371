"""The data layer: loaders, validation messages, splits, prediction inputs, reference and demo data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from headstart.data import (
    fraction_subset,
    from_arrays,
    from_texts,
    load_dataset,
    load_inputs,
    sample_per_class,
    stratified_split,
)
from headstart.data.reference import (
    FASHION_MNIST_ROOT,
    WORDNET_ROOT,
    definition,
    load_fashion_mnist,
    load_wordnet_supersenses,
)
from headstart.data.splits import check_selectable
from headstart.errors import ConfigError, DataError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(path)
    return path


def class_folder(root: Path, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            png(root / name / f"{i}.png", i)
    return root


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


TEXT_CSV = "text,label\na cat,animal\na dog,animal\na car,vehicle\na bus,vehicle\n"


# --- image folders ---------------------------------------------------------------------------------------

def test_class_folder_items_sorted_and_classes_sorted(tmp_path):
    root = class_folder(tmp_path / "d", {"dogs": 3, "cats": 2})
    write(root / "README.md", "ignored")
    write(root / "cats" / "notes.txt", "ignored")
    png(root / "cats" / ".hidden.png")
    splits = load_dataset(root)
    assert splits.class_names == ["cats", "dogs"]
    assert splits.val is None and splits.test is None and splits.skipped == []
    assert splits.train.modality == "image"
    assert splits.train.items == sorted(splits.train.items) and len(splits.train) == 5
    assert splits.train.labels.tolist() == [0, 0, 1, 1, 1]
    assert load_dataset(root).train.items == splits.train.items


def test_split_folders(tmp_path):
    class_folder(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    class_folder(tmp_path / "val", {"a": 1, "c": 1})
    class_folder(tmp_path / "test", {"b": 1})
    splits = load_dataset(tmp_path)
    assert splits.class_names == ["a", "b", "c"]
    assert splits.val.labels.tolist() == [0, 2] and splits.val.class_names == ["a", "b", "c"]
    assert splits.test.labels.tolist() == [1]
    assert splits.val.source == str(tmp_path / "val")


@pytest.mark.parametrize(("layout", "message"), [
    ({"train/a": 2, "train/b": 2, "val/zebra": 1}, r"val split .* classes that train does not: \['zebra'\]"),
    ({"val/a": 2, "val/b": 2}, "no train/"),
    ({"train/a": 2, "train/b": 2, "validation/a": 1}, r"other folders \['validation'\]"),
    ({"a": 2, "b": 2, "empty": 0}, r"empty class folder.*empty \(0 files"),
    ({"cats": 3}, r"only one class \('cats'\)"),
], ids=["class-only-in-val", "no-train", "other-folders", "empty-class", "one-class"])
def test_unusable_folder_layouts_are_refused_naming_the_problem(tmp_path, layout, message):
    class_folder(tmp_path, layout)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path)


def test_folder_without_class_folders(tmp_path):
    png(tmp_path / "x.png")
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(tmp_path)


def test_one_class_is_enough_for_evaluation(tmp_path):
    class_folder(tmp_path, {"cats": 3})
    assert load_dataset(tmp_path, training=False).class_names == ["cats"]


def test_class_with_one_example_loads_but_cannot_give_a_validation_example(tmp_path):
    class_folder(tmp_path, {"cats": 3, "dogs": 1})
    splits = load_dataset(tmp_path)
    with pytest.raises(DataError, match=r"class 'dogs' \(1\) has fewer than 2 examples.*val_fraction=0.*"
                                        r"prototypes"):
        check_selectable(splits.train, "strategy 'finetune' selects on validation data")


def test_class_with_one_example_is_fine_with_a_val_split(tmp_path):
    class_folder(tmp_path / "train", {"cats": 3, "dogs": 1})
    class_folder(tmp_path / "val", {"cats": 1, "dogs": 1})
    assert load_dataset(tmp_path).train.class_counts().tolist() == [3, 1]


def test_corrupt_images_are_listed(tmp_path):
    class_folder(tmp_path, {"a": 3, "b": 3})
    write(tmp_path / "a" / "bad.png", b"not a png at all")
    good = (tmp_path / "b" / "0.png").read_bytes()
    write(tmp_path / "b" / "truncated.png", good[: len(good) // 2])
    with pytest.raises(DataError, match=r"2 image file\(s\) cannot be used") as err:
        load_dataset(tmp_path)
    assert "bad.png" in str(err.value) and "truncated.png" in str(err.value)
    assert "skip_bad_files=True" in str(err.value)


def test_many_corrupt_images_show_ten_and_a_count(tmp_path):
    class_folder(tmp_path, {"a": 2, "b": 2})
    for i in range(13):
        write(tmp_path / "a" / f"bad{i:02d}.jpg", b"junk")
    with pytest.raises(DataError, match=r"13 image file\(s\).*and 3 more"):
        load_dataset(tmp_path)


def test_skip_bad(tmp_path):
    class_folder(tmp_path, {"a": 3, "b": 3})
    bad = write(tmp_path / "a" / "bad.png", b"junk")
    splits = load_dataset(tmp_path, skip_bad=True)
    assert splits.skipped == [str(bad)]
    assert str(bad) not in splits.train.items and len(splits.train) == 6


def test_skip_bad_leaving_a_class_empty(tmp_path):
    class_folder(tmp_path, {"a": 3})
    write(tmp_path / "b" / "bad.png", b"junk")
    with pytest.raises(DataError, match=r"b has no usable image files \(1 skipped"):
        load_dataset(tmp_path, skip_bad=True)


# --- CSV of image paths ----------------------------------------------------------------------------------

def test_image_csv_relative_paths_and_split_column(tmp_path):
    for i in range(4):
        png(tmp_path / "img" / f"{i}.png", i)
    write(tmp_path / "data.csv", "Filename,Class,split\nimg/0.png,x,train\nimg/1.png,y,train\n"
                                 "img/2.png,x,train\nimg/3.png,y,val\n")
    splits = load_dataset(tmp_path / "data.csv")
    assert splits.train.modality == "image" and splits.class_names == ["x", "y"]
    assert splits.train.items == [str(tmp_path / "img" / f"{i}.png") for i in range(3)]
    assert splits.val.items == [str(tmp_path / "img" / "3.png")]


def test_image_csv_missing_file(tmp_path):
    png(tmp_path / "a.png")
    write(tmp_path / "data.csv", "path,label\na.png,x\nmissing.png,y\n")
    with pytest.raises(DataError, match=r"do not exist: line 3: missing.png"):
        load_dataset(tmp_path / "data.csv")


def test_image_csv_named_columns_and_skip_bad(tmp_path):
    for i in range(4):
        png(tmp_path / f"{i}.png", i)
    write(tmp_path / "broken.png", b"junk")
    write(tmp_path / "data.csv", "pic,kind\n0.png,x\n1.png,x\n2.png,y\n3.png,y\nbroken.png,y\n")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset(tmp_path / "data.csv", path_column="pic", label_column="kind")
    splits = load_dataset(tmp_path / "data.csv", path_column="pic", label_column="kind", skip_bad=True)
    assert splits.skipped == [str(tmp_path / "broken.png")] and len(splits.train) == 4


# --- text tables -----------------------------------------------------------------------------------------

def test_text_values_are_not_type_guessed(tmp_path):
    write(tmp_path / "d.csv", "text,label\nNA,007\nNone,007\nnull,010\nnan,010\n")
    splits = load_dataset(tmp_path / "d.csv")
    assert splits.train.items == ["NA", "None", "null", "nan"] and splits.class_names == ["007", "010"]


def test_integer_labels_sort_numerically(tmp_path):
    rows = [{"text": f"t{i}", "label": label} for i, label in enumerate([10, 2, 10, 2])]
    write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    assert load_dataset(tmp_path / "d.jsonl").class_names == ["2", "10"]


def test_text_folder_of_tables(tmp_path):
    write(tmp_path / "train.csv", TEXT_CSV)
    write(tmp_path / "test.jsonl", json.dumps({"text": "a van", "label": "vehicle"}) + "\n")
    splits = load_dataset(tmp_path)
    assert len(splits.train) == 4 and splits.test.items == ["a van"] and splits.test.labels.tolist() == [1]
    assert splits.test.source == str(tmp_path / "test.jsonl")


def test_table_folder_needs_train(tmp_path):
    write(tmp_path / "val.csv", TEXT_CSV)
    with pytest.raises(DataError, match=r"no train table"):
        load_dataset(tmp_path)


SPLIT_CSV = "text,label,split\na cat,animal,train\na dog,animal,train\na car,vehicle,train\na bus,vehicle,holdout\n"


@pytest.mark.parametrize(("name", "content", "columns", "message"), [
    ("d.csv", "body,label\nx,a\n", {}, r"no text column .*columns are \['body', 'label'\].*text_column"),
    ("d.csv", TEXT_CSV, {"label_column": "kind"},
     r"no column 'kind' \(given as label_column, CLI: --label-column\); its columns are \['text', 'label'\]"),
    ("d.csv", "text,tag\nx,a\n", {}, r"no label column .*label_column .*--label-column"),
    ("d.csv", TEXT_CSV + "  ,animal\n\n\"two\nlines\",\n", {},
     r"d.csv: empty or missing text \(column 'text'\) at line 6"),
    ("d.csv", TEXT_CSV + "\n\"two\nlines\",\n", {}, r"missing label \(column 'label'\) at line 7"),
    ("d.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b"}\n', {}, r"missing label .* at line 3"),
    ("d.csv", "text,label\ncaf\xe9,x\n".encode("latin-1"), {},
     r"d.csv is not UTF-8 text: byte 0xe9 at byte offset 14 \(line 2\).*iconv"),
    ("d.csv", "text,label,text\na,b,c\n", {}, r"header \(line 1\) repeats column\(s\) \['text'\]"),
    ("d.jsonl", '{"text": "a", "text": "b", "label": "x"}\n', {}, r"d.jsonl line 1: .*repeats key"),
    ("d.csv", "text,label\na,b\nhello, world,x\n", {}, r"line 3: 3 fields, but the header has 2"),
    ("d.csv", "", {}, "is empty"),
    ("d.csv", "text,label\n", {}, "no data rows"),
    ("d.csv", SPLIT_CSV, {}, r"line 5: 'holdout'"),
], ids=["no-text-column", "named-column-missing", "no-label-column", "empty-text", "missing-label",
        "missing-label-jsonl", "not-utf8", "repeated-column", "repeated-key", "ragged-row", "empty-file",
        "header-only", "bad-split"])
def test_malformed_tables_are_refused_naming_file_line_and_fix(tmp_path, name, content, columns, message):
    with pytest.raises(DataError, match=message):
        load_dataset(write(tmp_path / name, content), **columns)


def test_missing_label_in_parquet_names_the_row(tmp_path):
    pd.DataFrame({"text": ["a", "b"], "label": ["x", None]}).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"missing label .* at row 2"):
        load_dataset(tmp_path / "d.parquet")


def test_utf8_bom_is_accepted(tmp_path):
    write(tmp_path / "d.csv", b"\xef\xbb\xbf" + TEXT_CSV.encode())
    assert len(load_dataset(tmp_path / "d.csv").train) == 4


def test_missing_path_and_unsupported_format(tmp_path):
    with pytest.raises(DataError, match=r"nope does not exist"):
        load_dataset(tmp_path / "nope")
    write(tmp_path / "d.xlsx", "x")
    with pytest.raises(DataError, match=r"unsupported data format '.xlsx'"):
        load_dataset(tmp_path / "d.xlsx")
    with pytest.raises(DataError, match="single image"):
        load_dataset(png(tmp_path / "one.png"))
    with pytest.raises(ConfigError, match="modality"):
        load_dataset(tmp_path, modality="video")


# --- in-memory -------------------------------------------------------------------------------------------

def test_from_arrays_and_from_texts():
    images = np.zeros((4, 8, 8), np.uint8)
    ds = from_arrays(images, [1, 0, 1, 0], ["shirt", "shoe"])
    assert ds.modality == "image" and ds.class_names == ["shirt", "shoe"] and ds.labels.tolist() == [1, 0, 1, 0]
    assert from_arrays(images, ["b", "a", "b", "a"]).class_names == ["a", "b"]
    assert from_arrays(list(images), [0, 2, 0, 2]).class_names == ["0", "1", "2"]
    with pytest.raises(DataError, match="not uint8"):
        from_arrays(images.astype(np.float32), [0, 1, 0, 1])
    ds = from_texts(["a", "b"], ["y", "x"])
    assert ds.modality == "text" and ds.class_names == ["x", "y"] and ds.labels.tolist() == [1, 0]
    with pytest.raises(DataError, match=r"positions \[1\]"):
        from_texts(["a", " "], [0, 1])
    with pytest.raises(DataError, match="not among the classes"):
        from_texts(["a"], ["z"], class_names=["x", "y"])


# --- splits ----------------------------------------------------------------------------------------------

def _dataset(counts: list[int]):
    labels = np.repeat(np.arange(len(counts)), counts)
    return from_texts([f"t{i}" for i in range(len(labels))], labels, [f"c{i}" for i in range(len(counts))])


def test_stratified_split_is_deterministic_and_stratified():
    ds = _dataset([50, 30, 20])
    a = stratified_split(ds, val_fraction=0.2, test_fraction=0.1, seed=3)
    b = stratified_split(ds, val_fraction=0.2, test_fraction=0.1, seed=3)
    c = stratified_split(ds, val_fraction=0.2, test_fraction=0.1, seed=4)
    assert a.train.items == b.train.items and a.val.items == b.val.items
    assert a.val.items != c.val.items
    assert a.val.class_counts().tolist() == [10, 6, 4] and a.test.class_counts().tolist() == [5, 3, 2]
    assert sorted(a.train.items + a.val.items + a.test.items) == sorted(ds.items)
    assert not set(a.train.items) & set(a.val.items)


def test_stratified_split_small_classes():
    splits = stratified_split(_dataset([1, 2, 3, 40]), val_fraction=0.1, test_fraction=0.1)
    assert splits.train.class_counts().tolist() == [1, 1, 1, 32]
    assert splits.val.class_counts().tolist() == [0, 1, 1, 4]
    assert splits.test.class_counts().tolist() == [0, 0, 1, 4]
    assert stratified_split(_dataset([5, 5]), val_fraction=0.2).test is None


def test_stratified_split_rejects_bad_fractions():
    with pytest.raises(ConfigError, match="val_fraction"):
        stratified_split(_dataset([5, 5]), val_fraction=1.5)
    with pytest.raises(ConfigError, match="below 1"):
        stratified_split(_dataset([5, 5]), val_fraction=0.6, test_fraction=0.5)


def test_sample_per_class():
    ds = _dataset([5, 8, 3])
    shot = sample_per_class(ds, 3, seed=1)
    assert shot.class_counts().tolist() == [3, 3, 3] and shot.items == sample_per_class(ds, 3, seed=1).items
    with pytest.raises(DataError, match=r"class 'c2' \(3\) has fewer"):
        sample_per_class(ds, 4)
    with pytest.raises(ConfigError):
        sample_per_class(ds, 0)


def test_fraction_subset():
    sub = fraction_subset(_dataset([100, 10, 1]), 0.1, seed=0)
    assert sub.class_counts().tolist() == [10, 1, 1]
    assert fraction_subset(_dataset([4, 4]), 1.0).class_counts().tolist() == [4, 4]
    with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\]"):
        fraction_subset(_dataset([4, 4]), 0)


# --- prediction inputs -----------------------------------------------------------------------------------

def test_image_inputs(tmp_path):
    one = png(tmp_path / "one.png")
    png(tmp_path / "dir" / "b.png")
    png(tmp_path / "dir" / "sub" / "a.jpg")
    items, names = load_inputs([str(one), str(tmp_path / "dir")], "image")
    assert items == [str(one), str(tmp_path / "dir" / "b.png"), str(tmp_path / "dir" / "sub" / "a.jpg")]
    assert names == items
    with pytest.raises(DataError, match="does not exist"):
        load_inputs([str(tmp_path / "missing.png")], "image")
    write(tmp_path / "bad.png", b"junk")
    with pytest.raises(DataError, match="bad.png"):
        load_inputs([str(tmp_path / "bad.png")], "image")


def test_text_inputs(tmp_path):
    txt = write(tmp_path / "in.txt", "first line\n\nsecond line\n")
    table = write(tmp_path / "in.csv", "review,stars\ngood,5\n")
    items, names = load_inputs(["a literal text", str(txt), str(table)], "text")
    assert items == ["a literal text", "first line", "second line", "good"] and names == items
    with pytest.raises(DataError, match="does not exist"):
        load_inputs([str(tmp_path / "missing.txt")], "text")
    with pytest.raises(DataError, match="not UTF-8"):
        load_inputs([str(write(tmp_path / "l1.txt", "caf\xe9".encode("latin-1")))], "text")


# --- reference data and committed examples ---------------------------------------------------------------

def test_definition_strips_examples():
    assert definition('a small cat; a pet; "the cat sat"; "it purred"') == "a small cat; a pet"


def test_reference_loaders_report_missing_package(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(root=tmp_path)
    with pytest.raises(DataError, match="apt-get install wordnet-base"):
        load_wordnet_supersenses(root=tmp_path)


def test_load_fashion_mnist():
    if not Path(FASHION_MNIST_ROOT).is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    images, labels, names = load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10 and names[0] == "T-shirt/top" and names[9] == "Ankle boot"


def test_load_wordnet_supersenses():
    if not (Path(WORDNET_ROOT) / "data.noun").is_file():
        pytest.skip("Debian package wordnet-base is not installed")
    texts, labels, names = load_wordnet_supersenses(classes=["noun.food", "noun.animal"])
    assert names == ["noun.animal", "noun.food"] and len(texts) == len(labels) > 5000
    assert all(text and '"' not in text[:1] for text in texts)
    with pytest.raises(DataError, match="unknown noun supersense"):
        load_wordnet_supersenses(classes=["noun.nonsense"])


def test_wordnet_supersenses_parse_noun_and_verb_files(tmp_path):
    # Lines in WordNet's data-file layout: offset, lexicographer file number, ..., " | " gloss.
    (tmp_path / "data.verb").write_text(
        "  1 licence header line\n"
        "00001740 29 v 01 breathe 0 000 | draw air into, and expel out of, the lungs; \"I can breathe\"\n"
        "00002325 38 v 01 walk 0 000 | use one's feet to advance\n"
        "00002400 38 v 01 jog 0 000 | \"only an example\"\n", encoding="utf-8")
    texts, labels, names = load_wordnet_supersenses(root=tmp_path, pos="verb",
                                                    classes=["verb.motion", "verb.body"])
    assert names == ["verb.body", "verb.motion"]
    assert texts == ["draw air into, and expel out of, the lungs", "use one's feet to advance"]
    assert labels.tolist() == [0, 1]
    with pytest.raises(DataError, match="unknown verb supersense"):
        load_wordnet_supersenses(root=tmp_path, pos="verb", classes=["noun.food"])
    with pytest.raises(DataError, match="'noun' or 'verb'"):
        load_wordnet_supersenses(root=tmp_path, pos="adj")


def test_committed_fashion_mnist_mini():
    splits = load_dataset(EXAMPLES / "fashion-mnist-mini")
    assert splits.class_names == ["ankle_boot", "bag", "coat", "dress", "pullover", "sandal", "shirt", "sneaker",
                                  "t-shirt_top", "trouser"]
    assert splits.train.class_counts().tolist() == [100] * 10 and splits.test.class_counts().tolist() == [50] * 10
    assert splits.val is None
    with Image.open(splits.train.items[0]) as image:
        assert image.size == (28, 28) and image.mode == "L"


def test_committed_wordnet_supersenses():
    splits = load_dataset(EXAMPLES / "wordnet-supersenses")
    assert len(splits.class_names) == 10 and all(n.startswith("noun.") for n in splits.class_names)
    assert splits.train.class_counts().tolist() == [100] * 10 and splits.test.class_counts().tolist() == [50] * 10
    assert not set(splits.train.items) & set(splits.test.items)
