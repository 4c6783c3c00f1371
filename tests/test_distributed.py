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
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", str(script)], capture_output=True, text=True, timeout=120,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    first, second = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
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
