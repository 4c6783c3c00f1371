"""What `--track` adds to a linear fit: `headstart fit` with and without MLflow tracking, run alternately.

Each run is a fresh `headstart fit ... --strategy linear` process (what a user waits for: start-up, data, cached
features, the probe, evaluation, model and report, and with `--track` the MLflow run with the model folder as
artifacts in the embedded SQLite store). Features are cached by a warm-up run first, and the store is created
once before timing (its first creation is timed separately: it runs MLflow's database migrations). Prints a
table and writes JSON (default benchmarks/results/tracking_overhead.json).

    python benchmarks/tracking_overhead.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

DATA = Path(__file__).parent.parent / "examples" / "fashion-mnist-mini"


def fit_seconds(root: Path, name: str, track: bool, cpu: dict[str, list[float]] | None = None) -> float:
    """Wall seconds of one ``headstart fit`` process; its CPU seconds (with the tracking writer's, a child it
    waits for) are appended to ``cpu[name]``."""
    command = [sys.executable, "-m", "headstart", "fit", str(DATA), "--out", str(root / name), "-q", "--force"]
    if track:
        command.append("--track")
    before = os.times()
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = os.times()
    if cpu is not None:
        cpu[name].append(after.children_user - before.children_user + after.children_system - before.children_system)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "tracking_overhead.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="headstart-track-bench-"))
    try:
        fit_seconds(root, "warm", track=False)  # caches features and the ONNX export
        first_store = fit_seconds(root, "first", track=True)  # creates mlruns.db
        times: dict[str, list[float]] = {"plain": [], "tracked": []}
        cpu: dict[str, list[float]] = {"plain": [], "tracked": []}
        for i in range(args.repeats):
            order = ("plain", "tracked") if i % 2 == 0 else ("tracked", "plain")
            for kind in order:
                times[kind].append(fit_seconds(root, kind, track=kind == "tracked", cpu=cpu))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    mean = {k: statistics.mean(v) for k, v in times.items()}
    std = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in times.items()}
    overhead = mean["tracked"] / mean["plain"] - 1
    paired = [t / p - 1 for p, t in zip(times["plain"], times["tracked"], strict=True)]
    print(f"{'run':<40}{'seconds (mean ± std)':>24}")
    print(f"{'headstart fit (linear)':<40}{mean['plain']:>16.2f} ± {std['plain']:.2f}")
    print(f"{'headstart fit (linear) --track':<40}{mean['tracked']:>16.2f} ± {std['tracked']:.2f}")
    print(f"overhead of --track: {overhead:+.1%} (paired runs: {statistics.mean(paired):+.1%} ± "
          f"{statistics.stdev(paired) if len(paired) > 1 else 0:.1%}); first tracked run, creating the store: "
          f"{first_store:.2f} s")
    cpu_overhead = statistics.mean(cpu["tracked"]) / statistics.mean(cpu["plain"]) - 1
    print(f"CPU seconds: {statistics.mean(cpu['plain']):.1f} without, {statistics.mean(cpu['tracked']):.1f} with "
          f"--track ({cpu_overhead:+.1%})")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; {os.cpu_count()} CPUs")
    cpu_std = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in cpu.items()}
    table = {"columns": ["`headstart fit` (linear, cached features)", "runs", "wall s", "CPU s"],
             "rows": [[label, len(times[kind]), f"{mean[kind]:.1f} ± {std[kind]:.1f}",
                       f"{statistics.mean(cpu[kind]):.1f} ± {cpu_std[kind]:.1f}"]
                      for label, kind in (("without `--track`", "plain"), ("with `--track`", "tracked"))]
             + [["overhead of `--track`", "", f"{overhead:+.1%}", f"{cpu_overhead:+.1%}"]]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "data": str(DATA.name),
        "seconds": times, "cpu_seconds": cpu, "mean": mean, "std": std, "overhead": overhead,
        "cpu_overhead": cpu_overhead, "paired_overhead": paired,
        "first_tracked_run_creating_store": first_store, "loadavg_before": load_before, "loadavg_after": load_after,
        "cpu_count": os.cpu_count(), "versions": {p: version(p) for p in ("mlflow-skinny", "torch", "headstart")},
        "readme_table": table,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
