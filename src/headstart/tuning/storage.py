"""Where a tuning study lives: an Optuna RDB storage (SQLite in the output's work folder by default, or a URL
shared by workers), the study in it, and what a killed run left behind."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from headstart.errors import ConfigError, StorageError, option

# A worker on a shared storage beats every HEARTBEAT s; a trial silent for GRACE s (its worker was killed) is
# marked failed and its settings are tried again.
HEARTBEAT, GRACE = 20, 60


def open_storage(url: str, *, shared: bool) -> Any:
    """An Optuna storage for ``url``; a ``shared`` one (``--storage``) gets heartbeats so a killed worker's
    trial is failed and retried by the others.

    Raises:
        StorageError: The URL cannot be opened (bad scheme, missing driver, server down, unwritable file).
    """
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise StorageError(f"cannot open tuning storage {url}: folder {folder} does not exist")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
        extra = ({"heartbeat_interval": HEARTBEAT, "grace_period": GRACE,
                  "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=1)} if shared else {})
        retries = 2
        while True:
            try:
                return RDBStorage(url, engine_kwargs=_engine_options(url), **extra)
            except Exception as error:  # SQLAlchemy and driver errors have no common base worth naming
                # Workers started together race to create a new database's tables (the losers find them made,
                # or, on SQLite, the file locked or a table created since they looked).
                racing = type(error).__name__ == "IntegrityError" or (
                    url.startswith("sqlite") and ("locked" in str(error) or "already exists" in str(error)))
                if racing and retries:
                    retries -= 1
                    time.sleep(1.0)
                    continue
                raise StorageError(f"cannot open tuning storage {hide_password(url)}: {type(error).__name__}: "
                                   f"{str(error).splitlines()[0]}; give {option('storage')} an Optuna RDB URL "
                                   "that this machine can reach, e.g. sqlite:///study.db or "
                                   "postgresql://user@host/db") from None


def _engine_options(url: str) -> dict[str, Any]:
    # Several local workers on one SQLite file wait for each other's write lock instead of failing at once.
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}} if url.startswith("postgres") else {}


def hide_password(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL: nothing to hide that SQLAlchemy could parse
        return url


def open_study(store: Any, name: str, identity: dict[str, Any], seed: int, first: dict[str, Any], *,
               shared: bool) -> Any:
    """Create the study ``name`` (its first trial: the ``first`` point, the defaults) or load it, refusing one
    made for other data or settings."""
    import optuna

    try:
        study = optuna.create_study(storage=store, study_name=name, direction="maximize", load_if_exists=True)
    except Exception as error:
        raise StorageError(f"cannot open study {name!r}: {type(error).__name__}: {error}") from None
    stored = study.user_attrs.get("headstart")
    mine = json.loads(json.dumps(identity, default=str))
    if stored is None:
        study.set_user_attr("headstart", mine)
        study.enqueue_trial(first, user_attrs={"defaults": True}, skip_if_exists=True)
    elif stored != mine:
        changed = sorted(k for k in mine if stored.get(k) != mine.get(k))
        raise ConfigError(f"study {name!r} was made with other {', '.join(changed)}; resume it with the same "
                          f"data and options, or give another {option('study')} name")
    # Offsetting the seed by the trials already there keeps a resumed run from re-drawing its first random
    # start-up points; a fresh study is reproducible from `seed` alone. Workers on a shared storage may start
    # at the same moment, so each also mixes in its process: their trials interleave anyway.
    offset = len(study.trials) + (hash((socket.gethostname(), os.getpid())) % 1_000_003 if shared else 0)
    sampler = optuna.samplers.TPESampler(seed=seed + offset, n_startup_trials=5)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    return optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)


def fail_interrupted(store: Any, name: str) -> None:
    """Mark trials left running by a killed run as failed (the embedded storage has no other worker)."""
    from optuna.trial import TrialState

    study_id = store.get_study_id_from_name(name)
    for trial in store.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = store.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        store.set_trial_state_values(trial_id, TrialState.FAIL)


def finished_trials(study: Any) -> int:
    """Trials of ``study`` that count toward its target: complete or pruned."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
