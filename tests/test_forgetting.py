"""Forgetting measures: CKA against hand formulas, a frozen backbone reports no drift, a scrambled one does."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import headstart
from headstart.backbones import SourceHead
from headstart.evaluation.forgetting import (
    REFERENCE_SETS,
    ReferenceSet,
    compare_features,
    forgetting_summary,
    linear_cka,
    measure_forgetting,
)
from headstart.model import TransferModel
from training_support import TinyImageBackbone, TinyTextBackbone, color_images, sentiment_texts

RNG = np.random.default_rng(0)


def _arrays(n: int = 40) -> ReferenceSet:
    return ReferenceSet(f"{n} arrays", list(RNG.integers(0, 256, size=(n, 12, 12, 3), dtype=np.uint8)))


def _model(backbone, trained: bool) -> TransferModel:
    return TransferModel(backbone, torch.nn.Linear(backbone.feature_dim, 2), ["a", "b"], strategy="test",
                         backbone_trained=trained)


def test_linear_cka_matches_the_definition_and_its_invariances() -> None:
    x = RNG.normal(size=(60, 6))
    rotation = np.linalg.qr(RNG.normal(size=(6, 6)))[0]
    assert linear_cka(x, 2.5 * x @ rotation + 3.0) == pytest.approx(1.0)
    y = RNG.normal(size=(60, 4))
    xc, yc = x - x.mean(0), y - y.mean(0)
    by_hand = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(by_hand)
    assert linear_cka(x, y) < 0.5


def test_source_head_agreement_and_kl() -> None:
    old = RNG.normal(size=(30, 5))
    head = SourceHead(weight=RNG.normal(size=(7, 5)), bias=np.zeros(7))
    same = compare_features(old, old, head)
    assert same["source_agreement"] == 1.0 and same["source_kl"] == pytest.approx(0.0, abs=1e-12)
    moved = compare_features(old, RNG.normal(size=(30, 5)), head)
    assert moved["source_agreement"] < 0.6 and moved["source_kl"] > 0.1


def test_a_frozen_backbone_reports_no_drift_without_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = TinyImageBackbone()
    monkeypatch.setattr(type(backbone), "embed", lambda *a, **k: pytest.fail("a frozen backbone was embedded"))
    result = measure_forgetting(_model(backbone, trained=False), reference=_arrays())
    assert result["reference"]["feature_cka"] == 1.0 and result["reference"]["mean_cosine"] == 1.0
    assert "frozen" in forgetting_summary(result)


def test_an_unchanged_copy_reports_no_drift_and_a_scrambled_one_does() -> None:
    source = TinyImageBackbone()
    reference = _arrays()
    kept = measure_forgetting(_model(copy.deepcopy(source), trained=True), reference=reference, source=source)
    assert kept["reference"]["feature_cka"] == pytest.approx(1.0, abs=1e-6)
    assert kept["reference"]["similarity_spearman"] == pytest.approx(1.0, abs=1e-6)
    scrambled = copy.deepcopy(source)
    with torch.no_grad():
        for p in scrambled.module.parameters():
            p.copy_(p[torch.randperm(len(p))] + 0.5 * torch.randn_like(p))
    lost = measure_forgetting(_model(scrambled, trained=True), reference=reference, source=source)
    assert lost["reference"]["feature_cka"] < 0.9
    assert lost["reference"]["mean_cosine"] < kept["reference"]["mean_cosine"]


def test_target_inputs_are_capped_and_a_modality_without_reference_says_so() -> None:
    source = TinyTextBackbone()
    texts = sentiment_texts(250).items
    result = measure_forgetting(_model(copy.deepcopy(source), trained=True), target=texts, source=source,
                                reference=ReferenceSet("3 sentences", ["a cat", "a dog", "a car"]))
    assert result["target"]["n"] == 200 and result["reference"]["n"] == 3
    assert any("no source classifier" in note for note in result["notes"])


def test_a_source_of_another_modality_is_refused() -> None:
    with pytest.raises(headstart.errors.ConfigError, match="text backbone"):
        measure_forgetting(_model(TinyImageBackbone(), trained=True), reference=_arrays(), source=TinyTextBackbone())


def test_fit_stores_the_forgetting_section() -> None:
    data = color_images(40)
    splits = headstart.data.DataSplits(data.subset(range(30)), None, data.subset(range(30, 40)))
    model = headstart.fit(splits, backbone=TinyImageBackbone(), strategy="finetune", progress=False,
                          settings={"min_steps": 0, "epochs": 1, "batch_size": 8})
    section = model.metrics["forgetting"]
    assert section["backbone_changed"] and section["target"]["n"] == 10
    assert 0.0 <= section["target"]["feature_cka"] <= 1.0 + 1e-9


def test_bundled_reference_sets_load() -> None:
    photos, sentences = REFERENCE_SETS.get("image")(), REFERENCE_SETS.get("text")()
    assert len(photos.items) == 70 and photos.items[0].mode == "RGB"
    assert len(sentences.items) == 200 and all(s.strip() for s in sentences.items)


def test_tradeoff_marks_dominated_strategies() -> None:
    from headstart.studies.statistics import RunRecord
    from headstart.studies.tradeoff import tradeoff, tradeoff_message

    records = [RunRecord("linear", 10, s, 30, 0.80, {"retention": 1.0}) for s in range(2)]
    records += [RunRecord("finetune", 10, s, 30, 0.86 + 0.01 * s, {"retention": 0.7}) for s in range(2)]
    records += [RunRecord("gradual", 10, s, 30, 0.84, {"retention": 0.6}) for s in range(2)]
    records += [RunRecord("gradual", 5, 0, 15, 0.99, {"retention": 0.99})]  # a smaller size does not count
    points = {p.strategy: p for p in tradeoff(records)}
    assert points["finetune"].accuracy == pytest.approx(0.865) and points["finetune"].n_seeds == 2
    assert points["gradual"].dominated_by == ["finetune"] and not points["linear"].dominated_by
    assert "dominated: gradual (by finetune)" in tradeoff_message(list(points.values()))


def test_tradeoff_reads_the_target_accuracy_when_asked() -> None:
    from headstart.studies.statistics import RunRecord
    from headstart.studies.tradeoff import tradeoff, tradeoff_message

    # On the source test linear wins; on the target domain coral does, and that is what an adapting user compares.
    records = [RunRecord("linear", 10, 0, 30, 0.90, {"retention": 1.0, "target_accuracy": 0.60}),
               RunRecord("coral", 10, 0, 30, 0.85, {"retention": 1.0, "target_accuracy": 0.70})]
    assert [p.strategy for p in tradeoff(records) if p.dominated_by] == ["coral"]
    points = {p.strategy: p for p in tradeoff(records, "target_accuracy")}
    assert points["linear"].dominated_by == ["coral"] and points["coral"].accuracy == pytest.approx(0.70)
    assert "coral (70.0% target accuracy, retention 1.00)" in tradeoff_message(list(points.values()))


def test_forgetting_api_on_a_saved_model_and_a_reference_of_another_modality(tmp_path, tiny_backbone,
                                                                              image_folder) -> None:
    model = _model(copy.deepcopy(tiny_backbone), trained=True)
    with torch.no_grad():
        next(model.backbone.module.parameters()).mul_(3.0)
    model.save(tmp_path / "m")
    result = headstart.forgetting(tmp_path / "m", reference=image_folder)
    assert result["reference"]["n"] == 36 and result["reference"]["feature_cka"] < 0.999
    texts = tmp_path / "sentences.txt"
    texts.write_text("a sentence\nanother one\n")
    with pytest.raises(headstart.errors.DataError, match="not an image"):
        headstart.forgetting(tmp_path / "m", reference=texts)


def test_compare_records_retention_and_draws_the_tradeoff(image_folder, tiny_backbone) -> None:
    from headstart.reports.study import compare_report

    result = headstart.compare(image_folder, strategies=["linear", "scratch"], fractions=[1.0], seeds=1,
                               backbone=tiny_backbone,
                               settings={"scratch.epochs": 1, "scratch.batch_size": 16, "scratch.augment": "off"})
    points = {p.strategy: p for p in result.tradeoff}
    assert points["linear"].retention == 1.0 and points["scratch"].retention < 0.99
    page = compare_report(result)
    assert "Accuracy against forgetting" in page and "accuracy against retention" in page
