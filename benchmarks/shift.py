"""Domain adaptation on real shifts: the linear probe trained on the source domain only, against the strategies
that also see unlabeled target data (adabn, coral, dann), measured on labeled target data.

Shifts (built by ``examples/make_datasets.py``):

- images: Fashion-MNIST (``examples/fashion-mnist-mini`` train split) -> the same kind of images rendered at
  low contrast on grey (``examples/fashion-mnist-lowcontrast``: 200 unlabeled target images, 200 labeled test
  images); efficientnet_lite0 at 64 px (the images are 28 px).
- text: WordNet noun definitions (``examples/wordnet-supersenses``) -> the usage examples quoted in the glosses
  (``examples/wordnet-usage``: 270 unlabeled, 270 labeled); minilm.

Each seed draws its own 50 source training examples per class; the source test split is measured too. The
proxy A-distance (PAD) between the source training data and the target is the one ``fit`` prints. Each run
starts from an empty cache (features and exported ONNX graphs), as a first fit on new data does, and records
wall and CPU seconds (CPU time, one torch thread, is what the methods cost on a machine shared with other jobs);
``adabn`` is run with its defaults, with the forgetting measure it leaves out by default, and with each
variant of its two settings. DANN runs few epochs (1 head + 2 whole-network).

    python benchmarks/shift.py [--seeds 0 1 2] [--shifts images text] [--methods linear coral ...]
                               [--runs-from earlier.json ...] [--merge-only] [--json OUT]

Prints a table and writes benchmarks/results/shift.json (with the README's table under ``readme_table``, and
``missing_runs``: the planned runs not measured) after every run. ``--runs-from`` keeps the runs of earlier
(interrupted, or parallel: e.g. ``--methods dann`` in a second process) invocations and measures only the
others. Runtime on a 2-core CPU shared with other jobs (load 5-9): about 25 minutes for every method but
``dann`` over 3 seeds and both shifts, and 1.5-5.5 (images) and 4-4.5 (text) minutes per ``dann`` run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import headstart
from headstart.backbones import FeatureCache
from headstart.data import DataSplits, load_dataset, sample_per_class
from headstart.strategies.adabn import AdaBNConfig
from records import command_line, package_versions, print_table, write_result

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PER_CLASS = 50
DANN = {"epochs": 2, "head_epochs": 1, "min_steps": 0}


def adabn_variants() -> dict[str, dict]:
    """AdaBN's two choices, each way: statistics for the source features, and how many BatchNorm layers adapt.
    The defaults' row is plain "adabn" and comes first."""
    defaults, variants = AdaBNConfig(), {}
    for stats in ("backbone", "source"):
        for depth, layers in (("first", 1), ("all", None)):
            settings = {"source_statistics": stats == "source", "layers": layers}
            default = all(getattr(defaults, key) == value for key, value in settings.items())
            variants["adabn" if default else f"adabn ({stats} stats, {depth} BN layer{'s' * (layers is None)})"] = \
                settings
    ordered = dict(sorted(variants.items(), key=lambda item: item[0] != "adabn"))
    # What measuring forgetting during the fit costs (adabn leaves it out unless asked).
    return {"adabn": ordered.pop("adabn"), "adabn (forgetting measured)": {"forgetting": True}, **ordered}


SHIFTS = {
    "images": {"name": "Fashion-MNIST -> low contrast",
        "source": EXAMPLES / "fashion-mnist-mini", "target": EXAMPLES / "fashion-mnist-lowcontrast" / "target",
        "test": EXAMPLES / "fashion-mnist-lowcontrast" / "test", "backbone": "efficientnet_lite0", "image_size": 64,
        "methods": {"linear": {}, **adabn_variants(), "coral": {}, "dann": DANN}},
    "text": {"name": "WordNet definitions -> usage examples",
        "source": EXAMPLES / "wordnet-supersenses", "target": EXAMPLES / "wordnet-usage" / "target.csv",
        "test": EXAMPLES / "wordnet-usage" / "test.csv", "backbone": "minilm", "image_size": None,
        "methods": {"linear": {}, "coral": {}, "dann": DANN}},
}


def fit_once(shift: dict, splits: DataSplits, strategy: str, seed: int, settings: dict) -> tuple[Any, float, float]:
    """One fit from an empty cache (features and exported graphs), as a first fit on new data does: the model,
    its wall and its CPU seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="headstart-bench-") as cache:
        model = headstart.fit(splits, backbone=shift["backbone"], strategy=strategy, seed=seed, progress=False,
                              cache=FeatureCache(cache), image_size=shift["image_size"], settings=settings,
                              target=shift["target"], target_test=shift["test"])
    return model, time.perf_counter() - started, time.process_time() - cpu


def run_shift(shift: dict, seeds: list[int], methods: list[str] | None, done: list[dict],
              record: Callable[[dict], None]) -> None:
    """Measure every method and seed of ``shift`` not already in ``done``: source and target test accuracy, PAD,
    seconds; ``record`` gets each row. Each run starts from an empty cache, so no method's seconds include
    another's cached work; one unrecorded linear fit first takes the process's one-off costs (imports, lazy
    initialisation of the backbone's libraries), which would otherwise land on whichever run comes first."""
    source = load_dataset(shift["source"])
    warm = False
    for seed in seeds:
        splits = DataSplits(train=sample_per_class(source.train, PER_CLASS, seed=seed), test=source.test,
                            source=str(shift["source"]))
        for label, settings in shift["methods"].items():
            strategy = label.split(" ")[0]
            measured = any(r["shift"] == shift["name"] and r["method"] == label and r["seed"] == seed for r in done)
            if measured or (methods is not None and strategy not in methods):
                continue
            if not warm:
                fit_once(shift, splits, "linear", seed, {})
                warm = True
            model, seconds, cpu = fit_once(shift, splits, strategy, seed, settings)
            target = model.metrics["target"]
            record({"shift": shift["name"], "method": label, "seed": seed,
                    "source_test": model.metrics["test"]["accuracy"], "target_test": target["test"]["accuracy"],
                    "pad": target["shift"]["pad"], "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1)})


def missing_runs(rows: list[dict], seeds: list[int]) -> list[str]:
    """``"shift / method / seed N"`` for each planned run (every shift, method and seed) not in ``rows``."""
    done = {(r["shift"], r["method"], r["seed"]) for r in rows}
    return [f"{shift['name']} / {method} / seed {seed}" for shift in SHIFTS.values() for method in shift["methods"]
            for seed in seeds if (shift["name"], method, seed) not in done]


def median_cpu(runs: list[dict]) -> float | None:
    """The median CPU seconds of ``runs``; ``None`` for runs measured before CPU time was recorded."""
    cpu = [r["cpu_seconds"] for r in runs if "cpu_seconds" in r]
    return float(np.median(cpu)) if cpu else None


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds per shift and method, with the gain over the linear probe on the target."""
    summary = []
    for shift in dict.fromkeys(r["shift"] for r in rows):
        mine = [r for r in rows if r["shift"] == shift]
        linear = [r["target_test"] for r in mine if r["method"] == "linear"]
        baseline = float(np.mean(linear)) if linear else None  # e.g. a dann-only invocation
        baseline_cpu = median_cpu([r for r in mine if r["method"] == "linear"])
        for method in dict.fromkeys(r["method"] for r in mine):
            runs = [r for r in mine if r["method"] == method]
            entry = {"shift": shift, "method": method, "seeds": len(runs),
                     "pad": float(np.mean([r["pad"] for r in runs])),
                     "seconds": float(np.median([r["seconds"] for r in runs])),
                     "cpu_seconds": median_cpu(runs)}
            for key in ("source_test", "target_test"):
                values = [r[key] for r in runs]
                entry[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
            entry["target_gain"] = None if baseline is None else entry["target_test"]["mean"] - baseline
            entry["cpu_vs_linear"] = None if None in (entry["cpu_seconds"], baseline_cpu) else \
                entry["cpu_seconds"] / baseline_cpu - 1
            summary.append(entry)
    return summary


def readme_table(summary: list[dict]) -> dict:
    def cell(stat: dict) -> str:
        return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"

    def cpu(entry: dict) -> list[str]:
        if entry["cpu_seconds"] is None:
            return ["not measured"] * 2
        return [f"{entry['cpu_seconds']:.0f}",
                "—" if entry["method"] == "linear" or entry["cpu_vs_linear"] is None
                else f"{100 * entry['cpu_vs_linear']:+.0f}%"]

    return {"columns": ["shift (PAD)", "method", "seeds", "target test accuracy %", "vs linear",
                        "source test accuracy %", "seconds (median)", "CPU seconds (median)", "CPU time vs linear"],
            "rows": [[f"{e['shift']} ({e['pad']:.2f})", e["method"], str(e["seeds"]), cell(e["target_test"]),
                      "—" if e["method"] == "linear" or e["target_gain"] is None else f"{100 * e['target_gain']:+.1f}",
                      cell(e["source_test"]),
                      f"{e['seconds']:.0f}", *cpu(e)] for e in summary]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shifts", nargs="+", choices=sorted(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--methods", nargs="+", help="only these strategies (default: all of each shift's)")
    parser.add_argument("--runs-from", type=Path, nargs="+", default=[],
                        help="JSONs this script wrote: their runs are kept, not repeated")
    parser.add_argument("--merge-only", action="store_true",
                        help="measure nothing: write the runs of --runs-from as one result (e.g. after stopping dann)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "shift.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    earlier = [json.loads(path.read_text()) for path in args.runs_from]
    rows: list[dict] = [run for result in earlier for run in result["runs"]]
    commands = [*(c for result in earlier for c in result["commands"]), command_line()]
    loads = [load for result in earlier for load in result["load_average_before"]]
    loads_after = [load for result in earlier for load in result["load_average_after"]]
    versions = package_versions(("torch", "timm", "transformers", "scikit-learn", "onnxruntime"))
    load_before, started = os.getloadavg(), time.perf_counter()

    def record(row: dict | None = None) -> None:  # after every run, so an interrupted benchmark keeps its runs
        if row is not None:
            rows.append(row)
            print(row, flush=True)
        summary = summarise(rows)
        out = {"commands": commands, "cpus": os.cpu_count(), "torch_threads": 1,
               "load_average_before": [*loads, load_before],
               "load_average_after": [*loads_after, os.getloadavg()], "versions": versions, "per_class": PER_CLASS,
               "dann_settings": DANN, "seconds_this_invocation": round(time.perf_counter() - started, 1),
               "missing_runs": missing_runs(rows, args.seeds), "summary": summary, "runs": rows,
               "readme_table": readme_table(summary)}
        write_result(args.json, out)

    for key in [] if args.merge_only else args.shifts:
        run_shift(SHIFTS[key], args.seeds, args.methods, list(rows), record)
    record()
    print_table(**readme_table(summarise(rows)))


if __name__ == "__main__":
    main()
