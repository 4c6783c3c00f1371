"""Does `headstart tune` beat the defaults? `fit --strategy finetune` against `tune --strategy finetune` on WordNet.

Runs, as a user would and with the same seed, ``headstart fit examples/wordnet-supersenses --strategy finetune``
(the defaults) and ``headstart tune examples/wordnet-supersenses --strategy finetune --trials 12 --max-time 1500``
(Optuna; trials scored on validation data, the chosen trial refit and tested once), one after the other, and compares
their test accuracy and wall time. Prints a table and writes JSON (default benchmarks/results/tune_wordnet.json).

    OMP_NUM_THREADS=2 python benchmarks/tune_wordnet.py --trials 12 --max-time 1500 --seeds 0,1

About 12 minutes per seed on a quiet 2-core machine. When tune keeps the defaults because the best trial's lead
on validation is within one standard error, the best trial is also refit, to show what the rule avoided.
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

DATA = Path(__file__).parent.parent / "examples" / "wordnet-supersenses"


def run_cli(*arguments: str) -> tuple[float, float]:
    """Run ``headstart ARGUMENTS`` in a fresh process; return its wall seconds and CPU seconds (user + system)."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "headstart", *arguments], check=True)
    wall = time.perf_counter() - started
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def settings_args(params: dict) -> list[str]:
    """``--set key=value`` arguments holding a trial's settings."""
    return [part for key, value in params.items() for part in ("--set", f"{key}={value}")]


def run_seed(args: argparse.Namespace, seed: int, root: Path) -> dict:
    """Defaults, tune (its chosen trial refit) and, when the rule kept the defaults, the best trial refit too."""
    common = ["--strategy", "finetune", "--seed", str(seed), "-q",
              *(part for setting in args.settings for part in ("--set", setting))]
    fit_wall, fit_cpu = run_cli("fit", str(args.data), "--out", str(root / "defaults"), *common)
    defaults = json.loads((root / "defaults" / "metrics.json").read_text())
    tune_wall, tune_cpu = run_cli("tune", str(args.data), "--out", str(root / "tuned"), "--trials",
                                  str(args.trials), "--max-time", f"{args.max_time:g}", *common)
    study = json.loads((root / "tuned" / "study.json").read_text())
    best_test = study["test"]["accuracy"]
    if study["chosen"]["number"] != study["best"]["number"]:  # what refitting the best trial would have scored
        run_cli("fit", str(args.data), "--out", str(root / "best"), *common, *settings_args(study["best"]["params"]))
        best_test = json.loads((root / "best" / "metrics.json").read_text())["test"]["accuracy"]
    states = [trial["state"] for trial in study["trials"]]
    return {"seed": seed, "defaults": {"test": defaults["test"]["accuracy"], "val": defaults["val"]["accuracy"],
                                       "seconds": fit_wall, "cpu_seconds": fit_cpu},
            "tuned": {"test": study["test"]["accuracy"], "chosen": study["chosen"], "best": study["best"],
                      "best_refit_test": best_test, "selection": study["selection"],
                      "defaults_trial": study["defaults"], "importances": study["importances"],
                      "trial_states": {state: states.count(state) for state in sorted(set(states))},
                      "seconds": tune_wall, "cpu_seconds": tune_cpu}}


def table(runs: list[dict]) -> dict:
    """One row per seed and a mean row: defaults, the best trial, the chosen trial."""
    columns = ["seed", "defaults: val / test", "best trial: val / test", "refit by tune", "tune test",
               "tune - defaults", "tune wall s / CPU s", "trials"]
    rows = []
    for run in runs:
        d, t = run["defaults"], run["tuned"]
        kept = t["selection"].get("kept_defaults")
        rows.append([str(run["seed"]), f"{d['val']:.1%} / {d['test']:.1%}",
                     f"{t['best']['value']:.1%} / {t['best_refit_test']:.1%}",
                     "defaults (lead within 1 SE)" if kept else f"trial {t['chosen']['number']}", f"{t['test']:.1%}",
                     f"{(t['test'] - d['test']) * 100:+.1f} pts", f"{t['seconds']:.0f} / {t['cpu_seconds']:.0f}",
                     f"{t['trial_states'].get('COMPLETE', 0)} complete, {t['trial_states'].get('PRUNED', 0)} pruned"])
    if len(runs) > 1:
        gains = [(r["tuned"]["test"] - r["defaults"]["test"]) * 100 for r in runs]
        best_gains = [(r["tuned"]["best_refit_test"] - r["defaults"]["test"]) * 100 for r in runs]
        rows.append(["mean", "", f"best - defaults {statistics.mean(best_gains):+.1f} pts", "",
                     "", f"{statistics.mean(gains):+.1f} ± {statistics.stdev(gains):.1f} pts", "", ""])
    return {"columns": columns, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-time", type=float, default=1500)
    parser.add_argument("--seeds", default="0", help="Comma-separated seeds, one study each.")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE",
                        help="Setting held fixed in every run (e.g. to try the script on tiny data quickly).")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "tune_wordnet.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        root = Path(tempfile.mkdtemp(prefix="headstart-tune-bench-"))
        try:
            runs.append(run_seed(args, seed, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        machine = machine_record(("optuna", "torch", "transformers", "headstart"), load_before=load_before,
                                 names={**LOADAVG_NAMES, "threads": "torch_threads"})
        readme = table(runs)
        print_table(**readme)
        print(f"load average before {load_before[0]:.2f}, after {machine['loadavg_after'][0]:.2f}; "
              f"{os.cpu_count()} CPUs", flush=True)
        write_result(args.json, {  # after every seed, so a long run leaves what it measured
            **machine, "data": args.data.name, "trials": args.trials, "max_time": args.max_time,
            "settings": args.settings, "runs": runs,
            "target_met": all(r["tuned"]["test"] >= r["defaults"]["test"] for r in runs), "readme_table": readme})


if __name__ == "__main__":
    main()
