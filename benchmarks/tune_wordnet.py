"""Does `headstart tune` beat the defaults? `fit --strategy finetune` against `tune --strategy finetune` on WordNet.

Runs, as a user would and with the same seed, ``headstart fit examples/wordnet-supersenses --strategy finetune``
(the defaults) and ``headstart tune examples/wordnet-supersenses --strategy finetune --trials 12 --max-time 1500``
(Optuna; trials scored on validation data, the best refit and tested once), one after the other, and compares
their test accuracy and wall time. Prints a table and writes JSON (default benchmarks/results/tune_wordnet.json).

    OMP_NUM_THREADS=1 python benchmarks/tune_wordnet.py --trials 12 --max-time 1500
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from records import LOADAVG_NAMES, machine_record, print_table, write_result

DATA = Path(__file__).parent.parent / "examples" / "wordnet-supersenses"


def run_cli(*arguments: str) -> tuple[float, float]:
    """Run ``headstart ARGUMENTS`` in a fresh process; return its wall seconds and CPU seconds (user + system)."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "headstart", *arguments], check=True)
    wall = time.perf_counter() - started
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-time", type=float, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE",
                        help="Setting held fixed in both runs (e.g. to try the script on tiny data quickly).")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "tune_wordnet.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="headstart-tune-bench-"))
    common = ("--strategy", "finetune", "--seed", str(args.seed), "-q",
              *(part for setting in args.settings for part in ("--set", setting)))
    try:
        fit_wall, fit_cpu = run_cli("fit", str(args.data), "--out", str(root / "defaults"), *common)
        defaults = json.loads((root / "defaults" / "metrics.json").read_text())
        tune_wall, tune_cpu = run_cli("tune", str(args.data), "--out", str(root / "tuned"), "--trials",
                                      str(args.trials), "--max-time", f"{args.max_time:g}", *common)
        study = json.loads((root / "tuned" / "study.json").read_text())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    machine = machine_record(("optuna", "torch", "transformers", "headstart"), load_before=load_before,
                             names={**LOADAVG_NAMES, "threads": "torch_threads"})
    states = [trial["state"] for trial in study["trials"]]
    counts = {state: states.count(state) for state in sorted(set(states))}
    defaults_acc, tuned_acc = defaults["test"]["accuracy"], study["test"]["accuracy"]
    trials_cell = f"{counts.get('COMPLETE', 0)} complete, {counts.get('PRUNED', 0)} pruned"
    rows = [
        ["`fit --strategy finetune` (defaults)", f"{defaults['val']['accuracy']:.1%}", f"{defaults_acc:.1%}",
         f"{fit_wall:.0f}", f"{fit_cpu:.0f}", "–"],
        [f"`tune --strategy finetune --trials {args.trials} --max-time {args.max_time:g}`",
         f"{study['best']['value']:.1%}", f"{tuned_acc:.1%}", f"{tune_wall:.0f}", f"{tune_cpu:.0f}", trials_cell],
    ]
    columns = [f"run (seed {args.seed})", "val accuracy", "test accuracy", "wall s", "CPU s", "trials"]
    print_table(columns, rows)
    print(f"best settings: {study['best']['params']}; tuned - defaults: {(tuned_acc - defaults_acc) * 100:+.1f} pts")
    print(f"load average before {load_before[0]:.2f}, after {machine['loadavg_after'][0]:.2f}; "
          f"{os.cpu_count()} CPUs")
    write_result(args.json, {
        **machine, "data": args.data.name, "seed": args.seed, "settings": args.settings,
        "defaults": {"test": defaults["test"], "val": defaults["val"], "seconds": fit_wall, "cpu_seconds": fit_cpu},
        "tuned": {"test": study["test"], "best": study["best"], "defaults_trial": study["defaults"],
                  "trials": study["trials"], "trial_states": counts, "importances": study["importances"],
                  "seconds": tune_wall, "cpu_seconds": tune_cpu},
        "target_met": tuned_acc >= defaults_acc, "readme_table": {"columns": columns, "rows": rows},
    })


if __name__ == "__main__":
    main()
