"""Experiment tracking on MLflow: ``fit``, ``compare`` and ``tune`` runs with their settings, data fingerprint,
per-epoch and final metrics, and their output folders as artifacts.

:mod:`headstart.tracking.runs` builds the run descriptions, :mod:`headstart.tracking.tracker` starts the writer
process and hands it the run, :mod:`headstart.tracking.writer` is that process. Nothing is imported here, so
the writer process (``python -m headstart.tracking.writer``) loads MLflow and not the training stack.
"""
