"""`make demo` again with its features cached: wall and CPU seconds of ``headstart fit --strategy S`` in a new
process, for ``linear`` (the figure issue 15 set a target for) and ``auto`` (what ``make demo`` runs).

Each round is :func:`feature_extraction.cached_rerun_seconds` (the same function the feature extraction benchmark
reports): one run that fills (or finds) the cache, then one timed run. CPU seconds (user + system of the child
processes) are half of a round's two runs once the cache is filled, which is every round after the first; they
depend far less than wall seconds on what else the machine runs, so they show a quiet machine's wall time best.

With ``--baseline-src`` another checkout's ``src`` folder (e.g. the main branch) is timed the same way in the same
run, interleaved round by round, sharing the feature cache, so the ratio is measured under the same load.

Python's compiled bytecode is kept (in a folder of the run, ``PYTHONPYCACHEPREFIX``) even where the environment
says not to write it (``PYTHONDONTWRITEBYTECODE``): an installed package has it, and without it every run
compiles headstart's modules again (about half a second), which is no part of what a user waits for.
Takes about 5 minutes on a quiet 2-core machine (``--rounds 4`` with a baseline, both strategies).

Usage:
    python benchmarks/cached_rerun.py --rounds 4 --baseline-src ../main/src --strategies linear,auto
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feature_extraction import FASHION_EXAMPLE, cached_rerun_seconds  # noqa: E402
from records import SHORT_LOAD_NAMES, machine_record, print_table, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_round(src: Path, work: Path, strategy: str) -> tuple[float, float]:
    """Wall seconds of one cached re-run with ``src`` first on the path, and CPU seconds per run of the round."""
    os.environ["PYTHONPATH"] = str(src)
    before = children_cpu()
    wall = cached_rerun_seconds(FASHION_EXAMPLE, "efficientnet_lite0", work, strategy)
    return wall, (children_cpu() - before) / 2


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per version (the first fills the cache "
                        "and is left out)")
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src folder to time alongside")
    parser.add_argument("--strategies", default="linear,auto", help="comma-separated strategies to time")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "cached_rerun.json")
    args = parser.parse_args()

    versions = {"this checkout": ROOT / "src"}
    if args.baseline_src is not None:
        versions = {"baseline": args.baseline_src.resolve(), **versions}
    runs = [(name, strategy) for strategy in args.strategies.split(",") for name in versions]
    load_before = os.getloadavg()
    measured: dict[str, dict[str, list[float]]] = {f"{n}, {s}": {"wall": [], "cpu": []} for n, s in runs}
    loads = []
    with tempfile.TemporaryDirectory() as work:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(Path(work) / "bytecode")
        for round_ in range(args.rounds + 1):
            for name, strategy in runs:
                loads.append(os.getloadavg()[0])
                wall, cpu = timed_round(versions[name], Path(work), strategy)
                if round_ > 0:  # the first round extracts the features (once: the versions share the cache)
                    measured[f"{name}, {strategy}"]["wall"].append(wall)
                    measured[f"{name}, {strategy}"]["cpu"].append(cpu)
                print(f"round {round_} {name}, {strategy}: {wall:.1f} s wall, {cpu:.1f} s CPU per run", flush=True)
    rows = []
    for name, strategy in runs:
        values, baseline = measured[f"{name}, {strategy}"], measured.get(f"baseline, {strategy}")
        ratio = ""
        if name != "baseline" and baseline is not None:
            ratio = (f"{statistics.mean(baseline['wall']) / statistics.mean(values['wall']):.2f}x wall, "
                     f"{statistics.mean(baseline['cpu']) / statistics.mean(values['cpu']):.2f}x CPU")
        rows.append([name, f"`--strategy {strategy}`", summary(values["wall"]), summary(values["cpu"]), ratio])
    table = {"columns": ["`headstart fit` on the demo, features cached", "strategy", "wall", "CPU (user+sys)",
                         "faster than baseline"], "rows": rows}
    print_table(**table)
    result = {**machine_record(("torch",), load_before=load_before, threads=torch.get_num_threads(),
                               names=SHORT_LOAD_NAMES, flat_versions=True),
              "rounds": args.rounds, "load_during": loads, "bytecode": "kept (PYTHONPYCACHEPREFIX)",
              "seconds": measured, "readme_table": table}
    write_result(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
