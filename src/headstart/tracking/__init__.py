"""Experiment tracking on MLflow: ``fit``, ``compare`` and ``tune`` runs with their settings, data fingerprint,
per-epoch and final metrics, and their output folders as artifacts.

:mod:`headstart.tracking.runs` builds the run descriptions (:mod:`headstart.tracking.spec`),
:mod:`headstart.tracking.tracker` hands them to a worker process (:mod:`headstart.tracking.worker`) that opens the
store on another core while the work runs (and, for a command-line command, finishes the write after the command
has exited, recording the outcome with :mod:`headstart.tracking.outcomes`), :mod:`headstart.tracking.writer` is
the MLflow side.
"""
