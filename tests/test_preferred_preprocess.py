"""The preprocessing a strategy prefers: ``linear``, ``prototypes`` and ``auto`` pool an image backbone's last two
stages unless the user sets ``stages``; the others, ranking, a built backbone and a ``ckpt:`` source model keep
what they have."""

from __future__ import annotations

import pytest

import headstart
from conftest import TINY_PREPROCESS
from headstart.api import studies
from headstart.backbones import build_backbone, create_backbone, references
from headstart.errors import ConfigError
from headstart.strategies import STRATEGIES, shared_preprocess
from headstart.strategies.base import FROZEN_FEATURES

#: The tiny network's preprocessing as a run's ``preprocess`` argument.
TINY = {name: value for name, value in TINY_PREPROCESS.items() if name != "kind"}


def test_the_frozen_feature_strategies_prefer_two_stages_and_the_trained_ones_nothing():
    assert {name for name in STRATEGIES if STRATEGIES.get(name).preferred_preprocess} == \
        {"linear", "prototypes", "auto"}
    assert shared_preprocess(["linear", "prototypes", "auto"]) == FROZEN_FEATURES
    assert shared_preprocess(["linear", "finetune"]) == {} and shared_preprocess([]) == {}


def test_a_preference_applies_to_a_reference_unless_the_user_set_it(tiny_timm_ref):
    preferred = build_backbone(tiny_timm_ref, preprocess=TINY, prefer=FROZEN_FEATURES)
    assert preferred.preprocess.stages == "last2" and preferred.feature_dim == 48 + 64
    assert preferred.preprocess.input_size == TINY["input_size"], "the user's settings stay"
    chosen = build_backbone(tiny_timm_ref, preprocess={**TINY, "stages": "last"}, prefer=FROZEN_FEATURES)
    assert chosen.preprocess.stages == "last" and chosen.feature_dim == 256


def test_a_built_backbone_a_text_backbone_and_a_network_that_cannot_are_left_as_they_are(
        tiny_backbone, tiny_bert, tiny_timm_ref, monkeypatch):
    assert build_backbone(tiny_backbone, prefer=FROZEN_FEATURES) is tiny_backbone, "its weights may be changed"
    text = create_backbone(f"hf:{tiny_bert}")
    assert references.with_preferred(text, FROZEN_FEATURES) is text

    def refuse(net, overrides):
        raise ConfigError("stages=last2 needs a timm model with forward_intermediates")

    plain = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    monkeypatch.setattr(references, "with_preprocess", refuse)
    assert references.with_preferred(plain, FROZEN_FEATURES) is plain


@pytest.mark.e2e
def test_the_bundled_network_takes_the_preference_without_being_built():
    net = build_backbone("efficientnet_lite0", prefer=FROZEN_FEATURES)
    assert net.preprocess.stages == "last2" and net.feature_dim == 112 + 320
    assert "_deferred" in net.__dict__ and not net.has_source_head()
    assert build_backbone("efficientnet_lite0").has_source_head(), "without a preference the classifier stays"


def test_fit_pools_two_stages_for_the_probe_and_not_for_fine_tuning_or_a_source_model(tmp_path, tiny_timm_ref,
                                                                                        image_folder):
    common = {"backbone": tiny_timm_ref, "preprocess": TINY, "progress": False, "cache": False}
    probe = headstart.fit(image_folder, strategy="linear", **common)
    assert probe.backbone.preprocess.stages == "last2" and probe.head.in_features == 112
    tuned = headstart.fit(image_folder, strategy="finetune", settings={"epochs": 1}, out=tmp_path / "source",
                          **common)
    assert tuned.backbone.preprocess.stages == "last" and tuned.head.in_features == 256
    reused = headstart.fit(image_folder, strategy="linear", **{**common, "backbone": f"ckpt:{tmp_path / 'source'}"})
    assert reused.backbone.preprocess.stages == "last", "a source model's own features are kept"


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("strategies", "stages"), [(["linear", "prototypes"], "last2"),
                                                    (["linear", "finetune"], "last")])
def test_compare_uses_what_every_compared_strategy_prefers(tiny_timm_ref, image_folder, monkeypatch, strategies,
                                                           stages):
    seen = []

    def capture(splits, *, backbones, **kwargs):
        seen.extend(backbones)
        raise _Stop

    monkeypatch.setattr(studies, "compare_backbones", capture)
    with pytest.raises(_Stop):
        headstart.compare(image_folder, strategies=strategies, backbone=tiny_timm_ref, preprocess=TINY,
                          shots=[2], seeds=1, cache=False, progress=False)
    assert [net.preprocess.stages for net in seen] == [stages]
