"""The HTTP server, tested with a real HTTP client against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import io
import warnings

import httpx
import numpy as np
import pytest
from PIL import Image

import headstart
from headstart.server import BackgroundServer, check_host, create_app


@pytest.fixture
def text_server(tmp_path, text_csv, tiny_text_ref):
    headstart.fit(text_csv, backbone=tiny_text_ref, out=tmp_path / "text", progress=False, test_fraction=0.2)
    model = headstart.load(tmp_path / "text")
    with BackgroundServer(create_app(model, max_batch=4, max_request_bytes=4096)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, model


@pytest.fixture
def image_server(tmp_path, image_folder, tiny_backbone):
    headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "image-model", progress=False)
    model = headstart.load(tmp_path / "image-model")
    with BackgroundServer(create_app(model, max_batch=3)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, model


def test_text_predictions_health_metadata_and_docs(text_server):
    client, model = text_server
    assert client.get("/health").json() == {"status": "ok"}
    texts = ["a small dog barks", "a bowl of rice"]
    answer = client.post("/predict", json={"texts": texts, "top_k": 2})
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    expected = model.predict_proba(texts)
    assert [p["label"] for p in predictions] == [model.class_names[i] for i in expected.argmax(1)]
    assert predictions[0]["confidence"] == pytest.approx(expected[0].max(), abs=1e-6)
    assert len(predictions[0]["top"]) == 2
    meta = client.get("/metadata").json()
    assert meta["classes"] == model.class_names and meta["backbone"] == model.backbone.ref
    assert meta["test_metrics"]["accuracy"] == model.metrics["test"]["accuracy"]
    assert client.get("/docs").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_bad_requests_get_4xx_that_say_why_and_the_server_keeps_serving(text_server):
    client, _ = text_server
    bad_json = client.post("/predict", content=b'{"texts": [', headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and "json" in bad_json.text.lower()
    too_many = client.post("/predict", json={"texts": ["a"] * 5})
    assert too_many.status_code == 413 and "the limit is 4" in too_many.json()["detail"]
    too_big = client.post("/predict", json={"texts": ["x" * 5000]})
    assert too_big.status_code == 413 and "--max-request-mb" in too_big.json()["detail"]
    empty = client.post("/predict", json={"texts": ["fine", "  "]})
    assert empty.status_code == 422 and "[1]" in empty.json()["detail"]
    missing = client.post("/predict", json={"text": ["a"]})
    assert missing.status_code == 422 and "texts" in missing.text
    assert client.post("/predict", json={"texts": ["the cat sleeps"]}).status_code == 200


def test_streamed_bodies_over_the_limit_are_refused(text_server):
    client, _ = text_server

    def chunks():
        yield b'{"texts": ["'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"]}'

    answer = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_uploads_bad_images_and_batch_limit(image_server, image_folder):
    client, model = image_server
    paths = sorted(image_folder.rglob("*.png"))[:2]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    answer = client.post("/predict", files=files, data={"top_k": "2"})
    assert answer.status_code == 200
    assert [p["label"] for p in answer.json()["predictions"]] == model.predict([str(p) for p in paths])
    broken = client.post("/predict", files=[("files", ("broken.png", b"not an image", "image/png"))])
    assert broken.status_code == 422 and "broken.png" in broken.json()["detail"]
    four = [("files", (f"{i}.png", _png(np.zeros((8, 8, 3), np.uint8)), "image/png")) for i in range(4)]
    assert client.post("/predict", files=four).status_code == 413
    assert client.post("/predict", files=files[:1]).status_code == 200


def test_serving_beyond_loopback_warns():
    with pytest.warns(UserWarning, match="no authentication"):
        check_host("0.0.0.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_host("127.0.0.1")
        check_host("localhost")
