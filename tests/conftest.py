"""Shared fixtures. Ray is kept on 127.0.0.1 for every test that starts it."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pytest
import torch

from mtlkit.plugins import ALLOW_ENV, BLOCK_ENV, reset_plugin_manager


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch):
    """Each test sees a freshly loaded registry and no plugin-filter variables."""
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture(autouse=True)
def _torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
