"""What `--track` adds to a linear fit: `headstart fit` with and without MLflow tracking, in pairs.

Each run is a fresh `headstart fit ... --strategy linear` process (what a user waits for: start-up, data, cached
features, the probe, evaluation, model and report). With `--track` the command hands its MLflow run (the model
folder as artifacts, embedded SQLite store) to the tracking worker process and exits; the worker writes it in the
background and appends the outcome to ``headstart-tracking.jsonl``. The tracked run's wall time is the command's
own; the benchmark then waits for the outcome line (so runs never overlap) and records the seconds from the
command's start until the run is stored and the worker's CPU seconds (from the outcome line), apart from the
command's. Features are cached by a warm-up run first; Python's bytecode is kept, as an
installed package has it (``PYTHONPYCACHEPREFIX`` in a folder of the run). Two cases, each as pairs
of one untracked and one tracked run back to back (order alternating), so both runs of a pair see the same
machine load:

- existing store: the tracked run logs to a store an earlier run created (the usual case);
- new store: the tracked run's output folder sits in a new folder, so it creates ``mlruns.db`` (MLflow's
  schema migrations).

Then, in one process that has imported what ``fit`` imports, the CPU seconds of each fixed step of tracking
(importing MLflow, creating a store, opening an existing one, writing a run). Prints a table and writes JSON
(default benchmarks/results/tracking_overhead.json).

    python benchmarks/tracking_overhead.py --repeats 3

Takes about 4 minutes on a quiet 2-core machine.
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
from pathlib import Path

from records import LOADAVG_NAMES, machine_record, print_table, write_result

DATA = Path(__file__).parent.parent / "examples" / "fashion-mnist-mini"
# Run in a fresh process after the imports a fit makes: the CPU seconds of each fixed step of tracking to the
# store sys.argv[1] (created when missing), logging the model folder sys.argv[2].
PHASES = """
import json, sys, time
from pathlib import Path
import headstart.api, headstart.cli.app, onnxruntime, sklearn.linear_model, torch
from headstart.tracking.runs import RunSpec
from headstart.tracking.writer import open_experiment, write_run
def cpu(step):
    started = time.process_time()
    result = step()
    return time.process_time() - started, result
store = Path(sys.argv[1])
phases = {}
phases["import mlflow"], _ = cpu(lambda: __import__("mlflow.tracking"))
opening = "open the store" if store.exists() else "create the store"
artifacts = str(store.parent / "mlartifacts")  # not MLflow's default, ./mlruns in the current folder
phases[opening], (client, experiment) = cpu(lambda: open_experiment(f"sqlite:///{store}", "headstart", artifacts))
spec = RunSpec("bench", {f"setting.p{i}": i for i in range(25)}, [(f"m{i}", 0.5, 0) for i in range(12)],
               {"headstart.command": "fit"}, [(sys.argv[2], "model")])
phases["write the run"], _ = cpu(lambda: write_run(client, experiment, spec))
print(json.dumps(phases))
"""


def fit_seconds(out: Path, track: bool, cpu: list[float] | None = None, tracked: dict | None = None) -> float:
    """Wall seconds of one ``headstart fit`` process writing ``out``; its CPU seconds (user + system; not the
    detached tracking worker's) are appended to ``cpu``. A tracked run then waits for the worker's outcome line
    and appends to ``tracked["stored"]`` the seconds from the command's start until the run was written, and to
    ``tracked["worker_cpu"]`` the worker's CPU seconds."""
    command = [sys.executable, "-m", "headstart", "fit", str(DATA), "--strategy", "linear", "--out", str(out), "-q",
               "--force"]
    log = out.parent / "headstart-tracking.jsonl"
    if track:
        command.append("--track")
        seen = len(log.read_text().splitlines()) if log.exists() else 0
    before = os.times()
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = os.times()
    if cpu is not None:
        cpu.append(after.children_user - before.children_user + after.children_system - before.children_system)
    if track:
        deadline = time.monotonic() + 300
        while (not log.exists() or len(log.read_text().splitlines()) <= seen) and time.monotonic() < deadline:
            time.sleep(0.02)
        stored = time.perf_counter() - started
        outcome = json.loads(log.read_text().splitlines()[seen])
        if "error" in outcome or "run_id" not in outcome:
            raise RuntimeError(f"the tracked run was not written: {outcome}")
        if tracked is not None:
            tracked["stored"].append(stored)
            tracked["worker_cpu"].append(outcome["worker_cpu_seconds"])
    return wall


def summary(values: list[float]) -> tuple[float, float]:
    """Mean and standard deviation (0 for one value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="Pairs per case.")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "tracking_overhead.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="headstart-track-bench-"))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(root / "bytecode")
    cases = ("existing store", "new store")
    wall = {case: {"plain": [], "tracked": []} for case in cases}
    cpu = {case: {"plain": [], "tracked": []} for case in cases}
    background = {case: {"stored": [], "worker_cpu": []} for case in cases}
    loads = []
    try:
        fit_seconds(root / "warm", track=False)  # caches features and the ONNX export
        fit_seconds(root / "store" / "first", track=True)  # creates root/store/mlruns.db
        for i in range(args.repeats):
            for case in cases:
                order = ("plain", "tracked") if i % 2 == 0 else ("tracked", "plain")
                for kind in order:
                    parent = root / "store" if case == "existing store" or kind == "plain" else root / f"new{i}"
                    loads.append(os.getloadavg()[0])
                    wall[case][kind].append(fit_seconds(parent / kind, kind == "tracked", cpu[case][kind],
                                                        background[case]))
        phases = {case: json.loads(subprocess.run(
            [sys.executable, "-c", PHASES, str(root / "phases.db"), str(root / "store" / "plain")],
            check=True, capture_output=True, text=True).stdout) for case in ("new store", "existing store")}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    machine = machine_record(("mlflow-skinny", "sqlalchemy", "torch", "headstart"), load_before=load_before,
                             names={**LOADAVG_NAMES, "threads": "omp_num_threads"})
    rows, results = [], {}
    for case in cases:
        paired = [t / p - 1 for p, t in zip(wall[case]["plain"], wall[case]["tracked"], strict=True)]
        paired_cpu = [t - p for p, t in zip(cpu[case]["plain"], cpu[case]["tracked"], strict=True)]
        results[case] = {"seconds": wall[case], "cpu_seconds": cpu[case], "paired_overhead": paired,
                         "paired_extra_cpu_seconds_command": paired_cpu,
                         "seconds_until_stored": background[case]["stored"],
                         "worker_cpu_seconds": background[case]["worker_cpu"]}
        (plain, plain_std), (tracked, tracked_std) = summary(wall[case]["plain"]), summary(wall[case]["tracked"])
        overhead, overhead_std = summary(paired)
        extra_cpu, extra_cpu_std = summary(paired_cpu)
        stored, stored_std = summary(background[case]["stored"])
        worker_cpu, worker_cpu_std = summary(background[case]["worker_cpu"])
        rows.append([case, len(paired), f"{plain:.1f} ± {plain_std:.1f}", f"{tracked:.1f} ± {tracked_std:.1f}",
                     f"{overhead:+.1%} ± {overhead_std:.1%}", f"{extra_cpu:+.1f} ± {extra_cpu_std:.1f}",
                     f"{stored:.1f} ± {stored_std:.1f}", f"{worker_cpu:.1f} ± {worker_cpu_std:.1f}"])
    columns = ["`--track` logs to", "pairs", "wall s without", "wall s with", "overhead (paired)",
               "extra command CPU s (paired)", "s until the run is stored", "worker CPU s"]
    print_table(columns, rows)
    for case, steps in phases.items():
        print(f"CPU seconds of tracking to a {case} in a fit's process: "
              + ", ".join(f"{name} {seconds:.2f}" for name, seconds in steps.items()))
    print(f"load average before {load_before[0]:.2f}, during {statistics.mean(loads):.2f} (mean), after "
          f"{machine['loadavg_after'][0]:.2f}; {os.cpu_count()} CPUs")
    write_result(args.json, {**machine, "data": str(DATA.name), "cases": results, "fixed_cpu_seconds": phases,
                             "loadavg_during": loads, "readme_table": {"columns": columns, "rows": rows}})


if __name__ == "__main__":
    main()
