"""The HTTP API of a served model (FastAPI): ``POST /predict``, ``GET /health``, ``GET /metadata``, docs at
``/docs``.

Text models take JSON ``{"texts": [...], "top_k": 1}``; image models take multipart uploads (field ``files``,
repeatable, optional form field ``top_k``). Requests over the size or batch limit get 413, malformed ones
(bad JSON, empty texts, unreadable images) 422, each with a message that says what was wrong; the server
keeps serving.

FastAPI is imported by :func:`create_app`, not with this module: it costs a noticeable part of every command's
start-up, and only ``serve`` needs it. (Hence no ``from __future__ import annotations`` here: FastAPI reads the
endpoints' annotations as objects, which refer to names imported in :func:`create_app`.)
"""

import io
import threading
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headstart import __version__
from headstart.errors import ConfigError
from headstart.model import TransferModel
from headstart.onnx_export import OnnxModel

if TYPE_CHECKING:
    from fastapi import FastAPI, UploadFile

Predictor = TransferModel | OnnxModel
MB = 1 << 20
SERVED = ("text", "image")


class TextRequest(BaseModel):
    """Texts to classify."""

    texts: list[str] = Field(min_length=1, description="The texts, one prediction each.")
    top_k: int = Field(1, ge=1, description="How many classes to return per text, most probable first.")


class Prediction(BaseModel):
    """One input's prediction."""

    label: str = Field(description="The most probable class.")
    confidence: float = Field(description="Its probability.")
    top: list[tuple[str, float]] = Field(description="The top_k classes with their probabilities.")


class PredictResponse(BaseModel):
    """Predictions, in the order of the inputs."""

    predictions: list[Prediction]


class BodyLimit:
    """ASGI middleware answering 413 to request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: str) -> str:
        return (f"request body is {size}; the limit is {self.max_bytes / MB:.1f} MB (server option "
                "--max-request-mb): send fewer or smaller inputs per request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        from fastapi import HTTPException
        from starlette.responses import JSONResponse

        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": self._message(f"{int(declared) / MB:.1f} MB")}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI re-raises HTTPExceptions from body parsing, so this becomes the 413 answer.
                raise HTTPException(413, self._message(f"over {self.max_bytes / MB:.1f} MB"))
            return message

        await self.app(scope, limited, send)


def _predictions(model: Predictor, items: list[Any], top_k: int, lock: threading.Lock) -> PredictResponse:
    # One model call at a time: each call already uses every core (intra-op threads), so concurrent calls
    # would only oversubscribe them.
    with lock:
        proba = model.predict_proba(items, batch_size=len(items))
    k = min(top_k, len(model.class_names))
    rows = []
    for p in proba:
        order = np.argsort(p)[::-1][:k]
        rows.append(Prediction(label=model.class_names[order[0]], confidence=float(p[order[0]]),
                               top=[(model.class_names[i], float(p[i])) for i in order]))
    return PredictResponse(predictions=rows)


def metadata(model: Predictor, *, max_batch: int, max_request_bytes: int) -> dict[str, Any]:
    """What ``GET /metadata`` answers: classes, backbone, engine, preprocessing, test metrics, limits."""
    if isinstance(model, OnnxModel):
        backbone, strategy, engine = model.metadata["backbone"], model.metadata["strategy"], "onnx"
        test = {}
    else:
        backbone, strategy, engine = model.backbone.ref, model.strategy, "torch"
        test = model.metrics.get("test", {})
    summary = {key: test[key] for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "n_examples")
               if key in test}
    preprocess = model.preprocess if isinstance(model, OnnxModel) else model.backbone.preprocess
    return {"headstart_version": __version__, "modality": model.modality, "classes": model.class_names,
            "backbone": backbone, "strategy": strategy, "engine": engine, "temperature": model.temperature,
            "preprocess": preprocess.to_dict(), "test_metrics": summary,
            "limits": {"max_batch": max_batch, "max_request_bytes": max_request_bytes}}


def _open_upload(upload: "UploadFile", data: bytes) -> Image.Image:
    from fastapi import HTTPException

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise HTTPException(422, f"file {upload.filename!r} is not a readable image ({err}); send PNG, JPEG, "
                                 "BMP, GIF, TIFF or WebP files") from None


def _check_batch(n: int, max_batch: int, what: str) -> None:
    from fastapi import HTTPException

    if n > max_batch:
        raise HTTPException(413, f"{n} {what} in one request; the limit is {max_batch} (server option "
                                 "--max-batch): split them over several requests")


def create_app(model: Predictor, *, max_batch: int = 64, max_request_bytes: int = 20 * MB) -> "FastAPI":
    """The FastAPI application serving ``model``.

    Args:
        model: A :class:`~headstart.model.TransferModel` or an exported :class:`~headstart.onnx_export.OnnxModel`.
        max_batch: Most inputs per request (more: 413).
        max_request_bytes: Largest request body (more: 413).

    Raises:
        ConfigError: A model of another modality than text or image.

    Example:
        >>> app = create_app(headstart.load("runs/demo"))
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    from fastapi import FastAPI, File, Form, HTTPException, UploadFile

    if model.modality not in SERVED:
        raise ConfigError(f"serving takes {' and '.join(SERVED)} models; this one is a {model.modality} model "
                          "(use headstart.predict from Python)")
    info = metadata(model, max_batch=max_batch, max_request_bytes=max_request_bytes)
    app = FastAPI(title=f"headstart {model.modality} classifier",
                  description=f"{info['strategy']} transfer from {info['backbone']}; classes: "
                              f"{', '.join(model.class_names)}", version=__version__)
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)
    lock = threading.Lock()
    # The first call builds lazy state (an image transform, an ONNX session): pay for it before serving.
    model.predict_proba([np.zeros((32, 32, 3), np.uint8)] if model.modality == "image" else ["warm-up"])

    @app.get("/health", summary="Liveness: the model is loaded and answering")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata", summary="Classes, backbone, preprocessing, test metrics and request limits")
    def get_metadata() -> dict[str, Any]:
        return info

    if model.modality == "text":
        @app.post("/predict", response_model=PredictResponse, summary="Classify texts (JSON)")
        def predict_texts(request: TextRequest) -> PredictResponse:
            _check_batch(len(request.texts), max_batch, "texts")
            empty = [i for i, text in enumerate(request.texts) if not text.strip()]
            if empty:
                raise HTTPException(422, f"texts at positions {empty[:10]} are empty; send non-blank texts")
            return _predictions(model, request.texts, request.top_k, lock)
    else:
        @app.post("/predict", response_model=PredictResponse, summary="Classify images (multipart uploads)")
        def predict_images(files: Annotated[list[UploadFile], File(description="Image files, one prediction "
                                                                                "each.")],
                           top_k: Annotated[int, Form(ge=1, description="Classes per image.")] = 1
                           ) -> PredictResponse:
            _check_batch(len(files), max_batch, "images")
            images = [_open_upload(upload, upload.file.read()) for upload in files]
            return _predictions(model, images, top_k, lock)

    return app
