"""Whether the Hugging Face hub can be reached, asked once per process, so that offline work fails in seconds.

Without a network huggingface_hub retries each request for about a minute before it gives up; ``timm:<name>``
took 52 s to fail offline. One short connection attempt to the hub's endpoint (or ``HF_HUB_OFFLINE=1``)
answers instead, and downloads then run in huggingface_hub's offline mode: what the local cache holds loads at
once, anything else fails at once, and the message gives the local-weights syntax.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

#: Seconds the one connection attempt to the hub may take.
PROBE_TIMEOUT = 3.0


@functools.lru_cache(maxsize=1)
def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (``HF_HUB_OFFLINE`` set, or no connection to its endpoint within
    :data:`PROBE_TIMEOUT` seconds), or ``None`` when it can; asked once per process."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    endpoint = urlsplit(constants.ENDPOINT)
    host, port = endpoint.hostname or "", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
    except OSError as err:
        return f"no connection to {host}:{port}: {err.strerror or type(err).__name__}"
    return None


@contextmanager
def hub_access() -> Iterator[str | None]:
    """Run hub downloads in the block; when the hub cannot be reached they run in huggingface_hub's offline
    mode (the local cache answers at once). Yields why the hub is unreachable, or ``None``.

    Example:
        >>> with hub_access() as unreachable:
        ...     folder = snapshot_download("sentence-transformers/all-MiniLM-L6-v2")
    """
    reason = hub_unreachable()
    if reason is None:
        yield None
        return
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # read on every request by huggingface_hub (constants.is_offline_mode)
    try:
        yield reason
    finally:
        constants.HF_HUB_OFFLINE = offline
