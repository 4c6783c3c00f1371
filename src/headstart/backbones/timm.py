"""Image backbones from timm: any timm model, with hub weights or a local weights file.

Reference: ``timm:<model-name>`` (pre-trained weights from the Hugging Face hub) or
``timm:<model-name>@/path/weights.safetensors`` (a local file; ``.pth`` / ``.pt`` / ``.bin`` are read with
``torch.load(weights_only=True)``, never unpickled).
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from headstart.backbones.base import Backbone, ImagePreprocess, SourceHead, restore_preprocess
from headstart.backbones.deferred import DeferredModule
from headstart.backbones.engine import ExtractionEngine, OnnxEngine, tune_runtime
from headstart.backbones.hub import hub_access
from headstart.backbones.references import register_backbone
from headstart.backbones.stages import features_width, keep_stages, stage_features
from headstart.backbones.static_padding import static_same_padding
from headstart.backbones.views import VIEW_COUNTS, view_transform
from headstart.data.image_io import open_image
from headstart.errors import BackboneError, option

AUGMENT_PRESETS = ("off", "light", "strong")
TORCH_SUFFIXES = {".pth", ".pt", ".bin"}


def build_image_transform(preprocess: ImagePreprocess, augment: str = "off", *, tensor: bool = True
                          ) -> Callable[[Any], torch.Tensor]:
    """The torchvision transform from a PIL image to a normalized ``[3, H, W]`` float tensor.

    Args:
        preprocess: The backbone's preprocessing (size, crop, interpolation, normalization).
        augment: ``"off"``: resize the shorter side to ``input_size / crop_pct`` and center-crop (evaluation);
            ``"light"``: random resized crop (scale 0.6-1) and horizontal flip; ``"strong"``: random resized
            crop (scale 0.25-1), flip and TrivialAugmentWide.
        tensor: ``False``: the geometry only, a PIL image out.

    Example:
        >>> transform = build_image_transform(backbone.preprocess, augment="light")
        >>> tensor = transform(open_image("cat.png"))
    """
    from torchvision import transforms as T  # torchvision and timm take seconds to import: only when used

    if augment not in AUGMENT_PRESETS:
        raise ValueError(f"augment must be one of {AUGMENT_PRESETS}, got {augment!r}")
    size = preprocess.input_size
    interpolation = T.InterpolationMode(preprocess.interpolation)
    if augment == "off":
        geometry = [T.Resize(int(size / preprocess.crop_pct), interpolation=interpolation), T.CenterCrop(size)]
    else:
        scale = (0.6, 1.0) if augment == "light" else (0.25, 1.0)
        geometry = [T.RandomResizedCrop(size, scale=scale, interpolation=interpolation), T.RandomHorizontalFlip()]
        if augment == "strong":
            geometry.append(T.TrivialAugmentWide(interpolation=interpolation))
    if not tensor:
        return T.Compose(geometry)
    return T.Compose([*geometry, T.ToTensor(), T.Normalize(preprocess.mean, preprocess.std)])


def preprocess_from_timm(model: nn.Module) -> ImagePreprocess:
    """The evaluation preprocessing in a timm model's ``pretrained_cfg``."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return ImagePreprocess(input_size=int(cfg["input_size"][-1]), crop_pct=float(cfg["crop_pct"]),
                           interpolation=str(cfg["interpolation"]), mean=tuple(map(float, cfg["mean"])),
                           std=tuple(map(float, cfg["std"])))


class TimmBackbone(Backbone):
    """A timm model used as a feature extractor: features are its pooled pre-logits, or with preprocessing
    setting ``stages="last2"`` its last two feature stages pooled (:mod:`headstart.backbones.stages`).

    The model's classifier, if it has a linear one, is kept as :meth:`source_head` and then removed (with
    ``stages="last2"`` it is removed with the rest of what follows the last stage).

    Args:
        model: A timm model, with or without its classifier; or a :class:`DeferredModule` that builds one when
            it is first used (then ``preprocess`` and ``feature_dim`` are required).
        ref: The reference that rebuilds it through :func:`headstart.backbones.create_backbone`.
        preprocess: Preprocessing to use; defaults to the model's ``pretrained_cfg``.
        engine: Frozen extraction engine for :meth:`embed` (:class:`~headstart.backbones.engine.ExtractionEngine`):
            ``"auto"`` (ONNX Runtime while the weights are the loaded ones, PyTorch once they have been changed,
            e.g. by fine-tuning), ``"onnx"``, ``"int8"`` or ``"torch"``.
        feature_dim: The width of the features ``preprocess`` asks for (the pooled pre-logits, or the last two
            stages pooled), for a deferred model, which is then not built until used; a built one tells its own.
    """

    modality = "image"

    def __init__(self, model: nn.Module | DeferredModule, *, ref: str, preprocess: ImagePreprocess | None = None,
                 engine: str = "auto", feature_dim: int | None = None) -> None:
        self.extraction_engine = ExtractionEngine(engine)
        tune_runtime()
        self.ref = ref
        self._transforms: dict[str, Callable[[Any], torch.Tensor]] = {}
        if isinstance(model, DeferredModule):
            if preprocess is None or feature_dim is None:
                raise ValueError("a deferred timm model needs its preprocess and feature_dim")
            self.preprocess, self.feature_dim = preprocess, feature_dim
            # Pooling two stages prunes the classifier away with the rest of what follows them.
            self.defer_module(dataclasses.replace(model, source_head=model.source_head and preprocess.stages == "last"))
            return
        self.preprocess = preprocess or preprocess_from_timm(model)
        self.adopt_module(model)
        self.extraction_engine.loaded(self)
        self.feature_dim = features_width(model, self.preprocess.stages, self.preprocess.input_size, ref)

    def adopt_module(self, module: nn.Module) -> None:
        """Keep the model's linear classifier as :meth:`source_head`, remove it (with ``stages="last2"``, prune
        the model to its feature stages instead), and take the model in channels-last memory format (several
        times faster for convolutions on CPU, in training too)."""
        stages = self.preprocess.stages
        self.source = _linear_head(module.get_classifier()) if stages == "last" else None
        module.reset_classifier(0)
        keep_stages(module, stages, self.ref)
        self.module = module.to(memory_format=torch.channels_last).eval()

    def collate(self, items: Sequence[Any], *, augment: str = "off") -> torch.Tensor:
        """Open and transform images into a float batch ``[B, 3, H, W]`` (see :func:`build_image_transform`).
        Unaugmented, the images are resized and cropped one by one and scaled and normalized as one batch: the
        same arithmetic, so the same values to the bit, and faster (``benchmarks/image_int8.py``)."""
        if augment == "off":
            if "geometry" not in self._transforms:
                self._transforms["geometry"] = build_image_transform(self.preprocess, "off", tensor=False)
            geometry = self._transforms["geometry"]
            pixels = torch.from_numpy(np.stack([np.asarray(geometry(open_image(item))) for item in items]))
            mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (self.preprocess.mean, self.preprocess.std))
            return pixels.permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255).sub_(mean).div_(std)
        if augment not in self._transforms:
            self._transforms[augment] = build_image_transform(self.preprocess, augment)
        transform = self._transforms[augment]
        return torch.stack([transform(open_image(item)) for item in items])

    def embed(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False, label: str = ""
              ) -> np.ndarray:
        """Frozen features ``[len(items), feature_dim]``, each image's averaged over the test-time views its
        preprocessing names (:mod:`headstart.backbones.views`); a batch holds ``batch_size`` views."""
        count = VIEW_COUNTS[self.preprocess.views]
        if count == 1:
            return super().embed(items, batch_size=batch_size, progress=progress, label=label)
        transform = view_transform(self.preprocess)
        per_batch = max(1, batch_size // count)
        batches = (torch.cat([transform(open_image(item)) for item in batch])
                   for batch in self.batches(items, per_batch))
        return self.extract(batches, len(items), -(-len(items) // per_batch), progress=progress, label=label,
                            views=count)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Features ``[B, feature_dim]``: the pooled pre-logits, or the last two stages pooled (``stages``)."""
        return self.features_module()(batch.contiguous(memory_format=torch.channels_last))

    def features_module(self) -> nn.Module:
        """The module from a pixel batch to the features: the network itself, or with ``stages="last2"`` a
        wrapper around it (:func:`~headstart.backbones.stages.stage_features`) sharing its weights."""
        return stage_features(self.module, self.preprocess.stages)

    def layer_groups(self) -> list[nn.Module]:
        """timm's coarse parameter groups (EfficientNet: stem, each block stage with the head conv in the
        last), bottom to top."""
        try:
            matcher = self.module.group_matcher(coarse=True)
        except (AttributeError, NotImplementedError):
            return [self.module]
        from timm.models import group_modules

        groups = group_modules(self.module, matcher)
        return [nn.ModuleList([self.module.get_submodule(name) for name in groups[key]]) for key in sorted(groups)]

    def source_head(self) -> SourceHead | None:
        """The classifier the weights were trained with (e.g. ImageNet's 1000 classes), if any (a deferred model
        is built for it); ``None`` with ``stages="last2"``, whose features are not what the classifier reads."""
        _ = self.module  # building a deferred model sets the source head
        return self.source

    def extraction(self, progress: bool = False, sample: torch.Tensor | None = None
                   ) -> Callable[[torch.Tensor], np.ndarray]:
        """ONNX Runtime (about 1.5-2x eager PyTorch on CPU) while the weights are the loaded ones; the graph is
        exported once per weights fingerprint into ``<cache>/onnx/``; under engine ``"int8"`` it is quantized
        statically, calibrated on ``sample`` (the first images extracted). Fine-tuned weights, or an export
        failure, use channels-last PyTorch in inference mode."""
        size = self.preprocess.input_size
        int8 = self.extraction_engine.engine == "int8"
        if next(self.module.parameters()).device.type != "cpu" or (int8 and sample is None):
            return self._torch_features  # on an accelerator, or no images at all to extract

        def build(key: str) -> OnnxEngine:
            # Random pixels (seeded) rather than zeros, so the parity check compares features that vary.
            example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            # Exported with its "same" pads as constants (graphs named apart from those exported before).
            with static_same_padding(self.features_module(), example) as module:
                return OnnxEngine(module, example, key=f"{key}-static-pads", int8=int8, calibration=sample,
                                  calibrated=self.extraction_engine.calibrated(key),
                                  concurrent_runs=self.onnx_concurrent_runs, progress=progress)

        return self.extraction_engine.session(self, build) or self._torch_features


def _linear_head(classifier: nn.Module) -> SourceHead | None:
    if not isinstance(classifier, nn.Linear):
        return None
    bias = classifier.bias if classifier.bias is not None else torch.zeros(classifier.out_features)
    return SourceHead(weight=classifier.weight.detach().cpu().numpy().copy(),
                      bias=bias.detach().cpu().numpy().copy())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a ``.pth`` / ``.pt`` / ``.bin`` file, never unpickling objects.

    A checkpoint that wraps its weights (``{"state_dict": ...}`` or ``{"model": ...}``) is unwrapped.

    Raises:
        BackboneError: Missing file, unsupported suffix, or a file holding pickled objects other than tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackboneError(f"weights file {path} does not exist; pass the path of a .safetensors or .pth file")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix not in TORCH_SUFFIXES:
        raise BackboneError(f"weights file {path} has an unsupported suffix; use .safetensors, .pth, .pt or .bin")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise BackboneError(f"{path} holds pickled Python objects besides tensors, and headstart never unpickles "
                            f"(it could run arbitrary code); save it with safetensors or as a plain state dict "
                            f"({str(err).splitlines()[0]})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{path} is not a state dict of tensors")
    return state


def timm_from_state_dict(name: str, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """A timm model ``name`` with ``state`` loaded strictly; its classifier is sized from the state dict
    (kept as the source head) or removed when the state dict has none."""
    model = _create_timm(name, pretrained=False)
    classifier = model.pretrained_cfg.get("classifier")
    weight_key = f"{classifier}.weight" if isinstance(classifier, str) else None
    if weight_key in state:
        if state[weight_key].shape[0] != model.num_classes:
            model.reset_classifier(int(state[weight_key].shape[0]))
    else:
        model.reset_classifier(0)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BackboneError(f"{source} does not match timm model {name!r}: {str(err)[:600]}; check that the "
                            f"file holds weights for this architecture") from None
    return model


def _create_timm(name: str, *, pretrained: bool) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise BackboneError(f"unknown timm model {name!r}; list names with `timm.list_models('*pattern*')`")
    if not pretrained:
        return timm.create_model(name, pretrained=False)
    with hub_access() as unreachable:
        try:
            return timm.create_model(name, pretrained=True)
        except Exception as err:  # network, hub and cache errors come in many types
            why = (f"the hub cannot be reached ({unreachable}) and they are not in the local cache"
                   if unreachable else f"{type(err).__name__}: {str(err)[:300]}")
            raise BackboneError(f"could not get the pre-trained weights of timm model {name!r} from the Hugging "
                                f"Face hub: {why}; without internet, get the weights file elsewhere and use "
                                f"'timm:{name}@<file>' (e.g. timm:{name}@/path/to/model.safetensors)") from None


@register_backbone("timm:", modality="image", offline=False,
                   description="any timm image model: timm:<name> (hub weights) or timm:<name>@<weights file>")
def timm_backbone(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                  allow_download: bool = True) -> TimmBackbone:
    """``timm:<model-name>`` or ``timm:<model-name>@<local weights file>``; with ``pretrained=False`` the
    network only (no weights read, no source head)."""
    name, _, weights = (argument or "").partition("@")
    ref = f"timm:{name}@{Path(weights).expanduser().resolve()}" if weights else f"timm:{name}"
    if not pretrained:
        model = _create_timm(name, pretrained=False)
        model.reset_classifier(0)
    elif weights:
        path = Path(weights).expanduser().resolve()
        model = timm_from_state_dict(name, read_state_dict(path), str(path))
    elif not allow_download:
        raise BackboneError(f"{ref} takes its weights from the Hugging Face hub and downloads are off; pass "
                            f"{option('allow_download', True)}")
    else:
        model = _create_timm(name, pretrained=True)
    return TimmBackbone(model, ref=ref, preprocess=restore_preprocess(preprocess, ImagePreprocess, ref))
