"""Agreement between the processes of a data-parallel run (``torchrun``); each is a no-op with one process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from accelerate import Accelerator


def all_sum(accelerator: Accelerator, values: list[float]) -> list[float]:
    """``values`` summed over the processes (in float64, so counts stay exact)."""
    if accelerator.num_processes == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(tensor, "sum").tolist()


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    """Whether ``flag`` is true on any process, so that every process takes the same decision."""
    if accelerator.num_processes == 1:
        return flag
    tensor = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(tensor, "max").item())


def average_buffers(accelerator: Accelerator, module: nn.Module) -> None:
    """Replace every floating-point buffer of ``module`` (BatchNorm statistics) by its mean over the processes."""
    if accelerator.num_processes == 1:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                buffer.copy_(accelerator.reduce(buffer, "mean"))
