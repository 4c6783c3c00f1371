"""The Python API after training: export a model as one ONNX graph, serve it over HTTP.

As :mod:`headstart.api`: each function loads what it is given, calls one room
(:mod:`headstart.onnx_export`, :mod:`headstart.server`) and publishes the result.
"""

from __future__ import annotations

from pathlib import Path

from headstart.data import DataSplits, load_dataset
from headstart.errors import ConfigError, DataError, OutputExistsError, option
from headstart.model import TransferModel
from headstart.onnx_export import EXPORT_FOLDER, ExportReport, OnnxModel, export_onnx, load_predictor
from headstart.server import LOOPBACK, create_app, run_server


def export(model: str | Path, *, format: str = "onnx", quantize: str | None = None, out: str | Path | None = None,
           data: str | Path | None = None, force: bool = False, text_column: str | None = None,
           label_column: str | None = None, path_column: str | None = None) -> ExportReport:
    """Export a saved model as one ONNX graph (backbone, head, temperature, softmax; dynamic batch axis).

    The preprocessing is written into the graph's metadata and a sidecar JSON (``out`` with suffix ``.json``);
    text models get their tokenizer files next to the graph. Every export checks parity with PyTorch on real
    examples (refusing an fp32 graph further than 1e-4 in probability).

    Args:
        model: A model folder written by :func:`fit`.
        format: ``"onnx"`` (the only format).
        quantize: ``"int8"``: dynamic quantization for transformers, static (calibrated on the model's own
            training images) for CNNs.
        out: The ``.onnx`` file; default ``<model>/onnx/model.onnx`` (``model.int8.onnx`` when quantized).
        data: Labeled data for the checks (its test split, or all of it): parity examples and the accuracy change
            of quantization. Default: the data the model was trained on (its test split where it has one).
        force: Replace an existing ``out``.
        text_column, label_column, path_column: Column names in tabular ``data``, when not detected.

    Returns:
        An :class:`~headstart.onnx_export.ExportReport` (paths, parity, accuracy change).

    Example:
        >>> report = export("runs/demo", quantize="int8")
        >>> report.parity.max_abs_diff, report.accuracy
    """
    if format != "onnx":
        raise ConfigError(f"{option('format')} must be onnx, not {format!r}")
    folder = Path(model)
    trained = TransferModel.load(folder)
    out = Path(out) if out is not None else folder / EXPORT_FOLDER / f"model{'.int8' if quantize else ''}.onnx"
    if out.suffix != ".onnx":
        raise ConfigError(f"{option('out')} must name an .onnx file, not {out}")
    if out.exists() and not force:
        raise OutputExistsError(f"{out} already exists; pass {option('force', True)} to replace it, or choose "
                                f"another {option('out')}")
    columns = {"text_column": text_column, "label_column": label_column, "path_column": path_column}
    recorded = _recorded_splits(trained)
    held_out = load_dataset(data, training=False, **columns).select() if data is not None else (
        recorded.test if recorded is not None else None)
    reference = recorded.train if recorded is not None else held_out
    examples = held_out if held_out is not None else reference
    return export_onnx(trained, out, parity_items=examples.items if examples is not None else [],
                       quantize=quantize, calibration_items=reference.items if reference is not None else None,
                       held_out=held_out)


def serve(model: TransferModel | OnnxModel | str | Path, *, host: str = LOOPBACK, port: int = 8000,
          engine: str = "torch", max_batch: int = 64, max_request_mb: float = 20.0) -> None:
    """Serve a model over HTTP until interrupted: ``POST /predict``, ``GET /health``, ``GET /metadata``, docs at
    ``/docs``.

    Args:
        model: A model, its folder, or an exported ``.onnx`` file.
        host: Interface to listen on; the default is loopback only (the API has no authentication).
        port: TCP port.
        engine: ``"torch"`` or ``"onnx"`` (the folder's exported graph), as for :func:`predict`.
        max_batch: Most inputs per request (more get 413).
        max_request_mb: Largest request body in MB (more get 413).

    Example:
        >>> serve("runs/demo", port=8000)   # then: curl -F files=@shoe.png http://127.0.0.1:8000/predict
    """
    if max_batch < 1 or max_request_mb <= 0:
        raise ConfigError(f"{option('max_batch')} must be at least 1 and {option('max_request_mb')} above 0")
    app = create_app(load_predictor(model, engine), max_batch=max_batch,
                     max_request_bytes=int(max_request_mb * (1 << 20)))
    run_server(app, host=host, port=port)


def _recorded_splits(model: TransferModel) -> DataSplits | None:
    """The data ``model`` was trained on, when its recorded source can still be read; ``None`` otherwise."""
    source = model.metrics.get("data", {}).get("source")
    if not source or not Path(source).exists():
        return None
    try:
        return load_dataset(source, training=False)
    except DataError:
        return None
