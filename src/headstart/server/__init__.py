"""Serving a model over HTTP: a FastAPI app and the uvicorn server that runs it."""

from headstart.server.app import BodyLimit, PredictResponse, create_app, metadata
from headstart.server.run import LOOPBACK, BackgroundServer, check_host, free_port, run_server

__all__ = ["LOOPBACK", "BackgroundServer", "BodyLimit", "PredictResponse", "check_host", "create_app", "free_port",
           "metadata", "run_server"]
