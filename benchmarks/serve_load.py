"""Load test of ``headstart serve`` on loopback: requests/s and p50/p99 latency with 1 and 8 concurrent clients,
for one text (MiniLM) and one 224-px image (EfficientNet-Lite0) per request.

Starts ``python -m headstart serve`` as a child process on 127.0.0.1 (a free port), waits for /health, sends a
bounded number of requests (``--requests`` per client count, and never longer than ``--seconds``), then stops
the server. The demo models are trained first (see demo_models.py) when ``--work`` does not hold them.

    python benchmarks/serve_load.py [--requests 64] [--seconds 60]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from demo_models import ROOT, environment, train_demo_models
from headstart.server import free_port
from records import print_table, write_result

RESULTS = Path(__file__).parent / "results" / "serve_load.json"
CONCURRENCY = (1, 8)


def image_request() -> dict[str, object]:
    """One 224x224 PNG (a Fashion-MNIST test image, upscaled) as a multipart upload."""
    source = sorted((ROOT / "examples" / "fashion-mnist-mini" / "test").rglob("*.png"))[0]
    buffer = io.BytesIO()
    Image.open(source).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC).save(buffer, format="PNG")
    return {"files": [("files", ("shoe.png", buffer.getvalue(), "image/png"))]}


def text_request() -> dict[str, object]:
    """One gloss of average length."""
    return {"json": {"texts": ["a domesticated carnivorous mammal that typically has a long snout and barks"]}}


def start_server(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("wb") as sink:  # the child keeps its own handle; a pipe could fill up and block it
        process = subprocess.Popen([sys.executable, "-m", "headstart", "serve", str(model_dir), "--port", str(port)],
                                   stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError("server did not answer /health within 180 s")


def load(url: str, request: dict[str, object], clients: int, total: int, seconds: float) -> dict[str, float]:
    """``total`` requests spread over ``clients`` threads (or until ``seconds`` pass); latencies in ms."""
    latencies: list[float] = []
    failures = [0]
    guard = threading.Lock()
    deadline = time.monotonic() + seconds
    per_client = -(-total // clients)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as session:
            for _ in range(per_client):
                if time.monotonic() > deadline:
                    return
                start = time.perf_counter()
                answer = session.post("/predict", **request)
                elapsed = (time.perf_counter() - start) * 1000
                with guard:
                    latencies.append(elapsed)
                    failures[0] += answer.status_code != 200

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(latencies), "failures": failures[0],
            "requests_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)), "seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=64, help="Requests per client count.")
    parser.add_argument("--seconds", type=float, default=60, help="Upper bound per client count.")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-shipping"))
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    folders = train_demo_models(args.work)
    rows = []
    for modality, request in (("text", text_request()), ("image", image_request())):
        process, url = start_server(folders[modality], args.work / f"serve-{modality}.log")
        try:
            load(url, request, 1, 4, args.seconds)  # warm-up
            for clients in CONCURRENCY:
                rows.append({"model": modality, **load(url, request, clients, args.requests, args.seconds)})
                print(rows[-1], flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print_table(["request", "clients", "requests/s", "p50 ms", "p99 ms"],
                [[f"one {'text' if r['model'] == 'text' else '224-px image'}", r["clients"],
                  f"{r['requests_per_s']:.1f}", f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}"] for r in rows])
    write_result(args.json, {**environment(load_before), "requests": args.requests, "seconds_bound": args.seconds,
                             "rows": rows})


if __name__ == "__main__":
    main()
