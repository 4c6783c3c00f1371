"""Training checkpoints: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint folder holds ``state.json`` and the ``tensors-<n>.safetensors`` file it names. The tensors are
written first and ``state.json`` is replaced last, in one rename, so a run killed at any instant leaves
either the previous checkpoint or the new one, never a mix. Nothing is unpickled on load.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from headstart.data.base import Dataset
from headstart.errors import HeadstartError, HeadstartWarning, option
from headstart.io import write_json
from headstart.training.network import Classifier
from headstart.training.stages import Stage

STATE_FILE = "state.json"
#: The checkpoint folder inside a run's working folder; dropped when the finished run is published.
CHECKPOINT_DIR = "checkpoint"


class CheckpointMismatchError(HeadstartError):
    """A checkpoint in the working folder was written by a run with other settings, data or weights."""


class CheckpointDamagedError(HeadstartError):
    """A checkpoint in the working folder cannot be read (a truncated or edited file)."""


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of named tensors' names, dtypes, shapes and values (independent of memory format)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def run_fingerprint(run_key: dict[str, Any], *, seed: int, stages: list[Stage], net: Classifier,
                    train_data: Dataset, val_data: Dataset | None, processes: int) -> str:
    """A hash of what identifies a run: a checkpoint is resumed only by a run with the same fingerprint.

    Args:
        run_key: The strategy's name and settings.
        seed: The run's seed.
        stages: Its stages.
        net: The network before training (its configuration and initial weights count).
        train_data: Training examples and labels.
        val_data: Validation examples and labels, or ``None``.
        processes: Number of data-parallel processes (each trains on its own shard).
    """
    key = {
        "run": run_key,
        "seed": seed,
        "stages": [asdict(s) for s in stages],
        "backbone": net.backbone.config(),
        "initial_weights": tensor_digest(net.state_dict()),
        "train": _data_digest(train_data),
        "val": _data_digest(val_data),
        "processes": processes,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _data_digest(data: Dataset | None) -> str | None:
    if data is None:
        return None
    return hashlib.sha256(data.content_hash().encode() + data.labels.tobytes()).hexdigest()


def save_checkpoint(folder: Path, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write a checkpoint atomically, then remove the tensors of the previous one.

    Args:
        folder: The checkpoint folder (created if missing).
        state: JSON-ready training state; must hold an integer ``"serial"`` that grows with every save.
        tensors: Named tensors (model, best weights, optimizer state).
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = f"tensors-{state['serial']:06d}.safetensors"
    tmp = folder / f".{name}.tmp"
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp))
    tmp.replace(folder / name)
    write_json(folder / STATE_FILE, {**state, "tensors": name})
    for old in folder.glob("tensors-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(folder: Path, fingerprint: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The checkpoint in ``folder`` as ``(state, tensors)``, or ``None`` if there is none.

    Raises:
        CheckpointMismatchError: The checkpoint's fingerprint differs from ``fingerprint``.
        CheckpointDamagedError: A checkpoint file is truncated or not what headstart wrote.
    """
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    state = _read_state(folder)
    if state.get("fingerprint") != fingerprint:
        raise CheckpointMismatchError(
            f"{folder} holds a checkpoint of a different run (other strategy settings, data, backbone "
            f"weights or number of processes), so it cannot be resumed. Delete {folder} to start over, or "
            "use another output folder.")
    try:
        tensors = load_file(str(folder / state["tensors"]))
    except (KeyError, TypeError, OSError, SafetensorError) as err:
        raise _damaged(folder, err) from None
    return state, tensors


def discard_damaged_checkpoint(folder: Path) -> bool:
    """Remove the checkpoint in ``folder`` if it cannot be read (``fit --force`` starts over from it); returns
    whether it did, with a warning."""
    if not (folder / STATE_FILE).is_file():
        return False
    try:
        state = _read_state(folder)
        load_file(str(folder / state["tensors"]))
    except (CheckpointDamagedError, KeyError, TypeError, OSError, SafetensorError) as err:
        shutil.rmtree(folder, ignore_errors=True)  # every process of a torchrun launch may get here
        warnings.warn(f"removed the damaged checkpoint in {folder} ({err}); training starts over",
                      HeadstartWarning, stacklevel=2)
        return True
    return False


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as err:
        raise _damaged(folder, err) from None
    if not isinstance(state, dict):
        raise _damaged(folder, f"{STATE_FILE} is not a JSON object")
    return state


def _damaged(folder: Path, reason: object) -> CheckpointDamagedError:
    return CheckpointDamagedError(f"the checkpoint in {folder} is damaged ({reason}), so the run cannot resume "
                                  f"from it; delete {folder} to start over, or run it again with "
                                  f"{option('force', True)}")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split an optimizer's state dict into JSON (param groups, scalars) and tensors ``optim.<id>.<key>``."""
    full = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in full["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return {"param_groups": full["param_groups"], "scalars": scalars}, tensors


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any],
                      tensors: dict[str, torch.Tensor]) -> None:
    """Load what :func:`optimizer_tensors` split back into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in saved["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
