"""Commands after training: export a model as an ONNX graph, serve it over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from headstart import shipping
from headstart.cli.app import LabelColumn, ModelArgument, PathColumn, TextColumn, app, out, shown


@app.command()
def export(
    model_dir: ModelArgument,
    export_format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    quantize: Annotated[str | None, typer.Option(help="int8: dynamic for transformers, static (calibrated on "
                                                      "the training images) for CNNs.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="The .onnx file (default "
                                                  "MODEL_DIR/onnx/model.onnx, model.int8.onnx when quantized).")
                        ] = None,
    data: Annotated[Path | None, typer.Option(help="Labeled data for the parity check and the accuracy change of "
                                                   "quantization (its test split, or all of it); default: the "
                                                   "data the model was trained on.")] = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Export a model as one ONNX graph (probabilities, dynamic batch), checked against PyTorch."""
    report = shipping.export(model_dir, format=export_format, quantize=quantize, out=out_file, data=data, force=force,
                        text_column=text_column, label_column=label_column, path_column=path_column)
    p = report.parity
    out.print(f"parity fp32 vs PyTorch on {p.n_examples} examples: max |Δprob| {p.max_abs_diff:.1e}, top-1 "
              f"agreement {p.top1_agreement:.1%}", highlight=False)
    if report.quantized_parity is not None:
        q = report.quantized_parity
        out.print(f"parity {report.quantization} vs PyTorch: max |Δprob| {q.max_abs_diff:.1e}, top-1 agreement "
                  f"{q.top1_agreement:.1%}", highlight=False)
    if report.accuracy is not None:
        a = report.accuracy
        out.print(f"accuracy on {a['n_examples']} held-out examples ({shown(a['source'])}): fp32 {a['fp32']:.1%} "
                  f"-> int8 {a['int8']:.1%} ({(a['int8'] - a['fp32']) * 100:+.1f} points)", highlight=False)
    for note in report.notes:
        out.print(f"[yellow]note:[/] {shown(note)}", highlight=False)
    out.print(f"graph:   {shown(report.path)} ({report.path.stat().st_size / 1e6:.1f} MB)")
    out.print(f"sidecar: {shown(report.sidecar)}")


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `headstart fit`, or an .onnx file "
                                                   "written by `headstart export`.")],
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default; the API has no "
                                           "authentication).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    engine: Annotated[str, typer.Option(help="torch or onnx (the folder's exported graph).")] = "torch",
    max_batch: Annotated[int, typer.Option(help="Most inputs per request (more get 413).")] = 64,
    max_request_mb: Annotated[float, typer.Option(help="Largest request body in MB (more get 413).")] = 20.0,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /health, GET /metadata, docs at /docs."""
    shipping.serve(model_dir, host=host, port=port, engine=engine, max_batch=max_batch, max_request_mb=max_request_mb)
