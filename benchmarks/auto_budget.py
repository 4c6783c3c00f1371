"""How much time ``auto`` should allow fine-tuning on text: ``headstart fit --strategy auto`` with
``finetune_cost`` (fine-tuning's time allowance, a multiple of the probe's) at each value given, on text tasks
where fine-tuning MiniLM is known to gain (WordNet nouns and verbs at 64 per class) and one where it is not
(fortunes at 50 per class), 3 seeds, the same samples as ``benchmarks/fewshot.py`` and ``benchmarks/suite.py``;
``demo-text`` is what ``make demo-text`` fits (the committed WordNet noun split, 100 per class). ``--finetune
always`` skips ``auto``'s gates (learning curve, time allowance) to show what fine-tuning would have given where
they said no; it then has the whole budget (300 s).

Each run is one ``fit`` in a child process (no feature cache: extraction is part of the probe's time, as on a
first run), recording test accuracy, wall and CPU seconds, what ``auto`` chose and why. ``auto`` decides from
a timed training pass, so its decision near the allowance depends on the machine's load: each row keeps the
load average at its end. ``--rerun`` fits with a fresh feature cache and then again with the cache filled, as a
user's second run would, and records whether the second gave the same model's accuracy and choice.

Rows carry the ``code`` they measured: ``gated`` (rows without one: a learning-curve gate on text too, fine-tuning
cut at its time allowance), ``planned`` (text not gated; the epochs the allowance holds are planned, at least 3;
the decision is remembered) or ``steps`` (as planned, but on small data only when the planned epochs hold at least
``min_finetune_steps`` = 50 optimizer steps), the default now.

    OMP_NUM_THREADS=1 python benchmarks/auto_budget.py --costs 5,10            # the gated rows (older code)
    OMP_NUM_THREADS=2 python benchmarks/auto_budget.py --costs 10 --tasks demo-text,fortunes --seeds 0 --finetune always
    OMP_NUM_THREADS=2 python benchmarks/auto_budget.py --costs 30 --code steps [--rerun --seeds 0]

Rows are appended to the JSON as they finish (a stopped run resumes, skipping finished rows).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from records import machine_record, print_table, write_result

HERE = Path(__file__).resolve().parent
TASKS = {"verb": 64, "noun": 64, "fortunes": 50, "demo-text": 100}


def run_one(task: str, shots: int, seed: int, cost: float, finetune: str = "auto", code: str = "gated",
            rerun: bool = False) -> dict:
    """One ``fit --strategy auto`` (in this process) and its record; ``rerun``: with a fresh feature cache, then
    again with it filled."""
    sys.path.insert(0, str(HERE))
    import fewshot
    import headstart
    import suite
    from headstart.data import DataSplits, load_dataset

    if task == "demo-text":
        splits = load_dataset(HERE.parent / "examples" / "wordnet-supersenses")
    elif task == "fortunes":
        pool, test = suite._fortunes()
        splits = DataSplits(train=pool.subset(suite.sample(pool.labels, shots, seed)), val=None, test=test,
                            source="fortunes")
    else:
        splits = fewshot.task_splits(task, shots, seed)
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder) if rerun else False
        fits = []
        for _ in range(2 if rerun else 1):
            started, cpu = time.perf_counter(), time.process_time()
            model = headstart.fit(splits, backbone="minilm", strategy="auto", seed=seed, cache=cache, progress=False,
                                  settings={"finetune_cost": cost, "finetune": finetune})
            fits.append((model, time.perf_counter() - started, time.process_time() - cpu))
    (model, wall, cpu), record = fits[0], fits[0][0].metrics["train"]["auto"]
    row = {"task": task, "per_class": shots, "seed": seed, "finetune_cost": cost, "finetune_setting": finetune,
           "code": code, "accuracy": model.metrics["test"]["accuracy"], "wall_seconds": wall, "cpu_seconds": cpu,
           "probe_cpu_seconds": record.get("probe_cpu_seconds"),
           "winner": record["winner"], "finetune": record["finetune"], "finetune_settings": record.get(
               "finetune_settings"), "finetune_result": record.get("finetune_result"),
           "load_average": list(os.getloadavg())}
    if rerun:
        again, wall, cpu = fits[1]
        row.update(rerun_accuracy=again.metrics["test"]["accuracy"], rerun_winner=again.metrics["train"]["auto"][
            "winner"], rerun_wall_seconds=wall, rerun_cpu_seconds=cpu)
    return row


def table(rows: list[dict]) -> dict:
    """Per task and cost: accuracy and CPU seconds over seeds, and how often fine-tuning was tried and kept."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        code = r.get("code", "gated") + (", re-run" if "rerun_accuracy" in r else "")
        groups.setdefault((r["task"], r["per_class"], _allowance(r), code), []).append(r)

    def spread(values: list[float], scale: float = 1.0) -> str:
        values = scale * np.asarray(values)
        return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}" if len(values) > 1 else f"{values.mean():.1f}"

    def reruns(group: list[dict]) -> str:
        again = [r for r in group if "rerun_accuracy" in r]
        same = sum(r["rerun_accuracy"] == r["accuracy"] and r["rerun_winner"] == r["winner"] for r in again)
        return f"{same} of {len(again)}" if again else ""

    body = [[task, str(shots), allowance, code, str(len(group)), spread([r["accuracy"] for r in group], 100),
             spread([r["cpu_seconds"] for r in group]),
             str(sum(r["finetune"].startswith("tried") for r in group)),
             str(sum(r["winner"] == "finetune" for r in group)), reruns(group)]
            for (task, shots, allowance, code), group in sorted(groups.items(), key=lambda item: (
                item[0][:2], item[0][3], _order(item[0][2])))]
    return {"columns": ["task", "per class", "fine-tuning allowance", "code", "seeds", "accuracy %", "CPU s",
                        "fine-tuning tried", "fine-tuning kept", "re-run same"], "rows": body}


def _order(allowance: str) -> float:
    """Where an allowance sorts: ``never`` first, ``always`` last."""
    return {"never": -1.0, "always": float("inf")}.get(allowance) or float(allowance.rstrip("x"))


def _allowance(row: dict) -> str:
    """``finetune_cost`` as a multiple of the probe's time, or ``always`` / ``never`` (rows from before the
    setting: auto)."""
    setting = row.get("finetune_setting", "auto")
    return setting if setting != "auto" else f"{row['finetune_cost']:g}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--costs", default="5,10")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "auto_budget.json")
    parser.add_argument("--finetune", choices=["auto", "always", "never"], default="auto",
                        help="auto's finetune setting: auto (its gates decide), always, or never (the frozen-feature "
                             "choice alone, the probe row)")
    parser.add_argument("--code", choices=["gated", "planned", "steps"], default="steps",
                        help="what the rows measure (older code: gated before the epochs were planned, planned "
                             "before the min_steps floor)")
    parser.add_argument("--rerun", action="store_true", help="fit again with the feature cache filled")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(**json.loads(args.one))))
        return
    load_before = os.getloadavg()
    rows = json.loads(args.json.read_text())["rows"] if args.json.is_file() else []
    done = {(r["task"], r["seed"], r["finetune_cost"], r.get("finetune_setting", "auto"), r.get("code", "gated"),
             "rerun_accuracy" in r) for r in rows}
    for cost in map(float, args.costs.split(",")):
        for task in args.tasks.split(","):
            for seed in map(int, args.seeds.split(",")):
                if (task, seed, cost, args.finetune, args.code, args.rerun) in done:
                    continue
                spec = json.dumps({"task": task, "shots": TASKS[task], "seed": seed, "cost": cost,
                                   "finetune": args.finetune, "code": args.code, "rerun": args.rerun})
                out = subprocess.run([sys.executable, __file__, "--one", spec], check=True, capture_output=True,
                                     text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                print(f"{task} seed {seed} cost {cost:g}: {rows[-1]['accuracy']:.3f}, {rows[-1]['winner']}, "
                      f"{rows[-1]['cpu_seconds']:.0f} CPU s", flush=True)
                write_result(args.json, {**machine_record(("torch", "transformers"), load_before=load_before),
                                         "rows": rows, "readme_table": table(rows)})
    print_table(**table(rows))


if __name__ == "__main__":
    main()
