"""Training batches of texts are grouped by length (less padding), seeded per epoch and resumable."""

from __future__ import annotations

import numpy as np
import torch

from headstart.backbones import create_backbone
from headstart.data.base import Dataset
from headstart.strategies import get_strategy
from headstart.training import FitContext
from headstart.training.batches import shuffled_batches
from training_support import TinyImageBackbone, TinyTextBackbone, color_images


def epoch_batches(lengths, epoch, *, batch_size=8, seed=0, world=1, rank=0):
    loader, sampler = shuffled_batches(len(lengths), list, batch_size, seed=seed, rank=rank, world=world,
                                       lengths=lengths)
    sampler.set_epoch(epoch)
    return list(loader)


def padded_tokens(lengths, batches):
    return sum(len(batch) * int(lengths[batch].max()) for batch in map(np.array, batches))


def test_grouped_batches_cover_every_example_once_with_less_padding():
    lengths = np.random.default_rng(0).integers(3, 60, size=400)
    grouped = epoch_batches(lengths, 0)
    assert sorted(i for batch in grouped for i in batch) == list(range(400))
    loader, sampler = shuffled_batches(400, list, 8, seed=0, rank=0, world=1)
    sampler.set_epoch(0)
    plain = list(loader)
    assert padded_tokens(lengths, grouped) < 0.7 * padded_tokens(lengths, plain)


def test_grouped_batches_are_seeded_per_epoch():
    lengths = np.random.default_rng(1).integers(3, 60, size=200)
    assert epoch_batches(lengths, 3) == epoch_batches(lengths, 3), "an epoch replays exactly (resume)"
    assert epoch_batches(lengths, 3) != epoch_batches(lengths, 4)
    assert epoch_batches(lengths, 3) != epoch_batches(lengths, 3, seed=1)


def test_grouped_shards_of_two_processes_are_disjoint():
    lengths = np.random.default_rng(2).integers(3, 60, size=201)
    shards = [{i for batch in epoch_batches(lengths, 0, world=2, rank=r) for i in batch} for r in (0, 1)]
    assert not shards[0] & shards[1]
    assert len(shards[0]) == len(shards[1]) == 100


def test_text_backbones_report_token_counts_and_images_none(tiny_bert):
    backbone = create_backbone(f"hf:{tiny_bert}")
    texts = ["a", "a much longer text than the first one"]
    counts = backbone.input_lengths(texts)
    np.testing.assert_array_equal(counts, [len(backbone.collate([t])["input_ids"][0]) for t in texts])
    assert TinyImageBackbone().input_lengths(color_images(4).items) is None


class TokenCountingBackbone(TinyTextBackbone):
    """Counts the token positions (padding included) its network trains on."""

    trained_tokens = 0

    def forward(self, batch):
        if torch.is_grad_enabled():
            self.trained_tokens += batch["input_ids"].numel()
        return super().forward(batch)


def varied_texts(n: int) -> Dataset:
    rng = np.random.default_rng(0)
    texts = [("zzzz" if i % 2 else "xxxx") + " and so on" * int(rng.integers(0, 3)) for i in range(n)]
    return Dataset(texts, np.arange(n) % 2, ["neg", "pos"], "text")


def test_finetune_trains_on_fewer_padded_tokens_with_grouping(tmp_path):
    data = varied_texts(40)
    train, val = data.subset(range(32)), data.subset(range(32, 40))
    tokens = {}
    for group in (True, False):
        model = get_strategy("finetune", batch_size=4, head_epochs=1, epochs=2, min_steps=0, patience=None,
                             refit="never", group_by_length=group).fit(TokenCountingBackbone(), train, val,
                                                        FitContext(tmp_path / str(group), progress=False))
        assert model.metrics["train"]["stages_run"] == ["head", "all"]
        tokens[group] = model.backbone.trained_tokens
    assert tokens[True] < 0.9 * tokens[False]
