"""Running the app with uvicorn: in the foreground (``headstart serve``) or in a background thread (tests,
benchmarks, notebooks)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import warnings
from types import TracebackType
from typing import TYPE_CHECKING

from headstart.errors import ConfigError, option

if TYPE_CHECKING:
    from fastapi import FastAPI

LOOPBACK = "127.0.0.1"


def check_host(host: str) -> None:
    """Warn when ``host`` is reachable from other machines: the API has no authentication."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        warnings.warn(f"serving on {host}: anyone who can reach this machine can use the model (no "
                      "authentication); put it behind a proxy that authenticates, or serve on 127.0.0.1",
                      stacklevel=2)


def run_server(app: FastAPI, *, host: str = LOOPBACK, port: int = 8000) -> None:
    """Serve ``app`` with uvicorn until interrupted (Ctrl-C)."""
    import uvicorn

    if not 0 < port < 65536:
        raise ConfigError(f"{option('port')} must be between 1 and 65535, not {port}")
    check_host(host)
    uvicorn.run(app, host=host, port=port, log_level="info")


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class BackgroundServer:
    """A uvicorn server in a daemon thread, for tests and benchmarks; a context manager.

    Example:
        >>> with BackgroundServer(create_app(model)) as server:
        ...     httpx.get(f"{server.url}/health")
    """

    def __init__(self, app: FastAPI, *, host: str = LOOPBACK, port: int | None = None,
                 start_timeout: float = 60.0) -> None:
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.start_timeout = start_timeout

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
