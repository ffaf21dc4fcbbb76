"""Every test writes into temporary results, checkpoint and cache roots, never the real ones."""
import os
from pathlib import Path

import pytest
import torch

from labkit.data import OFFLINE_ARCHIVE, synthetic_cifar10

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("labkit")
    for name in ("RESULTS", "CHECKPOINTS", "CACHE"):
        monkeypatch.setenv(f"LABKIT_{name}", str(root / name.lower()))
    monkeypatch.delenv("LABKIT_DATA", raising=False)
    return root


@pytest.fixture(scope="session")
def tiny_data():
    return synthetic_cifar10(train_per_class=30, test_per_class=10)


real_data = pytest.mark.skipif(not OFFLINE_ARCHIVE.is_file(),
                               reason=f"offline CIFAR-10 archive not present at {OFFLINE_ARCHIVE}")


def real_archive() -> Path:
    return OFFLINE_ARCHIVE
