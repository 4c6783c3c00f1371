"""The proxy A-distance (Ben-David et al., 2007): how well a classifier tells source from target examples.

A logistic regression is trained to tell the backbone's frozen features of source examples from those of
target examples, and its cross-validated error ``err`` gives ``PAD = 2 (1 - 2 err)``: 0 when the two domains
cannot be told apart (``err = 0.5``), 2 when they are perfectly separable. The features come from the
feature cache, so the check costs one pass over the target (the source's features are the linear probe's).

Plain-words reading (:func:`shift_reading`): PAD below 0.5 is a **little** shift (a linear classifier errs on
more than a third of the examples), below 1.5 a **moderate** one (it errs on more than an eighth), and 1.5 or
more a **large** one. Frozen features of a few hundred dimensions separate even mild changes of rendering
well, so "large" is common; what matters for adaptation is the accuracy on labeled target data.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from headstart.backbones import Backbone, FeatureCache, extract_features
from headstart.data import Dataset

#: Upper PAD bound of each reading, in order; a PAD at or above the last bound is a large shift.
SHIFT_READINGS = (("little", 0.5), ("moderate", 1.5), ("large", float("inf")))
#: Each domain is subsampled to at most this many examples for the domain classifier.
MAX_PER_DOMAIN = 2000


def proxy_a_distance(source: np.ndarray, target: np.ndarray, *, folds: int = 5, seed: int = 0,
                     max_per_domain: int = MAX_PER_DOMAIN) -> tuple[float, float]:
    """The proxy A-distance between two feature matrices.

    Args:
        source, target: ``[N, D]`` features of each domain.
        folds: Cross-validation folds of the domain classifier (capped by the smaller domain).
        seed: Seed of the subsampling and the folds.
        max_per_domain: Each domain is subsampled to at most this many examples, and both to the same number,
            so that the error of always guessing the larger domain is 0.5.

    Returns:
        ``(pad, error)``: PAD in ``[0, 2]`` (an error above 0.5 counts as 0.5) and the cross-validated error.

    Raises:
        ValueError: A domain has fewer than two examples.

    Example:
        >>> proxy_a_distance(np.random.randn(100, 8), np.random.randn(100, 8) + 3)[0]  # about 2
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    n = min(len(source), len(target), max_per_domain)
    if n < 2:
        raise ValueError(f"the proxy A-distance needs two examples per domain or more, got {n}")
    rng = np.random.default_rng(seed)
    features = np.vstack([source[rng.choice(len(source), n, replace=False)],
                          target[rng.choice(len(target), n, replace=False)]])
    domains = np.repeat([0, 1], n)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
    cv = StratifiedKFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
    # One BLAS thread, as for the linear probe: small problems, and threads spin on a loaded machine.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        error = 1.0 - float(cross_val_score(classifier, features, domains, cv=cv, n_jobs=1).mean())
    return 2.0 * (1.0 - 2.0 * min(error, 0.5)), error


def shift_reading(pad: float) -> str:
    """``"little"``, ``"moderate"`` or ``"large"`` for a proxy A-distance (bounds in :data:`SHIFT_READINGS`)."""
    return next(name for name, bound in SHIFT_READINGS if pad < bound)


def measure_shift(backbone: Backbone, source: Dataset, target: Dataset, *, cache: FeatureCache | None = None,
                  batch_size: int = 64, progress: bool = False, seed: int = 0) -> dict[str, Any]:
    """The shift between ``source`` and ``target`` as ``backbone`` sees them (frozen features, cached).

    Returns:
        ``pad``, ``domain_error``, ``reading`` (little / moderate / large), the examples per domain it used,
        and ``summary``: one line saying all of it.
    """
    features = [extract_features(backbone, part, cache=cache, batch_size=batch_size, progress=progress,
                                 label=label) for part, label in ((source, "train"), (target, "target"))]
    pad, error = proxy_a_distance(*features, seed=seed)
    reading = shift_reading(pad)
    used = min(len(source), len(target), MAX_PER_DOMAIN)
    return {"pad": round(pad, 4), "domain_error": round(error, 4), "reading": reading, "n_per_domain": used,
            "summary": f"domain shift: proxy A-distance {pad:.2f} ({reading} shift; a domain classifier on "
                       f"{backbone.ref} features errs on {error:.1%} of {2 * used} examples)"}
