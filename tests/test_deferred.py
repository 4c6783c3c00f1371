"""Backbones whose network is built when first used: same fingerprint, features and copies as built ones, and
a fingerprint memoised on disk by the weights files."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import numpy as np
import torch

from conftest import TINY_PREPROCESS
from headstart.backbones import create_backbone
from headstart.backbones.base import preprocess_from_dict
from headstart.backbones.deferred import DeferredModule
from headstart.backbones.timm import TimmBackbone, read_state_dict, timm_from_state_dict
from headstart.io import caching

built_from: list[Path] = []
TINY_FEATURES = 256  # what timm's test_efficientnet says of itself once built


def build_tiny(path: Path) -> torch.nn.Module:
    built_from.append(path)
    return timm_from_state_dict("test_efficientnet", read_state_dict(path), str(path))


def deferred_tiny(ref: str) -> TimmBackbone:
    """The tiny timm backbone of ``ref``, as :func:`create_backbone` builds it but deferred."""
    path = Path(ref.partition("@")[2])
    return TimmBackbone(DeferredModule(functools.partial(build_tiny, path), files=(path,), source_head=True),
                        ref=ref, preprocess=preprocess_from_dict(TINY_PREPROCESS), feature_dim=TINY_FEATURES)


def test_a_deferred_backbone_is_fingerprinted_from_disk_until_its_network_is_needed(tiny_timm_ref, tmp_path):
    built = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    built_from.clear()
    with caching(tmp_path):
        first = deferred_tiny(tiny_timm_ref)
        assert first.fingerprint() == built.fingerprint() and len(built_from) == 1  # built once to hash its weights
        second = deferred_tiny(tiny_timm_ref)
        assert second.fingerprint() == built.fingerprint() and len(built_from) == 1  # memoised: not built
        assert second.feature_dim == built.feature_dim and second.has_source_head()
        images = [np.full((40, 40, 3), shade, dtype=np.uint8) for shade in (0, 90, 200)]
        np.testing.assert_allclose(second.embed(images), built.embed(images), atol=1e-5)
        assert len(built_from) == 2 and second.fingerprint() == built.fingerprint()
        np.testing.assert_array_equal(second.source_head().weight, built.source_head().weight)


def test_changed_weights_files_are_fingerprinted_again(tiny_timm_ref, tmp_path):
    path = Path(tiny_timm_ref.partition("@")[2])
    with caching(tmp_path):
        deferred_tiny(tiny_timm_ref).fingerprint()
        built_from.clear()
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        deferred_tiny(tiny_timm_ref).fingerprint()
        assert built_from == [path]


def test_a_copy_of_a_deferred_backbone_builds_its_own_network(tiny_timm_ref, tmp_path):
    with caching(tmp_path):
        original = deferred_tiny(tiny_timm_ref)
        clone = copy.deepcopy(original)
        with torch.no_grad():
            next(clone.module.parameters()).add_(1.0)
        assert clone.fingerprint() != original.fingerprint()
        assert original.fingerprint() == create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS).fingerprint()


def test_a_deferred_network_first_used_in_inference_mode_gets_ordinary_weights(tiny_timm_ref, tmp_path):
    # Export and prediction run in inference mode; weights built there could not be versioned or trained.
    with caching(tmp_path):
        backbone = deferred_tiny(tiny_timm_ref)
        with torch.inference_mode():
            module = backbone.module
        assert not any(p.is_inference() for p in module.parameters())
        backbone.weights_version()  # reads every tensor's version counter, which inference tensors lack
