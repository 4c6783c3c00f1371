"""Contracts every registered strategy, backbone, score, table format and modality keeps.

As scikit-learn's ``parametrize_with_checks`` and PEFT's shared testers: the parameters are read from the
registries, so whatever is registered is tested here without editing this file. Where a check needs something
per kind (a tiny backbone for a modality, an offline reference for a backbone scheme, a writer for a table
format), it fails saying what to add rather than skipping.

Fits use the tiny backbones of ``training_support`` and settings cut to a step or two (``quick_settings``).
"""

from __future__ import annotations

import inspect
import json
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import Field
from pydantic.fields import FieldInfo
from torch import nn
from typer.testing import CliRunner

import headstart
from conftest import TINY_PREPROCESS
from headstart.backbones import BACKBONES, Backbone, create_backbone
from headstart.cli import app, main
from headstart.data import Dataset, load_dataset
from headstart.data.modality import MODALITIES
from headstart.data.tables import TABLE_READERS, read_table
from headstart.errors import ConfigError
from headstart.model import TransferModel
from headstart.strategies import STRATEGIES, TrainedStrategy, get_strategy, register_strategy
from headstart.strategies.base import head_stage
from headstart.training import FitContext, HeadFirstConfig, Stage
from headstart.transferability.scores import SCORES
from training_support import (
    TinyAudioBackbone,
    TinyImageBackbone,
    TinyTextBackbone,
    color_images,
    sentiment_texts,
    state,
    tone_clips,
    tone_files,
)

#: Per modality: a tiny backbone and a tiny separable data set of that modality.
TINY: dict[str, tuple[Callable[[], Backbone], Callable[[int], Dataset]]] = {
    "image": (TinyImageBackbone, color_images),
    "text": (TinyTextBackbone, sentiment_texts),
    "audio": (TinyAudioBackbone, tone_clips),
}

#: Settings that cut any strategy's fit to a step or two; each strategy gets the ones it has.
QUICK = {"batch_size": 8, "epochs": 1, "head_epochs": 1, "epochs_per_stage": 1, "min_steps": 0, "patience": None,
         "c_values": 2, "folds": 2, "probe_c_values": 2, "probe_folds": 2, "rank": 2}


def quick_settings(name: str) -> dict[str, Any]:
    """The :data:`QUICK` settings that strategy ``name`` has."""
    fields = STRATEGIES.get(name).config_class.model_fields
    return {key: value for key, value in QUICK.items() if key in fields}


def tiny(modality: str) -> tuple[Callable[[], Backbone], Callable[[int], Dataset]]:
    if modality not in TINY:
        pytest.fail(f"modality {modality!r} has no tiny backbone and data set for the contract tests: add one to "
                    "TINY in tests/test_contracts.py (see tests/training_support.py)")
    return TINY[modality]


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


# --- strategies: settings --------------------------------------------------------------------------------

def refused_values(info: FieldInfo) -> list[Any]:
    """Values a setting must refuse, read from its declaration: one past each bound, and a word where the
    type is not a string."""
    values: list[Any] = []
    for bound in info.metadata:
        for attribute, outside in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
            if getattr(bound, attribute, None) is not None:
                values.append(getattr(bound, attribute) + outside)
    annotation = info.annotation
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    if str not in members:
        values.append("nonsense")
    return values


def check_invalid_values_are_refused(name: str) -> None:
    fields = STRATEGIES.get(name).config_class.model_fields
    for field, info in fields.items():
        for value in refused_values(info):
            with pytest.raises(ConfigError) as refused:
                get_strategy(name, **{field: value})
            message = str(refused.value)
            assert name in message and field in message, f"{field}={value!r}: {message}"


def check_unknown_setting_lists_the_valid_ones(name: str) -> None:
    with pytest.raises(ConfigError, match="no_such_setting") as refused:
        get_strategy(name, no_such_setting=1)
    missing = [field for field in STRATEGIES.get(name).config_class.model_fields if field not in str(refused.value)]
    assert not missing, f"the message does not list {missing}: {refused.value}"


def check_settings_are_described_apart_from_run_arguments(name: str) -> None:
    fields = STRATEGIES.get(name).config_class.model_fields
    undescribed = [field for field, info in fields.items() if not (info.description or "").strip()]
    assert not undescribed, f"settings without a description: {undescribed}"
    arguments = set(inspect.signature(headstart.fit).parameters) | set(inspect.signature(headstart.compare).parameters)
    assert not set(fields) & arguments, "a setting named like a run argument can never be set"


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_invalid_setting_values_raise_a_config_error_naming_them(name: str) -> None:
    check_invalid_values_are_refused(name)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_an_unknown_setting_raises_a_config_error_listing_the_valid_ones(name: str) -> None:
    check_unknown_setting_lists_the_valid_ones(name)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_setting_is_described_and_named_apart_from_run_arguments(name: str) -> None:
    check_settings_are_described_apart_from_run_arguments(name)


# --- strategies: fitting ---------------------------------------------------------------------------------

@dataclass
class TwoFits:
    """Two fits of one strategy with the same seed on the same data, from one caller's backbone."""

    caller: Backbone
    before: dict[str, torch.Tensor]
    flags_before: list[tuple[str, bool]]
    first: TransferModel
    second: TransferModel
    items: list[Any]


def flags(module: nn.Module) -> list[tuple[str, bool]]:
    """Which parameters train: what freezing layers in place, instead of in a copy, would change."""
    return [(name, p.requires_grad) for name, p in module.named_parameters()]


def fit_twice(name: str, modality: str, folder: Path) -> TwoFits:
    make_backbone, make_data = tiny(modality)
    data = make_data(36)
    train, held_out = data.subset(range(24)), data.subset(range(24, 36))
    caller = make_backbone()
    reason = STRATEGIES.get(name)().unsupported(caller)
    if reason is not None:  # declared, and refused with that reason: see the test below
        pytest.skip(reason)
    # Unlabeled target data for the strategies that adapt to one; the others ignore it.
    target = Dataset(held_out.items, np.full(len(held_out), -1), [], held_out.modality)
    before, flags_before = state(caller.module), flags(caller.module)
    # No validation data: the last epoch is kept, so a trained backbone has surely moved (with validation the
    # head-only epoch may win, and an in-place change of the caller's backbone would be undone). Separate
    # working folders: a second run in the same one would resume the first's finished checkpoint.
    models = []
    for run in range(2):
        # The global generators differ between the runs: only the run's seed may decide the result.
        random.seed(run)
        np.random.seed(run)
        torch.manual_seed(run)
        models.append(get_strategy(name, **quick_settings(name)).fit(
            caller, train, None, FitContext(folder / f"run{run}", seed=0, progress=False, target=target)))
    return TwoFits(caller, before, flags_before, *models, held_out.items)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], TwoFits]:
    """``fitted(strategy, modality)``: its :class:`TwoFits`, computed once per module."""
    done: dict[tuple[str, str], TwoFits] = {}

    def get(name: str, modality: str) -> TwoFits:
        if (name, modality) not in done:
            done[name, modality] = fit_twice(name, modality, tmp_path_factory.mktemp(f"{name}-{modality}"))
        return done[name, modality]

    return get


def check_same_seed_same_model(fits: TwoFits) -> None:
    first, second = fits.first.state_dict(), fits.second.state_dict()
    assert first.keys() == second.keys()
    changed = [key for key in first if not torch.equal(first[key], second[key])]
    assert not changed, f"the same seed gave other weights for {changed}"
    np.testing.assert_array_equal(fits.first.predict_proba(fits.items), fits.second.predict_proba(fits.items))
    assert fits.first.strategy_config == fits.second.strategy_config


def check_save_load_identical(fits: TwoFits, folder: Path) -> None:
    model = fits.first
    loaded = TransferModel.load(model.save(folder))
    np.testing.assert_array_equal(loaded.predict_proba(fits.items), model.predict_proba(fits.items))
    saved = json.loads((folder / "config.json").read_text())["strategy_config"]
    fields = STRATEGIES.get(model.strategy).config_class.model_fields
    assert set(fields) <= set(saved), f"settings missing from config.json: {set(fields) - set(saved)}"
    get_strategy(model.strategy, **{field: saved[field] for field in fields})  # the saved settings are valid


def check_caller_backbone_untouched(fits: TwoFits) -> None:
    after = fits.caller.module.state_dict()
    assert after.keys() == fits.before.keys()
    changed = [key for key, value in fits.before.items() if not torch.equal(value, after[key])]
    assert not changed, f"fit changed the caller's backbone: {changed}"
    assert flags(fits.caller.module) == fits.flags_before
    if fits.first.backbone_trained:  # else the check above could not have failed
        trained = fits.first.backbone.module.state_dict()
        assert any(not torch.equal(value, trained[key]) for key, value in fits.before.items())


STRATEGY_MODALITY = [(name, modality) for name in STRATEGIES for modality in MODALITIES]


@pytest.mark.parametrize(("name", "modality"), STRATEGY_MODALITY)
def test_the_same_seed_gives_the_same_model(name: str, modality: str, fitted) -> None:
    check_same_seed_same_model(fitted(name, modality))


@pytest.mark.parametrize(("name", "modality"), STRATEGY_MODALITY)
def test_save_then_load_gives_identical_probabilities(name: str, modality: str, fitted, tmp_path: Path) -> None:
    check_save_load_identical(fitted(name, modality), tmp_path / "model")


@pytest.mark.parametrize(("name", "modality"), STRATEGY_MODALITY)
def test_fit_leaves_the_callers_backbone_untouched(name: str, modality: str, fitted) -> None:
    check_caller_backbone_untouched(fitted(name, modality))


@pytest.mark.parametrize(("name", "modality"), STRATEGY_MODALITY)
def test_a_strategy_refuses_what_it_cannot_use_before_any_work(name: str, modality: str, tmp_path: Path) -> None:
    make_backbone, make_data = tiny(modality)
    strategy, backbone = get_strategy(name, **quick_settings(name)), make_backbone()
    reason = strategy.unsupported(backbone)
    context = FitContext(tmp_path, progress=False)  # no target data
    if reason is None and not strategy.needs_target:
        pytest.skip(f"{name} uses any {modality} backbone and needs no target data")
    with pytest.raises(ConfigError, match=name):
        strategy.fit(backbone, make_data(12), None, context)
    assert not any(tmp_path.iterdir()), "the refusal came after some work"


# --- strategies: the CLI lists them ----------------------------------------------------------------------

@dataclass
class Listing:
    """One strategy as ``headstart strategies`` shows it."""

    summary: str
    meanings: dict[str, str]


SHARED_NOTE = " It also takes the shared settings above."


def parse_strategy_listing(output: str) -> dict[str, Listing]:
    """Strategy name -> what ``headstart strategies`` printed: the title above each table, and each setting's
    meaning (rich wraps long cells over several lines; a new row starts where the setting column is filled),
    with the shared settings' table counted for each strategy whose title says it takes them."""
    listings: dict[str, Listing] = {}
    shared = Listing("", {})  # settings several strategies share, listed once above them
    title: list[str] = []
    current: Listing | None = None
    setting = ""
    for line in output.splitlines():
        if line.startswith("┏"):
            heading = " ".join(title)
            if heading.startswith("Settings that "):
                current = shared
            else:
                name, _, summary = heading.removeprefix("The ").partition(" strategy. ")
                takes_shared = summary.endswith(SHARED_NOTE)
                current = listings[name] = Listing(summary.removesuffix(SHARED_NOTE),
                                                   dict(shared.meanings) if takes_shared else {})
            title = []
        elif line.startswith("│") and current is not None:
            cell, _, meaning = (part.strip() for part in line.strip().strip("│").split("│"))
            setting = cell or setting
            current.meanings[setting] = f"{current.meanings.get(setting, '')} {meaning}".strip()
        elif line.strip() and not line.startswith(("┃", "┡", "└")):
            title.append(line.strip())
    return listings


def summary_of(cls: type) -> str:
    """The first paragraph of a class's docstring, on one line."""
    return " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())


def check_listing(name: str, listing: Listing) -> None:
    cls = STRATEGIES.get(name)
    assert summary_of(cls), f"strategy {name!r} has no docstring to describe it"
    assert listing.summary == summary_of(cls)
    fields = cls.config_class.model_fields
    assert sorted(listing.meanings) == sorted(fields)
    for field, info in fields.items():
        assert listing.meanings[field] == " ".join((info.description or "").split()), field


def test_strategies_command_shows_every_setting_of_every_strategy() -> None:
    listings = parse_strategy_listing(run_cli("strategies"))
    assert list(listings) == list(STRATEGIES)
    for name, listing in listings.items():
        check_listing(name, listing)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategies_command_with_a_name_shows_that_one(name: str) -> None:
    listings = parse_strategy_listing(run_cli("strategies", name))
    assert list(listings) == [name]
    check_listing(name, listings[name])


# --- strategies: settings and run arguments never share a namespace --------------------------------------

RUN_ARGUMENTS = [name for name in inspect.signature(headstart.fit).parameters if name not in ("data", "settings")]


@pytest.mark.parametrize("argument", RUN_ARGUMENTS)
def test_a_run_argument_given_as_a_setting_is_refused_before_any_work(argument: str, tmp_path: Path) -> None:
    # The data does not exist: refusing the setting first shows that nothing was read before the check.
    with pytest.raises(ConfigError, match=f"{argument} is an argument of fit"):
        headstart.fit(tmp_path / "missing", settings={argument: 1}, progress=False)


def test_cli_set_of_a_run_argument_exits_2_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["headstart", "fit", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                                      "--set", "seed=1"])
    with pytest.raises(SystemExit) as stop:
        main()
    error = capsys.readouterr().err
    assert stop.value.code == 2
    assert len(error.strip().splitlines()) == 1 and "seed" in error and "--seed" in error, error


# --- a new strategy is one class and one registration ----------------------------------------------------

class TopGroupsConfig(HeadFirstConfig):
    """Settings of the throwaway strategy below."""

    top_groups: int = Field(1, ge=0, description="Layer groups trained, from the top, after the head stage.")


def register_throwaway_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registers ``probe-test``; the registry forgets it when the test ends."""
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))

    @register_strategy("probe-test")
    class TopGroups(TrainedStrategy):
        """The head on the frozen backbone, then the head with only the top layer groups: a strategy defined
        by a test."""

        config_class = TopGroupsConfig

        def stages(self, backbone: Backbone, cfg: Any) -> list[Stage]:
            return [head_stage(cfg), Stage("top", cfg.epochs, cfg.top_groups, cfg.lr, cfg.layer_decay)]


def test_a_new_strategy_is_listed_usable_and_keeps_every_contract(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    register_throwaway_strategy(monkeypatch)
    listing = parse_strategy_listing(run_cli("strategies"))
    assert "probe-test" in listing and "top_groups" in listing["probe-test"].meanings
    check_listing("probe-test", listing["probe-test"])
    check_invalid_values_are_refused("probe-test")
    check_unknown_setting_lists_the_valid_ones("probe-test")
    check_settings_are_described_apart_from_run_arguments("probe-test")
    fits = fit_twice("probe-test", "image", tmp_path / "fits")
    check_same_seed_same_model(fits)
    check_save_load_identical(fits, tmp_path / "model")
    check_caller_backbone_untouched(fits)

    model = headstart.fit(color_images(40), backbone=TinyImageBackbone(), strategy="probe-test",
                          settings={**quick_settings("probe-test"), "top_groups": 1}, progress=False,
                          test_fraction=0.2)
    assert model.strategy == "probe-test" and model.metrics["train"]["stages"] == ["head", "top"]
    assert model.strategy_config["top_groups"] == 1 and "test" in model.metrics
    monkeypatch.undo()
    assert "probe-test" not in STRATEGIES


# --- backbones -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_is_described_for_registered_modalities(name: str) -> None:
    spec = BACKBONES.get(name)
    assert spec.description.strip()
    # "any": a scheme whose backbones take the modality of what they load (ckpt: of a saved model).
    unknown = [m for m in spec.modality.split("/") if m not in MODALITIES and m != "any"]
    assert not unknown, f"{name} names modalities that are not registered: {unknown}"


@pytest.fixture(scope="module")
def tiny_hf_ref(tiny_bert: Path) -> str:
    return f"hf:{tiny_bert}"


@pytest.fixture(scope="module")
def tiny_ckpt_ref(tiny_timm_ref: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``ckpt:`` of a saved model whose tiny timm backbone was changed by training."""
    source = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    with torch.no_grad():
        next(source.module.parameters()).add_(0.1)
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    TransferModel(source, nn.Linear(source.feature_dim, 2), ["a", "b"], strategy="finetune",
                  backbone_trained=True).save(folder)
    return f"ckpt:{folder}"


#: Backbone scheme -> the fixture giving an offline reference of that scheme (exact names are references).
OFFLINE_REFERENCES = {"timm:": "tiny_timm_ref", "hf:": "tiny_hf_ref", "ckpt:": "tiny_ckpt_ref"}

RNG = np.random.default_rng(0)
SAMPLES = {"image": [RNG.integers(0, 256, size=(12, 12, 3), dtype=np.uint8) for _ in range(3)],
           "text": ["a cat sat on the mat", "stocks fell sharply on monday", "the"],
           "audio": [str(path) for path in tone_files(3)]}


def offline_reference(name: str, request: pytest.FixtureRequest) -> str:
    if not name.endswith(":"):
        return name
    if name not in OFFLINE_REFERENCES:
        pytest.fail(f"backbone scheme {name!r} has no offline test reference: add a fixture to OFFLINE_REFERENCES "
                    "in tests/test_contracts.py")
    return request.getfixturevalue(OFFLINE_REFERENCES[name])


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.e2e) if BACKBONES.get(name).bundled
                                  else name for name in BACKBONES])
def test_backbone_config_rebuilds_a_backbone_with_identical_features(name: str,
                                                                     request: pytest.FixtureRequest) -> None:
    backbone = create_backbone(offline_reference(name, request))
    assert BACKBONES.get(name).modality == "any" or backbone.modality in BACKBONES.get(name).modality.split("/")
    config = json.loads(json.dumps(backbone.config()))  # as config.json holds it
    rebuilt = create_backbone(config["ref"], preprocess=config["preprocess"])
    assert json.loads(json.dumps(rebuilt.config())) == config
    if backbone.modality not in SAMPLES:
        pytest.fail(f"no sample inputs for modality {backbone.modality!r}: add some to SAMPLES")
    features = backbone.embed(SAMPLES[backbone.modality])
    assert features.shape == (len(SAMPLES[backbone.modality]), backbone.feature_dim)
    np.testing.assert_array_equal(rebuilt.embed(SAMPLES[backbone.modality]), features)


# --- transferability scores ------------------------------------------------------------------------------

def separable_and_noise(needs: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(informative, noise, labels)`` inputs of the kind a score ``needs``: clustered features or source
    probabilities concentrated on one source class per target class, against random ones."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    if needs == "features":
        centers = rng.normal(scale=3.0, size=(3, 8))
        return centers[labels] + rng.normal(scale=0.3, size=(60, 8)), rng.normal(size=(60, 8)), labels
    if needs == "source_probs":
        logits = 4.0 * np.eye(5)[labels * 2] + rng.normal(scale=0.5, size=(60, 5))
        informative = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return informative, rng.dirichlet(np.ones(5), size=60), labels
    pytest.fail(f"no contract inputs for scores computed from {needs!r}: add them to separable_and_noise")


@pytest.mark.parametrize("name", list(SCORES))
def test_score_is_a_deterministic_float_ranking_separable_inputs_above_noise(name: str) -> None:
    spec = SCORES.get(name)
    informative, noise, labels = separable_and_noise(spec.needs)
    value = spec.function(informative, labels)
    assert isinstance(value, float) and math.isfinite(value)
    assert spec.function(informative, labels) == value
    baseline = spec.function(noise, labels)
    assert (value > baseline) if spec.higher_is_better else (value < baseline), (value, baseline)


# --- table formats ---------------------------------------------------------------------------------------

#: Table suffix -> how a user's tool writes a frame in that format.
TABLE_WRITERS: dict[str, Callable[[pd.DataFrame, Path], None]] = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True, force_ascii=False),
    ".parquet": lambda frame, path: frame.to_parquet(path),
}


@pytest.mark.parametrize("suffix", list(TABLE_READERS))
def test_table_format_round_trips_a_table_written_in_it(suffix: str, tmp_path: Path) -> None:
    if suffix not in TABLE_WRITERS:
        pytest.fail(f"table format {suffix!r} has no writer for its contract test: add one to TABLE_WRITERS")
    # Delimiters, quotes, a line break and non-ASCII inside values; labels that a type guesser would mangle.
    frame = pd.DataFrame({"sentence": ["a cat, asleep", 'the "dog"\tbarks', "two\nlines", "café ☕"],
                          "category": ["007", "007", "n/a-ish", "n/a-ish"]})
    path = tmp_path / f"data{suffix}"
    TABLE_WRITERS[suffix](frame, path)
    assert read_table(path).frame.to_dict("list") == frame.to_dict("list")
    splits = load_dataset(path)
    assert splits.train.modality == "text" and splits.class_names == ["007", "n/a-ish"]
    assert splits.train.items == frame["sentence"].tolist() and splits.train.labels.tolist() == [0, 0, 1, 1]


# --- modalities ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODALITIES))
def test_modality_defaults_name_registered_backbones_strategies_and_settings(name: str) -> None:
    spec = MODALITIES.get(name)
    default = BACKBONES.get(spec.default_backbone)
    assert name in default.modality.split("/") and default.offline
    every_setting = {field for _, cls in STRATEGIES.items() for field in cls.config_class.model_fields}
    assert set(spec.training) <= every_setting, f"unknown settings: {set(spec.training) - every_setting}"
    for strategy, defaults in spec.strategies.items():
        fields = STRATEGIES.get(strategy).config_class.model_fields
        assert set(defaults) <= set(fields), f"{strategy} has no settings {set(defaults) - set(fields)}"
