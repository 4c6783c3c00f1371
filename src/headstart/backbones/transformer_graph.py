"""ONNX Runtime's transformer fusions for an exported BERT-like text encoder.

ONNX Runtime's session optimizer fuses little of a transformer exported op by op. Its Python transformer
optimizer (``onnxruntime.transformers.optimizer``) rewrites each layer's attention subgraph into one
``Attention`` kernel, the embeddings' sums and layer norm into ``EmbedLayerNormalization``, each residual add and
layer norm into ``SkipLayerNormalization`` and each bias and GELU into ``BiasGelu``. It recognises the attention
subgraph that eager attention exports, not PyTorch's fused scaled-dot-product attention (measured on MiniLM:
no ``Attention`` fusion from an SDPA export, all six layers fused from an eager one), so the encoder is
exported with eager attention (:func:`eager_attention`); the two compute the same embeddings.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

#: The fused kernels the optimizer writes, in ONNX Runtime's ``com.microsoft`` operator domain.
FUSED_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class TransformerFusion:
    """Fuses an exported encoder's graph (ONNX Runtime's optimizer, ``model_type="bert"``).

    Args:
        num_heads: Attention heads per layer, from the model's config (``num_attention_heads``).
        hidden_size: Width of the hidden states, from the model's config.
    """

    num_heads: int
    hidden_size: int

    @classmethod
    def of(cls, config: Any) -> TransformerFusion | None:
        """The fusion for a transformers config, or ``None`` when it names no attention heads or hidden size
        (not a BERT-like encoder)."""
        heads, hidden = getattr(config, "num_attention_heads", None), getattr(config, "hidden_size", None)
        return cls(int(heads), int(hidden)) if isinstance(heads, int) and isinstance(hidden, int) else None

    def __call__(self, graph: Path, out: Path) -> None:
        """Write the fused version of ``graph`` to ``out``.

        Raises:
            RuntimeError: The optimizer fused no attention layer: the graph is not one it understands, and
                running it unfused is as fast.
        """
        from onnxruntime.transformers.optimizer import optimize_model

        # opt_level 0: only the Python fusions; the session applies ONNX Runtime's own optimizations when it
        # loads the graph, for the CPU it runs on.
        model = optimize_model(str(graph), model_type="bert", num_heads=self.num_heads,
                               hidden_size=self.hidden_size, opt_level=0)
        if not model.get_fused_operator_statistics().get("Attention"):
            raise RuntimeError("ONNX Runtime's transformer optimizer found no attention layer to fuse")
        model.save_model_to_file(str(out))


def fused_operators(graph: Path) -> dict[str, int]:
    """How many of each fused ONNX Runtime kernel (``Attention``, ``SkipLayerNormalization``...) ``graph``
    holds; empty for a graph the optimizer did not fuse."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    return dict(collections.Counter(node.op_type for node in model.graph.node if node.domain == FUSED_DOMAIN))


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model`` (a transformers model) computes attention eagerly, op by op, as the
    optimizer's fusions expect; unchanged for a model that has no other implementation to switch from."""
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    switch = getattr(model, "set_attn_implementation", None)
    if previous in (None, "eager") or switch is None:
        yield
        return
    try:
        switch("eager")
    except (ValueError, ImportError, AttributeError):  # an architecture without eager attention: export as is
        yield
        return
    try:
        yield
    finally:
        switch(previous)
