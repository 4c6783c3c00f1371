"""The API of studies over several backbones or runs: rank and compare."""

from __future__ import annotations

import inspect
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from headstart.api.arguments import checked_splits, checked_study_data, skip_bad
from headstart.backbones import Backbone, FeatureCache, build_backbone
from headstart.backbones.features import cache_scope
from headstart.data import Dataset, DataSplits, modality_spec
from headstart.errors import ConfigError, option
from headstart.io import WorkFolder, work_folder, write_json
from headstart.reports import write_compare_report, write_rank_report, write_tune_report
from headstart.strategies import check_settings, shared_preprocess
from headstart.studies import CompareResult, compare_backbones
from headstart.tracking.runs import compare_run, settings_params, tune_run
from headstart.tracking.tracker import start_tracking
from headstart.transferability import RankResult, rank_backbones
from headstart.tuning import TuneResult, tune_strategy


def rank(data: str | Path | DataSplits | Dataset, *, backbones: Sequence[str | Backbone],
         scores: Sequence[str] | None = None, sort_by: str = "logme", cache: bool | str | Path | FeatureCache = True,
         out: str | Path | None = None, force: bool = False, progress: bool = False, image_size: int | None = None,
         preprocess: dict[str, Any] | None = None, engine: str | None = None, skip_bad_files: bool = False,
         skip_bad_images: bool | None = None, text_column: str | None = None, label_column: str | None = None,
         path_column: str | None = None, allow_outside_paths: bool = False) -> RankResult:
    """Rank backbones for a data set by transferability scores of their frozen features (training split).

    Args:
        data: Labeled data in any format :func:`fit` accepts.
        backbones: Backbone references (or built backbones) of the data's modality.
        scores: Scores to compute (see :data:`headstart.transferability.scores.SCORES`); default every applicable one.
        sort_by: The score that orders the ranking (``logme`` by default).
        cache: As for :func:`fit`; the features are reused by a later ``fit`` on the same data with the same
            preprocessing (on images, ``linear``/``prototypes``/``auto`` pool two stages: ``stages=last`` shares).
        out: Folder for ``rank.json`` and ``report.html`` (as ``out`` of :func:`fit`).
        force: Replace an existing ``out`` that headstart wrote.
        progress: Show progress bars.
        image_size, preprocess, engine, skip_bad_files, skip_bad_images, text_column, label_column, path_column,
            allow_outside_paths: As for :func:`fit`.

    Returns:
        A :class:`~headstart.transferability.ranking.RankResult`, best backbone first.

    Example:
        >>> result = rank("examples/wordnet-supersenses", backbones=["minilm", "glove"])
        >>> result.best
    """
    feature_cache = FeatureCache.from_option(cache)
    with work_folder(out, kind="rank", force=force, protected=[data]) as work, cache_scope(feature_cache):
        splits = checked_splits(work, data, skip_bad=skip_bad(skip_bad_files, skip_bad_images),
                                 text_column=text_column, label_column=label_column, path_column=path_column,
                                 allow_outside_paths=allow_outside_paths)
        if image_size is not None or preprocess or engine is not None:
            backbones = [build_backbone(b, image_size=image_size, preprocess=preprocess, engine=engine)
                         for b in backbones]
        result = rank_backbones(splits.train, backbones, scores=scores, sort_by=sort_by, cache=feature_cache,
                                progress=progress)
        if work is not None:
            _publish_study(work, "rank.json", result, write_rank_report)
    return result


DEFAULT_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)


def compare(data: str | Path | DataSplits | Dataset, *, strategies: Sequence[str] = ("linear", "finetune", "scratch"),
            fractions: Sequence[float] | None = None, shots: Sequence[int] | None = None, seeds: int = 3,
            backbone: str | Backbone | Sequence[str | Backbone] | None = None, max_time: float | None = None,
            cache: bool | str | Path | FeatureCache = True, out: str | Path | None = None, force: bool = False,
            settings: dict[str, Any] | None = None, test_fraction: float = 0.2, val_fraction: float = 0.15,
            on_run: Callable[[Any], None] | None = None, image_size: int | None = None, engine: str | None = None,
            preprocess: dict[str, Any] | None = None, skip_bad_files: bool = False, skip_bad_images: bool | None = None,
            text_column: str | None = None, label_column: str | None = None, path_column: str | None = None,
            allow_outside_paths: bool = False, track: bool | str = False, progress: bool = True,
            target: str | Path | Dataset | None = None, target_test: str | Path | Dataset | None = None
            ) -> CompareResult:
    """Learning curves: every strategy on growing stratified subsets of the training data, several seeds,
    each measured on one fixed test set; with the transfer-vs-scratch verdict and data savings.

    Args:
        data: Labeled data in any format :func:`fit` accepts.
        strategies: Strategies to compare; include ``scratch`` for verdicts, gains and savings.
        fractions: Subset sizes as fractions of the training split (default 0.05, 0.1, 0.25, 0.5, 1).
        shots: Subset sizes as examples per class, instead of ``fractions``.
        seeds, max_time: Seeds per size and strategy; budget of the study in seconds (runs past it are skipped).
        backbone: As for :func:`fit` (default by modality), or several: each strategy then runs on each
            backbone (``scratch`` once), labelled ``"linear (ckpt:runs/source)"``, on one learning curve.
        out, force: Folder for ``compare.json`` and ``report.html``, and replacing one, as for :func:`fit`.
        settings: Strategy settings: ``{"finetune.epochs": 2}`` for one strategy, ``{"epochs": 2}`` for every
            strategy that has the setting.
        test_fraction, val_fraction: Hold-out share when the data has no test split; validation share of subsets.
        on_run: Called with each :class:`~headstart.studies.statistics.RunRecord` or skipped run as it happens.
        cache, image_size, preprocess, engine, skip_bad_files, skip_bad_images, text_column, label_column,
            path_column, allow_outside_paths, track: As for :func:`fit` (tracked: one child run per run).
        progress: Show the embedding of the data and each run's training as they go.
        target, target_test: As for :func:`fit`: every run sees ``target`` and is measured on ``target_test`` too
            (``result.target_summary``); the shift is measured once per backbone (``result.target["shifts"]``).

    Returns:
        A :class:`~headstart.studies.runner.CompareResult`.

    Example:
        >>> result = compare("examples/fashion-mnist-mini", strategies=["linear", "finetune", "scratch"],
        ...                  fractions=[0.1, 1.0], seeds=2, max_time=600)
        >>> print(result.verdicts[0].message)
    """
    feature_cache = FeatureCache.from_option(cache)
    tracker = start_tracking(track, out)
    with work_folder(out, kind="compare", force=force, protected=[data]) as work, cache_scope(feature_cache):
        splits, domain = checked_study_data(work, data, target, target_test, text_column=text_column,
                                            label_column=label_column, path_column=path_column,
                                            allow_outside_paths=allow_outside_paths,
                                            skip_bad=skip_bad(skip_bad_files, skip_bad_images), tracker=tracker)
        nets = _built(backbone, splits.train.modality, image_size, preprocess, engine, shared_preprocess(strategies))
        fractions = DEFAULT_FRACTIONS if fractions is None and shots is None else fractions
        result = compare_backbones(splits, strategies=strategies, backbones=nets, fractions=fractions, shots=shots,
                                   seeds=seeds, max_time=max_time, cache=feature_cache, settings=settings,
                                   test_fraction=test_fraction, val_fraction=val_fraction, on_run=on_run,
                                   target=domain, progress=progress)
        if work is not None:
            _publish_study(work, "compare.json", result, write_compare_report)
    if tracker is not None:
        arguments = {"seeds": seeds, "max_time": max_time, "image_size": image_size, **settings_params(settings)}
        result.tracking = tracker.log(compare_run(result, splits, out=out, arguments=arguments))
    return result


def _built(backbone: str | Backbone | Sequence[str | Backbone] | None, modality: str, image_size: int | None,
           preprocess: dict[str, Any] | None, engine: str | None, prefer: dict[str, Any]) -> list[Backbone]:
    """The backbones a study compares (one or several; default: the modality's), built as :func:`fit` builds them,
    with the preprocessing every compared strategy prefers (``prefer``)."""
    given = list(backbone) if isinstance(backbone, (list, tuple)) else [backbone]
    return [build_backbone(ref or modality_spec(modality).default_backbone, image_size=image_size,
                           preprocess=preprocess, engine=engine, prefer=prefer) for ref in given]


def _publish_study(work: WorkFolder, json_name: str, result: Any, write_report: Callable[[Path, Any], Any]) -> None:
    """Write a study's JSON and HTML report into its working folder and publish it (see :mod:`headstart.io`)."""
    write_json(work.path / json_name, result.to_dict())
    write_report(work.path, result)
    work.publish()


def tune(data: str | Path | DataSplits | Dataset, *, strategy: str = "finetune", trials: int = 20,
         backbone: str | Backbone | None = None, out: str | Path | None = None, force: bool = False,
         storage: str | None = None, study: str | None = None, seed: int = 0, max_time: float | None = None,
         settings: dict[str, Any] | None = None, space: dict[str, Any] | None = None,
         cache: bool | str | Path | FeatureCache = True, progress: bool = True, val_fraction: float = 0.15,
         test_fraction: float = 0.2, image_size: int | None = None, preprocess: dict[str, Any] | None = None,
         skip_bad_files: bool = False, text_column: str | None = None, label_column: str | None = None,
         path_column: str | None = None, allow_outside_paths: bool = False, track: bool | str = False,
         keep_defaults_within: float = 1.0) -> TuneResult:
    """Search a strategy's settings with Optuna on validation data, refit the chosen ones, test them once.

    The study lives in ``<out>.partial/study.db`` until the search is done: the same call after a kill resumes it.

    Args:
        data: Labeled data in any format :func:`fit` accepts.
        strategy, trials: The strategy to tune; trials to finish in the study (complete or pruned), counting
            those already stored.
        backbone: As for :func:`fit` (default by modality).
        out: Folder for the best model (as :func:`fit` writes it), ``study.json`` and ``report.html``; without
            it the call only runs trials (a worker on a shared ``storage``).
        force: Replace an existing ``out``.
        storage, study: An Optuna RDB URL shared by workers (``sqlite:///study.db``, ``postgresql://...``;
            default SQLite in ``out``'s work folder) and the study's name in it.
        seed, max_time: Seed of every trial and of the sampler; stop starting trials after this many seconds.
        settings, space: Settings held fixed in every trial (``{"batch_size": 16}``); setting -> range replacing
            the declared search space (``"log:1e-5:1e-3"``, ``"2:8"``, ``"off,light"``).
        cache, progress, val_fraction, test_fraction, image_size, preprocess, skip_bad_files, text_column,
            label_column, path_column, allow_outside_paths, track: As for :func:`fit` (``progress``: a bar over
            trials with the best score so far; ``track``: a parent run and one child run per trial).
        keep_defaults_within: Refit the defaults unless the best trial's paired gain over them on the validation
            examples exceeds this many standard errors (a smaller lead is as likely luck); 0: always the best.

    Returns:
        A :class:`~headstart.tuning.TuneResult`; ``model`` is the refit chosen model (with ``out``).

    Raises:
        ConfigError, StorageError: Bad settings or space, neither ``out`` nor ``storage``, or a storage that
            cannot be reached; before any trial runs.
    """
    settings = check_settings(settings, inspect.signature(tune).parameters, "tune")
    if out is None and storage is None:
        raise ConfigError(f"tune needs {option('out')} (its study is kept there) or {option('storage')}")
    feature_cache = FeatureCache.from_option(cache)
    tracker = start_tracking(track, out)
    with work_folder(out, kind="tune", force=force, protected=[data]) as work, cache_scope(feature_cache):
        splits = checked_splits(work, data, skip_bad=skip_bad_files, text_column=text_column,
                                label_column=label_column, path_column=path_column,
                                allow_outside_paths=allow_outside_paths, tracker=tracker)
        net = _built(backbone, splits.train.modality, image_size, preprocess, None, shared_preprocess([strategy]))[0]
        workdir = work.path if work is not None else Path(tempfile.mkdtemp(prefix="headstart-"))
        result = tune_strategy(splits, strategy=strategy, backbone=net, trials=trials, work_dir=workdir,
                               storage=storage, study=study, seed=seed, settings=settings, space=space,
                               max_time=max_time, cache=feature_cache, val_fraction=val_fraction,
                               test_fraction=test_fraction, progress=progress, refit=work is not None,
                               keep_defaults_within=keep_defaults_within)
        _publish_tune(result, workdir, work)
    if tracker is not None:
        result.tracking = tracker.log(tune_run(result, splits, out=out, arguments={"trials": trials}))
    return result


def _publish_tune(result: TuneResult, workdir: Path, work: WorkFolder | None) -> None:
    """Write the best model, ``study.json`` and the report into the work folder and publish it (without ``out``:
    drop the temporary folder)."""
    if work is None:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    if result.model is not None:
        result.model.save(workdir)
    write_json(workdir / "study.json", result.to_dict())
    write_tune_report(workdir, result.to_dict(), result.model)
    work.publish()
