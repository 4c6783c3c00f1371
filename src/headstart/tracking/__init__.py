"""Experiment tracking on MLflow: ``fit``, ``compare`` and ``tune`` runs with their settings, data fingerprint,
per-epoch and final metrics, and their output folders as artifacts.

:mod:`headstart.tracking.runs` builds the run descriptions, :mod:`headstart.tracking.tracker` opens the store in
a background thread while the work runs and hands it the run, :mod:`headstart.tracking.writer` is the MLflow side.
"""
