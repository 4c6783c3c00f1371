"""Without a network, hub references fail at once, with the local-weights syntax (the probe runs once)."""

from __future__ import annotations

import socket

import pytest

from headstart.backbones import create_backbone, hub
from headstart.errors import BackboneError


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """A hub endpoint nothing listens on, and an empty hub cache; the probe's answer is forgotten after."""
    from huggingface_hub import constants

    with socket.socket() as closed:  # a free port, closed again: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    hub.hub_unreachable.cache_clear()
    yield port
    hub.hub_unreachable.cache_clear()


def test_the_hub_is_probed_once_per_process(unreachable_hub, monkeypatch):
    assert f"no connection to 127.0.0.1:{unreachable_hub}" in hub.hub_unreachable()
    monkeypatch.setattr(socket, "create_connection", pytest.fail)  # a second probe would fail the test
    assert hub.hub_unreachable() is not None


def test_hf_hub_offline_is_honoured_without_a_probe(unreachable_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket, "create_connection", pytest.fail)
    assert hub.hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_timm_and_hf_references_fail_with_the_local_syntax(unreachable_hub):
    from huggingface_hub import constants

    with pytest.raises(BackboneError, match=r"cannot be reached.*'timm:resnet18@<file>'"):
        create_backbone("timm:resnet18", allow_download=True)
    with pytest.raises(BackboneError, match=r"cannot be reached.*'hf:<folder>'"):
        create_backbone("hf:someone/some-model", allow_download=True)
    assert constants.HF_HUB_OFFLINE is False  # offline mode was only for the download
