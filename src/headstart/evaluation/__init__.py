"""Measuring a model: metrics, calibration, and evaluation on labeled data."""

from headstart.evaluation.calibration import expected_calibration_error, fit_temperature, reliability_bins, softmax
from headstart.evaluation.evaluate import aligned_labels, calibrate_model, dataset_logits, evaluate_dataset
from headstart.evaluation.forgetting import REFERENCE_SETS, linear_cka, measure_forgetting
from headstart.evaluation.intervals import metric_intervals, wilson_interval
from headstart.evaluation.metrics import classification_metrics

__all__ = ["REFERENCE_SETS", "aligned_labels", "calibrate_model", "classification_metrics", "dataset_logits",
           "evaluate_dataset", "expected_calibration_error", "fit_temperature", "linear_cka", "measure_forgetting",
           "metric_intervals", "reliability_bins", "softmax", "wilson_interval"]
