"""What every benchmark records beside its numbers, the table it prints, and how it writes its results file.

A benchmark's JSON says under what conditions its numbers were measured: the exact command, the machine's load
average before and after (the machine is shared, so a ratio to a peer measured in the same run is the claim, and
the load says how much to trust it), CPU count, threads, platform, date and package versions. One script
measures, then::

    load_before = os.getloadavg()
    ...  # measure
    record = {**machine_record(("torch",), load_before=load_before), "rows": rows, "readme_table": table}
    print_table(**table)
    write_result(args.json, record)

Scripts written before this module named a few fields their own way (``load_before``, ``loadavg_before``,
``cpu_count``); ``names=`` keeps those names, so a new results file has every key its stored one had.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from readme_tables import markdown_table

#: ``names=`` of the scripts whose stored results call the load averages ``load_before`` and ``load_after``.
SHORT_LOAD_NAMES = {"load_average_before": "load_before", "load_average_after": "load_after"}
#: ``names=`` of the scripts whose stored results say ``loadavg_before``, ``loadavg_after`` and ``cpu_count``.
LOADAVG_NAMES = {"load_average_before": "loadavg_before", "load_average_after": "loadavg_after", "cpus": "cpu_count"}


def command_line() -> str:
    """The command that ran this benchmark, quoted to paste into a shell: ``python benchmarks/x.py --flag 1``."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed version of each distribution in ``packages`` (names as pip knows them: ``scikit-learn``)."""
    return {name: importlib.metadata.version(name) for name in packages}


def machine_record(packages: Iterable[str] = (), *, load_before: Sequence[float] | None = None,
                   threads: int | str | None = None, names: Mapping[str, str] | None = None,
                   flat_versions: bool = False) -> dict[str, Any]:
    """The conditions of a measurement that just ended, for its results file.

    Args:
        packages: distributions whose versions to record under ``"versions"``.
        load_before: ``os.getloadavg()`` taken when the measurement began; recorded as ``load_average_before``
            (left out when ``None``). The load average now is recorded as ``load_average_after``.
        threads: the threads the measurement ran with (e.g. ``torch.get_num_threads()``); by default the
            ``OMP_NUM_THREADS`` environment variable as set (``None`` when unset).
        names: field name -> the name to write it under, for scripts whose stored results use older names.
        flat_versions: also write each version at the top level (``"torch": "2.4.0"``), as older results did.

    Returns:
        ``command``, ``date`` (UTC), ``cpus``, ``threads``, ``machine`` (architecture), ``platform``,
        ``python``, ``versions``, ``load_average_before`` and ``load_average_after``, renamed by ``names``.

    Example:
        >>> record = machine_record(["numpy"], names={"cpus": "cpu_count"})
        >>> sorted(record)[:3]
        ['command', 'cpu_count', 'date']
    """
    versions = package_versions(packages)
    record: dict[str, Any] = {
        "command": command_line(), "date": time.strftime("%Y-%m-%d", time.gmtime()), "cpus": os.cpu_count(),
        "threads": os.environ.get("OMP_NUM_THREADS") if threads is None else threads,
        "machine": platform.machine(), "platform": platform.platform(), "python": platform.python_version(),
        "versions": versions,
    }
    if load_before is not None:
        record["load_average_before"] = list(load_before)
    record["load_average_after"] = list(os.getloadavg())
    renamed = {(names or {}).get(key, key): value for key, value in record.items()}
    return {**renamed, **versions} if flat_versions else renamed


def print_table(columns: Sequence[object], rows: Iterable[Sequence[object]]) -> None:
    """Print a markdown table, the same text ``readme_tables.py`` puts in the README.

    Takes a ``readme_table`` as ``print_table(**table)``. Raises ``ValueError`` when a row has a different number
    of cells than there are columns.
    """
    print("\n" + markdown_table({"columns": list(columns), "rows": list(rows)}), end="", flush=True)


def write_result(path: Path, record: Mapping[str, Any]) -> None:
    """Write ``record`` as indented JSON to ``path`` atomically, creating its folder.

    The JSON goes to a temporary file beside ``path``, then replaces it in one rename: a benchmark that writes
    after every run, or a reader running beside it (``readme_tables.py``, a parallel part of the same
    benchmark), never sees a half-written file. Values JSON cannot hold (paths, numpy scalars) are written as
    their ``str``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, default=str) + "\n"
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's 0o600 would make results unreadable to the other users of a machine
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
