"""The task suite the defaults are chosen on: real tasks with clear licences, each at 2-3 training sizes and
3 seeds, every strategy on the same cached frozen features and the same samples.

Tasks (data from the repository, scikit-learn, or Debian packages; a task whose data is missing is skipped
with a message naming the package):

- digits: scikit-learn's 8x8 handwritten digits (UCI, CC BY 4.0), efficientnet_lite0.
- fashion-mnist-mini: examples/fashion-mnist-mini (Fashion-MNIST, MIT), efficientnet_lite0.
- fashion-mnist: Debian dataset-fashion-mnist (MIT) at 10/50/200 per class, efficientnet_lite0 at 112 px.
- wordnet-nouns: examples/wordnet-supersenses (WordNet licence), minilm; and again with glove.
- wordnet-verbs: 15 verb supersenses from Debian wordnet-base (WordNet licence), minilm.
- fortunes: 8 categories of Debian fortunes (fortune-mod, BSD), minilm.
- fsdd: Free Spoken Digit Dataset, 2 speakers (CC BY-SA 4.0), speech_embedding.

Strategies, all on the same features: a plain scikit-learn ``LogisticRegression(max_iter=1000)`` on raw features
(the peer a user would write), the linear probe as it was (C by accuracy on per-feature standardized features),
with C by plain log loss (one global scale, the default until the calibrated choice below), and as it is now (C
by the log loss after a temperature fitted per C, the temperature folded into the head), prototypes, and
``auto``'s frozen-feature choice (:func:`headstart.strategies.blend.choose_probe`; its fine-tuning gate is not
exercised here: fine-tuning on CPU for 60 runs is out of this suite's budget). Seconds are head fitting only;
feature extraction, shared by all, is listed per task.

The features are those ``headstart fit`` gives these strategies: for image backbones the last two feature stages
pooled (``stages="last2"``, the frozen-feature strategies' preference). So that the table also shows what a plain
timm user gets, image tasks add ``LogisticRegression()`` on the network's pooled pre-logits (``stages="last"``,
timm's ``num_classes=0`` features) on the same samples.

Test-time views of the image features (:mod:`headstart.backbones.views`): ``--views none,flip,flip+crops`` runs
each image task once per setting on the same samples, extraction timed in CPU seconds after a warm-up batch (the
ONNX export is not counted) from the ``--cache`` given (a fresh folder, so every setting is computed), and the
table compares the linear probe across them (paired gains over the same samples)::

    OMP_NUM_THREADS=1 python benchmarks/suite.py
    OMP_NUM_THREADS=1 python benchmarks/suite.py --tasks digits,fashion-mnist-mini,fashion-mnist \
        --views none,flip,flip+crops --cache /tmp/suite-views --json benchmarks/results/suite_views.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

import headstart
from headstart.backbones import BACKBONES, FeatureCache, build_backbone, extract_features
from headstart.backbones.features import cache_scope
from headstart.data import Dataset, from_arrays, load_dataset
from headstart.data.reference import load_fashion_mnist, load_fsdd, load_wordnet_supersenses
from headstart.errors import HeadstartError
from headstart.evaluation import classification_metrics
from headstart.evaluation.calibration import expected_calibration_error
from headstart.strategies.base import FROZEN_FEATURES
from headstart.strategies.blend import choose_probe
from headstart.strategies.heads import prototype_head
from headstart.strategies.linear import fit_linear_head
from records import command_line, machine_record, write_result

ROOT = Path(__file__).resolve().parent.parent
FORTUNES = Path("/usr/share/games/fortunes")
FORTUNE_CLASSES = ["art", "computers", "education", "food", "law", "literature", "politics", "science"]
STRATEGIES = ["LogisticRegression()", "linear (old)", "linear (C by log loss)", "linear", "prototypes", "auto"]
#: The linear probe before this suite: C by accuracy on per-feature standardized features.
OLD_LINEAR = {"select_by": "accuracy", "scaling": "per_feature"}
#: The peer on plain timm features (pooled pre-logits), where the suite's image features are two stages.
PLAIN_PEER = "LogisticRegression() on pre-logits"
SEEDS = (0, 1, 2)


@dataclass
class Task:
    """A task: its examples (pool to sample training sets from, and a fixed test set), backbone and sizes."""

    name: str
    backbone: str
    load: Callable[[], tuple[Dataset, Dataset]]
    sizes: tuple[int, ...] = (10, 50)
    image_size: int | None = None


def _split_pool(data: Dataset, test_per_class: int, pool_per_class: int) -> tuple[Dataset, Dataset]:
    """A fixed test set of ``test_per_class`` per class and a training pool of up to ``pool_per_class``."""
    rng = np.random.default_rng(12345)
    test, pool = [], []
    for label in range(len(data.class_names)):
        index = rng.permutation(np.flatnonzero(data.labels == label))
        test.extend(index[:test_per_class])
        pool.extend(index[test_per_class:test_per_class + pool_per_class])
    return data.subset(np.sort(pool)), data.subset(np.sort(test))


def _digits() -> tuple[Dataset, Dataset]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    return _split_pool(from_arrays(list(images), digits.target, [str(d) for d in range(10)]), 50, 100)


def _folder(path: Path) -> tuple[Dataset, Dataset]:
    splits = load_dataset(path)
    return splits.train, splits.test


def _fashion() -> tuple[Dataset, Dataset]:
    x, y, names = load_fashion_mnist("train")
    pool, _ = _split_pool(from_arrays(list(x[:6000]), y[:6000], class_names=names), 0, 250)
    tx, ty, _ = load_fashion_mnist("test")
    _, test = _split_pool(from_arrays(list(tx[:2000]), ty[:2000], class_names=names), 50, 0)
    return pool, test


def _verbs() -> tuple[Dataset, Dataset]:
    texts, labels, names = load_wordnet_supersenses(pos="verb")
    return _split_pool(Dataset(texts, labels, names, "text", "wordnet verbs"), 50, 100)


def _fortunes() -> tuple[Dataset, Dataset]:
    texts, labels = [], []
    for label, name in enumerate(FORTUNE_CLASSES):
        path = FORTUNES / name
        if not path.is_file():
            raise HeadstartError(f"{path} is missing: apt-get install fortunes")
        quotes = [q.strip()[:1000] for q in path.read_text(encoding="utf-8", errors="replace").split("\n%\n")]
        quotes = [q for q in quotes if q]
        texts += quotes
        labels += [label] * len(quotes)
    return _split_pool(Dataset(texts, np.array(labels), FORTUNE_CLASSES, "text", "fortunes"), 50, 148)


def _fsdd() -> tuple[Dataset, Dataset]:
    paths, digits, _, _ = load_fsdd()
    return _split_pool(Dataset(list(paths), np.asarray(digits), [str(d) for d in range(10)], "audio", "FSDD"), 50, 50)


TASKS = [
    Task("digits", "efficientnet_lite0", _digits),
    Task("fashion-mnist-mini", "efficientnet_lite0", lambda: _folder(ROOT / "examples" / "fashion-mnist-mini")),
    Task("wordnet-nouns", "minilm", lambda: _folder(ROOT / "examples" / "wordnet-supersenses")),
    Task("wordnet-nouns", "glove", lambda: _folder(ROOT / "examples" / "wordnet-supersenses")),
    Task("wordnet-verbs", "minilm", _verbs),
    Task("fortunes", "minilm", _fortunes),
    Task("fsdd", "speech_embedding", _fsdd, (10, 30)),
    # At 112 px (4x fewer pixels than the mini task's 224) so its 2,500 images embed within the suite's budget.
    Task("fashion-mnist", "efficientnet_lite0", _fashion, (10, 50, 200), image_size=112),
]


def _proba(head: torch.nn.Linear, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(head(torch.from_numpy(features).float()), dim=1).numpy()


def fit_all(x: np.ndarray, y: np.ndarray, test_x: np.ndarray, n_classes: int, seed: int,
            plain: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, tuple[np.ndarray, float]]:
    """Test probabilities and head-fitting seconds of every strategy on one training sample (and of the peer on
    the ``plain`` training and test features, when given)."""
    runs: dict[str, tuple[np.ndarray, float]] = {}
    if plain is not None:
        started = time.perf_counter()
        clf = LogisticRegression(max_iter=1000).fit(plain[0], y)
        runs[PLAIN_PEER] = (clf.predict_proba(plain[1]), time.perf_counter() - started)

    def timed(name: str, fit: Callable[[], Callable[[np.ndarray], np.ndarray]]) -> None:
        started = time.perf_counter()
        predict = fit()
        runs[name] = (predict(test_x), time.perf_counter() - started)

    def peer() -> Callable[[np.ndarray], np.ndarray]:
        clf = LogisticRegression(max_iter=1000).fit(x, y)
        return lambda t: clf.predict_proba(t)

    timed("LogisticRegression()", peer)
    timed("linear (old)", lambda: (lambda h: lambda t: _proba(h, t))(
        fit_linear_head(x, y, n_classes, seed=seed, **OLD_LINEAR)[0]))
    timed("linear (C by log loss)", lambda: (lambda h: lambda t: _proba(h, t))(
        fit_linear_head(x, y, n_classes, seed=seed, select_by="log_loss")[0]))
    timed("linear", lambda: (lambda h: lambda t: _proba(h, t))(fit_linear_head(x, y, n_classes, seed=seed)[0]))
    timed("prototypes", lambda: (lambda h: lambda t: _proba(h, t))(prototype_head(x, y, n_classes)[0]))
    timed("auto", lambda: (lambda h: lambda t: _proba(h, t))(choose_probe(x, y, n_classes, seed=seed).head))
    return runs


def sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == k))[:per_class]
                                   for k in np.unique(labels)]))


def ece_floor(proba: np.ndarray, draws: int = 20, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model with these predicted probabilities would still show on a test set of
    this size: labels drawn from ``proba`` itself, ECE averaged over ``draws`` draws. An ECE near it is all the
    sampling noise of the test set; only the excess is miscalibration."""
    rng, cumulative = np.random.default_rng(seed), np.cumsum(proba, axis=1)
    drawn = [(rng.random((len(proba), 1)) < cumulative).argmax(axis=1) for _ in range(draws)]
    return float(np.mean([expected_calibration_error(proba, labels) for labels in drawn]))


def run_task(task: Task, cache: FeatureCache, views: str = "none") -> list[dict]:
    pool, test = task.load()
    given = {"image_size": task.image_size, "preprocess": {"views": views} if views != "none" else None}
    backbone = build_backbone(task.backbone, **given, prefer=FROZEN_FEATURES)  # as fit builds it for auto
    stages = getattr(backbone.preprocess, "stages", None)
    plain = None
    if stages not in (None, "last"):
        pre_logits = build_backbone(task.backbone, **given)
        plain = (extract_features(pre_logits, pool, cache=cache, label="pool (pre-logits)"),
                 extract_features(pre_logits, test, cache=cache, label="test (pre-logits)"))
    if cache.load(backbone, pool) is None:  # to be computed: the ONNX export and session are not extraction time
        backbone.embed(pool.items[:2])
    started, cpu_started = time.perf_counter(), time.process_time()
    pool_x = extract_features(backbone, pool, cache=cache, label="pool")
    test_x = extract_features(backbone, test, cache=cache, label="test")
    feature_seconds, feature_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rows = []
    for size in task.sizes:
        per_seed: dict[str, list[dict]] = {name: [] for name in (STRATEGIES + [PLAIN_PEER] * (plain is not None))}
        for seed in SEEDS:
            index = sample(pool.labels, size, seed)
            runs = fit_all(pool_x[index], pool.labels[index], test_x, len(pool.class_names), seed,
                           None if plain is None else (plain[0][index], plain[1]))
            for name, (proba, seconds) in runs.items():
                m = classification_metrics(test.labels, proba, test.class_names)
                per_seed[name].append({"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "ece": m["ece"],
                                       "ece_floor": ece_floor(proba, seed=seed), "seconds": seconds})
        for name, values in per_seed.items():
            row = {"task": task.name, "backbone": task.backbone, "per_class": size, "strategy": name,
                   "views": views, "stages": stages, "n_test": len(test), "feature_seconds": round(feature_seconds, 1),
                   "feature_cpu_seconds": round(feature_cpu, 1)}
            for key in ("accuracy", "macro_f1", "ece", "ece_floor", "seconds"):
                series = np.array([v[key] for v in values])
                row[key], row[f"{key}_std"] = float(series.mean()), float(series.std(ddof=1))
            row["accuracy_per_seed"] = [v["accuracy"] for v in values]
            rows.append(row)
        print(f"{task.name} ({task.backbone}, views {views}) {size}/class: " + ", ".join(
            f"{r['strategy']} {r['accuracy']:.3f}" for r in rows[-len(per_seed):]), flush=True)
    return rows


def _views(row: dict) -> str:
    return row.get("views", "none")  # rows of runs from before views existed


def summary(rows: list[dict]) -> dict:
    """Per task and size: the best fixed strategy, auto's gap to it and to the peer; median ECE per strategy (on
    single-view features); with several views settings, how the linear probe fares under each."""
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["backbone"], r["per_class"], _views(r)), {})[r["strategy"]] = r
    gaps = []
    for key, by in groups.items():
        fixed = {n: by[n]["accuracy"] for n in STRATEGIES[1:-1]}
        best = max(fixed, key=fixed.get)
        gaps.append({"task": key[0], "backbone": key[1], "per_class": key[2], "views": key[3], "best_fixed": best,
                     "auto_minus_best_fixed": by["auto"]["accuracy"] - fixed[best],
                     "auto_minus_peer": by["auto"]["accuracy"] - by["LogisticRegression()"]["accuracy"],
                     "linear_minus_peer": by["linear"]["accuracy"] - by["LogisticRegression()"]["accuracy"],
                     **({"auto_minus_plain_peer": by["auto"]["accuracy"] - by[PLAIN_PEER]["accuracy"]}
                        if PLAIN_PEER in by else {})})
    single = [r for r in rows if _views(r) == "none"]
    result = {"per_task": gaps,
              "worst_auto_minus_best_fixed": min(g["auto_minus_best_fixed"] for g in gaps),
              "mean_auto_minus_peer": float(np.mean([g["auto_minus_peer"] for g in gaps])),
              "mean_linear_minus_peer": float(np.mean([g["linear_minus_peer"] for g in gaps])),
              # Over the image cells only: auto on its features against LogisticRegression() on plain timm ones.
              "mean_auto_minus_plain_peer": float(np.mean([g["auto_minus_plain_peer"] for g in gaps
                                                           if "auto_minus_plain_peer" in g] or [np.nan])),
              "median_ece": {n: float(np.median([r["ece"] for r in single if r["strategy"] == n]))
                             for n in STRATEGIES},
              # Rows of runs from before the floor was measured have none.
              "median_ece_floor": {n: float(np.median([r["ece_floor"] for r in single
                                                       if r["strategy"] == n and "ece_floor" in r] or [np.nan]))
                                   for n in STRATEGIES}}
    if len({_views(r) for r in rows}) > 1:
        result["views"] = views_summary(rows)
    return result


def _linear_by_views(rows: list[dict]) -> dict[tuple, dict[str, dict]]:
    """The linear probe's rows of the tasks run under several views settings: (task, backbone, size) -> views
    -> row."""
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        if r["strategy"] == "linear":
            cells.setdefault((r["task"], r["backbone"], r["per_class"]), {})[_views(r)] = r
    return {key: by for key, by in cells.items() if len(by) > 1}


def views_summary(rows: list[dict]) -> dict:
    """Per views setting against none, over the image cells: the linear probe's mean paired accuracy gain (the
    same samples per seed), the mean seed spread it is to beat, mean macro F1 and ECE, and the extraction
    CPU-time ratio."""
    cells = _linear_by_views(rows)
    settings = sorted({v for by in cells.values() for v in by}, key=["none", "flip", "flip+crops"].index)
    out = {}
    for views in settings:
        present = [by for by in cells.values() if views in by]
        gains = [np.subtract(by[views]["accuracy_per_seed"], by["none"]["accuracy_per_seed"]) for by in present]
        out[views] = {"mean_accuracy": float(np.mean([by[views]["accuracy"] for by in present])),
                      "mean_macro_f1": float(np.mean([by[views]["macro_f1"] for by in present])),
                      "mean_ece": float(np.mean([by[views]["ece"] for by in present])),
                      "mean_gain_over_none": float(np.mean(gains)),
                      "mean_seed_std": float(np.mean([by[views]["accuracy_std"] for by in present])),
                      "cells_gaining": int(sum(g.mean() > 0 for g in gains)), "cells": len(present),
                      "feature_cpu_ratio_to_none": float(
                          np.mean([by[views]["feature_cpu_seconds"] / by["none"]["feature_cpu_seconds"]
                                   for by in present]))}
    return out


def readme_table(rows: list[dict]) -> dict:
    """The strategies side by side; for a run under several views settings, the views side by side."""
    if len({_views(r) for r in rows}) > 1:
        return views_table(rows)
    table: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        table.setdefault((r["task"], r["backbone"], r["per_class"]), {})[r["strategy"]] = r

    def cell(r: dict) -> str:
        return f"{100 * r['accuracy']:.1f} ± {100 * r['accuracy_std']:.1f}"

    def floor(r: dict) -> str:
        return f"{r['ece_floor']:.3f}" if "ece_floor" in r else "–"

    return {"columns": ["task (backbone)", "per class", PLAIN_PEER, *STRATEGIES, "ECE linear (old)", "ECE auto",
                        "ECE of a calibrated auto (sampling floor)"],
            "rows": [[f"{task} ({backbone})", str(size), cell(by[PLAIN_PEER]) if PLAIN_PEER in by else "–",
                      *(cell(by[n]) for n in STRATEGIES),
                      f"{by['linear (old)']['ece']:.3f}", f"{by['auto']['ece']:.3f}", floor(by["auto"])]
                     for (task, backbone, size), by in table.items()]}


def views_table(rows: list[dict]) -> dict:
    """The linear probe under each views setting: accuracy (and its paired gain over none), macro F1 and ECE per
    task and size, and the feature extraction CPU seconds."""
    cells = _linear_by_views(rows)
    settings = sorted({v for by in cells.values() for v in by}, key=["none", "flip", "flip+crops"].index)
    others = [v for v in settings if v != "none"]

    def gain(by: dict, views: str) -> str:
        paired = 100 * np.subtract(by[views]["accuracy_per_seed"], by["none"]["accuracy_per_seed"])
        return f"{paired.mean():+.1f} ± {paired.std(ddof=1):.1f}"

    def cells_of(by: dict, views: list[str], show: Callable[[dict, str], str]) -> list[str]:
        return [show(by, v) if v in by else "—" for v in views]  # "—": the task was not run under that setting

    columns = ["task", "per class", *(f"accuracy {v}" for v in settings), *(f"gain {v}" for v in others),
               *(f"macro F1 {v}" for v in settings), *(f"ECE {v}" for v in settings),
               *(f"feature CPU s {v}" for v in settings)]
    body = [[task, str(size),
             *cells_of(by, settings, lambda b, v: f"{100 * b[v]['accuracy']:.1f} ± {100 * b[v]['accuracy_std']:.1f}"),
             *cells_of(by, others, gain), *cells_of(by, settings, lambda b, v: f"{100 * b[v]['macro_f1']:.1f}"),
             *cells_of(by, settings, lambda b, v: f"{b[v]['ece']:.3f}"),
             *cells_of(by, settings, lambda b, v: f"{b[v]['feature_cpu_seconds']:.0f}")]
            for (task, _, size), by in cells.items()]
    return {"columns": columns, "rows": body}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="", help="comma-separated task names to run (default: all)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "suite.json")
    parser.add_argument("--combine", default="", help="comma-separated JSON files of earlier runs (e.g. of task "
                                                      "subsets run side by side) to merge into --json; runs nothing")
    parser.add_argument("--views", default="none", help="comma-separated test-time views settings the image tasks "
                                                        "run under (none, flip, flip+crops)")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: headstart's); "
                                                                 "a fresh one times every extraction")
    args = parser.parse_args()
    if args.combine:
        parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.combine.split(",")]
        rows = [r for part in parts for r in part["rows"]]
        merged = {"command": [part["command"] for part in parts] + [command_line()],
                  "cpus": os.cpu_count(), "threads": [part["threads"] for part in parts],
                  "load_average_before": [part["load_average_before"] for part in parts],
                  "load_average_after": [part["load_average_after"] for part in parts],
                  "seconds": [part["seconds"] for part in parts], "headstart": headstart.__version__,
                  "torch": torch.__version__, "seeds": list(SEEDS),
                  # A task one part skipped (its data missing there) and another ran is not skipped.
                  "skipped": [s for part in parts for s in part["skipped"]
                              if s.split(" (")[0] not in {r["task"] for r in rows}], "rows": rows,
                  "summary": summary(rows), "readme_table": readme_table(rows)}
        write_result(args.json, merged)
        return
    torch.set_num_threads(1)
    load_before, started = os.getloadavg(), time.perf_counter()
    cache = FeatureCache(args.cache)
    rows, skipped = [], []
    for task in TASKS:
        if args.tasks and task.name not in args.tasks.split(","):
            continue
        image = BACKBONES.get(task.backbone).modality == "image"
        for views in args.views.split(",") if image else ["none"]:
            try:
                with cache_scope(cache):  # exported ONNX graphs go there too
                    rows += run_task(task, cache, views)
            except (HeadstartError, FileNotFoundError) as err:
                skipped.append(f"{task.name} ({task.backbone}): {err}")
                print(f"skipped {task.name} ({task.backbone}): {err}", flush=True)
                break
            write(args.json, rows, skipped, load_before, started)  # after each task: a stopped run keeps its tasks
    print(json.dumps(summary(rows), indent=2))


def write(path: Path, rows: list[dict], skipped: list[str], load_before: tuple, started: float) -> None:
    """The results so far, with the run's command, machine load and versions."""
    machine = machine_record(("headstart", "torch"), load_before=load_before, threads=1, flat_versions=True)
    write_result(path, {**machine, "seconds": round(time.perf_counter() - started, 1), "seeds": list(SEEDS),
                        "skipped": skipped, "rows": rows, "summary": summary(rows) if rows else {},
                        "readme_table": readme_table(rows)})


if __name__ == "__main__":
    main()
