"""Randomness of a training run: re-seeded per ``(seed, epoch, process)``, the caller's streams kept."""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def preserved_global_rng() -> Iterator[None]:
    """Put the global random generators (Python, NumPy, torch, CUDA) back as they were on exit.

    The loop re-seeds them every epoch; the caller's random streams continue as if it had not run.
    """
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed the global generators from ``(seed, epoch, rank)``, so an epoch's randomness (augmentation,
    dropout, loader workers) is the same whether the run got there in one go or resumed."""
    derived = int.from_bytes(hashlib.sha256(f"{seed}:{epoch}:{rank}".encode()).digest()[:4], "little")
    random.seed(derived)
    np.random.seed(derived)
    torch.manual_seed(derived)
