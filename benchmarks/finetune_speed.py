"""`finetune` end to end on WordNet (100 texts per class): this checkout against an earlier one, side by side.

Issue 15 asks that ``headstart fit examples/wordnet-supersenses --strategy finetune`` run at least 1.5x faster end
to end than when the issue was filed, with the same test accuracy (within 1 point). Both versions run the same
command with the same seed, each in a fresh process with a cold feature cache of its own, **at the same time**
(one thread each; each one's wall time ends when it does), so both see the same machine load whatever else runs:
the ratio of their times is the result.
Wall and CPU seconds (user + system of each process) and test accuracy are reported per seed; prints a table and
writes JSON (default benchmarks/results/finetune_speed.json).

The baseline is a ``src`` folder of the earlier checkout, e.g. the last commit before issue 15 was filed::

    git archive e049cab src | tar -x -C /tmp/baseline-e049cab
    python benchmarks/finetune_speed.py --baseline-src /tmp/baseline-e049cab/src --baseline-name e049cab
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from records import LOADAVG_NAMES, machine_record, print_table, write_result

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "wordnet-supersenses"


def start(src: Path, work: Path, seed: int) -> tuple[subprocess.Popen, float]:
    """Start ``headstart fit DATA --strategy finetune`` with ``src`` first on the path and its own cache."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "HEADSTART_CACHE": str(work / "cache")}
    command = [sys.executable, "-m", "headstart", "fit", str(DATA), "--strategy", "finetune", "--seed", str(seed),
               "--out", str(work / "model"), "--cache-dir", str(work / "cache"), "-q"]
    log = (work / "log.txt").open("w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), time.perf_counter()


def wait_all(started: dict[str, tuple[subprocess.Popen, float, Path]]) -> dict[str, dict[str, float]]:
    """Wait for every process in ``started`` (name: process, start time, work folder) in the order they end; each
    one's wall and CPU seconds and the test accuracy it wrote."""
    by_pid = {process.pid: name for name, (process, _, _) in started.items()}
    results = {}
    while by_pid:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in by_pid:
            continue
        name = by_pid.pop(pid)
        process, t0, work = started[name]
        wall = time.perf_counter() - t0
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"fit failed in {work}: see {work / 'log.txt'}")
        metrics = json.loads((work / "model" / "metrics.json").read_text())
        results[name] = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "accuracy": metrics["test"]["accuracy"]}
    return results


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--baseline-name", default="baseline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_speed.json")
    args = parser.parse_args()
    versions = {args.baseline_name: args.baseline_src.resolve(), "this checkout": ROOT / "src"}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in versions}
    load_before, loads = os.getloadavg(), []
    with tempfile.TemporaryDirectory(prefix="headstart-finetune-speed-") as tmp:
        for seed in args.seeds:
            started = {}
            for name, src in versions.items():
                work = Path(tmp) / f"{name.replace(' ', '-')}-{seed}"
                work.mkdir()
                started[name] = (*start(src, work, seed), work)
            for name, result in wait_all(started).items():
                runs[name].append(result | {"seed": seed})
            loads.append(os.getloadavg())
    base = runs[args.baseline_name]
    columns = ["`fit --strategy finetune`, WordNet 100/class", "seeds", "wall s", "CPU s", "test accuracy %",
               "faster (wall / CPU)"]
    rows = []
    for name, results in runs.items():
        speedup = "" if results is base else (
            f"{statistics.mean(b['wall'] for b in base) / statistics.mean(r['wall'] for r in results):.2f}x / "
            f"{statistics.mean(b['cpu'] for b in base) / statistics.mean(r['cpu'] for r in results):.2f}x")
        rows.append([name, str(len(results)), spread([r["wall"] for r in results]),
                     spread([r["cpu"] for r in results]), spread([100 * r["accuracy"] for r in results]), speedup])
    print_table(columns, rows)
    print(f"load average before {load_before[0]:.2f}, after each seed {[round(load[0], 2) for load in loads]}")
    write_result(args.json, {
        **machine_record(("torch", "transformers"), load_before=load_before, threads=1,
                         names={**LOADAVG_NAMES, "threads": "threads_per_run"}),
        "baseline": args.baseline_name, "runs": runs, "loadavg_after_each_seed": loads,
        "readme_table": {"columns": columns, "rows": rows},
    })


if __name__ == "__main__":
    main()
