"""After training: a model as one ONNX graph (fp32 or int8), checked against PyTorch, and the runtime that
predicts with it."""

from headstart.onnx_export.export import PARITY_TOLERANCE, ExportReport, Parity, export_onnx
from headstart.onnx_export.graph import ProbabilityGraph, graph_inputs, graph_metadata
from headstart.onnx_export.runtime import ENGINES, EXPORT_FOLDER, OnnxModel, load_predictor

__all__ = ["ENGINES", "EXPORT_FOLDER", "PARITY_TOLERANCE", "ExportReport", "OnnxModel", "Parity", "ProbabilityGraph",
           "export_onnx", "graph_inputs", "graph_metadata", "load_predictor"]
