"""Data-parallel training with torchrun: two CPU processes (gloo) train on disjoint shards and end identical.

Deselect with ``-m "not distributed"`` where spawning processes is not possible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TESTS = Path(__file__).parent


def run_on_two_processes(worker: str, tmp_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run the script ``worker`` (a template of ``tests`` and ``out``) under torchrun with two processes and return
    the weights each rank saved. The workers get one thread each and the caller's PYTHONPATH (so they import the
    headstart under test, not another install)."""
    script = tmp_path / "worker.py"
    script.write_text(worker.format(tests=str(TESTS), out=str(tmp_path)))
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", str(script)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    return first, second


WORKER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from safetensors.torch import save_file
    from training_support import TinyImageBackbone, color_images
    from headstart.strategies import get_strategy
    from headstart.training import FitContext

    out = Path({out!r})
    rank = int(os.environ["RANK"])
    backbone = TinyImageBackbone()
    data = color_images(32)
    model = get_strategy("finetune", batch_size=4, head_epochs=1, epochs=1, lr=1e-2, patience=None).fit(
        backbone, data.subset(range(24)), data.subset(range(24, 32)), FitContext(out / "work", progress=False))
    tensors = {{f"body.{{k}}": v.contiguous() for k, v in model.backbone.module.state_dict().items()}}
    tensors.update({{f"head.{{k}}": v.contiguous() for k, v in model.head.state_dict().items()}})
    save_file(tensors, str(out / f"rank{{rank}}.safetensors"))
    (out / f"rank{{rank}}.json").write_text(json.dumps({{"seen": model.backbone.seen,
                                                        "history": model.metrics["train"]["history"]}}))
""")


@pytest.mark.distributed
def test_torchrun_two_processes_shard_data_and_end_identical(tmp_path):
    first, second = run_on_two_processes(WORKER, tmp_path)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key

    seen = [json.loads((tmp_path / f"rank{r}.json").read_text())["seen"] for r in (0, 1)]
    per_epoch = 24 // 2
    for epoch in range(2):
        shards = [set(s[epoch * per_epoch:(epoch + 1) * per_epoch]) for s in seen]
        assert len(shards[0]) == len(shards[1]) == per_epoch  # each rank sees half, no repeats
        assert not shards[0] & shards[1]  # disjoint
    histories = [json.loads((tmp_path / f"rank{r}.json").read_text())["history"] for r in (0, 1)]
    assert histories[0] == [{**h, "seconds": histories[0][i]["seconds"]} for i, h in enumerate(histories[1])]


DANN_WORKER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import numpy as np
    from safetensors.torch import save_file
    from training_support import TinyImageBackbone, color_images, unlabeled_images
    from headstart.strategies import get_strategy
    from headstart.strategies.dann import DANN
    from headstart.training import FitContext

    out = Path({out!r})
    rank = int(os.environ["RANK"])
    schedule = {{}}
    final_head = DANN.final_head

    def recording_final_head(self, head):  # where the reversal schedule got to
        schedule.update(steps=int(head.steps), total=head.total_steps)
        return final_head(self, head)

    DANN.final_head = recording_final_head
    data = color_images(32)
    model = get_strategy("dann", batch_size=4, head_epochs=1, epochs=1, lr=1e-2, patience=None).fit(
        TinyImageBackbone(), data.subset(range(24)), data.subset(range(24, 32)),
        FitContext(out / "work", progress=False, target=unlabeled_images(12)))
    tensors = {{f"body.{{k}}": v.contiguous() for k, v in model.backbone.module.state_dict().items()}}
    tensors.update({{f"head.{{k}}": v.contiguous() for k, v in model.head.state_dict().items()}})
    save_file(tensors, str(out / f"rank{{rank}}.safetensors"))
    (out / f"rank{{rank}}.json").write_text(json.dumps(schedule))
""")


@pytest.mark.distributed
def test_torchrun_dann_ends_identical_and_completes_its_reversal_schedule(tmp_path):
    first, second = run_on_two_processes(DANN_WORKER, tmp_path)
    assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)
    schedules = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # The schedule ends where it should (strength ~1): 2 stages x 1 epoch of 12 examples per process, batches of 4.
    assert schedules[0] == schedules[1] == {"steps": 6, "total": 6}, schedules
