"""Backbones from transformers: a plain Hugging Face encoder or a sentence-transformers folder.

Reference: ``hf:<hub-id>`` (needs internet once) or ``hf:/path/to/folder`` (works offline). A folder of
another modality (an audio model's, recognised by its feature extractor) is built by the loader that
modality's backbone file adds to :data:`HF_FOLDER_LOADERS`; the rest of this module is about text. In a
sentence-transformers folder the pooling (``1_Pooling/config.json``), L2 normalization (a ``Normalize``
module) and maximum sequence length (``sentence_bert_config.json``) are read from its files, so the embeddings
equal ``SentenceTransformer(folder).encode(...)``; a plain encoder gets mean pooling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from headstart.backbones.base import Backbone, TextPreprocess, restore_preprocess
from headstart.backbones.engine import ExtractionEngine, OnnxEngine, tune_runtime
from headstart.backbones.hub import hub_access
from headstart.backbones.references import register_backbone
from headstart.errors import BackboneError, option

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

POOLINGS = ("mean", "cls", "max")
_ST_PREFIX = "sentence_transformers.models."
_ST_SUPPORTED = {"Transformer", "Pooling", "Normalize"}
_ST_POOLINGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                "pooling_mode_max_tokens": "max"}
# Where common encoder architectures keep their token embeddings and their stack of transformer layers.
_EMBEDDINGS = ("embeddings", "embed_tokens", "wte")
_LAYER_STACKS = ("encoder.layer", "encoder.layers", "transformer.layer", "layers", "layer", "h")
# Texts of different lengths (so padding and the attention mask are exercised) for the ONNX parity check.
_PARITY_TEXTS = ["A short one.", "A somewhat longer sentence, with punctuation and a few more words in it.",
                 "Two words"]
#: The shortest text a batch takes, as a fraction of its longest (in tokens): measured on WordNet glosses, 0.9
#: keeps padding to 4% of the real tokens in batches of at most 64.
LENGTH_BUCKET_FILL = 0.9
_HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "1_Pooling/*", "2_Normalize/*"]

#: ``(recognises(folder), load(folder, ref, saved preprocessing dict))`` for transformers folders that are not
#: text encoders; the first that recognises a folder builds its backbone.
HF_FOLDER_LOADERS: list[tuple[Callable[[Path], bool], Callable[[Path, str, dict[str, Any] | None], Backbone]]] = []


class TransformerTextBackbone(Backbone):
    """A transformers encoder with pooling: texts to sentence embeddings.

    Args:
        model: The encoder (``AutoModel``).
        tokenizer: Its tokenizer.
        ref: The reference that rebuilds it.
        pooling: ``"mean"`` (over non-padding tokens), ``"cls"`` (first token) or ``"max"``.
        normalize: L2-normalize the pooled embeddings.
        preprocess: Maximum length and lowercasing.
        engine: Frozen extraction engine for :meth:`embed` (:class:`~headstart.backbones.engine.ExtractionEngine`):
            ``"auto"`` (ONNX Runtime while the weights are the loaded ones), ``"onnx"``, ``"int8"`` or ``"torch"``.
    """

    modality = "text"
    # Measured on WordNet glosses (about 14 tokens), 2 quiet cores: two single-threaded runs gave 1.25x the texts per
    # second of one run on two threads (benchmarks/feature_extraction.py).
    onnx_concurrent_runs = 2

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, ref: str,
                 pooling: str = "mean", normalize: bool = False, preprocess: TextPreprocess | None = None,
                 engine: str = "auto") -> None:
        if pooling not in POOLINGS:
            raise BackboneError(f"pooling {pooling!r} of {ref} is not supported; use one of {POOLINGS}")
        self.extraction_engine = ExtractionEngine(engine)
        tune_runtime()
        self.module = model.eval()
        self.tokenizer = tokenizer
        self.ref = ref
        self.pooling = pooling
        self.normalize = normalize
        self.feature_dim = int(model.config.hidden_size)
        self.preprocess = preprocess or TextPreprocess()
        self.extraction_engine.loaded(self)

    def collate(self, items: Sequence[str], *, augment: str = "off") -> dict[str, torch.Tensor]:
        """Tokenize (padded to the longest text, truncated to ``preprocess.max_length``); ``augment`` is
        ignored."""
        return dict(self._tokenize(items, padding=True, return_tensors="pt"))

    def input_lengths(self, items: Sequence[str]) -> np.ndarray:
        """Token counts of ``items`` after truncation (special tokens included)."""
        return np.array([len(ids) for ids in self._tokenize(items)["input_ids"]], dtype=np.int64)

    def _tokenize(self, items: Sequence[str], **options: Any) -> Any:
        """The tokenizer's encoding of ``items`` as the preprocessing says (lowercased if asked, truncated to
        ``preprocess.max_length``), with the tokenizer's other ``options``."""
        texts = [text.lower() for text in items] if self.preprocess.lowercase else list(items)
        return self.tokenizer(texts, truncation=True, max_length=self.preprocess.max_length, **options)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled (and optionally normalized) embeddings ``[B, feature_dim]``."""
        hidden = self.module(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def layer_groups(self) -> list[nn.Module]:
        """Embeddings, then each transformer layer, then everything else (pooler, final norm)."""
        return stacked_layer_groups(self.module, [next((n for n in _EMBEDDINGS if _has(self.module, n)), "")])

    def extraction(self, progress: bool = False, sample: Any = None) -> Callable[[dict[str, torch.Tensor]], np.ndarray]:
        """ONNX Runtime while the weights are the loaded ones: the encoder, pooling and normalisation as one
        graph with dynamic batch and sequence axes, exported once per weights fingerprint into
        ``<cache>/onnx/`` and checked against PyTorch's embeddings; PyTorch otherwise (with a warning if the
        export or the check failed). Text graphs are quantized dynamically under int8: no ``sample`` is used."""
        if next(self.module.parameters()).device.type != "cpu":
            return self._torch_features

        def build(key: str) -> OnnxEngine:
            example = self.collate(_PARITY_TEXTS)
            return OnnxEngine(_PooledEncoder(self, list(example)), example, key=key,
                              dynamic={name: {1: "sequence"} for name in example},
                              int8=self.extraction_engine.engine == "int8",
                              concurrent_runs=self.onnx_concurrent_runs, progress=progress)

        return self.extraction_engine.session(self, build) or self._torch_features

    def embed(self, items: Sequence[str], *, batch_size: int = 64, progress: bool = False, label: str = ""
              ) -> np.ndarray:
        """Frozen embeddings ``[len(items), feature_dim]``. The texts are tokenized in one call, sorted by
        token count and batched by length (:func:`length_buckets`), each batch padded to its own longest, so
        little of the compute goes to padding (on WordNet glosses, padding adds 4% to the real tokens, against
        63% in batches of 64 sorted by characters)."""
        if not items:  # the tokenizer cannot take an empty list
            return np.empty((0, self.feature_dim), dtype=np.float32)
        encoded = self._tokenize(items)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        buckets = length_buckets(lengths[order], batch_size)

        def padded(rows: np.ndarray) -> dict[str, torch.Tensor]:
            return dict(self.tokenizer.pad({name: [values[i] for i in rows] for name, values in encoded.items()},
                                           return_tensors="pt"))

        features = np.empty((len(items), self.feature_dim), dtype=np.float32)
        features[order] = self.extract((padded(order[bucket]) for bucket in buckets), len(items), len(buckets),
                                       progress=progress, label=label)
        return features


def length_buckets(lengths: np.ndarray, batch_size: int, *, min_fill: float = LENGTH_BUCKET_FILL) -> list[slice]:
    """Consecutive batches of ``lengths`` (sorted longest first) holding at most ``batch_size`` items, a batch
    ending early where the next item is shorter than ``min_fill`` times the batch's longest, so each batch
    is mostly real tokens once padded to its longest.

    Example:
        >>> length_buckets(np.array([20, 19, 10, 9, 9]), 2)
        [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    buckets, start = [], 0
    for end in range(1, len(lengths) + 1):
        if end == len(lengths) or end - start == batch_size or lengths[end] < min_fill * lengths[start]:
            buckets.append(slice(start, end))
            start = end
    return buckets


class _PooledEncoder(nn.Module):
    """A text backbone's :meth:`~TransformerTextBackbone.forward` (encoder, pooling, normalisation) as a module
    taking its inputs positionally, for the ONNX exporter."""

    def __init__(self, backbone: TransformerTextBackbone, names: list[str]) -> None:
        super().__init__()
        self.encoder = backbone.module  # registered, so the exporter sees its weights as the graph's
        self.names, self.backbone_forward = names, backbone.forward
        # The exporter restores the wrapper's mode afterwards, which would otherwise put the encoder in training.
        self.training = backbone.module.training

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.backbone_forward(dict(zip(self.names, inputs, strict=True)))


def _has(module: nn.Module, path: str) -> bool:
    if not path:
        return False
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def stacked_layer_groups(module: nn.Module, bottom: Sequence[str]) -> list[nn.Module]:
    """Layer groups of a transformers model, bottom to top: the ``bottom`` submodules that exist (embeddings,
    an audio model's convolutional feature encoder), each layer of its transformer stack, then every other
    parameter (pooler, final norm); the whole model as one group when it has neither.
    """
    first = [module.get_submodule(name) for name in bottom if _has(module, name)]
    stack = next((module.get_submodule(n) for n in _LAYER_STACKS if _has(module, n)), None)
    if not first or not isinstance(stack, nn.ModuleList):
        return [module]
    groups: list[nn.Module] = [first[0] if len(first) == 1 else nn.ModuleList(first), *stack]
    covered = {id(p) for group in groups for p in group.parameters()}
    rest = [m for m in module.modules() if any(id(p) not in covered for p in m.parameters(recurse=False))]
    return [*groups, nn.ModuleList(rest)] if rest else groups


def load_text_folder(folder: str | Path, *, ref: str, preprocess: TextPreprocess | None = None,
                     trust_remote_code: bool = False, pretrained: bool = True) -> TransformerTextBackbone:
    """A text backbone from a local transformers or sentence-transformers folder.

    Args:
        folder: Holds ``config.json``, the weights and the tokenizer, or a sentence-transformers layout.
        ref: The reference recorded in saved models.
        preprocess: Overrides the folder's maximum length / lowercasing.
        trust_remote_code: Allow model code shipped in the folder to run (off unless you trust its source).
        pretrained: ``False`` builds the network from the folder's config without reading its weights.

    Raises:
        BackboneError: The folder is not a loadable encoder, or uses sentence-transformers modules other
            than Transformer, Pooling and Normalize.
    """
    folder = Path(folder)
    model_dir, pooling, normalize, default = _sentence_transformers_layout(folder)
    # transformers takes seconds to import: only text backbones that are built pay for it.
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # transformers draws a per-tensor "Loading weights" bar even for local files; it says nothing useful and
    # breaks --quiet and piped output.
    hf_logging.disable_progress_bar()
    try:
        if pretrained:
            model = AutoModel.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        else:
            config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
            model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise BackboneError(f"cannot load a transformers encoder from {model_dir} ({str(err)[:300]}); the folder "
                            f"needs config.json, the weights and the tokenizer files") from None
    return TransformerTextBackbone(model, tokenizer, ref=ref, pooling=pooling, normalize=normalize,
                                   preprocess=preprocess or default)


def _sentence_transformers_layout(folder: Path) -> tuple[Path, str, bool, TextPreprocess]:
    # Returns the transformer's folder, pooling, normalization and default preprocessing.
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return folder, "mean", False, TextPreprocess()
    modules = {m["type"].removeprefix(_ST_PREFIX): folder / m.get("path", "")
               for m in json.loads(modules_file.read_text())}
    unsupported = sorted(set(modules) - _ST_SUPPORTED)
    if unsupported or "Transformer" not in modules:
        raise BackboneError(f"{folder} uses sentence-transformers modules {unsupported or 'without Transformer'}; "
                            f"headstart reads Transformer, Pooling and Normalize only")
    model_dir = modules["Transformer"]
    pooling = "mean"
    if "Pooling" in modules:
        config = json.loads((modules["Pooling"] / "config.json").read_text())
        enabled = [key for key, value in config.items() if key.startswith("pooling_mode_") and value]
        if len(enabled) != 1 or enabled[0] not in _ST_POOLINGS:
            raise BackboneError(f"{modules['Pooling']} enables pooling modes {enabled}; headstart supports "
                                f"exactly one of {sorted(_ST_POOLINGS)}")
        pooling = _ST_POOLINGS[enabled[0]]
    bert_config_file = model_dir / "sentence_bert_config.json"
    bert_config = json.loads(bert_config_file.read_text()) if bert_config_file.is_file() else {}
    preprocess = TextPreprocess(max_length=int(bert_config.get("max_seq_length") or 256),
                                lowercase=bool(bert_config.get("do_lower_case", False)))
    return model_dir, pooling, "Normalize" in modules, preprocess


@register_backbone("hf:", modality="text/audio", offline=False,
                   description="a transformers / sentence-transformers text encoder, or an audio encoder "
                               "(wav2vec2, HuBERT, AST): hf:<hub-id> or hf:<folder>")
def hf_backbone(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                allow_download: bool = True) -> Backbone:
    """``hf:<hub-id>`` (downloaded once into the Hugging Face cache; with ``allow_download=False`` only that
    cache is read) or ``hf:<local folder>``; with ``pretrained=False`` a text encoder's weights are not read
    (an audio encoder's are, then replaced by the caller's)."""
    local = Path(argument or "").expanduser()
    if local.is_dir():
        folder, ref = local.resolve(), f"hf:{local.resolve()}"
    elif local.is_absolute() or (argument or "").startswith((".", "~")) or local.exists():
        raise BackboneError(f"{local} is not a folder; pass a model folder or a hub id like "
                            f"'sentence-transformers/all-MiniLM-L6-v2'")
    else:
        from huggingface_hub import snapshot_download

        patterns = _HUB_FILES if pretrained else [p for p in _HUB_FILES if p != "*.safetensors"]
        with hub_access() as unreachable:
            try:
                folder = Path(snapshot_download(argument, allow_patterns=patterns,
                                                local_files_only=not allow_download))
            except Exception as err:  # network, auth and missing-repo errors come in many types
                why = (f"the hub cannot be reached ({unreachable}) and the local cache does not hold it"
                       if unreachable and allow_download else f"{type(err).__name__}: {str(err)[:300]}")
                hint = (f"downloads are off: pass {option('allow_download', True)}" if not allow_download
                        else "without internet, copy the model folder here and use 'hf:<folder>'")
                raise BackboneError(f"could not get {argument!r} from the Hugging Face hub: {why}; {hint}") from None
        ref = f"hf:{argument}"
    for recognises, load in HF_FOLDER_LOADERS:
        if recognises(folder):
            return load(folder, ref, preprocess)
    return load_text_folder(folder, ref=ref, preprocess=restore_preprocess(preprocess, TextPreprocess, ref),
                            pretrained=pretrained)
