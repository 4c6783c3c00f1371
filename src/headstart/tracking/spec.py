"""A :class:`RunSpec`: one MLflow run to write, as plain data that crosses to the tracking worker as JSON.

Only the standard library is imported here: the worker process (:mod:`headstart.tracking.worker`) reads run
descriptions without loading what built them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunSpec:
    """One MLflow run to write.

    Attributes:
        name: The run's name in the MLflow UI.
        params: Parameters (values are logged as text).
        metrics: ``(key, value, step)`` points; a key logged at several steps is a curve.
        tags: Tags (``headstart.command`` says which command made the run).
        artifacts: ``(local path, folder in the run's artifacts or "")`` pairs; a path may be a folder.
        children: Nested runs (one per compare run or tuning trial).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[tuple[str, float, int]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[tuple[str, str]] = field(default_factory=list)
    children: list[RunSpec] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The run as JSON-ready data: parameters as the text MLflow logs, metric points as numbers.

        Example:
            >>> RunSpec.from_json(spec.to_json()) == spec  # when every parameter is already text
        """
        return {"name": self.name, "params": {str(k): str(v) for k, v in self.params.items()},
                "metrics": [[str(key), float(value), int(step)] for key, value, step in self.metrics],
                "tags": {str(k): str(v) for k, v in self.tags.items()},
                "artifacts": [[str(path), str(folder)] for path, folder in self.artifacts],
                "children": [child.to_json() for child in self.children]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        """The run :meth:`to_json` described."""
        return cls(data["name"], dict(data["params"]), [(k, float(v), int(s)) for k, v, s in data["metrics"]],
                   dict(data["tags"]), [(path, folder) for path, folder in data["artifacts"]],
                   [cls.from_json(child) for child in data["children"]])
