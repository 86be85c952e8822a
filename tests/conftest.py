"""Fixtures shared by every test: the real MNIST, loaded once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mnist():
    from engine.data import load_mnist
    return load_mnist()
