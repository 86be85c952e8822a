"""Fixtures shared by every test: the real MNIST, loaded once per test session; and a
header line saying which numeric kernels this run used, so a CI log shows that the
forced-kernel runs (`make test-kernels`) really ran on other kernels."""

from __future__ import annotations

import os

import pytest


def pytest_report_header(config: pytest.Config) -> str:
    try:
        import numpy  # noqa: F401 - threadpoolctl sees only libraries already loaded
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{info['internal_api']} {info.get('architecture', '?')}"
                         for info in threadpool_info()) or "none found"
    except ImportError:
        blas = "unknown (threadpoolctl missing)"
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TensorFlow's default")
    return f"numeric kernels: BLAS {blas}; TF_ENABLE_ONEDNN_OPTS={onednn}"


@pytest.fixture(scope="session")
def mnist():
    from engine.data import load_mnist
    return load_mnist()
