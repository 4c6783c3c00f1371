"""examples/quickstart.ipynb runs in a real Jupyter kernel and shows progress bars and the objects' tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _outputs(cell: dict) -> str:
    """Everything a cell showed: streams, and each display's HTML, text and widget data, as one text."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(json.dumps(output.get("data", {})))
    return "\n".join(parts)


@pytest.mark.e2e
def test_quickstart_notebook_shows_bars_and_tables(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))  # a fresh cache: the bars must run
    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    shown = [_outputs(cell) for cell in notebook.cells if cell.cell_type == "code"]
    data, ranking, frame, model, predictions, study, curve = shown
    assert "Text data from examples/wordnet-supersenses: 1000 train, 500 test examples of 10 classes." in data
    assert "application/vnd.jupyter.widget-view+json" in ranking or "100%|" in ranking  # a bar was shown
    assert "Backbones ranked by logme, best first" in ranking
    assert "feature_dim" in frame and "text/html" in frame
    assert "A model on minilm: auto (chose " in model and "test accuracy" in model
    assert "'label':" in predictions and "'top':" in predictions
    assert "Test accuracy on 500 examples with glove" in study and "prototypes" in curve
