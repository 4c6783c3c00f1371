"""Which trial a study refits: the best on validation data, unless its lead over the defaults is within noise.

With a dozen trials scored on a validation split of a hundred or so examples, the best validation score is
biased upwards (the winner's curse): a trial that wins by one or two examples is as likely to be lucky as
better, and refitting it risks losing to the defaults on the test split. So the best trial replaces the
defaults only when its paired gain on the validation examples exceeds ``margin`` standard errors of that gain
(Breiman's one-standard-error rule, applied to the paired difference). Each trial stores which validation
examples it got right (:func:`correct_mask`), so the rule also holds for studies resumed or shared by workers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: The trial's user attribute holding its per-example validation correctness ("0"/"1" per example).
CORRECT_ATTR = "val_correct"


def correct_mask(predicted: np.ndarray, labels: np.ndarray) -> str:
    """Which validation examples a trial got right, as a compact string stored with the trial."""
    return "".join("1" if hit else "0" for hit in np.asarray(predicted) == np.asarray(labels))


def paired_gain(best: str, defaults: str) -> tuple[float, float]:
    """The best trial's accuracy minus the defaults' on the same validation examples, and the standard error
    of that difference (from the per-example differences, so examples both got right or wrong add no noise)."""
    diff = np.frombuffer(best.encode(), np.uint8).astype(float) - np.frombuffer(defaults.encode(), np.uint8)
    if len(diff) < 2:
        return float(diff.mean()) if len(diff) else 0.0, math.inf
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))


def choose_refit(best: dict[str, Any] | None, defaults: dict[str, Any] | None, masks: dict[int, str], *,
                 margin: float) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The trial to refit and why.

    Args:
        best: The best complete trial (``number``, ``params``, ``value``), or ``None``.
        defaults: The trial that ran the defaults, or ``None`` (e.g. it failed).
        masks: Trial number -> its :func:`correct_mask`, for the trials that stored one.
        margin: Standard errors of the paired gain the best trial must exceed to replace the defaults;
            0 refits the best trial whenever it scored higher.

    Returns:
        The chosen trial (``best`` or ``defaults``) and a record for ``study.json``: ``kept_defaults``, ``why``
        and, when the rule applied, ``gain``, ``standard_error``, ``n_val`` and ``margin``.
    """
    if best is None or defaults is None or best["number"] == defaults["number"]:
        why = "the defaults scored best" if best is not None and defaults is not None else "no defaults trial"
        kept = best is not None and defaults is not None
        return best, {"kept_defaults": kept, "why": why}
    if margin <= 0 or best["number"] not in masks or defaults["number"] not in masks:
        return best, {"kept_defaults": False, "why": "best validation score (no noise rule applied)"}
    gain, error = paired_gain(masks[best["number"]], masks[defaults["number"]])
    record = {"gain": gain, "standard_error": error, "n_val": len(masks[best["number"]]), "margin": margin}
    # A tolerance, because a lead of one example with no loss gives gain == standard error exactly (1/n each),
    # and float rounding must not decide that a single example is more than noise.
    if gain - margin * error > 1e-9:
        return best, {**record, "kept_defaults": False,
                      "why": f"beat the defaults by {gain:+.1%} on validation, more than {margin:g} standard "
                             f"error(s) ({error:.1%})"}
    return defaults, {**record, "kept_defaults": True,
                      "why": f"the best trial beat the defaults by only {gain:+.1%} on {record['n_val']} validation "
                             f"examples, within {margin:g} standard error(s) ({error:.1%}): kept the defaults"}
