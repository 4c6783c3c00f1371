"""Input checks that stop silently wrong results and unreadable messages: image decoding, label spellings,
nested values, delimiters, huge fields and headers, ID columns, paths that leave a table's folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from headstart.data import load_dataset
from headstart.data.image_io import open_image
from headstart.data.splits import check_selectable
from headstart.data.tables import _duplicates
from headstart.errors import DataError, listing


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def noise_jpeg(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


# --- images ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path, mode):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    image = Image.frombytes(mode, (64, 64), ramp.astype(">u2" if mode.endswith("B") else "<u2").tobytes())
    path = tmp_path / ("ramp.png" if mode == "I;16" else "ramp.tif")
    image.save(path)
    rgb = np.asarray(open_image(path))
    assert rgb.shape == (64, 64, 3)
    # Clipping made 99.6% of this ramp white; scaled, it stays a ramp from black to white.
    assert (rgb == 255).mean() < 0.01
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert np.array_equal(rgb[..., 0], np.round(ramp / 257).astype(np.uint8))
    assert np.array_equal(np.asarray(open_image(Image.open(path))), rgb)


def test_truncated_jpeg_is_caught_before_extraction_and_skippable(tmp_path):
    for name in ("a", "b"):
        for i in range(3):
            noise_jpeg(tmp_path / name / f"{i}.jpg", seed=i)
    whole = (tmp_path / "a" / "0.jpg").read_bytes()
    truncated = write(tmp_path / "a" / "truncated.jpg", whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"1 image file\(s\) cannot be used: .*truncated.jpg"):
        load_dataset(tmp_path)
    splits = load_dataset(tmp_path, skip_bad=True)
    assert splits.skipped == [str(truncated)] and len(splits.train) == 6


# --- labels ----------------------------------------------------------------------------------------------

def test_one_number_written_several_ways_is_refused_naming_the_lines(tmp_path):
    write(tmp_path / "d.csv", "text,label\na,1\nb,1.0\nc,01\nd,2\ne,2\nf,1\n")
    with pytest.raises(DataError, match=r"same number .*'1' \(line 2\) = '1.0' \(line 3\) = '01' \(line 4\)"):
        load_dataset(tmp_path / "d.csv")
    rows = [{"text": t, "label": label} for t, label in [("a", 1), ("b", 1.0), ("c", 2), ("d", 2)]]
    write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"'1' \(line 1\) = '1.0' \(line 2\)"):
        load_dataset(tmp_path / "d.jsonl")


def test_distinct_numbers_and_consistent_spellings_are_fine(tmp_path):
    write(tmp_path / "d.csv", "text,label\na,007\nb,007\nc,1.5\nd,1.5\ne,-2\nf,-2\n")
    assert load_dataset(tmp_path / "d.csv").class_names == ["-2", "007", "1.5"]


@pytest.mark.parametrize("word", ["nan", "NaN", "None", "NULL", "N/A", "<NA>"])
def test_labels_that_look_missing_are_refused(tmp_path, word):
    write(tmp_path / "d.csv", f"text,label\na,x\nb,x\nc,y\nd,{word}\ne,y\n")
    with pytest.raises(DataError, match=rf"look like missing values at line 5 \({word!r}\)"):
        load_dataset(tmp_path / "d.csv")


def test_texts_that_look_missing_are_kept(tmp_path):
    write(tmp_path / "d.csv", "text,label\nNA,x\nNone,x\nnull,y\nnan,y\n")
    assert load_dataset(tmp_path / "d.csv").train.items == ["NA", "None", "null", "nan"]


# --- values that are not single values -------------------------------------------------------------------

@pytest.mark.parametrize(("text", "label", "column", "kind"), [
    (["a", "b"], "x", "text", "list"),
    ("a", {"name": "x"}, "label", "dict"),
    ("a", ["x"], "label", "list"),
])
def test_jsonl_nested_values_are_refused_naming_column_and_line(tmp_path, text, label, column, kind):
    rows = [{"text": "t0", "label": "x"}, {"text": text, "label": label}, {"text": "t2", "label": "y"}]
    write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=rf"column '{column}' .*lists, objects or bytes.* at line 2 \({kind}\)"):
        load_dataset(tmp_path / "d.jsonl")


def test_parquet_bytes_and_lists_are_refused(tmp_path):
    frame = pd.DataFrame({"text": [b"ab", "cd", "ef", "gh"], "label": ["a", "a", "b", "b"]})
    frame.to_parquet(tmp_path / "bytes.parquet")
    with pytest.raises(DataError, match=r"column 'text' .* at row 1 \(bytes\)"):
        load_dataset(tmp_path / "bytes.parquet")
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [["x"], ["x"], ["y"], ["y"]]})
    frame.to_parquet(tmp_path / "lists.parquet")
    with pytest.raises(DataError, match=r"column 'label' .* at row 1 \(\w+\), row 2"):
        load_dataset(tmp_path / "lists.parquet")


# --- delimiters, field sizes, headers --------------------------------------------------------------------

def test_semicolon_delimited_csv_is_named(tmp_path):
    write(tmp_path / "d.csv", "text;label\na cat;animal\na car;vehicle\n")
    with pytest.raises(DataError, match=r"looks semicolon-delimited .*save it as comma-separated CSV or as TSV"):
        load_dataset(tmp_path / "d.csv")
    write(tmp_path / "d.tsv", "text,label\na cat,animal\n")
    with pytest.raises(DataError, match=r"looks comma-delimited .*rename it to .csv"):
        load_dataset(tmp_path / "d.tsv")


def test_a_200k_character_field_is_read(tmp_path):
    long_text = "word " * 40_000
    write(tmp_path / "d.csv", f'text,label\n"{long_text}",a\nb,a\nc,b\nd,b\n')
    assert load_dataset(tmp_path / "d.csv").train.items[0] == long_text
    write(tmp_path / "d.tsv", f"text\tlabel\n{long_text}\ta\nb\ta\nc\tb\nd\tb\n")
    assert len(load_dataset(tmp_path / "d.tsv").train.items[0]) == len(long_text)


def test_duplicate_column_check_reads_the_header_once():
    class CountingHeader(list):
        passes = 0

        def __iter__(self):
            CountingHeader.passes += 1
            return super().__iter__()

    header = CountingHeader([f"c{i}" for i in range(300)] + ["c7"])
    assert _duplicates(header) == ["c7"]
    assert CountingHeader.passes == 1  # one pass, not one per column (40k columns took minutes)


def test_very_wide_header_with_a_repeat_is_named_in_short(tmp_path):
    names = [f"c{i}" for i in range(20_000)]
    write(tmp_path / "d.csv", ",".join([*names, "c5", "text", "label"]) + "\n" + ",".join(["0"] * 20_003) + "\n")
    with pytest.raises(DataError, match=r"repeats column\(s\) \['c5'\]"):
        load_dataset(tmp_path / "d.csv")
    write(tmp_path / "d.csv", ",".join(names) + "\n" + ",".join(["0"] * 20_000) + "\n")
    with pytest.raises(DataError, match=r"no label column .* and 19990 more") as err:
        load_dataset(tmp_path / "d.csv")
    assert len(str(err.value)) < 1000


# --- ID columns and long lists ---------------------------------------------------------------------------

def test_label_column_of_ids_is_named_as_such_in_a_short_message(tmp_path):
    write(tmp_path / "d.csv", "text,label\n" + "".join(f"t{i},id{i}\n" for i in range(3000)))
    with pytest.raises(DataError, match=r"3000 distinct values among 3000 examples .*probably an ID") as err:
        load_dataset(tmp_path / "d.csv")
    assert len(str(err.value)) < 1000


def test_many_single_example_classes_are_listed_in_short(tmp_path):
    rows = [f"t{i},c{i}\n" for i in range(300)] + ["u,c0\n"]
    write(tmp_path / "d.csv", "text,label\n" + "".join(rows))
    train = load_dataset(tmp_path / "d.csv").train  # one example per class is fine until a split needs two
    with pytest.raises(DataError, match=r"fewer than 2 examples.*\(if the label column is an ID") as err:
        check_selectable(train, "strategy 'finetune' selects on validation data")
    assert "and 289 more" in str(err.value) and len(str(err.value)) < 1000


def test_listing_caps_and_counts():
    assert listing(range(3)) == "0, 1, 2"
    assert listing(range(25), limit=2, sep="; ") == "0; 1 ... and 23 more"


# --- image paths in tables -------------------------------------------------------------------------------

def test_image_paths_outside_the_tables_folder_are_refused_unless_allowed(tmp_path):
    outside = tmp_path / "elsewhere"
    for i in range(4):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(tmp_path / f"{i}.png")
    write(outside / "x.png", (tmp_path / "0.png").read_bytes())
    table = write(tmp_path / "data" / "d.csv", f"path,label\n../0.png,a\n../1.png,a\n{outside / 'x.png'},b\n"
                                               "../3.png,b\n")
    with pytest.raises(DataError, match=r"4 path\(s\) .* lead outside .*line 2: \.\./0\.png; .*"
                                        r"allow_outside_paths=True if you trust the table"):
        load_dataset(table)
    splits = load_dataset(table, allow_outside_paths=True)
    assert splits.train.items[2] == str(outside / "x.png") and len(splits.train) == 4


def test_image_paths_inside_the_folder_may_be_absolute_or_dotted(tmp_path):
    for i in range(4):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(write(tmp_path / "img" / "keep", "").parent / f"{i}.png")
    write(tmp_path / "d.csv", f"path,label\n{tmp_path / 'img' / '0.png'},a\n./img/1.png,a\nimg/../img/2.png,b\n"
                              "img/3.png,b\n")
    assert len(load_dataset(tmp_path / "d.csv").train) == 4


def test_files_that_passed_before_and_did_not_change_are_not_opened_again(tmp_path, monkeypatch):
    from conftest import write_image_folder
    from headstart.data.files import files_under, screen_files

    paths = files_under(write_image_folder(tmp_path / "data", per_class=2))
    assert screen_files(paths, "image") == []
    with monkeypatch.context() as patched:
        patched.setattr("headstart.data.image_io.Image.open", lambda *a, **k: pytest.fail("opened again"))
        assert screen_files(paths, "image") == []
    Path(paths[0]).write_bytes(b"not an image")  # a changed file is screened again
    with pytest.raises(DataError, match="1 image file"):
        screen_files(paths, "image")
